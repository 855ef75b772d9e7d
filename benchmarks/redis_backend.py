"""tieredmem on Redis against direct redis-py calls, over loopback.

Starts a private ``redis-server`` on a free loopback port (or uses ``--url``), then runs,
each configuration in a fresh process, ``--repeats`` rounds interleaved (every
configuration once per round), and reports the median of each figure:

- ``kv``: the workload of benchmarks/kv.py (``--keys`` values of ~1 KB): set, hot get
  (a 1,000-key subset read repeatedly, 8 MiB hot tier), cold get (uniform over all keys
  with a 1 MiB hot tier), for ``tieredmem`` (``tieredmem.open("redis://...")``, the
  strict coherence mode), ``tieredmem-tracking`` (``?coherence=tracking``) and
  ``redis-py`` (SET/GET of the same orjson bytes);
- ``chat``: the LangGraph chat loop of benchmarks/langgraph_saver.py (``--turns`` turns,
  one ~500 B AIMessage a turn) with ``TieredSaver`` on Redis, strict and tracking.

For each phase: ops/s and the Redis commands the server executed (``INFO commandstats``),
plus the client round trips per operation (counted in redis-py), so "round trips saved" is
the difference per operation.

    python benchmarks/redis_backend.py [--quick] [--keys N] [--turns N] [--repeats N]
                                       [--url redis://...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import require, results_path  # noqa: E402 (after the path set-up above)

#: What this benchmark needs beyond tieredmem (``tieredmem bench`` checks it first).
REQUIRES: dict[str, list[str]] = {
    "modules": ["redis", "langgraph"],
    "programs": ["redis-server", "redis-cli"],
}


def _plain(url: str) -> str:
    """*url* without tieredmem's parts: ``redis://host:port/db`` for redis-py."""
    return url.split("?")[0].replace("redis+cluster://", "redis://")


def commands(url: str) -> int:
    """Commands the server (every node of a cluster) executed so far."""
    import redis
    from redis.cluster import RedisCluster

    if url.startswith("redis+cluster://"):
        cluster = RedisCluster.from_url(_plain(url))
        found = cluster.info("commandstats", target_nodes=RedisCluster.ALL_NODES)
        cluster.close()
        return sum(int(v["calls"]) for node in found.values() for v in node.values())
    client = redis.Redis.from_url(_plain(url))
    stats = client.info("commandstats")
    client.close()
    return sum(int(v["calls"]) for v in stats.values())


ROUND_TRIPS = [0]


def count_round_trips() -> None:
    """Count client round trips: every packed send of redis-py (a pipeline is one)."""
    from redis.connection import AbstractConnection

    original = AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        ROUND_TRIPS[0] += 1
        original(self, command, check_health)

    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]


def timed(url: str, fn: Any, n: int) -> dict[str, float]:
    before = commands(url)
    trips = ROUND_TRIPS[0]
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    trips = ROUND_TRIPS[0] - trips
    used = commands(url) - before - 1  # the INFO call itself
    return {
        "ops_per_s": round(n / seconds, 1),
        "round_trips_per_op": round(trips / n, 3),
        "redis_commands_per_op": round(used / n, 3),
    }


def worker_kv(url: str, name: str, keys: int, seed: int) -> dict[str, Any]:
    import orjson
    from kv import make_value  # the same values as benchmarks/kv.py

    values = [orjson.dumps(make_value(i)) for i in range(keys)]
    rng = random.Random(seed)
    hot = [rng.randrange(keys) for _ in range(min(1000, keys))]
    hot_ops = [hot[rng.randrange(len(hot))] for _ in range(keys)]
    cold_ops = [rng.randrange(keys) for _ in range(keys)]
    out: dict[str, Any] = {}
    if name.startswith("tieredmem"):
        import tieredmem

        # The hot subset fits in the hot tier; the cold phase gets a small one.
        store = tieredmem.open(url, hot_bytes="8MiB", maintenance_interval=0)
        decoded = [orjson.loads(v) for v in values]

        def put() -> None:
            for i, v in enumerate(decoded):
                store.put(("bench",), f"key-{i:08d}", v)

        def get(ops: list[int]) -> None:
            for i in ops:
                assert store.get(("bench",), f"key-{i:08d}") is not None

        out["set"] = timed(url, put, keys)
        get(hot)  # warm the hot subset
        out["get_hot"] = timed(url, lambda: get(hot_ops), keys)
        store.close()
        store = tieredmem.open(url, hot_bytes="1MiB", maintenance_interval=0)
        out["get_cold"] = timed(url, lambda: get(cold_ops), keys)
        store.close()
    else:
        import redis
        from redis.cluster import RedisCluster

        cluster = url.startswith("redis+cluster://")
        client = (RedisCluster if cluster else redis.Redis).from_url(_plain(url))
        prefix = url.split("prefix=")[-1] if "prefix=" in url else "raw:"

        def rput() -> None:
            for i, v in enumerate(values):
                client.set(f"{prefix}key-{i:08d}", v)

        def rget(ops: list[int]) -> None:
            for i in ops:
                assert orjson.loads(client.get(f"{prefix}key-{i:08d}")) is not None

        out["set"] = timed(url, rput, keys)
        out["get_hot"] = timed(url, lambda: rget(hot_ops), keys)
        out["get_cold"] = timed(url, lambda: rget(cold_ops), keys)
        client.close()
    return out


def worker_chat(url: str, turns: int) -> dict[str, Any]:
    from langchain_core.messages import AIMessage, HumanMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    import tieredmem
    from tieredmem.langgraph import TieredSaver

    rng = random.Random(7)
    words = "agent memory tool plan search answer user question context summary".split()

    def bot(state: MessagesState) -> dict[str, Any]:
        n = len(state["messages"])
        return {"messages": [AIMessage(" ".join(rng.choice(words) for _ in range(80)), id=f"a{n}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("bot", bot)
    builder.add_edge(START, "bot")
    builder.add_edge("bot", END)
    store = tieredmem.open(url, maintenance_interval=0)
    graph = builder.compile(checkpointer=TieredSaver(store))
    config = {"configurable": {"thread_id": "chat"}}

    def run() -> None:
        for i in range(turns):
            graph.invoke({"messages": [HumanMessage(f"q{i}", id=f"q{i}")]}, config)

    out = {"turns": timed(url, run, turns)}
    out["get_state"] = timed(url, lambda: [graph.get_state(config) for _ in range(100)], 100)
    out["messages"] = len(graph.get_state(config).values["messages"])
    store.close()
    return out


#: The configurations, each run in a fresh process once per round (``cluster:`` ones on
#: a Redis Cluster of 3 masters and 3 replicas).
SINGLE = ("tieredmem", "tieredmem-tracking", "redis-py", "chat", "chat-tracking")
CONFIGS = SINGLE + tuple(f"cluster:{name}" for name in SINGLE)


def median_of(found: list[Any]) -> Any:
    """The median, figure by figure, of several runs' (nested) results."""
    first = found[0]
    if isinstance(first, dict):
        return {k: median_of([f[k] for f in found]) for k in first}
    if isinstance(first, (int, float)):
        return round(statistics.median(found), 3)
    return first


def start_server() -> tuple[subprocess.Popen[bytes], str, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server), or pass --url")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="tieredmem-redis-bench-")
    # No inherited stdout/stderr: a server left behind must not hold a caller's pipe open.
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
    except BaseException:
        stop_server(proc, workdir)
        raise
    return proc, f"redis://127.0.0.1:{port}/0", workdir


def stop_server(proc: subprocess.Popen[bytes], workdir: str) -> None:
    """Stop the private server and remove its directory (on every path out)."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--keys", type=int, default=20_000)
    p.add_argument("--turns", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median)")
    p.add_argument(
        "--quick", action="store_true", help="2,000 keys, 50 turns, 1 round (CI smoke run)"
    )
    p.add_argument("--url", help="an existing Redis (default: start a private one)")
    p.add_argument(
        "--cluster-url",
        help="an existing Redis Cluster, redis+cluster://host:port/ (default: start a "
        "private one of 3 masters and 3 replicas, unless --url is given)",
    )
    p.add_argument("--no-cluster", action="store_true", help="skip the Redis Cluster runs")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--prefix", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.keys, args.turns, args.repeats = 2_000, 50, 1
    if args.worker:
        count_round_trips()
        url = f"{args.url}?prefix={args.prefix}"
        if args.worker.endswith("-tracking"):
            url += "&coherence=tracking"

        if args.worker.startswith("chat"):
            result = worker_chat(url, args.turns)
        else:
            result = worker_kv(url, args.worker, args.keys, args.seed)
        print(json.dumps(result))
        return 0
    require(
        "benchmarks/redis_backend.py",
        {"modules": REQUIRES["modules"]} if args.url else REQUIRES,
    )
    configs = [c for c in CONFIGS if not c.startswith("cluster:") or not args.no_cluster]
    if args.url and not args.cluster_url:
        configs = [c for c in configs if not c.startswith("cluster:")]
    proc, url, workdir = (None, args.url, "") if args.url else start_server()
    cluster: Any = None
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    try:
        cluster_url = args.cluster_url
        if cluster_url is None and any(c.startswith("cluster:") for c in configs):
            from tests.redis_cluster import RedisCluster

            cluster = RedisCluster()
            cluster_url = f"redis+cluster://127.0.0.1:{cluster.ports[0]}/"
        for r in range(args.repeats):
            for n, name in enumerate(configs):
                target, _, worker = name.rpartition(":")
                cmd = [
                    sys.executable,
                    __file__,
                    "--worker",
                    worker,
                    "--url",
                    cluster_url if target else url,
                    "--prefix",
                    f"b{r}x{n}:",
                    "--keys",
                    str(args.keys),
                    "--turns",
                    str(args.turns),
                    "--seed",
                    str(args.seed),
                ]
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    print(out.stderr[-3000:], file=sys.stderr)
                    return 1
                runs[name].append(json.loads(out.stdout))
                print(f"[round {r + 1}/{args.repeats}] {name} ok", file=sys.stderr)
    finally:
        if cluster is not None:
            cluster.remove()
        if proc is not None:
            stop_server(proc, workdir)
    results = {name: median_of(found) for name, found in runs.items()}
    for target, title in (("", "one Redis server"), ("cluster:", "a Redis Cluster (3+3)")):
        if f"{target}tieredmem" not in results:
            continue
        print(
            f"\n{title} over loopback, {args.keys:,} keys of ~1 KB, median of "
            f"{args.repeats} interleaved rounds: ops/s and client round trips per op (RTT)"
        )
        print(
            f"{'phase':10} {'strict ops/s':>13} {'RTT':>6} {'tracking ops/s':>15} {'RTT':>6} "
            f"{'redis-py ops/s':>15} {'RTT':>5} {'tracking/redis-py':>18}"
        )
        for phase in ("set", "get_hot", "get_cold"):
            t, k, r = (
                results[target + n][phase] for n in ("tieredmem", "tieredmem-tracking", "redis-py")
            )
            print(
                f"{phase:10} {t['ops_per_s']:>13,.0f} {t['round_trips_per_op']:>6} "
                f"{k['ops_per_s']:>15,.0f} {k['round_trips_per_op']:>6} "
                f"{r['ops_per_s']:>15,.0f} {r['round_trips_per_op']:>5} "
                f"{k['ops_per_s'] / r['ops_per_s']:>17.1f}x"
            )
        print(f"LangGraph chat loop on {title}, {args.turns} turns:")
        for name in ("chat", "chat-tracking"):
            chat = results[target + name]
            print(
                f"  {'strict' if name == 'chat' else 'tracking':8} "
                f"{1000 / chat['turns']['ops_per_s']:.2f} ms/turn, "
                f"{chat['turns']['round_trips_per_op']} round trips/turn; get_state "
                f"{1000 / chat['get_state']['ops_per_s']:.2f} ms, "
                f"{chat['get_state']['round_trips_per_op']} round trips"
            )
    print(
        "\nOn one server a hot get costs tieredmem one round trip in the strict mode (the"
        " version check that keeps hosts coherent); on a cluster, one PING per master (sent"
        " together). In the tracking mode it costs none while the tracking connections are"
        " quiet (one check a second). A write batch is one Lua script per unit."
    )
    out_path = results_path("redis_backend", args.quick)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/redis_backend.py" + (" --quick" if args.quick else "")
    out_path.write_text(
        json.dumps(
            {
                "benchmark": "redis_backend",
                "command": command,
                "keys": args.keys,
                "turns": args.turns,
                "repeats": args.repeats,
                "machine": {
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                },
                "results": results,
            },
            indent=2,
        )
    )
    print(f"\nresults: {out_path}\nreproduce: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

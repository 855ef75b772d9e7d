"""PostgreSQL benchmark: TieredSaver and TieredStore on PostgreSQL against LangGraph's own
``PostgresSaver`` and ``PostgresStore`` (``langgraph-checkpoint-postgres``), on one server,
in one run.

The script starts a private PostgreSQL (Debian's ``postgresql`` package, as the tests do:
``tests/pg_server.py``, with ``fsync`` on) unless ``--dsn`` names one.  Each configuration
gets its own database, so "storage" is the total relation size (tables, TOAST, indexes)
of everything it created.  Where the server binaries are missing the script says so and
exits 0 (nothing to measure); any other failure exits non-zero.

Scenarios:

(turns) the chat loop of ``benchmarks/langgraph_saver.py``: a one-node ``StateGraph`` over
    ``MessagesState`` appending one ~500-character ``AIMessage`` per turn, one thread.  At
    each checkpoint (100, 1,000, 4,000 turns): total relation size, mean ms per turn so
    far, the median of 20 ``graph.get_state`` and of 5 times to the first item of
    ``saver.list``.  PostgresSaver stops after ``--anchor-turns`` (1,000: it writes the
    whole message list every turn, so 4,000 turns would take many GB) or at
    ``--time-cap`` seconds (recorded).
(store) ``--items`` puts of a ~300-byte dict, as many gets of random keys, then 50
    ``search`` calls with a filter (median ms each): TieredStore (a hot tier larger than
    the data) against PostgresStore.
(coherence) the cost per read of the coherence check: 2,000 ``Store.get`` of one hot key
    with ``coherence=strict`` (one round trip a read), ``coherence=notify`` (LISTEN/NOTIFY)
    and ``coherence_interval=3600`` (no check: the hot tier alone).

Run from the repository root::

    PYTHONPATH=. python benchmarks/postgres.py            # full sizes
    PYTHONPATH=. python benchmarks/postgres.py --quick    # smoke run (well under a minute)

Results: ``benchmarks/results/postgres.json`` (``--quick``: ``postgres_quick.json`` outside
the tree, see ``_common.results_path``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import random
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import results_path  # noqa: E402

MiB = 1024 * 1024
CHECKPOINTS = (100, 1000, 4000)
QUICK_CHECKPOINTS = (20, 50)
Result = dict[str, Any]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class Server:
    """The PostgreSQL the run uses: a private one, or ``--dsn``'s."""

    def __init__(self, dsn: str | None) -> None:
        self.private: Any = None
        if dsn is None:
            from tests.pg_server import MISSING, PgServer, find_binaries

            bindir = find_binaries()
            if bindir is None:
                print(f"skipped: {MISSING}")
                raise SystemExit(0)
            self.private = PgServer(bindir, durable=True)
            dsn = self.private.dsn()
        self.dsn = dsn

    def database(self, name: str) -> str:
        """A fresh database *name*; its DSN."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        base, _, _ = self.dsn.rpartition("/")
        return f"{base}/{name}"

    def close(self) -> None:
        if self.private is not None:
            self.private.remove()


def relation_bytes(dsn: str) -> int:
    """Total size (heap, TOAST, indexes) of every user table in the database."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
    return int(row[0]) if row else 0


# -- (turns) -------------------------------------------------------------------------
def open_saver(slug: str, dsn: str) -> tuple[Any, Any]:
    """``(saver, closer)`` of a configuration."""
    if slug == "tiered":
        import tieredmem
        from tieredmem.langgraph import TieredSaver

        store = tieredmem.open(dsn)
        return TieredSaver(store), store.close
    from langgraph.checkpoint.postgres import PostgresSaver

    manager = PostgresSaver.from_conn_string(dsn)
    saver = manager.__enter__()
    saver.setup()
    return saver, lambda: manager.__exit__(None, None, None)


def run_turns(slug: str, server: Server, checkpoints: tuple[int, ...], cap: float) -> Result:
    from langchain_core.messages import HumanMessage
    from langgraph_saver import Replies, build_graph, question, thread_config

    dsn = server.database(f"bench_{slug.replace('-', '_')}")
    saver, close = open_saver(slug, dsn)
    replies = Replies(7)
    graph = build_graph(False, saver, replies)
    config = thread_config("chat")
    times: list[float] = []
    rows: list[Result] = []
    started = time.perf_counter()
    stopped = None
    try:
        for turn in range(1, checkpoints[-1] + 1):
            t0 = time.perf_counter()
            graph.invoke({"messages": [HumanMessage(question(turn))]}, config)
            times.append(time.perf_counter() - t0)
            capped = time.perf_counter() - started > cap
            if turn in checkpoints or capped:
                rows.append(measure(saver, graph, config, turn, times, dsn))
                print(f"  {slug}: turn {turn}: {json.dumps(rows[-1])}", flush=True)
            if capped:
                stopped = f"time cap {cap:g}s at turn {turn}"
                break
    finally:
        close()
    return {"checkpoints": rows, "stopped": stopped}


def measure(saver: Any, graph: Any, config: Any, turn: int, times: list[float], dsn: str) -> Result:
    state = []
    for i in range(20):
        t0 = time.perf_counter()
        snapshot = graph.get_state(config)
        state.append(time.perf_counter() - t0)
        if i == 0 and len(snapshot.values["messages"]) != 2 * turn:
            raise AssertionError(f"{len(snapshot.values['messages'])} messages at turn {turn}")
    listing = []
    for _ in range(5):
        t0 = time.perf_counter()
        it = iter(saver.list(config))
        next(it)
        listing.append(time.perf_counter() - t0)
        getattr(it, "close", lambda: None)()
    return {
        "turn": turn,
        "relation_mb": round(relation_bytes(dsn) / MiB, 3),
        "mean_turn_ms": ms(sum(times) / len(times)),
        "get_state_ms": ms(statistics.median(state)),
        "list_first_ms": ms(statistics.median(listing)),
    }


# -- (store) -------------------------------------------------------------------------
def run_store(slug: str, server: Server, n: int) -> Result:
    dsn = server.database(f"bench_store_{slug}")
    if slug == "tiered":
        import tieredmem
        from tieredmem.langgraph import TieredStore

        raw = tieredmem.open(dsn, hot_bytes="256MiB")
        store: Any = TieredStore(raw)
        close = raw.close
    else:
        from langgraph.store.postgres import PostgresStore

        manager = PostgresStore.from_conn_string(dsn)
        store = manager.__enter__()
        store.setup()

        def close() -> None:
            manager.__exit__(None, None, None)

    rng = random.Random(3)
    value = {"text": "note " * 50, "kind": "fact", "n": 0}
    try:
        t0 = time.perf_counter()
        for i in range(n):
            store.put(("users", f"u{i % 20}"), f"k{i}", {**value, "n": i, "kind": f"k{i % 10}"})
        put = time.perf_counter() - t0
        keys = [rng.randrange(n) for _ in range(n)]
        t0 = time.perf_counter()
        for i in keys:
            item = store.get(("users", f"u{i % 20}"), f"k{i}")
            assert item is not None and item.value["n"] == i
        get = time.perf_counter() - t0
        searches = []
        for i in range(50):
            t0 = time.perf_counter()
            found = store.search(("users", f"u{i % 20}"), filter={"kind": f"k{i % 10}"}, limit=10)
            searches.append(time.perf_counter() - t0)
            assert found, "the search found nothing"
    finally:
        close()
    return {
        "items": n,
        "put_us": round(put / n * 1e6, 1),
        "get_us": round(get / n * 1e6, 1),
        "search_filter_ms": ms(statistics.median(searches)),
    }


# -- (coherence) ---------------------------------------------------------------------
def run_coherence(server: Server, reads: int) -> Result:
    import tieredmem

    dsn = server.database("bench_coherence")
    out: Result = {}
    for name, url, options in (
        ("strict", dsn, {}),
        ("notify", dsn + "?coherence=notify", {}),
        ("no check (coherence_interval=3600)", dsn, {"coherence_interval": 3600.0}),
    ):
        with tieredmem.open(url, **options) as s:
            s.put(("bench",), "k", {"v": 1})
            s.get(("bench",), "k")
            spent = []
            for _ in range(reads):
                t0 = time.perf_counter()
                s.get(("bench",), "k")
                spent.append(time.perf_counter() - t0)
        out[name] = {"median_us": round(statistics.median(spent) * 1e6, 2)}
    return out


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for dist in ("tieredmem", "langgraph", "langgraph-checkpoint-postgres", "psycopg"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    return found


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes")
    p.add_argument("--dsn", help="use this PostgreSQL instead of starting a private one")
    p.add_argument("--turns", default=None, help="checkpoints, e.g. 100,1000,4000")
    p.add_argument("--time-cap", type=float, default=1800.0, help="seconds per saver")
    p.add_argument(
        "--anchor-turns",
        type=int,
        default=1000,
        help="PostgresSaver stops after this many turns (its storage grows quadratically)",
    )
    p.add_argument("--items", type=int, default=None, help="store scenario size")
    p.add_argument("--output", default=None)
    args = p.parse_args()
    checkpoints = QUICK_CHECKPOINTS if args.quick else CHECKPOINTS
    if args.turns:
        checkpoints = tuple(int(x) for x in args.turns.split(","))
    items = args.items or (200 if args.quick else 5000)
    try:
        import langgraph.checkpoint.postgres  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError as exc:
        print(f"needs the bench extra: pip install -e '.[bench]' ({exc})")
        return 1
    server = Server(args.dsn)
    results: Result = {}
    try:
        print("(coherence) cost per hot read", flush=True)
        results["coherence"] = run_coherence(server, 300 if args.quick else 2000)
        print(json.dumps(results["coherence"]), flush=True)
        print("(store)", flush=True)
        results["store"] = {slug: run_store(slug, server, items) for slug in ("tiered", "postgres")}
        print(json.dumps(results["store"]), flush=True)
        print("(turns)", flush=True)
        anchor = tuple(c for c in checkpoints if c <= args.anchor_turns) or checkpoints[:1]
        results["turns"] = {
            "tiered": run_turns("tiered", server, checkpoints, args.time_cap),
            "postgres-saver": run_turns("postgres-saver", server, anchor, args.time_cap),
        }
    finally:
        server.close()
    summary = summarize(results)
    for line in summary["lines"]:
        print(line)
    words = ["python", "benchmarks/postgres.py"] + (["--quick"] if args.quick else [])
    if args.turns:
        words += ["--turns", args.turns]
    if args.items:
        words += ["--items", str(args.items)]
    if args.anchor_turns != 1000:
        words += ["--anchor-turns", str(args.anchor_turns)]
    report = {
        "benchmark": "postgres",
        "command": "PYTHONPATH=. " + shlex.join(words),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "versions": versions(),
        "results": results,
        "summary": summary,
    }
    out = Path(args.output) if args.output else results_path("postgres", args.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


def summarize(results: Result) -> Result:
    """Ratios at the largest turn count both savers reached, and the store's."""
    lines = []
    tiered = {r["turn"]: r for r in results["turns"]["tiered"]["checkpoints"]}
    anchor = {r["turn"]: r for r in results["turns"]["postgres-saver"]["checkpoints"]}
    both = sorted(set(tiered) & set(anchor))
    out: Result = {"lines": lines}
    for turn in both:
        t, a = tiered[turn], anchor[turn]
        row = {
            "storage_ratio": round(t["relation_mb"] / a["relation_mb"], 4),
            "turn_ms_ratio": round(t["mean_turn_ms"] / a["mean_turn_ms"], 3),
            "get_state_speedup": round(a["get_state_ms"] / t["get_state_ms"], 1),
            "list_first_speedup": round(a["list_first_ms"] / t["list_first_ms"], 1),
        }
        out[f"turn_{turn}"] = row
        lines.append(
            f"turn {turn}: storage {t['relation_mb']:.2f} vs {a['relation_mb']:.2f} MB "
            f"(x{row['storage_ratio']}), ms/turn {t['mean_turn_ms']} vs {a['mean_turn_ms']} "
            f"(x{row['turn_ms_ratio']}), get_state {t['get_state_ms']} vs {a['get_state_ms']} ms "
            f"({row['get_state_speedup']}x faster), list first {t['list_first_ms']} vs "
            f"{a['list_first_ms']} ms"
        )
    turns = sorted(tiered)
    if len(turns) >= 2:
        lo, hi = turns[-2], turns[-1]
        growth = tiered[hi]["relation_mb"] / tiered[lo]["relation_mb"]
        out["tiered_growth"] = {"from": lo, "to": hi, "factor": round(growth, 2)}
        lines.append(f"TieredSaver storage {lo} -> {hi} turns: x{growth:.2f}")
    st = results["store"]
    for op in ("put_us", "get_us", "search_filter_ms"):
        lines.append(
            f"store {op}: TieredStore {st['tiered'][op]} vs PostgresStore {st['postgres'][op]}"
        )
    for mode, r in results["coherence"].items():
        lines.append(f"hot read, {mode}: {r['median_us']} us")
    return out


if __name__ == "__main__":
    raise SystemExit(main())

"""Agent-memory benchmark: tieredmem against plain Python containers and LangGraph's store.

Three scenarios, every configuration in a fresh process (this script re-runs itself with a
hidden ``--worker`` argument, which prints one JSON line), so each peak RSS
(``_common.peak_rss_mb``: VmHWM on Linux) belongs to that configuration alone:

(a) conversation: one session of N chat messages (~500 B each), appended one at a time;
    every 100 appends the last 100 are read (``History.recent()``; ``lst[-100:]`` for
    the list; 100 ``get`` calls for ``InMemoryStore``).  Configurations:
    ``tieredmem-sync``, ``tieredmem-batch``, ``python-list``, ``langgraph-inmemorystore``,
    and tieredmem at ``--big-records`` (1M by default, ``durability="batch"``) to show
    that memory does not grow with the length of the history.  For tieredmem also: the
    latency of ``recent()`` on the hot history, of a random ``h[i]`` after reopening the
    file with a 1 MiB hot tier (cold reads), and the file size.
(b) many sessions: S sessions x P messages appended round-robin by 4 threads (each owns
    S/4 sessions): one ``MemorySaver`` (``durability="batch"``) against a dict of lists.
(c) long-running agent: a seeded mix of operations (60% append to one of 10 sessions,
    20% ``recent()``, 10% state commit changing one key, 10% a ``task()`` scratch holding
    ~100 KB) under ``Retention(max_items=1000)``, ``maintain()`` every 10,000 operations;
    RSS and file size (db + ``-wal``) are sampled every 5% of the run.

Messages are built from a seeded pool of 4,096 random-word texts (~440 chars) plus a
per-message suffix, so every record is a distinct string object and consecutive records
never repeat (no free compression).  Append rates exclude building the records in (a);
in (b) the threads build their records as they go, in both configurations alike.

Every tieredmem configuration uses ``maintenance_interval=0`` (no background maintenance
thread, so runs are repeatable) and a ``--hot-bytes`` hot tier (16 MiB by default).

Run from the repository root::

    PYTHONPATH=. python benchmarks/agent_memory.py            # full sizes (a few minutes)
    PYTHONPATH=. python benchmarks/agent_memory.py --quick    # CI smoke run (seconds)
    PYTHONPATH=. python benchmarks/agent_memory.py --only conversation,longrun

Results go to ``benchmarks/results/agent_memory.json`` (``--quick``:
``agent_memory_quick.json`` outside the source tree, in ``$TIEREDMEM_BENCH_RESULTS`` or
``<tmp>/tieredmem-bench``) with the machine, package versions, date and the command that
reproduces them.  The targets printed with PASS/FAIL are meant for the full sizes; at
``--quick`` sizes the hot tier never fills, so they are informative only.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import random
import shlex
import shutil
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from _common import (
    cpu_and_memory,
    git_commit,
    peak_rss_mb,
    percentile,
    require,
    results_path,
    rss_mb,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MiB = 1024 * 1024

POOL_SIZE = 4096  # a power of two: record i uses pool[(i * odd) & mask], a permutation
CONTENT_CHARS = 440
BUILD_BATCH = 1000  # records built ahead of the timed append loop (bounded memory)
RECENT_EVERY = 100
LATENCY_CALLS = 1000
COLD_HOT_BYTES = "1MiB"
LONGRUN_SESSIONS = 10
LONGRUN_MAX_ITEMS = 1000
LONGRUN_MAINTAIN_EVERY = 10_000
LONGRUN_STATE_KEYS = 20
LONGRUN_DURABILITY = "sync"
SESSIONS_DURABILITY = "batch"

SCENARIOS = {"a": "conversation", "b": "sessions", "c": "longrun"}

Result = dict[str, Any]


# -- measurement helpers ---------------------------------------------------------------


#: What this benchmark needs beyond tieredmem (``tieredmem bench`` checks it first).
REQUIRES: dict[str, list[str]] = {"modules": ["langgraph"]}


def file_bytes(path: str) -> dict[str, int]:
    """Sizes of the database file and its WAL."""
    sizes = {}
    for part, name in (("db", path), ("wal", path + "-wal")):
        sizes[part] = os.path.getsize(name) if os.path.exists(name) else 0
    return sizes


def file_mb(path: str) -> float:
    return sum(file_bytes(path).values()) / MiB


def latency_us(call: Callable[[], Any], times: int = LATENCY_CALLS) -> dict[str, float]:
    """Median and p99 of *times* calls of *call*, in microseconds."""
    samples = []
    clock = time.perf_counter_ns
    for _ in range(times):
        t0 = clock()
        call()
        samples.append((clock() - t0) / 1000)
    return {"p50_us": percentile(samples, 0.5), "p99_us": percentile(samples, 0.99)}


class Records:
    """Seeded chat messages of ~500 bytes (JSON), each one a distinct object."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        letters = string.ascii_lowercase
        vocab = ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(2000)]
        self.pool = [" ".join(rng.choices(vocab, k=90))[:CONTENT_CHARS] for _ in range(POOL_SIZE)]
        self.blob_source = "".join(self.pool[:4])

    def record(self, turn: int, stream: int = 0) -> dict[str, Any]:
        text = self.pool[(turn * 40503 + stream * 7919) & (POOL_SIZE - 1)]
        return {
            "role": "user" if turn % 2 == 0 else "assistant",
            "content": f"{text} (turn {turn})",
            "turn": turn,
        }

    def blob(self, step: int) -> list[str]:
        """A ~100 KB scratch object: 100 fresh strings of 1,000 characters."""
        return [self.blob_source[(step + j) % 500 :][:1000] + str(j) for j in range(100)]


def human(n: int) -> str:
    """1000000 -> '1M', 100000 -> '100k'."""
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


# -- configurations --------------------------------------------------------------------
def big_config(args: argparse.Namespace) -> str | None:
    """Name of the long-history configuration of (a), or None when it is skipped."""
    if args.quick or not args.big_records:
        return None
    return f"tieredmem-{args.big_durability}-{human(args.big_records)}"


def configs(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """``(worker id, config name, worker options)`` of every configuration, in run order."""
    n = args.records
    out: list[tuple[str, str, dict[str, Any]]] = [
        ("a/tieredmem-sync", "tieredmem-sync", {"records": n}),
        ("a/tieredmem-batch", "tieredmem-batch", {"records": n}),
        ("a/python-list", "python-list", {"records": n}),
        ("a/langgraph-inmemorystore", "langgraph-inmemorystore", {"records": n}),
    ]
    big = big_config(args)
    if big is not None:
        out.append((f"a/{big}", big, {"records": args.big_records}))
    out += [
        ("b/tieredmem", "tieredmem", {}),
        ("b/python-dicts", "python-dicts", {}),
        ("c/tieredmem", "tieredmem", {}),
    ]
    return out


def selected(worker_id: str, only: list[str]) -> bool:
    """True if *worker_id* (``"a/python-list"``) is picked by the ``--only`` tokens."""
    if not only:
        return True
    scenario, name = worker_id.split("/")
    return any(token in (scenario, SCENARIOS[scenario], worker_id, name) for token in only)


# -- (a) conversation ------------------------------------------------------------------
def append_loop(
    records: Records,
    n: int,
    add: Callable[[dict[str, Any]], None],
    recent: Callable[[int], Any],
    finish: Callable[[], None] = lambda: None,
) -> float:
    """Append *n* records (calling ``recent(count)`` every 100); seconds spent appending."""
    elapsed = 0.0
    clock = time.perf_counter
    for start in range(0, n, BUILD_BATCH):
        batch = [records.record(i) for i in range(start, min(start + BUILD_BATCH, n))]
        t0 = clock()
        for rec in batch:
            add(rec)
            count = rec["turn"] + 1
            if count % RECENT_EVERY == 0:
                recent(count)
        elapsed += clock() - t0
        del batch
    t0 = clock()
    finish()
    return elapsed + clock() - t0


def worker_conversation(name: str, args: argparse.Namespace) -> Result:
    records = Records(args.seed)
    n = args.records
    if name.startswith("tieredmem-"):
        return conversation_tieredmem(name, args, records)
    if name == "python-list":
        base = rss_mb()
        messages: list[dict[str, Any]] = []
        seconds = append_loop(records, n, messages.append, lambda _: messages[-100:])
        hot = latency_us(lambda: messages[-100:])
        assert len(messages) == n
        return {"start_rss_mb": base, "append_seconds": seconds, "recent": hot}
    if name == "langgraph-inmemorystore":
        from langgraph.store.memory import InMemoryStore

        base = rss_mb()
        store = InMemoryStore()
        ns = ("session", "1")

        def put(rec: dict[str, Any]) -> None:
            store.put(ns, str(rec["turn"]), rec)

        def last_100(count: int) -> list[Any]:
            return [store.get(ns, str(k)) for k in range(max(0, count - 100), count)]

        seconds = append_loop(records, n, put, last_100)
        hot = latency_us(lambda: last_100(n))
        assert store.get(ns, str(n - 1)) is not None
        return {"start_rss_mb": base, "append_seconds": seconds, "recent": hot}
    raise SystemExit(f"unknown conversation config {name!r}")


def conversation_tieredmem(name: str, args: argparse.Namespace, records: Records) -> Result:
    import tieredmem

    durability = name.split("-")[1]
    n = args.records
    path = os.path.join(args.dir, f"{name}.db")
    base = rss_mb()
    memory = tieredmem.MemorySaver(
        max_history=100,
        path=path,
        hot_bytes=args.hot_bytes,
        durability=durability,
        maintenance_interval=0,
    )
    h = memory.history("session-1")
    seconds = append_loop(records, n, h.append, lambda _: h.recent(), finish=memory.store.flush)
    hot = latency_us(h.recent)
    assert len(h) == n and h.recent()[-1]["turn"] == n - 1
    stats = memory.stats()
    memory.close()
    size = file_bytes(path)

    # Cold reads: reopen with a small hot tier and read random positions.
    memory = tieredmem.MemorySaver(
        max_history=100, path=path, hot_bytes=COLD_HOT_BYTES, maintenance_interval=0
    )
    h = memory.history("session-1")
    assert len(h) == n
    rng = random.Random(args.seed + 1)
    positions = [rng.randrange(n) for _ in range(LATENCY_CALLS)]
    it = iter(positions)
    cold = latency_us(lambda: h[next(it)])
    assert h[positions[0]]["turn"] == positions[0]
    cold_stats = memory.stats()
    memory.close()
    return {
        "start_rss_mb": base,
        "append_seconds": seconds,
        "recent": hot,
        "cold_read": cold,
        "cold_read_hits": cold_stats["hits"],
        "cold_read_misses": cold_stats["misses"],
        "durability": durability,
        "hot_bytes_budget": stats["hot_budget"],
        "hot_bytes_used": stats["hot_bytes"],
        "hot_items": stats["hot_items"],
        "file_mb": (size["db"] + size["wal"]) / MiB,
        "db_mb": size["db"] / MiB,
        "wal_mb": size["wal"] / MiB,
    }


# -- (b) many sessions -----------------------------------------------------------------
def worker_sessions(name: str, args: argparse.Namespace) -> Result:
    records = Records(args.seed)
    sessions, per_session, threads = args.sessions, args.per_session, args.threads
    names = [f"session-{i}" for i in range(sessions)]
    memory: Any = None
    path = os.path.join(args.dir, "sessions.db")
    if name == "tieredmem":
        import tieredmem

        base = rss_mb()
        memory = tieredmem.MemorySaver(
            max_history=100,
            path=path,
            hot_bytes=args.hot_bytes,
            durability=SESSIONS_DURABILITY,
            maintenance_interval=0,
        )

        def appender(session: str) -> Callable[[Any], None]:
            return memory.history(session).append  # type: ignore[no-any-return]
    elif name == "python-dicts":
        base = rss_mb()
        data: dict[str, list[Any]] = {s: [] for s in names}

        def appender(session: str) -> Callable[[Any], None]:
            return data[session].append
    else:
        raise SystemExit(f"unknown sessions config {name!r}")

    # Record building alone, for reference (the threads below build theirs as they go).
    t0 = time.perf_counter()
    for i in range(min(sessions * per_session, 100_000)):
        records.record(i)
    build_us = (time.perf_counter() - t0) / min(sessions * per_session, 100_000) * 1e6

    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def run(tid: int) -> None:
        try:
            lo, hi = tid * sessions // threads, (tid + 1) * sessions // threads
            mine = [(i, appender(names[i])) for i in range(lo, hi)]
            barrier.wait()
            for turn in range(per_session):
                for i, add in mine:
                    add(records.record(turn, stream=i))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            barrier.abort()

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    if memory is not None:
        memory.store.flush()
    seconds = time.perf_counter() - t0
    if errors:
        raise errors[0]
    out: Result = {
        "start_rss_mb": base,
        "append_seconds": seconds,
        "record_build_us": build_us,
        "sessions": sessions,
        "per_session": per_session,
        "threads": threads,
    }
    if memory is not None:
        total = sum(len(memory.history(s)) for s in names)
        stats = memory.stats()
        out.update(
            durability=SESSIONS_DURABILITY,
            hot_bytes_budget=stats["hot_budget"],
            hot_bytes_used=stats["hot_bytes"],
        )
        memory.close()
        out["file_mb"] = file_mb(path)
    else:
        total = sum(len(v) for v in data.values())
    assert total == sessions * per_session, total
    return out


# -- (c) long-running agent ------------------------------------------------------------
def worker_longrun(name: str, args: argparse.Namespace) -> Result:
    import tieredmem

    records = Records(args.seed)
    ops = args.ops
    path = os.path.join(args.dir, "longrun.db")
    base = rss_mb()
    memory = tieredmem.MemorySaver(
        max_history=100,
        path=path,
        hot_bytes=args.hot_bytes,
        durability=LONGRUN_DURABILITY,
        retention=tieredmem.Retention(max_items=LONGRUN_MAX_ITEMS),
        maintenance_interval=0,
    )
    sessions = [memory.history(f"session-{i}") for i in range(LONGRUN_SESSIONS)]
    doc = memory.state("agent")
    for k in range(LONGRUN_STATE_KEYS):
        doc[f"k{k}"] = {"step": 0, "note": records.pool[k][:100]}
    doc.commit()
    turns = [0] * LONGRUN_SESSIONS
    counts = {"append": 0, "recent": 0, "commit": 0, "task": 0, "maintain": 0}
    retention_deleted = 0
    sample_every = max(1, ops // 20)
    samples: list[dict[str, Any]] = []
    rng = random.Random(args.seed)
    clock = time.perf_counter
    elapsed = 0.0
    t0 = clock()
    for step in range(1, ops + 1):
        r = rng.random()
        if r < 0.6:
            s = rng.randrange(LONGRUN_SESSIONS)
            sessions[s].append(records.record(turns[s], stream=s))
            turns[s] += 1
            counts["append"] += 1
        elif r < 0.8:
            sessions[rng.randrange(LONGRUN_SESSIONS)].recent()
            counts["recent"] += 1
        elif r < 0.9:
            doc[f"k{rng.randrange(LONGRUN_STATE_KEYS)}"] = {
                "step": step,
                "note": records.pool[step & (POOL_SIZE - 1)][:100],
            }
            doc.commit()
            counts["commit"] += 1
        else:
            with memory.task("scratch") as scratch:
                scratch["blob"] = records.blob(step)
            counts["task"] += 1
        if step % LONGRUN_MAINTAIN_EVERY == 0:
            retention_deleted += memory.maintain().get("retention_deleted", 0)
            counts["maintain"] += 1
        if step % sample_every == 0 or step == ops:
            elapsed += clock() - t0  # sampling is not part of the ops/s figure
            size = file_bytes(path)
            samples.append(
                {
                    "pct": round(100 * step / ops, 1),
                    "ops": step,
                    "rss_mb": rss_mb(),
                    "file_mb": (size["db"] + size["wal"]) / MiB,
                    "db_mb": size["db"] / MiB,
                    "wal_mb": size["wal"] / MiB,
                    "kept_items": sum(len(h) for h in sessions),
                }
            )
            t0 = clock()
    stats = memory.stats()
    memory.close()
    return {
        "start_rss_mb": base,
        "ops": ops,
        "seconds": elapsed,
        "ops_per_s": ops / elapsed,
        "counts": counts,
        "retention_deleted": retention_deleted,
        "durability": LONGRUN_DURABILITY,
        "hot_bytes_budget": stats["hot_budget"],
        "hot_bytes_used": stats["hot_bytes"],
        "samples": samples,
    }


def worker(args: argparse.Namespace) -> None:
    scenario, name = args.worker.split("/")
    run = {"a": worker_conversation, "b": worker_sessions, "c": worker_longrun}[scenario]
    result = run(name, args)
    result["peak_rss_mb"] = peak_rss_mb()
    # Growth over the RSS after imports: what the configuration itself costs (the
    # baselines start smaller, so a ratio of peaks alone understates the difference).
    result["delta_rss_mb"] = result["peak_rss_mb"] - result["start_rss_mb"]
    if "append_seconds" in result:
        n = args.records if scenario == "a" else args.sessions * args.per_session
        result["records"] = n
        result["appends_per_s"] = n / result["append_seconds"]
    print(json.dumps(result))


# -- driver ----------------------------------------------------------------------------
def run_worker(worker_id: str, options: dict[str, Any], args: argparse.Namespace) -> Result:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        worker_id,
        "--dir",
        args.dir,
        "--seed",
        str(args.seed),
        "--hot-bytes",
        args.hot_bytes,
        "--records",
        str(options.get("records", args.records)),
        "--sessions",
        str(args.sessions),
        "--per-session",
        str(args.per_session),
        "--threads",
        str(args.threads),
        "--ops",
        str(args.ops),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not proc.stdout.strip():
        sys.stderr.write(proc.stderr)
        return {"error": f"exit status {proc.returncode}: {proc.stderr.strip()[-500:]}"}
    if proc.stderr.strip():
        sys.stderr.write(proc.stderr)
    result: Result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = wall
    return result


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))
        )

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    return "\n".join(out)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def growth(results: dict[str, Result], worker_id: str) -> float | None:
    """Peak RSS minus RSS after imports, in MB."""
    peak, start = get(results, worker_id, "peak_rss_mb"), get(results, worker_id, "start_rss_mb")
    return None if peak is None or start is None else peak - start


def compare(results: dict[str, Result], mine: str, other: str) -> str | None:
    """``"a / b: peak RSS 0.50x (Δ 0.20x), appends/s 0.010x"``, or None if one is missing."""
    rss = ratio(get(results, mine, "peak_rss_mb"), get(results, other, "peak_rss_mb"))
    delta = ratio(growth(results, mine), growth(results, other))
    speed = ratio(get(results, mine, "appends_per_s"), get(results, other, "appends_per_s"))
    if rss is None or delta is None or speed is None:
        return None
    return (
        f"  {mine[2:]} / {other[2:]}: peak RSS {rss:.2f}x (Δ RSS {delta:.2f}x), "
        f"appends/s {speed:.3f}x"
    )


def get(results: dict[str, Result], worker_id: str, *keys: str) -> Any:
    value: Any = results.get(worker_id)
    for key in keys:
        if not isinstance(value, dict) or "error" in value:
            return None
        value = value.get(key)
    return value


def report(args: argparse.Namespace, results: dict[str, Result]) -> list[dict[str, Any]]:
    """Print the tables; return the targets with their verdicts."""
    targets: list[dict[str, Any]] = []

    def target(
        label: str, value: float | None, limit: float, detail: str, at_least: bool = False
    ) -> None:
        ok = None if value is None else (value >= limit if at_least else value <= limit)
        targets.append(
            {"target": label, "value": value, "limit": limit, "pass": ok, "detail": detail}
        )

    def rss_targets(scenario: str, mine: str, other: str, share: float) -> None:
        """Peak RSS and growth over the starting RSS (Δ), each against *share* of
        *other*'s."""
        fraction = f"1/{round(1 / share)}"
        peak = ratio(get(results, mine, "peak_rss_mb"), get(results, other, "peak_rss_mb"))
        grown = ratio(growth(results, mine), growth(results, other))
        if peak is None and grown is None:
            return
        name, base = mine[2:], other[2:]
        target(f"({scenario}) {name} peak RSS <= {fraction} of {base}", peak, share, "ratio")
        target(
            f"({scenario}) {name} Δ RSS (peak - start) <= {fraction} of that of {base}",
            grown,
            share,
            f"{fmt(growth(results, mine))} vs {fmt(growth(results, other))} MB",
        )

    conv = [(wid, r) for wid, r in results.items() if wid.startswith("a/")]
    if conv:
        print(f"\n(a) conversation agent: one session, ~500 B messages, hot tier {args.hot_bytes}")
        rows: list[list[Any]] = []
        for wid, r in conv:
            name = wid[2:]
            if "error" in r:
                rows.append([name, "FAILED", *[None] * 8])
                continue
            rows.append(
                [
                    name,
                    r["records"],
                    r["peak_rss_mb"],
                    r["peak_rss_mb"] - r["start_rss_mb"],
                    int(r["appends_per_s"]),
                    r["recent"]["p50_us"],
                    r["recent"]["p99_us"],
                    get(results, wid, "cold_read", "p50_us"),
                    get(results, wid, "cold_read", "p99_us"),
                    r.get("file_mb"),
                ]
            )
        print(
            table(
                [
                    "config",
                    "records",
                    "peak RSS MB",
                    "Δ RSS MB",
                    "appends/s",
                    "recent p50 µs",
                    "recent p99 µs",
                    "cold p50 µs",
                    "cold p99 µs",
                    "file MB",
                ],
                rows,
            )
        )
        print(
            "  Δ RSS = peak minus RSS after imports; recent = last 100 (list slice / 100 gets "
            f"for the baselines); cold = random h[i] after reopening with hot_bytes="
            f"{COLD_HOT_BYTES}."
        )
        for mine in ("a/tieredmem-sync", "a/tieredmem-batch"):
            for other in ("a/python-list", "a/langgraph-inmemorystore"):
                line = compare(results, mine, other)
                if line:
                    print(line)
        for mine, at_least in (("a/tieredmem-sync", 20_000), ("a/tieredmem-batch", 100_000)):
            if mine not in results or "error" in results[mine]:
                continue
            rss_targets("a", mine, "a/python-list", 1 / 5)
            target(
                f"(a) {mine[2:]} appends/s >= {at_least:,}",
                get(results, mine, "appends_per_s"),
                at_least,
                "append loop",
                at_least=True,
            )
            target(
                f"(a) {mine[2:]} recent() p50 < 50 µs",
                get(results, mine, "recent", "p50_us"),
                50,
                "hot history",
            )
            target(
                f"(a) {mine[2:]} cold h[i] p50 < 300 µs",
                get(results, mine, "cold_read", "p50_us"),
                300,
                f"after reopening with hot_bytes={COLD_HOT_BYTES}",
            )
        big = big_config(args)
        if big is not None and f"a/{big}" in results:
            small = f"tieredmem-{args.big_durability}"
            scale = ratio(
                get(results, f"a/{big}", "peak_rss_mb"), get(results, f"a/{small}", "peak_rss_mb")
            )
            if scale is not None:
                print(f"  {big} / {small} ({human(args.records)}): peak RSS {scale:.2f}x")
            target(
                f"(a) peak RSS at {human(args.big_records)} records <= 1.2x at "
                f"{human(args.records)}",
                scale,
                1.2,
                f"{big} vs {small}",
            )

    sess = [(wid, r) for wid, r in results.items() if wid.startswith("b/")]
    if sess:
        print(
            f"\n(b) many sessions: {args.sessions:,} sessions x {args.per_session} messages, "
            f"{args.threads} threads, tieredmem durability={SESSIONS_DURABILITY}, "
            f"hot tier {args.hot_bytes}"
        )
        rows = []
        for wid, r in sess:
            if "error" in r:
                rows.append([wid[2:], "FAILED", None, None, None])
                continue
            rows.append(
                [
                    wid[2:],
                    r["peak_rss_mb"],
                    r["peak_rss_mb"] - r["start_rss_mb"],
                    int(r["appends_per_s"]),
                    r.get("file_mb"),
                ]
            )
        print(table(["config", "peak RSS MB", "Δ RSS MB", "appends/s", "file MB"], rows))
        build = get(results, "b/python-dicts", "record_build_us")
        if build is not None:
            print(f"  appends/s include building each record (~{build:.2f} µs alone).")
        line = compare(results, "b/tieredmem", "b/python-dicts")
        if line:
            print(line)
        if "b/tieredmem" in results or "b/python-dicts" in results:
            rss_targets("b", "b/tieredmem", "b/python-dicts", 1 / 3)

    long = results.get("c/tieredmem")
    if long is not None:
        print(
            f"\n(c) long-running agent: {args.ops:,} mixed ops, Retention(max_items="
            f"{LONGRUN_MAX_ITEMS}), maintain() every {LONGRUN_MAINTAIN_EVERY:,} ops, "
            f"durability={LONGRUN_DURABILITY}, hot tier {args.hot_bytes}"
        )
        if "error" in long:
            print("  FAILED")
            target("(c) RSS at end within 10% of RSS at 25%", None, 0.10, "")
            target("(c) file at end within 10% of file at 50%", None, 0.10, "")
        else:
            samples = long["samples"]
            print(
                table(
                    ["progress", "ops", "RSS MB", "file MB", "db MB", "wal MB", "kept items"],
                    [
                        [
                            f"{s['pct']:g}%",
                            s["ops"],
                            s["rss_mb"],
                            s["file_mb"],
                            s["db_mb"],
                            s["wal_mb"],
                            s["kept_items"],
                        ]
                        for s in samples
                    ],
                )
            )

            def at(pct: float) -> dict[str, Any]:
                return min(samples, key=lambda s: abs(s["pct"] - pct))

            c = long["counts"]
            print(
                f"  {long['ops_per_s']:,.0f} ops/s ({c['append']:,} appends, {c['recent']:,} "
                f"recent, {c['commit']:,} commits, {c['task']:,} tasks, {c['maintain']} "
                f"maintain runs, {long['retention_deleted']:,} items deleted by retention); "
                f"peak RSS {long['peak_rss_mb']:.1f} MB"
            )
            r25, r_end = at(25)["rss_mb"], samples[-1]["rss_mb"]
            # The file is the database plus its WAL, which fills to wal_bytes and is reset
            # by checkpoints, so single samples swing by megabytes.  Once the retention
            # horizon is reached (the first sample keeping as many items as the last),
            # compare the largest size over the first half of the rest of the run with
            # the largest over its second half: growth shows, the WAL's cycle does not.
            kept = samples[-1]["kept_items"]
            start = next(i for i, s in enumerate(samples) if s["kept_items"] == kept)
            rest = samples[start:]
            half = len(rest) // 2
            first, second = rest[:half], rest[half:]
            f3 = max((s["file_mb"] for s in first), default=None)
            f4 = max((s["file_mb"] for s in second), default=None)
            d3 = max((s["db_mb"] for s in first), default=None)
            d4 = max((s["db_mb"] for s in second), default=None)
            span = (
                f"{first[0]['pct']:g}-{first[-1]['pct']:g}% vs "
                f"{second[0]['pct']:g}-{second[-1]['pct']:g}%"
                if first and second
                else "-"
            )
            print(
                f"  RSS: {r25:.1f} MB at 25%, {r_end:.1f} MB at end; largest file (db + WAL) "
                f"after the retention horizon, {span}: {f3 or 0:.1f} / {f4 or 0:.1f} MB "
                f"(db alone: {d3 or 0:.1f} / {d4 or 0:.1f} MB)"
            )
            target(
                "(c) RSS at end within 10% of RSS at 25%",
                abs(r_end - r25) / r25,
                0.10,
                f"{r25:.1f} -> {r_end:.1f} MB",
            )
            target(
                "(c) file stable after the retention horizon: largest size in the second half "
                "within 10% of the first half's",
                f4 / f3 - 1 if f3 and f4 else None,
                0.10,
                f"{f3 or 0:.1f} -> {f4 or 0:.1f} MB, {span} (db + WAL; db alone "
                f"{d3 or 0:.1f} -> {d4 or 0:.1f} MB)",
            )

    if targets:
        print("\nTargets" + (" (informative only at --quick sizes)" if args.quick else ""))
        for t in targets:
            verdict = {True: "PASS", False: "FAIL", None: "n/a "}[t["pass"]]
            value = "-" if t["value"] is None else f"{t['value']:.3f}"
            print(f"  [{verdict}] {t['target']}: {value} (limit {t['limit']:.3f}; {t['detail']})")
    return targets


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
    info.update(cpu_and_memory())
    return info


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    import tieredmem

    versions["tieredmem"] = tieredmem.__version__
    for dist in ("langgraph", "langgraph-checkpoint", "apsw", "orjson", "zstandard", "cachetools"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    try:
        import apsw

        versions["sqlite"] = apsw.sqlite_lib_version()
    except ImportError:
        pass
    return versions


def reproduce_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """The command line that reruns this benchmark with the same settings."""
    words = ["python", "benchmarks/agent_memory.py"]
    if args.quick:
        words.append("--quick")
    for option in (
        "records",
        "big_records",
        "big_durability",
        "sessions",
        "per_session",
        "threads",
        "ops",
        "hot_bytes",
        "seed",
    ):
        value = getattr(args, option)
        if value != getattr(args, f"default_{option}"):
            words += [f"--{option.replace('_', '-')}", str(value)]
    if args.only:
        words += ["--only", ",".join(args.only)]
    if args.output_given:
        words += ["--output", args.output]
    return "PYTHONPATH=. " + shlex.join(words)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="tieredmem agent-memory benchmark (each configuration in a fresh process)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--records", type=int, default=100_000, help="(a) messages per run")
    p.add_argument(
        "--big-records", type=int, default=1_000_000, help="(a) long-history run (0 skips)"
    )
    p.add_argument("--big-durability", choices=("sync", "batch"), default="batch")
    p.add_argument("--sessions", type=int, default=1000, help="(b) sessions")
    p.add_argument("--per-session", type=int, default=100, help="(b) messages per session")
    p.add_argument("--threads", type=int, default=4, help="(b) writer threads")
    p.add_argument("--ops", type=int, default=1_000_000, help="(c) operations")
    p.add_argument("--hot-bytes", default="16MiB", help="hot-tier budget of every tieredmem run")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke sizes: 10,000 records, no long-history run, 100 sessions, 50,000 ops",
    )
    p.add_argument(
        "--only",
        default="",
        help="comma-separated scenarios (conversation/a, sessions/b, longrun/c), config "
        "names (python-list) or worker ids (b/tieredmem)",
    )
    p.add_argument("--dir", help="scratch directory (default: a new temp dir, removed after)")
    p.add_argument(
        "--output",
        help="JSON results file (default: benchmarks/results/agent_memory.json, "
        "with --quick: agent_memory_quick.json in $TIEREDMEM_BENCH_RESULTS or "
        "<tmp>/tieredmem-bench)",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    for option in (
        "records",
        "big_records",
        "big_durability",
        "sessions",
        "per_session",
        "threads",
        "ops",
        "hot_bytes",
        "seed",
    ):
        setattr(args, f"default_{option}", parser.get_default(option))
    if args.quick:
        # Sizes given explicitly still win over the --quick ones.
        for option, value in (("records", 10_000), ("sessions", 100), ("ops", 50_000)):
            if getattr(args, option) == parser.get_default(option):
                setattr(args, option, value)
                setattr(args, f"default_{option}", value)
    args.only = [t.strip() for t in args.only.split(",") if t.strip()]
    args.output_given = args.output is not None
    require("benchmarks/agent_memory.py", REQUIRES)
    output = Path(args.output or results_path("agent_memory", args.quick))
    plan = [(wid, opts) for wid, _, opts in configs(args) if selected(wid, args.only)]
    if not plan:
        parser.error(f"--only {','.join(args.only)} matches no configuration")
    own_dir = args.dir is None
    args.dir = args.dir or tempfile.mkdtemp(prefix="tieredmem-bench-")
    os.makedirs(args.dir, exist_ok=True)
    results: dict[str, Result] = {}
    try:
        for wid, opts in plan:
            print(f"running {wid} ...", file=sys.stderr, flush=True)
            results[wid] = run_worker(wid, opts, args)
    finally:
        if own_dir:
            shutil.rmtree(args.dir, ignore_errors=True)

    targets = report(args, results)
    command = reproduce_command(args, parser)
    document = {
        "benchmark": "agent_memory",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "git": git_commit(),
        "machine": machine_info(),
        "packages": package_versions(),
        "settings": {
            "quick": args.quick,
            "records": args.records,
            "big_records": 0 if args.quick else args.big_records,
            "big_durability": args.big_durability,
            "sessions": args.sessions,
            "per_session": args.per_session,
            "threads": args.threads,
            "ops": args.ops,
            "hot_bytes": args.hot_bytes,
            "cold_hot_bytes": COLD_HOT_BYTES,
            "seed": args.seed,
            "sessions_durability": SESSIONS_DURABILITY,
            "longrun_durability": LONGRUN_DURABILITY,
            "longrun_retention_max_items": LONGRUN_MAX_ITEMS,
            "longrun_maintain_every": LONGRUN_MAINTAIN_EVERY,
        },
        "results": results,
        "targets": targets,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nresults written to {output}")
    print(f"reproduce with: {command}")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

"""LangGraph checkpointer benchmark: TieredSaver against InMemorySaver and SqliteSaver.

Every configuration runs in a fresh process (this script re-runs itself with a hidden
``--worker`` argument, which prints one JSON line), so each peak RSS
(``_common.peak_rss_mb``: VmHWM on Linux) belongs to that configuration alone.
Configurations:

``InMemorySaver``             ``langgraph.checkpoint.memory.InMemorySaver()``
``SqliteSaver``               ``SqliteSaver(sqlite3.connect(path, check_same_thread=False))``
                              (``AsyncSqliteSaver`` over ``aiosqlite`` for the asyncio part)
``SqliteSaver+DeltaChannel``  the same saver, with the state's ``messages`` channel declared
                              as ``Annotated[list, DeltaChannel(reducer)]`` (``reducer``
                              applies ``add_messages`` to each write in order; the default
                              ``snapshot_frequency=100``)
``TieredSaver``               ``tieredmem.langgraph.TieredSaver(path)`` with its defaults

Three scenarios:

(turns) one conversation: a real ``StateGraph`` over ``MessagesState`` whose single node
    appends one ``AIMessage`` of 500 characters per turn; a turn is
    ``graph.invoke({"messages": [HumanMessage(<~50 chars>)]}, config)`` on one thread with
    the default durability.  It runs to ``--turns`` (4,000) and at the checkpoints (100,
    1,000 and 4,000 turns) records: the size of the files in the worker's own directory
    (db, -wal, -shm), the peak RSS so far, the mean time per turn and the median per-turn
    time of the first and of the last 10% of the turns so far, the median of 20
    ``graph.get_state(config)`` calls and the median of 5 times to the first item of
    ``saver.list(config)``.  Size and RSS are also sampled every ``--sample-every`` turns
    for the plot.  The anchors stop at ``--time-cap`` seconds (the turn loop, measurements
    included) or when their files pass ``--disk-cap-gb`` (for InMemorySaver: when its RSS
    does, reported as "memory cap"); the turn reached is recorded and measured.
    TieredSaver has no cap.
(concurrent) state reads under load: ``--state-threads`` (100) conversations of
    ``--state-turns`` (20) turns are written with each saver (the file-backed ones on
    disk), then ``--requests`` (1,000) ``graph.get_state`` calls spread over those threads
    (seeded shuffle, each thread equally often) run on a 32-thread ``ThreadPoolExecutor``,
    and the same requests as ``await graph.aget_state(...)`` tasks under one
    ``asyncio.gather``.  A request's latency runs from the moment its worker thread (or
    its task) starts it to its result, so the asyncio figures include the wait for the
    event loop and for the savers' own executors; throughput is requests / wall time.
(threads) the write side with many threads: the chat graph of (turns) is invoked for
    ``--thread-turns`` (20) turns on each of ``--few-threads`` (20) and, in another fresh
    process, ``--many-threads`` (2,000) threads, one thread after the other, with
    TieredSaver and with SqliteSaver (which holds nothing per thread: its growth is
    LangGraph's and the interpreter's).  Each worker records its peak RSS, its RSS after
    the imports and the graph were set up, and, for TieredSaver, what the saver holds
    (``saver.stats()``): hot-tier bytes and items, decoded list items, open logs, live
    History objects of the store, bytes held by open log tails, and the threads whose
    checkpoint counts or last uses it keeps.

Run from the repository root::

    PYTHONPATH=. python benchmarks/langgraph_saver.py            # full sizes (~35 minutes)
    PYTHONPATH=. python benchmarks/langgraph_saver.py --quick    # smoke run (< 1 minute)
    PYTHONPATH=. python benchmarks/langgraph_saver.py --only threads  # 20, 2,000 threads (~8 min)
    PYTHONPATH=. python benchmarks/langgraph_saver.py --only turns/tiered,concurrent

``--quick`` runs 200 turns measured at 50, 100 and 200 (sampled every 10), 20 threads x 5
turns and 200 requests, and 5 against 50 threads of 5 turns.  ``--only`` takes scenarios
(``turns``, ``concurrent``, ``threads``),
configurations (``tiered``, ``sqlite-delta``, ``InMemorySaver``) or worker ids
(``turns/sqlite``).

Results go to ``benchmarks/results/langgraph_saver.json`` and ``langgraph_saver.png``
(``--quick``: ``langgraph_saver_quick.json`` / ``_quick.png`` outside the source tree, in
``$TIEREDMEM_BENCH_RESULTS`` or ``<tmp>/tieredmem-bench``) with the machine, package
versions, date and the command that reproduces them.  The targets printed with PASS/FAIL
compare TieredSaver with an anchor at the largest turn count both reached ("time per turn"
is the mean over turns 1..N; "within 30 MB" bounds how far TieredSaver's peak RSS may exceed
SqliteSaver's); they are meant for the full sizes (informative at ``--quick``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import random
import shlex
import shutil
import sqlite3
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, TypedDict

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

CONFIGS = {
    "inmemory": "InMemorySaver",
    "sqlite": "SqliteSaver",
    "sqlite-delta": "SqliteSaver+DeltaChannel",
    "tiered": "TieredSaver",
}
SCENARIOS = ("turns", "concurrent", "threads")
#: Configurations of the (threads) scenario: SqliteSaver is the floor (it holds nothing).
THREAD_CONFIGS = ("sqlite", "tiered")
CHECKPOINTS = (100, 1000, 4000)
QUICK = {
    "turns": 200,
    "checkpoints": "50,100,200",
    "sample_every": 10,
    "state_threads": 20,
    "state_turns": 5,
    "requests": 200,
    "few_threads": 5,
    "many_threads": 50,
    "thread_turns": 5,
}
GET_STATE_CALLS = 20
LIST_CALLS = 5
REPLY_CHARS = 500
POOL_SIZE = 1024  # a power of two: reply n uses pool[(n * odd) & mask], a permutation

Result = dict[str, Any]


# -- measurement helpers ---------------------------------------------------------------


#: What this benchmark needs beyond tieredmem (``tieredmem bench`` checks it first).
REQUIRES: dict[str, list[str]] = {
    "modules": ["langgraph", "langgraph.checkpoint.sqlite", "aiosqlite"]
}


def dir_bytes(path: str) -> int:
    """Total size of the files under *path* (db, -wal, -shm and anything else)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:  # a -wal or -shm removed meanwhile
                pass
    return total


def open_fds() -> int | None:
    """File descriptors this process holds (Linux; None elsewhere)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def ms(seconds: float) -> float:
    return round(seconds * 1000, 4)


class Replies:
    """Seeded assistant replies of exactly ``REPLY_CHARS`` characters, all distinct."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        letters = string.ascii_lowercase
        vocab = ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(2000)]
        self.pool = [" ".join(rng.choices(vocab, k=120)) for _ in range(POOL_SIZE)]

    def reply(self, n: int) -> str:
        return (f"[reply {n}] " + self.pool[(n * 40503) & (POOL_SIZE - 1)])[:REPLY_CHARS]


def question(turn: int) -> str:
    return f"Question {turn}: what should we look at next, item {turn % 97}?"


# -- graphs and savers -----------------------------------------------------------------
def build_graph(delta: bool, checkpointer: Any, replies: Replies) -> Any:
    """The compiled one-node chat graph (``MessagesState``, or a DeltaChannel state)."""
    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    def bot(state: Any) -> dict[str, Any]:
        return {"messages": [AIMessage(replies.reply(len(state["messages"]) // 2))]}

    state: Any = MessagesState
    if delta:
        from langgraph.channels import DeltaChannel
        from langgraph.graph.message import add_messages

        def reducer(current: Any, writes: Sequence[Any]) -> Any:
            for write in writes:
                current = add_messages(current, write)
            return current

        # Functional form: the annotation must hold these very (local) objects.
        DeltaState = TypedDict(  # noqa: UP013
            "DeltaState", {"messages": Annotated[list[Any], DeltaChannel(reducer)]}
        )
        state = DeltaState
    builder = StateGraph(state)
    builder.add_node("bot", bot)
    builder.add_edge(START, "bot")
    builder.add_edge("bot", END)
    return builder.compile(checkpointer=checkpointer)


class Saver:
    """A configuration's checkpointer with what the benchmark needs around it."""

    def __init__(self, slug: str, directory: str) -> None:
        self.slug = slug
        self.directory = directory
        self.path = os.path.join(directory, "checkpoints.db")
        self.delta = slug == "sqlite-delta"
        self.on_disk = slug != "inmemory"
        self.conn: sqlite3.Connection | None = None
        self.saver: Any
        if slug == "inmemory":
            from langgraph.checkpoint.memory import InMemorySaver

            self.saver = InMemorySaver()
        elif slug in ("sqlite", "sqlite-delta"):
            from langgraph.checkpoint.sqlite import SqliteSaver

            self.conn = sqlite3.connect(self.path, check_same_thread=False)
            self.saver = SqliteSaver(self.conn)
        elif slug == "tiered":
            from tieredmem.langgraph import TieredSaver

            self.saver = TieredSaver(self.path)
        else:
            raise SystemExit(f"unknown configuration {slug!r}")

    def flush(self) -> None:
        if self.slug == "tiered":
            self.saver.store.flush()

    def size_bytes(self) -> int | None:
        if not self.on_disk:
            return None
        self.flush()
        return dir_bytes(self.directory)

    def close(self) -> None:
        if self.slug == "tiered":
            self.saver.close()
        elif self.conn is not None:
            self.conn.close()
            self.conn = None


#: The checkpointer methods a turn calls; their CPU time is the saver's share of a turn.
METERED = ("get_tuple", "put", "put_writes", "get_next_version")


class CpuMeter:
    """Adds the CPU time (``time.thread_time``) spent inside the saver's own methods, in
    whichever thread LangGraph calls them (puts run on its background executor), so a
    turn's time can be split into the saver's share and LangGraph's (its reducers)."""

    def __init__(self, saver: Any) -> None:
        self.spent: list[float] = []
        for name in METERED:
            method = getattr(saver, name, None)
            if method is not None:
                setattr(saver, name, self._wrap(method))

    def _wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        spent = self.spent
        tick = time.thread_time

        def metered(*args: Any, **kwargs: Any) -> Any:
            t0 = tick()
            try:
                return method(*args, **kwargs)
            finally:
                spent.append(tick() - t0)  # list.append is atomic under the GIL

        return metered

    def take(self) -> float:
        """CPU seconds spent in the saver since the last call."""
        total = sum(self.spent)
        self.spent.clear()
        return total


def add_messages_ms(messages: list[Any], replies: Replies) -> float:
    """Median time of LangGraph's ``add_messages`` reducer appending one reply to the
    conversation so far: the part of a turn that grows with it whatever the saver."""
    from langchain_core.messages import AIMessage
    from langgraph.graph.message import add_messages

    new = [AIMessage(replies.reply(len(messages)))]
    spent = []
    for _ in range(5):
        t0 = time.perf_counter()
        add_messages(messages, new)
        spent.append(time.perf_counter() - t0)
    return ms(statistics.median(spent))


def thread_config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def message_count(graph: Any, config: dict[str, Any]) -> int:
    return len(graph.get_state(config).values.get("messages", []))


# -- (turns) one long conversation -----------------------------------------------------
def measure(
    saver: Saver,
    graph: Any,
    config: dict[str, Any],
    turn: int,
    times: Sequence[float],
    cpu: Sequence[float],
    replies: Replies,
) -> Result:
    """Everything recorded at a checkpoint (or at the turn an anchor stopped at)."""
    size = saver.size_bytes()
    peak = peak_rss_mb()
    window = max(1, turn // 10)
    state_times = []
    for i in range(GET_STATE_CALLS):
        t0 = time.perf_counter()
        snapshot = graph.get_state(config)
        state_times.append(time.perf_counter() - t0)
        if i == 0:
            messages = snapshot.values["messages"]
            if len(messages) != 2 * turn:
                raise AssertionError(f"{len(messages)} messages after {turn} turns")
    list_times = []
    for _ in range(LIST_CALLS):
        t0 = time.perf_counter()
        it = iter(saver.saver.list(config))
        next(it)
        list_times.append(time.perf_counter() - t0)
        close = getattr(it, "close", None)
        if close is not None:
            close()  # SqliteSaver.list holds its lock (and a cursor) until closed
    return {
        "turn": turn,
        "file_mb": None if size is None else size / MiB,
        "peak_rss_mb": peak,
        "rss_mb": rss_mb(),
        "open_fds": open_fds(),
        "mean_turn_ms": ms(sum(times[:turn]) / turn),
        "first10_turn_ms": ms(statistics.median(times[:window])),
        "last10_turn_ms": ms(statistics.median(times[turn - window : turn])),
        "first10_saver_cpu_ms": ms(statistics.median(cpu[:window])),
        "last10_saver_cpu_ms": ms(statistics.median(cpu[turn - window : turn])),
        "add_messages_ms": add_messages_ms(messages, replies),
        "get_state_ms": ms(statistics.median(state_times)),
        "get_state_max_ms": ms(max(state_times)),
        "list_first_ms": ms(statistics.median(list_times)),
        "list_first_max_ms": ms(max(list_times)),
    }


def worker_turns(slug: str, args: argparse.Namespace, directory: str) -> Result:
    from langchain_core.messages import HumanMessage

    base = rss_mb()
    replies = Replies(args.seed)
    saver = Saver(slug, directory)
    meter = CpuMeter(saver.saver)
    graph = build_graph(saver.delta, saver.saver, replies)
    config = thread_config("conversation")
    checkpoints = set(args.checkpoint_list)
    capped = slug != "tiered"
    time_cap = args.time_cap
    cap_bytes = args.disk_cap_gb * 1024**3
    times: list[float] = []
    cpu: list[float] = []
    samples: list[Result] = []
    points: list[Result] = []
    stopped: Result | None = None
    last_sampled = 0
    clock = time.perf_counter
    start = clock()
    for turn in range(1, args.turns + 1):
        message = {"messages": [HumanMessage(question(turn))]}
        t0 = clock()
        graph.invoke(message, config)
        times.append(clock() - t0)
        cpu.append(meter.take())
        if capped:
            if clock() - start > time_cap:
                stopped = {"turn": turn, "reason": "time cap"}
            elif saver.on_disk and dir_bytes(directory) > cap_bytes:
                stopped = {"turn": turn, "reason": "disk cap"}
            elif not saver.on_disk and rss_mb() * MiB > cap_bytes:
                stopped = {"turn": turn, "reason": "memory cap"}
        if turn % args.sample_every == 0 or turn in checkpoints or stopped:
            size = saver.size_bytes()
            samples.append(
                {
                    "turn": turn,
                    "file_mb": None if size is None else size / MiB,
                    "peak_rss_mb": peak_rss_mb(),
                    "rss_mb": rss_mb(),
                    "turn_seconds": sum(times),
                    "window_median_ms": ms(statistics.median(times[last_sampled:turn])),
                }
            )
            last_sampled = turn
        if turn in checkpoints or stopped:
            points.append(measure(saver, graph, config, turn, times, cpu, replies))
            meter.take()  # not the measurements' reads
        if stopped:
            break
    wall = clock() - start
    saver.close()
    return {
        "config": CONFIGS[slug],
        "start_rss_mb": base,
        "turns_run": len(times),
        "stopped": stopped,
        "turn_seconds": sum(times),
        "loop_seconds": wall,
        "points": points,
        "samples": samples,
    }


# -- (concurrent) state reads under load -----------------------------------------------
def latency_summary(latencies: Sequence[float], wall: float) -> Result:
    return {
        "requests": len(latencies),
        "p50_ms": ms(percentile(latencies, 0.5)),
        "p99_ms": ms(percentile(latencies, 0.99)),
        "max_ms": ms(max(latencies)),
        "wall_s": wall,
        "req_per_s": len(latencies) / wall,
    }


def worker_concurrent(slug: str, args: argparse.Namespace, directory: str) -> Result:
    from langchain_core.messages import HumanMessage

    base = rss_mb()
    replies = Replies(args.seed)
    saver = Saver(slug, directory)
    graph = build_graph(saver.delta, saver.saver, replies)
    threads = [f"thread-{i:03d}" for i in range(args.state_threads)]
    want = 2 * args.state_turns

    t0 = time.perf_counter()
    for name in threads:
        config = thread_config(name)
        for turn in range(1, args.state_turns + 1):
            graph.invoke({"messages": [HumanMessage(question(turn))]}, config)
    prepare = time.perf_counter() - t0
    size = saver.size_bytes()

    order = [threads[i % len(threads)] for i in range(args.requests)]
    random.Random(args.seed).shuffle(order)

    def one(thread: str) -> float:
        t0 = time.perf_counter()
        snapshot = graph.get_state(thread_config(thread))
        elapsed = time.perf_counter() - t0
        if len(snapshot.values["messages"]) != want:
            raise AssertionError(f"{thread}: {len(snapshot.values['messages'])} messages")
        return elapsed

    with ThreadPoolExecutor(max_workers=args.pool_size) as pool:
        t0 = time.perf_counter()
        latencies = list(pool.map(one, order))
        wall = time.perf_counter() - t0
    sync = latency_summary(latencies, wall)
    sync["workers"] = args.pool_size

    async def run_async() -> Result:
        agraph = graph
        aconn = None
        if slug in ("sqlite", "sqlite-delta"):
            import aiosqlite
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

            aconn = await aiosqlite.connect(saver.path)
            agraph = build_graph(saver.delta, AsyncSqliteSaver(aconn), replies)

        async def one_async(thread: str) -> float:
            t0 = time.perf_counter()
            snapshot = await agraph.aget_state(thread_config(thread))
            elapsed = time.perf_counter() - t0
            if len(snapshot.values["messages"]) != want:
                raise AssertionError(f"{thread}: {len(snapshot.values['messages'])} messages")
            return elapsed

        try:
            t0 = time.perf_counter()
            lat = await asyncio.gather(*(one_async(t) for t in order))
            wall = time.perf_counter() - t0
        finally:
            if aconn is not None:
                await aconn.close()
        out = latency_summary(lat, wall)
        out["saver"] = "AsyncSqliteSaver" if aconn is not None else CONFIGS[slug]
        return out

    if saver.conn is not None:  # the asyncio part reads the file through aiosqlite
        saver.close()
    async_result = asyncio.run(run_async())
    saver.close()
    return {
        "config": CONFIGS[slug],
        "start_rss_mb": base,
        "state_threads": args.state_threads,
        "state_turns": args.state_turns,
        "prepare_seconds": prepare,
        "file_mb": None if size is None else size / MiB,
        "threads": sync,
        "asyncio": async_result,
    }


def memory_split() -> Result:
    """Where the process's memory is: RSS of anonymous memory and of mapped files
    (``/proc/self/status``); pymalloc's arenas against the bytes in its live blocks
    (``sys._debugmallocstats``, CPython): the difference is memory the interpreter keeps
    in partly used arenas (objects of 512 B or less; larger ones come from the C
    allocator); and, on Linux, the free memory glibc's allocator kept (``malloc_trim``)."""
    out: Result = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                name, _, value = line.partition(":")
                if name in ("RssAnon", "RssFile", "RssShmem"):
                    out[name.lower() + "_mb"] = int(value.split()[0]) / 1024
    except OSError:
        pass
    stats = getattr(sys, "_debugmallocstats", None)
    if stats is None:
        return out
    if sys.platform == "linux":
        # Free memory the C allocator keeps instead of returning it to the OS: what RSS
        # drops by when glibc is asked to return it (measured last: it changes RSS).
        try:
            import ctypes

            trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            trim = None
    with tempfile.TemporaryFile("w+") as fh:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(fh.fileno(), 2)
        try:
            stats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        fh.seek(0)
        text = fh.read()
    for line in text.splitlines():
        name, _, value = line.partition("=")
        name = name.strip()
        if name.endswith("bytes/arena"):
            out["pymalloc_arenas_mb"] = int(value.replace(",", "")) / MiB
        elif name == "# bytes in allocated blocks":
            out["pymalloc_live_mb"] = int(value.replace(",", "")) / MiB
    if sys.platform == "linux" and trim is not None:
        before = rss_mb()
        trim(0)
        out["malloc_free_mb"] = before - rss_mb()
    return out


# -- (threads) the write side with many threads ----------------------------------------
def worker_threads(slug: str, args: argparse.Namespace, directory: str, count: int) -> Result:
    """*count* threads of ``--thread-turns`` turns each, one after the other."""
    from langchain_core.messages import HumanMessage

    replies = Replies(args.seed)
    saver = Saver(slug, directory)
    graph = build_graph(False, saver.saver, replies)
    base = rss_mb()
    t0 = time.perf_counter()
    for i in range(count):
        config = thread_config(f"thread-{i:05d}")
        for turn in range(1, args.thread_turns + 1):
            graph.invoke({"messages": [HumanMessage(question(turn))]}, config)
    seconds = time.perf_counter() - t0
    first = message_count(graph, thread_config("thread-00000"))
    if first != 2 * args.thread_turns:
        raise AssertionError(f"thread-00000 has {first} messages")
    out: Result = {
        "config": CONFIGS[slug],
        "threads": count,
        "thread_turns": args.thread_turns,
        "start_rss_mb": base,
        "end_rss_mb": rss_mb(),
        "ms_per_turn": ms(seconds / (count * args.thread_turns)),
        "file_mb": (saver.size_bytes() or 0) / MiB,
    }
    out.update(memory_split())
    if slug == "tiered":
        stats = saver.saver.stats()
        out["held"] = {
            k: stats[k]
            for k in (
                "hot_bytes",
                "hot_budget",
                "hot_items",
                "held_list_items",
                "held_list_items_max",
                "open_logs",
                "live_histories",
                "tail_bytes",
                "tail_bytes_max",
                "tracked_threads",
                "saver_budget",
            )
        }
    saver.close()
    return out


def worker(args: argparse.Namespace) -> None:
    scenario, slug, *count = args.worker.split("/")
    run: Callable[[str, argparse.Namespace, str], Result]
    if scenario == "threads":
        n = int(count[0])
        run = lambda slug, args, directory: worker_threads(slug, args, directory, n)  # noqa: E731
    else:
        run = {"turns": worker_turns, "concurrent": worker_concurrent}[scenario]
    directory = tempfile.mkdtemp(prefix=f"{scenario}-{slug}-", dir=args.dir)
    try:
        result = run(slug, args, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


# -- driver ----------------------------------------------------------------------------
WORKER_OPTIONS = (
    "turns",
    "checkpoints",
    "sample_every",
    "time_cap",
    "disk_cap_gb",
    "state_threads",
    "state_turns",
    "requests",
    "pool_size",
    "few_threads",
    "many_threads",
    "thread_turns",
    "seed",
)


def run_worker(worker_id: str, args: argparse.Namespace) -> Result:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", worker_id]
    cmd += ["--dir", args.dir]
    for option in WORKER_OPTIONS:
        cmd += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr)
        return {"error": f"exit status {proc.returncode}: {proc.stderr.strip()[-1000:]}"}
    if proc.stderr.strip():
        sys.stderr.write(proc.stderr)
    result: Result = json.loads(lines[-1])
    result["process_seconds"] = wall
    return result


def plan(args: argparse.Namespace) -> list[str]:
    """Worker ids picked by ``--only``, in run order."""
    out = []
    for scenario in SCENARIOS:
        for slug, name in CONFIGS.items():
            if scenario == "threads" and slug not in THREAD_CONFIGS:
                continue
            wid = f"{scenario}/{slug}"
            tokens = (scenario, slug, name.lower(), wid)
            if not args.only or any(t.lower() in tokens for t in args.only):
                if scenario == "threads":  # two worker processes: few, then many threads
                    out += [f"{wid}/{args.few_threads}", f"{wid}/{args.many_threads}"]
                else:
                    out.append(wid)
    return out


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(
    headers: list[str], rows: list[list[Any]], digits: Sequence[int] = (), note: bool = False
) -> str:
    """A plain-text table: the first (and a last *note*) column left-aligned, the others
    right-aligned; ``digits[i]`` decimals for floats in column ``i`` (1 by default)."""
    cells = [
        [fmt(c, digits[i] if i < len(digits) else 1) for i, c in enumerate(row)] for row in rows
    ]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    left = {0, len(headers) - 1} if note else {0}

    def line(values: list[str]) -> str:
        return "  ".join(
            v.ljust(w) if i in left else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths))
        ).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    return "\n".join(out)


def ok(results: dict[str, Result], worker_id: str) -> Result | None:
    r = results.get(worker_id)
    return None if r is None or "error" in r else r


def at(rows: Sequence[Result], turn: int) -> Result | None:
    return next((r for r in rows if r["turn"] == turn), None)


def common_turn(a: Result | None, b: Result | None, key: str, upto: int) -> int | None:
    """The largest turn count up to *upto* at which both runs have a *key* row."""
    if a is None or b is None:
        return None
    both = {r["turn"] for r in a[key]} & {r["turn"] for r in b[key]}
    both = {t for t in both if t <= upto}
    return max(both) if both else None


def stop_note(r: Result) -> str:
    s = r.get("stopped")
    if not s:
        return ""
    return f"stopped at {s['turn']:,} turn{'s' if s['turn'] != 1 else ''} ({s['reason']})"


def report(args: argparse.Namespace, results: dict[str, Result]) -> list[Result]:
    """Print the tables; return the targets with their verdicts."""
    targets: list[Result] = []

    def target(
        label: str, value: float | None, limit: float, detail: str, strict: bool = False
    ) -> None:
        verdict = None if value is None else (value < limit if strict else value <= limit)
        targets.append(
            {"target": label, "value": value, "limit": limit, "pass": verdict, "detail": detail}
        )

    checkpoints = args.checkpoint_list
    if any(wid.startswith("turns/") for wid in results):
        print(
            f"\n(turns) one conversation, ~{REPLY_CHARS} B AIMessage per turn, up to "
            f"{args.turns:,} turns (anchors capped at {args.time_cap:g} s / "
            f"{args.disk_cap_gb:g} GB)"
        )
        rows: list[list[Any]] = []
        for slug, name in CONFIGS.items():
            wid = f"turns/{slug}"
            if wid not in results:
                continue
            r = results[wid]
            if "error" in r:
                rows.append([name, "FAILED", *[None] * 11, r["error"][-60:]])
                continue
            stop = r.get("stopped")
            turns = sorted({*checkpoints, *(p["turn"] for p in r["points"])})
            for turn in turns:
                p = at(r["points"], turn)
                if p is None:
                    if stop and turn > stop["turn"]:
                        rows.append([name, turn, *[None] * 11, stop_note(r)])
                    continue
                note = stop_note(r) if stop and turn == stop["turn"] else ""
                rows.append(
                    [
                        name,
                        turn,
                        p["file_mb"],
                        p["peak_rss_mb"],
                        p["mean_turn_ms"],
                        p["first10_turn_ms"],
                        p["last10_turn_ms"],
                        p.get("first10_saver_cpu_ms"),
                        p.get("last10_saver_cpu_ms"),
                        p.get("add_messages_ms"),
                        p["get_state_ms"],
                        p["list_first_ms"],
                        r["turn_seconds"] if turn == r["turns_run"] else None,
                        note,
                    ]
                )
        print(
            table(
                [
                    "config",
                    "turns",
                    "file MB",
                    "peak RSS MB",
                    "ms/turn",
                    "first 10% ms",
                    "last 10% ms",
                    "saver CPU first 10%",
                    "saver CPU last 10%",
                    "add_messages ms",
                    "get_state ms",
                    "list 1st ms",
                    "total s",
                    "note",
                ],
                rows,
                digits=(0, 0, 2, 1, 2, 2, 2, 2, 2, 2, 2, 2, 1),
                note=True,
            )
        )
        print(
            "  ms/turn = mean over turns 1..N; first/last 10% = median per-turn time of "
            "those turns; saver CPU = median CPU ms per turn inside the checkpointer's "
            f"{', '.join(METERED)} (any thread); add_messages = LangGraph's reducer adding one "
            "reply to the conversation so far (median of 5; a turn runs it twice); "
            f"get_state = median of {GET_STATE_CALLS} calls; list 1st = median "
            f"of {LIST_CALLS} times to the first item of saver.list(config); file MB = all "
            "files in the worker's directory (db, -wal, -shm)."
        )

    tiered = ok(results, "turns/tiered")
    sqlite = ok(results, "turns/sqlite")
    delta = ok(results, "turns/sqlite-delta")
    inmem = ok(results, "turns/inmemory")
    ref = checkpoints[-2] if len(checkpoints) > 1 else checkpoints[-1]
    last = checkpoints[-1]
    if any(wid.startswith("turns/") for wid in results):

        def size_ratio(other: Result | None, other_name: str, limit: float, text: str) -> None:
            turn = common_turn(tiered, other, "samples", ref)
            a = b = None
            if turn is not None and tiered is not None and other is not None:
                a = at(tiered["samples"], turn)["file_mb"]  # type: ignore[index]
                b = at(other["samples"], turn)["file_mb"]  # type: ignore[index]
            target(
                f"TieredSaver disk at {ref:,} turns <= {text} of {other_name}'s",
                a / b if a is not None and b else None,
                limit,
                f"at {turn:,} turns: {a:.3f} MB vs {b:.2f} MB" if turn and a and b else "n/a",
            )

        size_ratio(sqlite, "SqliteSaver", 1 / 100, "1/100")
        size_ratio(delta, "SqliteSaver+DeltaChannel", 1 / 4, "1/4")

        grow = None
        detail = "n/a"
        if tiered is not None:
            s_ref, s_last = at(tiered["samples"], ref), at(tiered["samples"], last)
            if s_ref and s_last and s_ref["file_mb"]:
                grow = s_last["file_mb"] / s_ref["file_mb"]
                detail = f"{s_ref['file_mb']:.3f} MB -> {s_last['file_mb']:.3f} MB"
        target(
            f"TieredSaver disk at {last:,} turns <= 4.5x its {ref:,}-turn size", grow, 4.5, detail
        )

        def sample_pair(other: Result | None, key: str) -> tuple[int | None, Any, Any]:
            turn = common_turn(tiered, other, "samples", last)
            if turn is None or tiered is None or other is None:
                return None, None, None
            a, b = at(tiered["samples"], turn), at(other["samples"], turn)
            return turn, a[key] if a else None, b[key] if b else None

        turn, a, b = sample_pair(inmem, "peak_rss_mb")
        target(
            "TieredSaver peak RSS <= 1/3 of InMemorySaver's",
            a / b if a and b else None,
            1 / 3,
            f"at {turn:,} turns: {a:.1f} MB vs {b:.1f} MB" if turn else "n/a",
        )
        turn, a, b = sample_pair(sqlite, "peak_rss_mb")
        target(
            "TieredSaver peak RSS within 30 MB of SqliteSaver's (MB above it)",
            a - b if a is not None and b is not None else None,
            30.0,
            f"at {turn:,} turns: {a:.1f} MB vs {b:.1f} MB" if turn else "n/a",
        )
        turn, a, b = sample_pair(sqlite, "turn_seconds")
        target(
            "TieredSaver time per turn <= 1/4 of SqliteSaver's (mean over turns 1..N)",
            a / b if a and b else None,
            1 / 4,
            f"at {turn:,} turns: {1000 * a / turn:.2f} vs {1000 * b / turn:.2f} ms/turn"
            if turn and a and b
            else "n/a",
        )
        p = tiered["points"][-1] if tiered and tiered["points"] else None
        target(
            "TieredSaver last 10% of turns <= 2x the first 10% (median ms/turn)",
            p["last10_turn_ms"] / p["first10_turn_ms"] if p else None,
            2.0,
            f"at {p['turn']:,} turns: {p['first10_turn_ms']:.2f} -> {p['last10_turn_ms']:.2f} ms"
            if p
            else "n/a",
        )
        target(
            "  the saver's own share: TieredSaver CPU per turn, last 10% <= 2x the first 10%",
            p["last10_saver_cpu_ms"] / p["first10_saver_cpu_ms"] if p else None,
            2.0,
            f"at {p['turn']:,} turns: {p['first10_saver_cpu_ms']:.2f} -> "
            f"{p['last10_saver_cpu_ms']:.2f} ms (add_messages alone: {p['add_messages_ms']:.2f} "
            "ms per call, twice a turn)"
            if p
            else "n/a",
        )
        turn = common_turn(tiered, sqlite, "points", last)
        pa = at(tiered["points"], turn) if tiered and turn else None
        pb = at(sqlite["points"], turn) if sqlite and turn else None
        target(
            "TieredSaver get_state <= 1/2 of SqliteSaver's",
            pa["get_state_ms"] / pb["get_state_ms"] if pa and pb else None,
            0.5,
            f"at {turn:,} turns: {pa['get_state_ms']:.2f} vs {pb['get_state_ms']:.2f} ms"
            if pa and pb
            else "n/a",
        )
        # Reads hand out copies the caller owns (InMemorySaver decodes every message of
        # every read); on a hot thread TieredSaver copies the messages it holds instead.
        hot = max([t for t in checkpoints if t <= 1000], default=checkpoints[0])
        turn = common_turn(tiered, inmem, "points", hot)
        pa = at(tiered["points"], turn) if tiered and turn else None
        pb = at(inmem["points"], turn) if inmem and turn else None
        target(
            f"TieredSaver get_state <= 1/4 of InMemorySaver's (hot thread, {hot:,} turns)",
            pa["get_state_ms"] / pb["get_state_ms"] if pa and pb else None,
            0.25,
            f"at {turn:,} turns: {pa['get_state_ms']:.2f} vs {pb['get_state_ms']:.2f} ms"
            if pa and pb
            else "n/a",
        )
        worst = max(tiered["points"], key=lambda q: q["list_first_ms"]) if p and tiered else None
        target(
            "TieredSaver list() first item < 20 ms (slowest checkpoint)",
            worst["list_first_ms"] if worst else None,
            20.0,
            f"at {worst['turn']:,} turns" if worst else "n/a",
            strict=True,
        )

    conc = [(wid, r) for wid, r in results.items() if wid.startswith("concurrent/")]
    if conc:
        print(
            f"\n(concurrent) {args.state_threads} threads x {args.state_turns} turns per saver; "
            f"{args.requests:,} get_state requests from {args.pool_size} worker threads, and "
            f"{args.requests:,} aget_state tasks under one asyncio.gather"
        )
        rows = []
        for wid, r in conc:
            name = CONFIGS[wid.split("/")[1]]
            if "error" in r:
                rows.append([name, "FAILED", *[None] * 8])
                continue
            s, a_ = r["threads"], r["asyncio"]
            rows.append(
                [
                    name,
                    s["p50_ms"],
                    s["p99_ms"],
                    s["req_per_s"],
                    a_["p50_ms"],
                    a_["p99_ms"],
                    a_["req_per_s"],
                    r["file_mb"],
                    r["peak_rss_mb"],
                    r["prepare_seconds"],
                ]
            )
        print(
            table(
                [
                    "config",
                    "threads p50 ms",
                    "threads p99 ms",
                    "threads req/s",
                    "asyncio p50 ms",
                    "asyncio p99 ms",
                    "asyncio req/s",
                    "file MB",
                    "peak RSS MB",
                    "prepare s",
                ],
                rows,
                digits=(0, 2, 2, 0, 2, 2, 0, 2, 1, 1),
            )
        )
        print("  the SQLite anchors' asyncio rows use AsyncSqliteSaver (aiosqlite).")
        ct = ok(results, "concurrent/tiered")
        for mode in ("threads", "asyncio"):
            for other, limit, text, strict in (
                ("sqlite", 1 / 5, "<= 1/5 of SqliteSaver's", False),
                ("inmemory", 1.0, "below InMemorySaver's", True),
            ):
                co = ok(results, f"concurrent/{other}")
                a = ct[mode]["p99_ms"] if ct else None
                b = co[mode]["p99_ms"] if co else None
                target(
                    f"TieredSaver concurrent p99 ({mode}) {text}",
                    a / b if a is not None and b else None,
                    limit,
                    f"{a:.2f} vs {b:.2f} ms" if a is not None and b is not None else "n/a",
                    strict,
                )

    runs = [(wid, r) for wid, r in results.items() if wid.startswith("threads/")]
    if runs:
        print(
            f"\n(threads) {args.few_threads:,} and {args.many_threads:,} threads x "
            f"{args.thread_turns} turns, each in a fresh process"
        )
        rows = []
        for wid, r in runs:
            _, slug, count = wid.split("/")
            if "error" in r:
                rows.append([CONFIGS[slug], int(count), "FAILED", *[None] * 14])
                continue
            held = r.get("held", {})
            rows.append(
                [
                    r["config"],
                    r["threads"],
                    r["peak_rss_mb"],
                    r["start_rss_mb"],
                    r["peak_rss_mb"] - r["start_rss_mb"],
                    r["ms_per_turn"],
                    held.get("hot_bytes", 0) / MiB if held else None,
                    held.get("held_list_items"),
                    held.get("open_logs"),
                    held.get("live_histories"),
                    held.get("tail_bytes", 0) / MiB if held else None,
                    held.get("tracked_threads"),
                    r.get("rssanon_mb"),
                    r.get("pymalloc_arenas_mb"),
                    r.get("pymalloc_live_mb"),
                    r.get("malloc_free_mb"),
                ]
            )
        print(
            table(
                [
                    "config",
                    "threads",
                    "peak RSS MB",
                    "start RSS MB",
                    "Δ peak MB",
                    "ms/turn",
                    "hot MB",
                    "list items",
                    "open logs",
                    "Histories",
                    "tails MB",
                    "tracked",
                    "anon MB",
                    "arenas MB",
                    "in blocks MB",
                    "malloc free MB",
                ],
                rows,
                digits=(0, 0, 1, 1, 1, 2, 1, 0, 0, 0, 2, 0, 1, 1, 1, 1),
            )
        )
        print(
            "  start RSS = after imports and graph set-up; Δ peak = peak - start; hot MB = the "
            "hot tier's charged bytes; list items = decoded list items held; Histories = live "
            "History objects of the store; tails MB = bytes held by open log tails; tracked = "
            "threads whose checkpoint count or last use the saver keeps; anon MB = "
            "anonymous RSS at the end; arenas / in blocks MB = pymalloc's arenas and the "
            "bytes of its live blocks (objects of 512 B or less) at the end; malloc free MB = "
            "what RSS then drops by when glibc's malloc_trim(0) returns the free memory the "
            "C allocator kept."
        )

        def growth(slug: str) -> float | None:
            few = ok(results, f"threads/{slug}/{args.few_threads}")
            many = ok(results, f"threads/{slug}/{args.many_threads}")
            if few is None or many is None:
                return None
            return float(many["peak_rss_mb"] - few["peak_rss_mb"])

        tiered_growth, floor = growth("tiered"), growth("sqlite")
        few = ok(results, f"threads/tiered/{args.few_threads}")
        budget = few["held"]["saver_budget"] / MiB if few else None
        target(
            f"TieredSaver peak RSS growth from {args.few_threads:,} to {args.many_threads:,} "
            "threads, beyond SqliteSaver's, within its hot_bytes (MB)",
            tiered_growth - floor if tiered_growth is not None and floor is not None else None,
            budget or 0.0,
            f"+{tiered_growth:.1f} MB against SqliteSaver's +{floor:.1f} MB; hot_bytes "
            f"{budget:.0f} MiB"
            if tiered_growth is not None and floor is not None and budget
            else "n/a",
        )

    if targets:
        print("\nTargets" + (" (informative only at --quick sizes)" if args.quick else ""))
        for t in targets:
            verdict = {True: "PASS", False: "FAIL", None: "n/a "}[t["pass"]]
            value = "-" if t["value"] is None else f"{t['value']:.3f}"
            print(f"  [{verdict}] {t['target']}: {value} (limit {t['limit']:.3f}; {t['detail']})")
    return targets


def plot(results: dict[str, Result], path: Path, args: argparse.Namespace) -> bool:
    """Two panels, file size and peak RSS against turns; False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (size_ax, rss_ax) = plt.subplots(1, 2, figsize=(12, 4.8))
    for slug, name in CONFIGS.items():
        r = ok(results, f"turns/{slug}")
        if r is None or not r["samples"]:
            continue
        turns = [s["turn"] for s in r["samples"]]
        label = name + (f" ({stop_note(r)})" if r.get("stopped") else "")
        (line,) = rss_ax.plot(turns, [s["peak_rss_mb"] for s in r["samples"]], label=label)
        if r.get("stopped"):
            rss_ax.plot(turns[-1], r["samples"][-1]["peak_rss_mb"], "x", color=line.get_color())
        sizes = [s["file_mb"] for s in r["samples"]]
        if all(v is not None for v in sizes):
            size_ax.plot(turns, sizes, label=label, color=line.get_color())
            if r.get("stopped"):
                size_ax.plot(turns[-1], sizes[-1], "x", color=line.get_color())
    size_ax.set_yscale("log")
    size_ax.set_title("file size (db + -wal + -shm)")
    size_ax.set_ylabel("MB (log scale)")
    rss_ax.set_title("peak RSS of the process")
    rss_ax.set_ylabel("MB")
    for ax in (size_ax, rss_ax):
        ax.set_xlabel("turns")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"LangGraph checkpointers: one conversation, ~{REPLY_CHARS} B reply per turn"
        + (" (--quick)" if args.quick else "")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def machine_info() -> Result:
    info: Result = {
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
    info.update(cpu_and_memory())
    return info


def package_versions() -> dict[str, str | None]:
    import tieredmem

    versions: dict[str, str | None] = {"tieredmem": tieredmem.__version__}
    for dist in (
        "langgraph",
        "langgraph-checkpoint",
        "langgraph-checkpoint-sqlite",
        "langchain-core",
        "aiosqlite",
        "apsw",
        "ormsgpack",
        "orjson",
        "zstandard",
        "cachetools",
        "matplotlib",
    ):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    versions["sqlite3 (SqliteSaver)"] = sqlite3.sqlite_version
    try:
        import apsw

        versions["sqlite (apsw)"] = apsw.sqlite_lib_version()
    except ImportError:
        pass
    return versions


def reproduce_command(args: argparse.Namespace) -> str:
    """The command line that reruns this benchmark with the same settings."""
    words = ["python", "benchmarks/langgraph_saver.py"]
    if args.quick:
        words.append("--quick")
    for option in WORKER_OPTIONS:
        value = getattr(args, option)
        if value != args.defaults[option]:
            words += [f"--{option.replace('_', '-')}", str(value)]
    if args.only:
        words += ["--only", ",".join(args.only)]
    if args.output_given:
        words += ["--output", args.output]
    return "PYTHONPATH=. " + shlex.join(words)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="LangGraph checkpointer benchmark (each configuration in a fresh process)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--turns", type=int, default=4000, help="turns of the one conversation")
    p.add_argument(
        "--checkpoints",
        default=",".join(map(str, CHECKPOINTS)),
        help="turn counts to measure at (those above --turns are dropped; --turns is added)",
    )
    p.add_argument("--sample-every", type=int, default=100, help="size/RSS sample interval")
    p.add_argument("--time-cap", type=float, default=300.0, help="seconds per anchor run")
    p.add_argument("--disk-cap-gb", type=float, default=4.0, help="file (RSS) cap per anchor")
    p.add_argument("--state-threads", type=int, default=100, help="threads for the state load")
    p.add_argument("--state-turns", type=int, default=20, help="turns per thread")
    p.add_argument("--requests", type=int, default=1000, help="get_state requests")
    p.add_argument("--pool-size", type=int, default=32, help="ThreadPoolExecutor workers")
    p.add_argument("--few-threads", type=int, default=20, help="(threads) the small run")
    p.add_argument("--many-threads", type=int, default=2000, help="(threads) the large run")
    p.add_argument("--thread-turns", type=int, default=20, help="(threads) turns per thread")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke sizes: 200 turns measured at 50/100/200, 20 threads x 5 turns, 200 "
        "requests, 5 and 50 threads x 5 turns",
    )
    p.add_argument(
        "--only",
        default="",
        help="comma-separated scenarios (turns, concurrent, threads), configurations (tiered, "
        "sqlite-delta, InMemorySaver) or worker ids (turns/sqlite)",
    )
    p.add_argument("--dir", help="scratch directory (default: a new temp dir, removed after)")
    p.add_argument(
        "--output",
        help="JSON results file (default: benchmarks/results/langgraph_saver.json, "
        "with --quick: langgraph_saver_quick.json in $TIEREDMEM_BENCH_RESULTS or "
        "<tmp>/tieredmem-bench); the plot goes next to it as .png",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def parse_checkpoints(text: str, turns: int) -> list[int]:
    wanted = sorted({int(t) for t in text.split(",") if t.strip()})
    return [t for t in wanted if 0 < t < turns] + [turns]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.defaults = {option: parser.get_default(option) for option in WORKER_OPTIONS}
    if args.quick:
        # Sizes given explicitly still win over the --quick ones.
        for option, value in QUICK.items():
            if getattr(args, option) == parser.get_default(option):
                setattr(args, option, value)
                args.defaults[option] = value
    args.checkpoint_list = parse_checkpoints(args.checkpoints, args.turns)
    if args.worker:
        worker(args)
        return 0
    args.only = [t.strip() for t in args.only.split(",") if t.strip()]
    args.output_given = args.output is not None
    require("benchmarks/langgraph_saver.py", REQUIRES)
    output = Path(args.output or results_path("langgraph_saver", args.quick))
    worker_ids = plan(args)
    if not worker_ids:
        parser.error(f"--only {','.join(args.only)} matches no configuration")
    own_dir = args.dir is None
    args.dir = args.dir or tempfile.mkdtemp(prefix="tieredmem-lg-bench-")
    os.makedirs(args.dir, exist_ok=True)
    results: dict[str, Result] = {}
    try:
        for wid in worker_ids:
            print(f"running {wid} ...", file=sys.stderr, flush=True)
            results[wid] = run_worker(wid, args)
    finally:
        if own_dir:
            shutil.rmtree(args.dir, ignore_errors=True)

    targets = report(args, results)
    command = reproduce_command(args)
    document = {
        "benchmark": "langgraph_saver",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "git": git_commit(),
        "machine": machine_info(),
        "packages": package_versions(),
        "settings": {
            "quick": args.quick,
            "turns": args.turns,
            "checkpoints": args.checkpoint_list,
            "sample_every": args.sample_every,
            "time_cap_s": args.time_cap,
            "disk_cap_gb": args.disk_cap_gb,
            "state_threads": args.state_threads,
            "state_turns": args.state_turns,
            "requests": args.requests,
            "pool_size": args.pool_size,
            "few_threads": args.few_threads,
            "many_threads": args.many_threads,
            "thread_turns": args.thread_turns,
            "seed": args.seed,
            "reply_chars": REPLY_CHARS,
            "get_state_calls": GET_STATE_CALLS,
            "list_calls": LIST_CALLS,
            "durability": "LangGraph default",
            "tiered_saver": "TieredSaver(path), defaults",
            "delta_snapshot_frequency": 100,
        },
        "results": results,
        "targets": targets,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nresults written to {output}")
    picture = output.with_suffix(".png")
    if any(ok(results, f"turns/{slug}") for slug in CONFIGS) and plot(results, picture, args):
        print(f"plot written to {picture}")
    print(f"reproduce with: {command}")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Coherence: a write acknowledged by one handle or process is seen by every other
reader's next read, whatever the handles' PIDs, restarts or the files beside the store.

Every case is a real process (or a real second handle, or a real server restart).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import tieredmem

ROOT = Path(__file__).resolve().parents[1]

READER = """
import sys, tieredmem
with tieredmem.open(sys.argv[1]) as s:
    print(s.get(("x",), "k").value, flush=True)   # "old", now hot
    sys.stdin.readline()                           # the other process writes meanwhile
    print(s.get(("x",), "k").value, flush=True)   # must print "new"
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _start(code: str, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*prefix, sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def _reader_sees_new(path: str, between: Any = None, prefix: tuple[str, ...] = ()) -> None:
    """The issue's reproduction: a reader holds "old" hot while this process writes "new"
    through a handle of its own; the reader's next read must say "new"."""
    with tieredmem.open(path) as s:
        s.put(("x",), "k", "old")
    reader = _start(READER, path, prefix=prefix)
    assert reader.stdin is not None and reader.stdout is not None
    assert reader.stdout.readline().strip() == "old"
    if between is not None:
        between()
    with tieredmem.open(path) as s:
        s.put(("x",), "k", "new")
    reader.stdin.write("go\n")
    reader.stdin.flush()
    assert reader.stdout.readline().strip() == "new"
    assert reader.wait(30) == 0


def test_reader_process_sees_a_write_by_a_reopened_handle(tmp_path: Path) -> None:
    _reader_sees_new(str(tmp_path / "s.db"))


def test_two_handles_in_one_process(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    a, b = tieredmem.open(path), tieredmem.open(path)
    try:
        a.put(("x",), "k", 1)
        assert b.get(("x",), "k").value == 1  # type: ignore[union-attr]
        assert a.get(("x",), "k").value == 1  # type: ignore[union-attr]
        b.put(("x",), "k", 2)
        assert a.get(("x",), "k").value == 2  # type: ignore[union-attr]
        b.delete(("x",), "k")
        assert a.get(("x",), "k") is None
        b.put_many([(("x",), "k", 3), (("x",), "j", 4)])
        got = a.get_many([(("x",), "k"), (("x",), "j")])
        assert [i.value for i in got if i is not None] == [3, 4]
    finally:
        a.close()
        b.close()


def test_two_handles_with_batch_durability_after_flush(tmp_path: Path) -> None:
    """Batched writes are the writer's until they commit; after flush() every reader sees them."""
    path = str(tmp_path / "s.db")
    with (
        tieredmem.open(path, durability="batch", flush_interval=60) as a,
        tieredmem.open(path) as b,
    ):
        a.put(("x",), "k", 1)
        a.flush()
        assert b.get(("x",), "k").value == 1  # type: ignore[union-attr]
        b.put(("x",), "k", 2)
        assert a.get(("x",), "k").value == 2  # type: ignore[union-attr]


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        done = subprocess.run(
            ["unshare", "--pid", "--fork", sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == "1"


WRITER_PID1 = """
import os, sys, tieredmem
assert os.getpid() == 1, os.getpid()
with tieredmem.open(sys.argv[1]) as s:
    s.put(("x",), "k", sys.argv[2])
"""


@pytest.mark.skipif(not _unshare_works(), reason="needs unshare --pid (root or user namespaces)")
def test_two_processes_that_are_both_pid_1(tmp_path: Path) -> None:
    """Two containers sharing a volume: each process is PID 1 of its own namespace."""
    path = str(tmp_path / "s.db")
    pid1 = ("unshare", "--pid", "--fork")

    def write_new_as_pid_1() -> None:
        done = subprocess.run(
            [*pid1, sys.executable, "-c", WRITER_PID1, path, "newer"], env=_env(), timeout=60
        )
        assert done.returncode == 0

    with tieredmem.open(path) as s:
        s.put(("x",), "k", "old")
    reader = _start(READER.replace('"new"', '"newer"'), path, prefix=pid1)
    assert reader.stdin is not None and reader.stdout is not None
    assert reader.stdout.readline().strip() == "old"
    write_new_as_pid_1()
    reader.stdin.write("go\n")
    reader.stdin.flush()
    assert reader.stdout.readline().strip() == "newer"
    assert reader.wait(30) == 0


@pytest.mark.parametrize("what", ["delete", "truncate", "replace"])
def test_files_beside_the_store_do_not_decide_coherence(tmp_path: Path, what: str) -> None:
    """Coherence comes from SQLite itself: no sidecar of ours exists, and a stray file by
    the old sidecar's name (deleted, truncated or replaced meanwhile) changes nothing."""
    path = str(tmp_path / "s.db")
    side = Path(path + "-tmver")
    side.write_bytes(b"\x00" * 4096)

    def meddle() -> None:
        if what == "delete":
            side.unlink()
        elif what == "truncate":
            os.truncate(side, 0)
        else:
            side.unlink()
            side.write_bytes(b"\x01" * 16)

    _reader_sees_new(path, between=meddle)
    made = {p.name for p in tmp_path.iterdir()} - {"s.db", "s.db-wal", "s.db-shm"}
    assert made <= {"s.db-tmver"}  # only the stray file we made ourselves


def test_redis_restarted_without_data(redis_server: Any) -> None:
    """The server restarts empty and other clients write until the version counter is back
    at the value this client saw: its hot copy must not pass for current."""
    import redis

    url = redis_server.url("restart-coh:")
    with tieredmem.open(url, maintenance_interval=0) as a:
        for i in range(5):
            a.put(("x",), "k", f"old{i}")
        assert a.get(("x",), "k").value == "old4"  # type: ignore[union-attr]  # hot
        seen = int(redis.Redis(port=redis_server.port).get("restart-coh:ver") or 0)
        redis_server.stop()
        redis_server.start()  # no persistence configured: an empty server
        with tieredmem.open(url, maintenance_interval=0) as b:
            b.put(("x",), "k", "new")
            for i in range(seen - 1):
                b.put(("x",), f"pad{i}", i)
        assert int(redis.Redis(port=redis_server.port).get("restart-coh:ver") or 0) == seen
        assert a.get(("x",), "k").value == "new"  # type: ignore[union-attr]


def _create_at_once(args: tuple[str, int, Any]) -> str:
    path, me, barrier = args
    barrier.wait()
    try:
        with tieredmem.open(path) as s:
            s.put(("who",), str(me), me)
    except Exception as exc:  # reported, not raised: the parent counts them all
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def test_concurrent_creators_of_a_new_file(tmp_path: Path, stress: bool) -> None:
    """A web app's workers starting at once on a file that does not exist yet."""
    ctx = multiprocessing.get_context("spawn")
    workers, rounds = 6, (200 if stress else 10)
    failures: list[str] = []
    with ctx.Manager() as manager, ctx.Pool(workers) as pool:
        for r in range(rounds):
            path = str(tmp_path / f"new{r}.db")
            barrier = manager.Barrier(workers)
            results = pool.map(_create_at_once, [(path, i, barrier) for i in range(workers)])
            failures += [res for res in results if res != "ok"]
            with tieredmem.open(path) as s:
                assert len(s.search(("who",), limit=100)) == workers
    assert not failures, failures[:5]


FORKER = """
import os, sys, time, tieredmem
path = sys.argv[1]
store = tieredmem.open(path, durability="batch", flush_interval=0.05)
store.put(("parent",), "p", 1)
pid = os.fork()
if pid == 0:
    for i in range(50):
        store.put(("child",), f"k{i}", i)
        time.sleep(0.35 / 50)   # seven flush intervals in all
    time.sleep(0.3)             # several more intervals: every write is due by now
    os._exit(0)                 # as multiprocessing's fork children end: no atexit
_, status = os.waitpid(pid, 0)
store.close()
print(status, flush=True)
"""


def test_batch_store_used_in_a_forked_child_flushes(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    done = subprocess.run(
        [sys.executable, "-c", FORKER, path], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    with tieredmem.open(path) as s:
        keys = {i.key for i in s.search(("child",), limit=100)}
        assert keys == {f"k{i}" for i in range(50)}
        assert s.get(("parent",), "p") is not None


def test_a_write_seen_by_a_process_started_later_and_a_long_lived_one(tmp_path: Path) -> None:
    """Many alternations between two handles in two processes, every read checked."""
    path = str(tmp_path / "s.db")
    peer = _start(
        """
        import sys, tieredmem
        with tieredmem.open(sys.argv[1], hot_bytes="1MiB") as s:
            for line in sys.stdin:
                op, value = line.split()
                if op == "put":
                    s.put(("x",), "k", int(value))
                    print("ok", flush=True)
                else:
                    got = s.get(("x",), "k")
                    print(None if got is None else got.value, flush=True)
        """,
        path,
    )
    assert peer.stdin is not None and peer.stdout is not None

    def ask(line: str) -> str:
        assert peer.stdin is not None and peer.stdout is not None
        peer.stdin.write(line + "\n")
        peer.stdin.flush()
        return peer.stdout.readline().strip()

    with tieredmem.open(path, hot_bytes="1MiB") as s:
        for i in range(200):
            if i % 2:
                s.put(("x",), "k", i)
                assert ask("get 0") == str(i)
            else:
                assert ask(f"put {i}") == "ok"
                assert s.get(("x",), "k").value == i  # type: ignore[union-attr]
    peer.stdin.close()
    assert peer.wait(30) == 0


def test_check_costs_no_table_scan(tmp_path: Path) -> None:
    """The coherence check reads nothing that grows with the file: timing of a hot read
    on a store with many rows stays close to one on a store with few."""
    small, large = str(tmp_path / "small.db"), str(tmp_path / "large.db")
    for path, n in ((small, 10), (large, 20_000)):
        with tieredmem.open(path) as s:
            s.put_many([(("x",), f"k{i}", i) for i in range(n)])

    def hot_read_seconds(path: str) -> float:
        with tieredmem.open(path) as s:
            s.get(("x",), "k1")
            best = float("inf")
            for _ in range(5):
                t = time.perf_counter()
                for _ in range(2000):
                    s.get(("x",), "k1")
                best = min(best, time.perf_counter() - t)
            return best

    assert hot_read_seconds(large) < 3 * hot_read_seconds(small) + 0.01


def test_coherence_interval_bounds_staleness(tmp_path: Path) -> None:
    """The opt-in cheaper mode: another handle's write is seen within the interval."""
    path = str(tmp_path / "s.db")
    with tieredmem.open(path, coherence_interval=0.2) as a, tieredmem.open(path) as b:
        a.put(("x",), "k", 1)
        assert a.get(("x",), "k").value == 1  # type: ignore[union-attr]
        b.put(("x",), "k", 2)
        time.sleep(0.25)
        assert a.get(("x",), "k").value == 2  # type: ignore[union-attr]
        a.put(("x",), "k", 3)  # its own writes: at once
        assert a.get(("x",), "k").value == 3  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="coherence_interval"):
        tieredmem.open(":memory:", coherence_interval=-1)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_reopening_a_store_leaks_no_descriptor(tmp_path: Path) -> None:
    """The WAL-index header is read through one descriptor per file, closed once SQLite
    removed the file it belongs to (many opens and closes do not pile descriptors up)."""
    path = str(tmp_path / "s.db")
    with tieredmem.open(path) as s:
        s.put(("x",), "k", 0)
    before = _open_fds()
    for i in range(100):
        with tieredmem.open(path) as s:
            s.put(("x",), "k", i)
            assert s.get(("x",), "k").value == i  # type: ignore[union-attr]
    assert _open_fds() <= before + 2


def test_a_handle_keeps_seeing_writes_after_a_sibling_handle_closes(tmp_path: Path) -> None:
    """Handles of one file share the descriptor of its WAL index; closing one must not
    blind the other (nor drop the locks SQLite holds for it)."""
    path = str(tmp_path / "s.db")
    a, b = tieredmem.open(path), tieredmem.open(path)
    try:
        b.put(("x",), "k", "old")
        assert b.get(("x",), "k").value == "old"  # type: ignore[union-attr]
        a.close()
        writer = subprocess.run(
            [
                sys.executable,
                "-c",
                WRITER_PID1.replace("assert os.getpid() == 1, os.getpid()\n", ""),
                path,
                "new",
            ],
            env=_env(),
            timeout=60,
        )
        assert writer.returncode == 0
        assert b.get(("x",), "k").value == "new"  # type: ignore[union-attr]
        assert b.backend.integrity_check() == "ok"  # type: ignore[attr-defined]
    finally:
        a.close()
        b.close()


FORK_LOCKS = """
import os, sys, subprocess, tieredmem
path = sys.argv[1]
store = tieredmem.open(path)
store.put(("x",), "k", 0)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w)
    store.put(("x",), "k", 1)          # the child's own connections from here
    os.read(r, 1)                       # the parent has closed its store meanwhile
    store.put(("x",), "k", 2)
    code = "import sys, tieredmem; print(tieredmem.open(sys.argv[1]).get(('x',), 'k').value)"
    seen = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
    print(seen.stdout.strip(), flush=True)
    store.close()
    os._exit(0)
os.close(r)
import time; time.sleep(0.3)
store.close()                           # must not remove the WAL the child writes to
os.write(w, b"x")
os.waitpid(pid, 0)
"""


def test_forked_child_holds_its_own_locks(tmp_path: Path) -> None:
    """A child's connections take real locks: the parent closing its store (the last
    connection it knows of) leaves the child's WAL alone, and others see its writes."""
    path = str(tmp_path / "s.db")
    done = subprocess.run(
        [sys.executable, "-c", FORK_LOCKS, path],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
    with tieredmem.open(path) as s:
        assert s.get(("x",), "k").value == 2  # type: ignore[union-attr]


APPENDER = """
import sys, tieredmem
path, me, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with tieredmem.MemorySaver(path=path) as memory:
    log = memory.history("shared-log")
    for i in range(n):
        if i % 3 == 0:
            log.extend([{"who": me, "i": i}])
        else:
            log.append({"who": me, "i": i})
"""


def test_appends_of_several_processes_to_one_history_all_land(tmp_path: Path, stress: bool) -> None:
    """Processes appending to one history at once: each append re-reads the tail under
    the write lock, so no two pick the same slot (one overwrote the other's items)."""
    path = str(tmp_path / "team.db")
    with tieredmem.MemorySaver(path=path) as memory:
        memory.history("shared-log")
    workers, n = 4, (400 if stress else 120)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, path, str(w), str(n)], env=_env(), text=True
        )
        for w in range(workers)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * workers
    with tieredmem.MemorySaver(path=path) as memory:
        items = list(memory.history("shared-log"))
    assert len(items) == workers * n
    for w in range(workers):  # every item once, each process's in its order
        assert [item["i"] for item in items if item["who"] == str(w)] == list(range(n))

"""Contention between real processes and threads on one file (#15): locks wait (busy
timeout) instead of failing, transactions are serializable, close() waits for reads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import tieredmem

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run_all(script: str, args_per_proc: list[list[str]], timeout: float) -> list[str]:
    """Run one process per argument list at once; return each one's stdout (all exit 0)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for args in args_per_proc
    ]
    outs = []
    failures = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        outs.append(out)
        if proc.returncode != 0:
            failures.append(err[-3000:])
    assert not failures, "\n---\n".join(failures)
    return outs


MIXED = """
import random, sys, time, tieredmem
path, seconds, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
store = tieredmem.open(path, hot_bytes="64KiB", maintenance_interval=0)
deadline = time.monotonic() + seconds
ops = 0
while time.monotonic() < deadline:
    r = rng.random()
    k = f"k{rng.randrange(300)}"
    if r < 0.35:
        store.put(("mix", str(seed)), k, {"text": f"note {k} word{rng.randrange(50)}", "n": ops},
                  ttl=rng.choice([None, 0.01, 60]))
    elif r < 0.45:
        store.delete(("mix", str(seed)), k)
    elif r < 0.55:
        store.get(("mix", str(rng.randrange(4))), k)
    elif r < 0.65:
        store.search(("mix",), filter={"n": {"$gt": 3}}, limit=5)
    elif r < 0.75:
        store.search(("mix",), query=f"word{rng.randrange(50)}", limit=5)
    elif r < 0.85:
        with store.transaction():
            store.put(("mix", "tx"), k, {"n": ops})
            store.put(("mix", "tx"), k + "b", {"n": ops})
    else:
        store.maintain()
    ops += 1
store.close()
print(ops)
"""


def test_four_processes_mixing_writes_searches_and_maintain(tmp_path: Path, stress: bool) -> None:
    """No BusyTimeoutError (nor any other error) reaches a user before the busy timeout:
    every statement that may write takes the lock through the busy handler."""
    path = str(tmp_path / "mixed.db")
    tieredmem.open(path).close()
    seconds = 30.0 if stress else 4.0
    rounds = 3 if stress else 1
    for r in range(rounds):
        outs = _run_all(
            MIXED, [[path, str(seconds), str(r * 10 + i)] for i in range(4)], seconds + 120
        )
        assert all(int(o) > 0 for o in outs)
    with tieredmem.open(path) as store:
        assert store.backend.integrity_check() == "ok"  # type: ignore[attr-defined]


TRANSFER = """
import random, sys, time, tieredmem
path, count, seed, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rng = random.Random(seed)
store = tieredmem.open(path, maintenance_interval=0)
time.sleep(max(0.0, start - time.time()))  # all start together, whatever their start-up
for _ in range(count):
    a, b = rng.sample(range(ACCOUNTS), 2)
    amount = rng.randrange(1, 50)
    # The README's transfer, as a read-modify-write: read both balances, write both.
    with store.transaction():
        src = store.get(("accounts",), f"a{a}").value
        dst = store.get(("accounts",), f"a{b}").value
        done = store.get(("bank",), "transfers").value
        store.put(("accounts",), f"a{a}", {"balance": src["balance"] - amount})
        store.put(("accounts",), f"a{b}", {"balance": dst["balance"] + amount})
        store.put(("bank",), "transfers", done + 1)
store.close()
print(count)
"""
ACCOUNTS = 5


def test_transactions_are_serializable_across_processes(tmp_path: Path, stress: bool) -> None:
    """Processes transferring money between accounts concurrently, each transfer a
    read-modify-write inside ``store.transaction()``: the total is conserved and the
    transfer counter counts every transfer (no update is lost)."""
    path = str(tmp_path / "bank.db")
    with tieredmem.open(path) as store:
        store.put_many([(("accounts",), f"a{i}", {"balance": 1000}) for i in range(ACCOUNTS)])
        store.put(("bank",), "transfers", 0)
    count = 2000 if stress else 150
    script = TRANSFER.replace("ACCOUNTS", str(ACCOUNTS))
    start = str(time.time() + 2.0)
    outs = _run_all(script, [[path, str(count), str(i), start] for i in range(4)], 300)
    with tieredmem.open(path) as store:
        balances = [store.get(("accounts",), f"a{i}").value["balance"] for i in range(ACCOUNTS)]
        transfers = store.get(("bank",), "transfers").value
    assert sum(int(o) for o in outs) == 4 * count
    assert transfers == 4 * count
    assert sum(balances) == 1000 * ACCOUNTS


def test_transactions_are_serializable_across_threads(tmp_path: Path) -> None:
    """The same read-modify-write from threads sharing one store."""
    with tieredmem.open(str(tmp_path / "t.db"), maintenance_interval=0) as store:
        store.put(("c",), "n", 0)

        def bump() -> None:
            for _ in range(100):
                with store.transaction():
                    n = store.get(("c",), "n").value
                    time.sleep(0)  # let another thread run between the read and the write
                    store.put(("c",), "n", n + 1)

        threads = [threading.Thread(target=bump) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.get(("c",), "n").value == 400


def test_a_failed_transaction_writes_nothing_and_releases_the_lock(tmp_path: Path) -> None:
    path = str(tmp_path / "f.db")
    with tieredmem.open(path) as store, tieredmem.open(path) as other:
        store.put(("a",), "x", 1)
        with pytest.raises(RuntimeError), store.transaction():
            store.put(("a",), "x", 2)
            raise RuntimeError("abort")
        assert store.get(("a",), "x").value == 1
        other.put(("a",), "x", 3)  # the lock was released: another handle writes at once
        assert store.get(("a",), "x").value == 3


def test_close_waits_for_reads_in_flight(tmp_path: Path, stress: bool) -> None:
    """close() while other threads read: each read returns or raises StoreClosedError,
    never a raw apsw error, and the store is entirely closed (SQLite removes the -wal
    and -shm files when the last connection closes)."""
    path = str(tmp_path / "c.db")
    with tieredmem.open(path) as store:
        store.put_many([(("r",), f"k{i}", {"i": i, "pad": "x" * 200}) for i in range(200)])
    for _round in range(20 if stress else 5):
        store = tieredmem.open(path, hot_bytes=1, maintenance_interval=0)  # every read is cold
        errors: list[BaseException] = []
        started = threading.Barrier(5)
        threads = [
            threading.Thread(target=_read_until_closed, args=(store, started, errors))
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        started.wait()
        time.sleep(0.05)
        store.close()
        for t in threads:
            t.join(10)
        assert not errors, errors
        assert store.closed
        assert not os.path.exists(path + "-wal"), "a connection was left open"
        assert not os.path.exists(path + "-shm"), "a connection was left open"


def _read_until_closed(
    store: tieredmem.Store, started: threading.Barrier, errors: list[BaseException]
) -> None:
    started.wait()
    try:
        i = 0
        while True:
            store.get(("r",), f"k{i % 200}")
            store.get_many([(("r",), f"k{(i + j) % 200}") for j in range(5)])
            store.search(("r",), limit=3)
            i += 1
    except tieredmem.StoreClosedError:
        return
    except BaseException as exc:  # any other error fails the test
        errors.append(exc)


@pytest.mark.parametrize("durability", ["sync", "batch"])
def test_everything_a_store_does_works_inside_a_transaction(
    tmp_path: Path, durability: str
) -> None:
    """The transaction holds SQLite's write lock: text search (which indexes), maintain,
    sweep and ttl refreshes in the block join it instead of starting their own."""
    with tieredmem.open(
        str(tmp_path / "all.db"), durability=durability, maintenance_interval=0
    ) as store:
        store.put(("n",), "a", {"text": "green tea"}, ttl=60)
        with store.transaction():
            store.put(("n",), "b", {"text": "black tea"})
            assert [i.key for i in store.search(("n",), query="green")] == ["a"]
            assert store.get(("n",), "a", refresh_ttl=True) is not None
            store.maintain()
            store.sweep()
            store.put(("n",), "c", {"text": "white tea"})
        assert sorted(i.key for i in store.search(("n",), query="tea")) == ["a", "b", "c"]


HOLDER = """
import sys, time, apsw
con = apsw.Connection(sys.argv[1])
con.execute("BEGIN IMMEDIATE")
con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('holder', 'x')")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("COMMIT")
"""


def _hold_lock(path: str, seconds: float) -> subprocess.Popen[str]:
    """Another program holding the write lock of *path* for *seconds*."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), path, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    return proc


@pytest.mark.parametrize("call", ["maintain", "put", "transaction", "sweep"])
def test_every_writing_call_waits_for_the_lock(tmp_path: Path, call: str) -> None:
    """Each writing call waits while another process holds the lock (then succeeds),
    and raises BusyTimeoutError, saying the timeout elapsed, only once it has."""
    path = str(tmp_path / "wait.db")
    with tieredmem.open(path) as store:
        store.put_many([(("a",), f"k{i}", {"i": i}) for i in range(500)], ttl=0.001)

    def run(store: tieredmem.Store) -> None:
        if call == "maintain":
            store.maintain()
        elif call == "put":
            store.put(("a",), "new", 1)
        elif call == "sweep":
            store.sweep()
        else:
            with store.transaction():
                store.put(("a",), "new", store.get(("a",), "k1") is None)

    for timeout, seconds in ((10.0, 0.5), (0.3, 1.0)):
        with tieredmem.open(path, busy_timeout=timeout, maintenance_interval=0) as store:
            holder = _hold_lock(path, seconds)
            started = time.monotonic()
            try:
                if timeout > seconds:
                    run(store)  # waited for the holder
                    assert time.monotonic() - started >= seconds * 0.5
                else:
                    with pytest.raises(tieredmem.BusyTimeoutError, match="busy timeout"):
                        run(store)
                    assert time.monotonic() - started >= timeout * 0.9
            finally:
                holder.wait(30)

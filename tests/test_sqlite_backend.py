"""The SQLite cold tier: file format, refusals that leave files untouched, settings."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from pathlib import Path

import apsw
import pytest

import tieredmem
from tieredmem import CorruptStoreError, NotAStoreError, SchemaVersionError
from tieredmem.backends._schema import APPLICATION_ID, FORMAT_VERSION
from tieredmem.backends.sqlite import SQLiteBackend


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_untouched(path: Path, before: str) -> None:
    assert _digest(path) == before
    assert not Path(str(path) + "-wal").exists()
    assert not Path(str(path) + "-shm").exists()


def test_new_file_is_private_wal_incremental(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with tieredmem.open(str(path)) as store:
        store.put(("a",), "k", 1)
        con = apsw.Connection(str(path))
        assert con.pragma("journal_mode") == "wal"
        assert con.pragma("auto_vacuum") == 2  # incremental
        assert con.pragma("application_id") == APPLICATION_ID
        assert con.pragma("user_version") == FORMAT_VERSION
        meta = dict(con.execute("SELECT key, value FROM meta"))
        assert meta["format"] == "tieredmem"
        assert meta["format_version"] == str(FORMAT_VERSION)
        con.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_synchronous_full_option(tmp_path: Path) -> None:
    backend = SQLiteBackend(str(tmp_path / "f.db"), synchronous="FULL")
    assert backend._writer.pragma("synchronous") == 2
    backend.close()
    with pytest.raises(ValueError):
        SQLiteBackend(str(tmp_path / "g.db"), synchronous="SOMETIMES")


def test_refuses_non_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello, this is not a database" * 10)
    before = _digest(path)
    with pytest.raises(NotAStoreError, match=str(path)):
        tieredmem.open(str(path))
    _assert_untouched(path, before)


def test_refuses_other_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE people (name TEXT)")
    con.execute("INSERT INTO people VALUES ('ann')")
    con.commit()
    con.close()
    before = _digest(path)
    with pytest.raises(NotAStoreError, match="not a tieredmem store"):
        tieredmem.open(str(path))
    _assert_untouched(path, before)


def test_refuses_newer_format(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with tieredmem.open(str(path)) as store:
        store.put(("a",), "k", 1)
    con = apsw.Connection(str(path))
    con.pragma("user_version", FORMAT_VERSION + 1)
    con.pragma("journal_mode", "delete")
    con.close()
    before = _digest(path)
    with pytest.raises(SchemaVersionError, match="upgrade tieredmem"):
        tieredmem.open(str(path))
    _assert_untouched(path, before)


def test_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    with tieredmem.open(str(path)) as store:
        store.put(("a",), "k", 1)
    with tieredmem.open(str(path)) as store:
        assert store.get(("a",), "k") is not None


def test_corrupt_file_raises_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with tieredmem.open(str(path), hot_bytes=1) as store:
        store.put_many([(("a",), f"k{i}", os.urandom(3000)) for i in range(200)])
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(page * 3, len(data) - page, page):  # trash every page after the schema
        data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with (
        pytest.raises((CorruptStoreError, NotAStoreError)),
        tieredmem.open(str(path), hot_bytes=1) as store,
    ):
        for i in range(200):
            store.get(("a",), f"k{i}")


def test_file_reopens_across_versions_of_defaults(tmp_path: Path) -> None:
    """Frames written with one codec setting are read with another."""
    path = str(tmp_path / "d.db")
    with tieredmem.open(path, compress_threshold=10, compress_level=19) as store:
        store.put(("a",), "k", {"text": "abc " * 100})
    with tieredmem.open(path, compress_threshold=1_000_000, compress_level=1) as store:
        item = store.get(("a",), "k")
        assert item is not None and item.value == {"text": "abc " * 100}


def test_short_lived_threads_do_not_pile_up_connections(tmp_path: Path) -> None:
    """LangGraph starts threads freely; reader connections must stay bounded."""
    import threading

    with tieredmem.open(str(tmp_path / "t.db"), hot_bytes=1) as store:
        store.put(("a",), "k", 1)
        for _ in range(200):
            t = threading.Thread(target=lambda: store.get(("a",), "k"))
            t.start()
            t.join()
        backend = store.backend
        assert len(backend._readers) <= 8  # type: ignore[attr-defined]
        fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
        assert fds < 100


def test_concurrent_cold_reads_share_a_bounded_pool_of_connections(tmp_path: Path) -> None:
    """Cold reads take pooled connections without the pool's lock: many threads at once
    get the right rows, and what stays open afterwards is bounded."""
    import threading

    with tieredmem.open(str(tmp_path / "p.db"), hot_bytes=1, maintenance_interval=0) as store:
        store.put_many([(("a",), f"k{i}", {"i": i}) for i in range(200)])
        errors: list[str] = []
        start = threading.Barrier(16)

        def reader(seed: int) -> None:
            start.wait()
            for n in range(400):
                i = (seed * 37 + n) % 200
                item = store.get(("a",), f"k{i}")
                if item is None or item.value != {"i": i}:
                    errors.append(f"k{i}: {item!r}")

        threads = [threading.Thread(target=reader, args=(t,)) for t in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:5]
        backend = store.backend
        assert len(backend._idle) <= 8  # type: ignore[attr-defined]
        assert len(backend._readers) <= 8  # type: ignore[attr-defined]


def test_a_lock_held_too_long_raises_a_typed_error_and_loses_nothing(tmp_path: Path) -> None:
    from tieredmem import BusyTimeoutError

    path = str(tmp_path / "busy.db")
    with tieredmem.open(path, busy_timeout=0.2) as store:
        store.put(("a",), "before", 1)
        other = apsw.Connection(path)
        other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        with pytest.raises(BusyTimeoutError, match="busy timeout"):
            store.put(("a",), "during", 2)
        other.execute("ROLLBACK")
        other.close()
        store.put(("a",), "after", 3)
        assert [i.key for i in store.search(("a",))] == ["after", "before"]


def test_a_damaged_row_raises_a_typed_error(tmp_path: Path) -> None:
    from tieredmem import SerializationError

    path = str(tmp_path / "row.db")
    with tieredmem.open(path) as store:
        store.put(("a",), "good", {"v": 1})
        store.put(("a",), "bad", {"v": 2})
    con = apsw.Connection(path)
    con.execute("UPDATE items SET value = x'ff00' WHERE key = 'bad'")
    con.close()
    with tieredmem.open(path) as store:
        assert store.get(("a",), "good").value == {"v": 1}
        with pytest.raises(SerializationError, match="newer tieredmem or damaged"):
            store.get(("a",), "bad")


def test_wal_stays_within_wal_bytes(tmp_path: Path) -> None:
    import os

    import tieredmem

    path = tmp_path / "w.db"
    largest = 0
    with tieredmem.open(str(path), wal_bytes="256KiB", maintenance_interval=0) as store:
        for i in range(400):
            store.put(("w",), f"k{i}", os.urandom(4000))  # incompressible: ~1 page each
            largest = max(largest, os.path.getsize(f"{path}-wal"))
    # A checkpoint starts once 64 pages are in the log; the log is truncated back to 256 KiB.
    assert largest < 2 * 256 * 1024
    with tieredmem.open(str(path)) as store:
        assert len(store.get(("w",), "k399").value) == 4000  # type: ignore[union-attr]


def test_insert_first_heuristic_keeps_created_at_either_way(tmp_path: Path) -> None:
    """New keys take a plain INSERT; once updates dominate the backend switches to the
    UPSERT first.  Either way created_at survives updates and new rows get theirs."""
    from tieredmem.backends import Put
    from tieredmem.backends.sqlite import _WINDOW, SQLiteBackend

    b = SQLiteBackend(str(tmp_path / "h.db"))
    try:
        n = 2 * _WINDOW
        assert b.write([Put("n", f"k{i}", b"\x02a", 1.0) for i in range(n)]) == [1.0] * n
        assert b._insert_first
        for i in range(n):  # updates only: every INSERT attempt conflicts
            assert b.write([Put("n", f"k{i}", b"\x02b", 2.0)]) == [1.0]
        assert not b._insert_first
        assert b.write([Put("n", "new", b"\x02c", 3.0)]) == [3.0]
        row = b.get("n", "k7")
        assert row is not None and (row.frame, row.created_at, row.updated_at) == (
            b"\x02b",
            1.0,
            2.0,
        )
        # An explicit created (a key deleted and written anew in one batch) wins.
        assert b.write([Put("n", "k8", b"\x02d", 4.0, created=4.0)]) == [4.0]
    finally:
        b.close()

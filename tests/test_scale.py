"""Calls a user makes often cost O(what they return), not O(file) (issue #16).

Costs are counted, not timed: the pages SQLite's connections visit (their page caches'
hits plus misses, ``SQLITE_DBSTATUS_CACHE_HIT``/``_MISS``), so a call that walks a whole
table shows up as pages proportional to the rows, on any machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import apsw
import pytest

import tieredmem
from tieredmem.backends._schema import FORMAT_VERSION


class PageCounter:
    """Pages visited by every connection opened while it is hooked."""

    def __init__(self) -> None:
        self.connections: list[apsw.Connection] = []

    def hook(self, con: apsw.Connection) -> None:
        import threading

        # The calls' own connections, opened in the test's thread (not the background
        # checkpoint's, which runs beside them).
        if threading.current_thread() is threading.main_thread():
            self.connections.append(con)

    def pages(self) -> int:
        total = 0
        for con in self.connections:
            try:
                for op in (apsw.SQLITE_DBSTATUS_CACHE_HIT, apsw.SQLITE_DBSTATUS_CACHE_MISS):
                    total += con.status(op)[0]
            except apsw.ConnectionClosedError:
                continue
        return total

    @contextmanager
    def measure(self) -> Iterator[list[int]]:
        before = self.pages()
        out: list[int] = []
        yield out
        out.append(self.pages() - before)


@pytest.fixture
def steps() -> Iterator[PageCounter]:
    counter = PageCounter()
    apsw.connection_hooks.append(counter.hook)
    try:
        yield counter
    finally:
        apsw.connection_hooks.remove(counter.hook)


def _fill(store: tieredmem.Store, n: int, ns: tuple[str, ...] = ("docs",)) -> None:
    for start in range(0, n, 1000):
        store.put_many(
            (ns, f"k{i:06d}", {"n": i % 100, "text": "x" * 50})
            for i in range(start, min(n, start + 1000))
        )


def test_stats_reads_no_table(tmp_path: Path, steps: PageCounter) -> None:
    with tieredmem.open(tmp_path / "s.db", maintenance_interval=0) as store:
        _fill(store, 20_000)
        with steps.measure() as cost:
            stats = store.stats()
        assert stats.cold_rows == 20_000
        # The table spans ~300 pages; reading one counter row visits a handful.
        assert cost[0] < 20, f"stats() visited {cost[0]} pages over 20,000 rows"


def test_item_count_follows_every_kind_of_write(tmp_path: Path) -> None:
    with tieredmem.open(tmp_path / "c.db", maintenance_interval=0) as store:
        _fill(store, 2_500)
        store.put(("docs",), "k000001", {"replaced": True})  # an update: no new row
        store.delete(("docs",), "k000002")
        store.delete(("docs",), "absent")
        store.put(("tmp",), "t", 1, ttl=0.001)
        assert store.stats().cold_rows == 2_500
        store.raw.write(ranges=[(SEP_NS, "k000100", "k000200")])
        assert store.stats().cold_rows == 2_400
        import time

        time.sleep(0.01)
        assert store.sweep() == 1
        assert store.stats().cold_rows == 2_399
    con = apsw.Connection(str(tmp_path / "c.db"))
    assert next(con.execute("SELECT count(*) FROM items"))[0] == 2_399
    con.close()


SEP_NS = "docs"


def test_format_2_file_is_counted_once_at_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    with tieredmem.open(path, maintenance_interval=0) as store:
        _fill(store, 1_500)
    con = apsw.Connection(str(path))
    con.execute(
        "DROP TRIGGER items_count_insert; DROP TRIGGER items_count_delete; DROP TABLE counts;"
        "DROP TABLE fields"
    )
    con.pragma("user_version", 2)
    con.pragma("wal_checkpoint", "TRUNCATE")
    con.close()
    with tieredmem.open(path, maintenance_interval=0) as store:
        assert store.stats().cold_rows == 1_500
        store.put(("docs",), "new", 1)
        assert store.stats().cold_rows == 1_501
    con = apsw.Connection(str(path))
    assert con.pragma("user_version") == FORMAT_VERSION
    con.close()


def test_opening_savers_reads_no_table(tmp_path: Path, steps: PageCounter) -> None:
    """MemorySaver() and TieredSaver() asked stats() for the hot budget (a count of every
    row); opening either, and a first read, must not depend on the number of items."""
    pytest.importorskip("langgraph")
    from tieredmem.langgraph import TieredSaver

    path = tmp_path / "m.db"
    with tieredmem.open(path, maintenance_interval=0) as store:
        _fill(store, 20_000)
    with steps.measure() as cost:  # pages are read off the connections before closing
        memory = tieredmem.MemorySaver(path=path, maintenance_interval=0)
        memory.history("h").append("hi")
        saver = TieredSaver(path, maintenance_interval=0)
        assert saver.get_tuple({"configurable": {"thread_id": "t"}}) is None
    memory.close()
    saver.close()
    # Opening a file (schema, settings, dictionaries) visits a few dozen pages.
    assert cost[0] < 200, f"opening visited {cost[0]} pages of a 20,000-item file"


def _saver_with_threads(path: Path, threads: int, turns: int) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    from tieredmem.langgraph import TieredSaver

    with TieredSaver(path, maintenance_interval=0) as saver:
        for t in range(threads):
            config: dict = {"configurable": {"thread_id": f"t{t:04d}", "checkpoint_ns": ""}}
            for _ in range(turns):
                cp = empty_checkpoint()
                config = saver.put(config, cp, {"step": 1}, {})  # type: ignore[arg-type]


def test_saver_list_with_limit_reads_what_it_returns(tmp_path: Path, steps: PageCounter) -> None:
    pytest.importorskip("langgraph")
    from tieredmem.langgraph import TieredSaver

    path = tmp_path / "lg.db"
    _saver_with_threads(path, threads=300, turns=3)
    saver = TieredSaver(path, maintenance_interval=0, hot_bytes=0)
    try:
        everything = list(saver.list(None))
        assert len(everything) == 900
        ids = [t.config["configurable"]["checkpoint_id"] for t in everything]
        assert ids == sorted(ids, reverse=True)
        with steps.measure() as cost:
            newest = list(saver.list(None, limit=5))
        assert [t.config for t in newest] == [t.config for t in everything[:5]]
        assert cost[0] < 100, f"list(None, limit=5) visited {cost[0]} pages for 300 threads"
        one = {"configurable": {"thread_id": "t0007"}}
        with steps.measure() as cost:
            assert len(list(saver.list(one, limit=1))) == 1
        assert cost[0] < 50, f"list(config, limit=1) visited {cost[0]} pages"
        before = {"configurable": {"thread_id": "t0001", "checkpoint_id": ids[10]}}
        assert [t.config for t in saver.list(None, before=before, limit=3)] == [
            t.config for t in everything[11:14]
        ]
        saver.delete_thread(everything[0].config["configurable"]["thread_id"])
        assert len(list(saver.list(None))) == 897
        saver.copy_thread("t0002", "copy")
        assert len(list(saver.list(None))) == 900
        assert len(list(saver.list({"configurable": {"thread_id": "copy"}}))) == 3
    finally:
        saver.close()


def test_saver_file_from_before_the_id_index_is_indexed_once(tmp_path: Path) -> None:
    pytest.importorskip("langgraph")
    from tieredmem.langgraph import TieredSaver

    path = tmp_path / "old.db"
    _saver_with_threads(path, threads=4, turns=2)
    con = apsw.Connection(str(path))  # as a file written before the index existed
    con.execute("DELETE FROM items WHERE ns = 'tieredmem' || char(31) || 'lg-ids'")
    con.close()
    with TieredSaver(path, maintenance_interval=0) as saver:
        saver.put(
            {"configurable": {"thread_id": "new", "checkpoint_ns": ""}},
            __import__("langgraph.checkpoint.base").checkpoint.base.empty_checkpoint(),
            {},  # type: ignore[typeddict-item]
            {},
        )
        assert len(list(saver.list(None))) == 9
        assert len(list(saver.list(None, limit=2))) == 2


def test_filtered_search_reads_about_what_it_returns(tmp_path: Path, steps: PageCounter) -> None:
    import os

    with tieredmem.open(tmp_path / "f.db", maintenance_interval=0, hot_bytes=0) as store:
        store.put_many(
            (("docs",), f"k{i:05d}", {"n": i % 10, "blob": os.urandom(400).hex()})
            for i in range(3_000)
        )
        with steps.measure() as cost:
            found = store.search(("docs",), filter={"n": 5}, limit=2)
        assert [i.key for i in found] == ["k00005", "k00015"]
        # ~1 KB rows, 3 to a page: 500 rows read for 2 matches were ~170 pages.
        assert cost[0] < 40, f"search(limit=2) visited {cost[0]} pages"
        assert len(store.search(("docs",), filter={"n": 5}, limit=1000)) == 300


def test_first_maintain_reads_no_table(tmp_path: Path, steps: PageCounter) -> None:
    """PRAGMA optimize analyzed the whole items table (and the index of declared fields)
    on a file's first maintain()."""
    with tieredmem.open(tmp_path / "a.db", maintenance_interval=0, index=["n"]) as store:
        _fill(store, 20_000)
        with steps.measure() as cost:
            store.maintain()
        # Writing and loading statistics of small tables: ~110 pages whatever the size
        # (analyzing the 20,000 items visited ~700 more).
        assert cost[0] < 200, f"the first maintain() visited {cost[0]} pages"
        with steps.measure() as cost:
            store.maintain()
        assert cost[0] < 200, f"the second maintain() visited {cost[0]} pages"


def test_maintain_vacuums_a_bounded_amount_per_call(tmp_path: Path) -> None:
    import os

    with tieredmem.open(tmp_path / "v.db", maintenance_interval=0) as store:
        store.put_many((("big",), f"k{i}", os.urandom(4000)) for i in range(5_000))
        store.raw.write(ranges=[("big", "", None)])
        first = store.maintain()["vacuumed_bytes"]
        assert 0 < first <= 2048 * 4096
        second = store.maintain()["vacuumed_bytes"]
        assert second > 0  # the rest, on the next round


class _WatchVFS(apsw.VFS):
    """A pass-through VFS (the default one underneath) noting which thread writes to a
    main database file: a WAL commit writes only the -wal file; a checkpoint writes the
    database file."""

    def __init__(self) -> None:
        self.main_writes: list[int] = []
        self.base = apsw.vfs_names()[0]  # the default VFS ("unix")
        super().__init__("tieredmem-test-watch", self.base, makedefault=True)

    def xOpen(self, name, flags):  # type: ignore[no-untyped-def]
        return _WatchFile(self, name, flags)


class _WatchFile(apsw.VFSFile):
    def __init__(self, vfs: _WatchVFS, name, flags) -> None:  # type: ignore[no-untyped-def]
        self._vfs = vfs
        self._main = bool(flags[0] & apsw.SQLITE_OPEN_MAIN_DB)
        super().__init__(vfs.base, name, flags)

    def xWrite(self, data, offset):  # type: ignore[no-untyped-def]
        if self._main:
            import threading

            self._vfs.main_writes.append(threading.get_ident())
        super().xWrite(data, offset)


def test_sync_puts_never_checkpoint_in_the_callers_thread(tmp_path: Path) -> None:
    """A put whose commit filled the WAL used to copy the whole WAL into the database
    file before returning; the checkpoint now runs in a thread of its own."""
    import os
    import threading
    import time

    vfs = _WatchVFS()
    try:
        store = tieredmem.open(tmp_path / "w.db", maintenance_interval=0, wal_bytes="512KiB")
        try:
            del vfs.main_writes[:]  # creating the file wrote it
            me = threading.get_ident()
            # 512 KiB: a checkpoint is due from 127 WAL pages, the writer's own at 222; a
            # put here writes 2-4 pages.  An application's pace (a put every 5 ms) leaves
            # the checkpoint thread the time to keep up, so no put may wait for a copy.
            for i in range(600):
                store.put(("docs",), f"k{i:03d}", {"i": i, "text": os.urandom(400).hex()})
                time.sleep(0.005)
            assert me not in vfs.main_writes, "a put checkpointed the WAL itself"
            assert vfs.main_writes, "no checkpoint ran"
            wal = Path(str(tmp_path / "w.db") + "-wal").stat().st_size
            assert wal <= 2 * 512 * 1024, f"the WAL grew to {wal} bytes"
            assert store.stats().cold_rows == 600
        finally:
            store.close()
    finally:
        vfs.unregister()


_FILTERS = [
    {"n": 5},
    {"n": 5.0},
    {"n": True},
    {"n": {"$gte": 3, "$lt": 6}},
    {"n": {"$gt": 7}},
    {"n": {"$ne": 5}},
    {"n": None},
    {"n": "5"},
    {"user.lang": "fr"},
    {"user.lang": {"$gt": "en"}},
    {"user.lang": "fr", "n": {"$lte": 2}},
    {"n": 1, "flag": True},
    {"big": (2**63 + 5)},
]


def _value(i: int) -> object:
    if i % 17 == 0:
        return ["not", "a", "dict"]
    value: dict = {"n": i % 10, "user": {"lang": ("en", "fr", "de")[i % 3]}, "flag": i % 2 == 0}
    if i % 11 == 0:
        value["n"] = str(i % 10)  # a string where others have numbers
    if i % 13 == 0:
        value["n"] = True
    if i % 19 == 0:
        del value["n"]
    if i % 23 == 0:
        value["big"] = 2**63 + 5
    return value


@pytest.mark.parametrize("limit", [3, 1000])
def test_indexed_search_returns_what_unindexed_search_does(tmp_path: Path, limit: int) -> None:
    plain = tieredmem.open(tmp_path / "p.db", maintenance_interval=0)
    indexed = tieredmem.open(tmp_path / "i.db", maintenance_interval=0, index=["n", "user.lang"])
    try:
        for store in (plain, indexed):
            store.put_many(((f"g{i % 4}", "x"), f"k{i:04d}", _value(i)) for i in range(600))
            store.delete(("g1", "x"), "k0001")
            store.put(("g2", "x"), "k0002", {"n": 5, "user": {"lang": "fr"}})  # changed
        assert indexed.backend.indexed_fields() == ("n", "user.lang")  # type: ignore[attr-defined]
        for prefix in [(), ("g2",), ("g2", "x")]:
            for f in _FILTERS:
                want = plain.search(prefix, filter=f, limit=limit)
                got = indexed.search(prefix, filter=f, limit=limit)
                assert [(i.namespace, i.key, i.value) for i in got] == [
                    (i.namespace, i.key, i.value) for i in want
                ], (prefix, f)
    finally:
        plain.close()
        indexed.close()


def test_indexed_search_reads_only_candidates(tmp_path: Path, steps: PageCounter) -> None:
    import os

    path = tmp_path / "x.db"
    with tieredmem.open(path, maintenance_interval=0, hot_bytes=0, index=["n"]) as store:
        store.put_many(
            (
                ("docs",),
                f"k{i:05d}",
                {"n": 7 if i >= 2990 else i % 5, "blob": os.urandom(400).hex()},
            )
            for i in range(3_000)
        )
        with steps.measure() as cost:
            found = store.search(("docs",), filter={"n": 7}, limit=2)
        assert [i.key for i in found] == ["k02990", "k02991"]
        # Without the index: 2,990 rows of ~1 KB decoded, ~1,000 pages; with it, a few
        # index pages and the two matching rows' (the schema, the coherence check).
        assert cost[0] < 100, f"an indexed search visited {cost[0]} pages"


def test_declared_fields_are_kept_by_every_writer(tmp_path: Path, clock) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "d.db"
    first = tieredmem.open(path, maintenance_interval=0, clock=clock)
    other = tieredmem.open(path, maintenance_interval=0, clock=clock)  # no index= given
    try:
        first.put(("a",), "old", {"n": 1})
        other.put(("a",), "before", {"n": 1})
        # Declared by a third handle: existing items are indexed, and 'other' (open
        # already, never told) keeps the index from its next write on.
        with tieredmem.open(path, maintenance_interval=0, index=["n"]) as third:
            assert [i.key for i in third.search(("a",), filter={"n": 1})] == ["before", "old"]
        other.put(("a",), "after", {"n": 1})
        other.put(("a",), "before", {"n": 2})  # changed: leaves n == 1
        other.put(("a",), "ttl", {"n": 1}, ttl=10)
        assert [i.key for i in first.search(("a",), filter={"n": 1})] == ["after", "old", "ttl"]
        clock.tick(11)
        assert other.sweep() == 1
        other.raw.write(ranges=[("a", "a", "b")])  # deletes 'after'
        first.delete(("a",), "old")
        assert first.search(("a",), filter={"n": 1}) == []
        assert [i.key for i in first.search(("a",), filter={"n": 2})] == ["before"]
    finally:
        first.close()
        other.close()
    con = apsw.Connection(str(path))
    assert list(con.execute("SELECT field, ns, value, key FROM fields")) == [
        ("n", "a", 2, "before")
    ]
    con.close()


def test_langgraph_store_filter_index(tmp_path: Path, steps: PageCounter) -> None:
    pytest.importorskip("langgraph")
    import os

    from tieredmem.langgraph import TieredStore

    path = tmp_path / "lg.db"
    with TieredStore(path, filter_index=["kind"]) as lg:
        lg.batch([])  # the store is usable at once
        for i in range(500):
            kind = "rare" if i == 499 else "common"
            lg.put(("docs",), f"k{i:03d}", {"kind": kind, "blob": os.urandom(500).hex()})
        with steps.measure() as cost:
            found = lg.search(("docs",), filter={"kind": "rare"})
        assert [i.key for i in found] == ["k499"]
        assert cost[0] < 40, f"an indexed filter visited {cost[0]} pages"
    con = apsw.Connection(str(path))
    assert next(con.execute("SELECT value FROM meta WHERE key = 'index'"))[0] == '["kind"]'
    con.close()


def test_maintain_indexes_a_text_backlog_within_its_time_budget(tmp_path: Path) -> None:
    """The first text search's backlog (every item) is indexed by maintenance in rounds of
    about a second each, not in one call that takes as long as the store is large."""
    import tieredmem.backends.sqlite as sqlite_backend

    with tieredmem.open(tmp_path / "t.db", maintenance_interval=0) as store:
        _fill(store, 6_000)
        store.backend.enable_fts()  # type: ignore[attr-defined]
        budget, sqlite_backend._MAINTAIN_INDEX_SECONDS = (
            sqlite_backend._MAINTAIN_INDEX_SECONDS,
            0.0,  # one batch per round
        )
        try:
            first = store.maintain()["indexed"]
        finally:
            sqlite_backend._MAINTAIN_INDEX_SECONDS = budget
        assert first == 0  # a zero budget: nothing this round
        assert store.maintain()["indexed"] == 6_000
        assert len(store.search(("docs",), query="x" * 50, limit=3)) == 3


def test_a_declaration_cut_short_is_not_used_and_is_completed(tmp_path: Path) -> None:
    path = tmp_path / "cut.db"
    with tieredmem.open(path, maintenance_interval=0, index=["n"]) as store:
        store.put_many((("a",), f"k{i}", {"n": i % 3}) for i in range(30))
    con = apsw.Connection(str(path))  # as if the process died while indexing old items
    con.execute("DELETE FROM meta WHERE key = 'index_ready'; DELETE FROM fields")
    con.close()
    with tieredmem.open(path, maintenance_interval=0) as store:
        assert store.backend.indexed_fields() == ()  # type: ignore[attr-defined]
        assert len(store.search(("a",), filter={"n": 1}, limit=100)) == 10
        store.put(("a",), "new", {"n": 1})  # still kept by writes meanwhile
        store.declare_index(["n"])  # completes it
        assert store.backend.indexed_fields() == ("n",)  # type: ignore[attr-defined]
        assert len(store.search(("a",), filter={"n": 1}, limit=100)) == 11

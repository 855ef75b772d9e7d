"""History: against a plain list, lazily loaded, bounded reads, retention."""

from __future__ import annotations

import shutil
import tempfile

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import tieredmem
from tieredmem import Retention, SerializationError

from .conftest import FakeClock

items = st.one_of(
    st.integers(-1000, 1000), st.text(max_size=30), st.dictionaries(st.just("k"), st.integers(0, 9))
)


class HistoryVsList(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp()
        self.model: list[object] = []
        self.batch = False
        self.chunk_items = 4
        self._open()

    def _open(self) -> None:
        self.memory = tieredmem.MemorySaver(
            path=f"{self.dir}/h.db",
            hot_bytes=2000,  # tiny: chunks spill and are read back from disk
            chunk_items=self.chunk_items,
            chunk_bytes=120,
            max_history=5,
            durability="batch" if self.batch else "sync",
            maintenance_interval=0,
        )
        self.h = self.memory.history("s")

    @rule(item=items)
    def append(self, item: object) -> None:
        self.h.append(item)
        self.model.append(item)

    @rule(batch=st.lists(items, max_size=12))
    def extend(self, batch: list[object]) -> None:
        self.h.extend(batch)
        self.model.extend(batch)

    @rule(i=st.integers(-40, 40))
    def index(self, i: int) -> None:
        if -len(self.model) <= i < len(self.model):
            assert self.h[i] == self.model[i]
        else:
            with pytest.raises(IndexError):
                self.h[i]

    @rule(
        a=st.none() | st.integers(-30, 30),
        b=st.none() | st.integers(-30, 30),
        step=st.sampled_from([None, 1, 2, -1]),
    )
    def slice(self, a: int | None, b: int | None, step: int | None) -> None:
        assert self.h[a:b:step] == self.model[a:b:step]

    @rule(n=st.none() | st.integers(0, 12))
    def recent(self, n: int | None) -> None:
        k = 5 if n is None else n
        assert self.h.recent(n) == (self.model[-k:] if k else [])

    @rule(batch=st.booleans(), chunk_items=st.sampled_from([2, 4, 9]))
    def reopen(self, batch: bool, chunk_items: int) -> None:
        # Another chunk size seals tails at other points (items move between slots).
        self.memory.close()
        self.batch, self.chunk_items = batch, chunk_items
        self._open()

    @invariant()
    def same(self) -> None:
        assert len(self.h) == len(self.model)
        assert list(self.h) == self.model

    def teardown(self) -> None:
        self.memory.close()
        shutil.rmtree(self.dir, ignore_errors=True)


HistoryVsList.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestHistoryVsList = HistoryVsList.TestCase


def test_reading_last_item_after_reopen_loads_constant_chunks(tmp_path) -> None:
    path = str(tmp_path / "lazy.db")
    with tieredmem.MemorySaver(path=path, chunk_items=20) as memory:
        memory.history("long").extend({"i": i, "text": "x" * 50} for i in range(10_000))
    with tieredmem.MemorySaver(path=path, chunk_items=20, hot_bytes="1MiB") as memory:
        h = memory.history("long")
        assert len(h) == 10_000
        before = memory.stats()["loads"]
        assert h[-1]["i"] == 9_999
        assert h[-30]["i"] == 9_970
        assert h[5]["i"] == 5
        stats = memory.stats()
        assert stats["loads"] - before <= 3  # one chunk per read, not the history
        assert stats["chunk_reads"] <= 3


def test_append_never_rewrites_a_chunk(tmp_path) -> None:
    """Appends write one small row; only sealing writes a chunk, once."""
    with tieredmem.MemorySaver(path=str(tmp_path / "a.db"), chunk_items=10) as memory:
        h = memory.history("s")
        writes_before = memory.store.stats().writes
        for i in range(95):
            h.append({"i": i})
        writes = memory.store.stats().writes - writes_before
        # One tail row per append, except the 9 appends that sealed a chunk and wrote
        # that chunk's row instead (and the tail's base): each chunk is written once.
        assert writes == (95 - 9) + 9 * 2
        assert h.stats()["chunks"] == 9 and h.stats()["tail_items"] == 5
        # Tail rows are slots reused by every tail, not rows inserted and deleted again.
        keys = memory.store.raw.keys(h._ns)
        assert sum(k.startswith("s") for k in keys) == 9
        assert sum(k.startswith("c") for k in keys) == 9


def test_unserializable_item_leaves_history_unchanged(tmp_path) -> None:
    with tieredmem.MemorySaver(path=str(tmp_path / "s.db")) as memory:
        h = memory.history("s")
        h.append("ok")
        with pytest.raises(SerializationError, match=r"s\[1\]"):
            h.append({"bad": object()})
        with pytest.raises(SerializationError):
            h.extend(["fine", {1, 2}])
        assert list(h) == ["ok"]
    with tieredmem.MemorySaver(path=str(tmp_path / "s.db")) as memory:
        assert list(memory.history("s")) == ["ok"]


def test_bad_history_name(tmp_path) -> None:
    with tieredmem.MemorySaver(persistent=False) as memory:
        for bad in ("", "a\x1fb", None):
            with pytest.raises(tieredmem.InvalidKeyError):
                memory.history(bad)  # type: ignore[arg-type]


def test_retention_max_items_and_ttl_with_injected_clock(tmp_path) -> None:
    clock = FakeClock()
    with tieredmem.MemorySaver(
        path=str(tmp_path / "r.db"),
        chunk_items=10,
        retention=Retention(max_items=25),
        maintenance_interval=0,
        clock=clock,
    ) as memory:
        h = memory.history("s")
        for i in range(100):
            h.append(i)
            clock.tick(1)
        report = memory.maintain()
        assert report["retention_deleted"] == 75
        assert len(h) == 25 and h[0] == 75 and h[-1] == 99 and list(h) == list(range(75, 100))
        # Per-history override: a ttl of 10 seconds.
        h2 = memory.history("t", retention=Retention(ttl=10))
        for i in range(30):
            h2.append(i)
            clock.tick(1)
        memory.maintain()
        assert list(h2) == list(range(20, 30))
    with tieredmem.MemorySaver(path=str(tmp_path / "r.db"), chunk_items=10) as memory:
        assert list(memory.history("s")) == list(range(75, 100))


def test_retention_keeps_pinned_items(tmp_path) -> None:
    policy = Retention(max_items=5, keep=lambda item: isinstance(item, dict) and item.get("pin"))
    with tieredmem.MemorySaver(
        path=str(tmp_path / "p.db"), chunk_items=4, retention=policy, maintenance_interval=0
    ) as memory:
        h = memory.history("s")
        for i in range(30):
            h.append({"i": i, "pin": i % 10 == 0})
        memory.maintain()
        assert [x["i"] for x in h] == [0, 10, 20, 25, 26, 27, 28, 29]
        assert len(h) == 8 and h[1] == {"i": 10, "pin": True}
        h.append({"i": 30, "pin": False})
        assert h[-1]["i"] == 30 and len(h) == 9


def test_retention_returns_space_and_file_stays_flat(tmp_path) -> None:
    import os

    path = tmp_path / "flat.db"
    with tieredmem.MemorySaver(
        path=str(path), chunk_items=50, retention=Retention(max_items=500), maintenance_interval=0
    ) as memory:
        h = memory.history("s")
        sizes = []
        for _ in range(6):
            h.extend({"i": i, "text": os.urandom(200).hex()} for i in range(2000))
            memory.maintain()
            memory.store.backend.checkpoint()  # type: ignore[attr-defined]
            sizes.append(os.path.getsize(path))
        assert len(h) == 500
        assert max(sizes[2:]) <= sizes[1] * 1.2, sizes


def test_histories_not_used_lately_release_their_tail(tmp_path) -> None:
    with tieredmem.MemorySaver(
        path=str(tmp_path / "many.db"), chunk_items=10, open_histories=2
    ) as memory:
        held = [memory.history(f"s{i}") for i in range(6)]
        for round_ in range(3):
            for i, h in enumerate(held):
                h = memory.history(f"s{i}")
                h.extend({"s": i, "n": round_ * 7 + k} for k in range(7))
        released = [h for h in held if not h.stats()["tail_held"]]
        assert len(released) >= 4  # only the 2 most recently used keep tail bytes
        for i, h in enumerate(held):
            assert [x["n"] for x in h] == list(range(21))
            assert h.recent(5) == [{"s": i, "n": n} for n in range(16, 21)]
            h.append({"s": i, "n": 21})
            assert len(h) == 22 and h[-1]["n"] == 21


def _msg(session: int, n: int) -> dict[str, object]:
    return {"s": session, "n": n, "text": "x" * 300}


def test_many_histories_stay_within_their_shared_budget(tmp_path) -> None:
    budget = 64 * 1024
    with tieredmem.MemorySaver(
        path=str(tmp_path / "many.db"),
        chunk_items=10,
        history_bytes=budget,
        open_histories=1000,
        maintenance_interval=0,
    ) as memory:
        held = [memory.history(f"s{i}") for i in range(200)]
        for n in range(25):
            for i, h in enumerate(held):
                h.append(_msg(i, n))
                # Over budget, the least recently used drop theirs: the total held stays
                # within the budget plus what the one writing history holds.
                assert memory.history_budget.used <= budget + 40 * 1024
        stats = memory.stats()
        assert stats["history_drops"] > 0
        assert sum(h.stats()["tail_held"] for h in held) < 200
        for i, h in enumerate(held):
            assert h.recent(7) == [_msg(i, n) for n in range(18, 25)]
            assert list(h) == [_msg(i, n) for n in range(25)]


def test_history_whose_items_were_dropped_reads_back_identically(tmp_path) -> None:
    path = str(tmp_path / "drop.db")
    for durability in ("sync", "batch"):
        with tieredmem.MemorySaver(
            path=path, chunk_items=8, durability=durability, maintenance_interval=0
        ) as memory:
            h = memory.history(durability)
            h.extend(_msg(0, n) for n in range(13))
            expected = h[:]
            recent = h.recent(10)
            h.release()
            assert not h.stats()["tail_held"]
            assert h.recent(10) == recent and h[:] == expected and h[-1] == expected[-1]
            assert h.stats()["tail_loads"] == 1
            h.release()
            h.append(_msg(0, 13))  # appending does not need the dropped items
            assert not h.stats()["tail_held"]
            h.extend(_msg(0, n) for n in range(14, 20))  # seals a chunk: reads them back
            assert h[:] == [_msg(0, n) for n in range(20)]
            got = h.recent(3)
            got[0]["n"] = -1  # the caller's own copy
            assert h.recent(3)[0]["n"] == 17
        with tieredmem.MemorySaver(path=path, chunk_items=8, maintenance_interval=0) as memory:
            assert memory.history(durability)[:] == [_msg(0, n) for n in range(20)]


def test_sealed_tail_rows_never_reach_the_file_with_batch_durability(tmp_path) -> None:
    path = str(tmp_path / "batch.db")
    flushes: list[int] = []

    def hook(event: dict[str, object]) -> None:
        if event["event"] == "flush":
            flushes.append(event["rows"])  # type: ignore[arg-type]

    with _batch_saver(path, metrics=hook) as memory:
        h = memory.history("s")
        for n in range(25):
            h.append(_msg(0, n))
        memory.store.flush()
        # Two chunks, the tail's base and the five rows of the open tail: the 20 tail
        # rows sealed before the commit are never written.
        assert flushes == [8]
        ns = memory.store.raw.internal_ns("history", "s")
        assert [k[0] for k in memory.store.raw.keys(ns)] == ["c", "c", "f"] + ["s"] * 5
        assert h[:] == [_msg(0, n) for n in range(25)]
    with tieredmem.MemorySaver(path=path, chunk_items=10, maintenance_interval=0) as memory:
        assert memory.history("s")[:] == [_msg(0, n) for n in range(25)]


def test_tail_rows_are_not_cached_twice(tmp_path) -> None:
    with tieredmem.MemorySaver(path=str(tmp_path / "c.db"), maintenance_interval=0) as memory:
        h = memory.history("s")
        for n in range(10):
            h.append(_msg(0, n))
        # The history holds its open tail itself; the hot tier keeps no copy of it.
        assert memory.store.stats().hot_items == 0
        assert h.recent(3) == [_msg(0, n) for n in range(7, 10)]


def test_sealed_chunks_are_not_cached_on_write_but_readable(tmp_path) -> None:
    for durability in ("sync", "batch"):
        path = str(tmp_path / f"seal-{durability}.db")
        with tieredmem.MemorySaver(
            path=path, chunk_items=10, durability=durability, maintenance_interval=0
        ) as memory:
            h = memory.history("s")
            for n in range(35):
                h.append(_msg(0, n))
            memory.store.flush()
            # Three sealed chunks and a tail of five: none of it in the hot tier.
            assert memory.store.stats().hot_items == 0
            assert h[3] == _msg(0, 3)
            assert h[:] == [_msg(0, n) for n in range(35)]


def test_recent_reads_no_chunk_once_held(tmp_path) -> None:
    path = str(tmp_path / "recent.db")
    with tieredmem.MemorySaver(path=path, max_history=25, chunk_items=10) as memory:
        h = memory.history("s")
        for n in range(60):  # six chunks, empty tail: recent() spans three chunks
            h.append(_msg(0, n))
        before = h.stats()["chunk_reads"]
        assert h.recent() == [_msg(0, n) for n in range(35, 60)]
        h.append(_msg(0, 60))
        assert h.recent() == [_msg(0, n) for n in range(36, 61)]
        assert h.recent(3) == [_msg(0, n) for n in range(58, 61)]
        assert h.stats()["chunk_reads"] == before
    with tieredmem.MemorySaver(path=path, max_history=25, chunk_items=10) as memory:
        h = memory.history("s")
        assert h.recent() == [_msg(0, n) for n in range(36, 61)]  # reads the window once
        reads = h.stats()["chunk_reads"]
        assert reads <= 3
        assert h.recent() == [_msg(0, n) for n in range(36, 61)]
        assert h[40] == _msg(0, 40) and h[30:45] == [_msg(0, n) for n in range(30, 45)]
        assert h.stats()["chunk_reads"] == reads + 1  # only the chunk before the window


def test_recent_results_are_safe_to_mutate(tmp_path) -> None:
    with tieredmem.MemorySaver(path=str(tmp_path / "m.db"), chunk_items=4) as memory:
        h = memory.history("s")
        for n in range(10):
            h.append(_msg(0, n))
        got = h.recent()
        got[0]["content"] = "changed"
        got.append("extra")
        again = h.recent()  # decoded again from what the history holds
        assert again == [_msg(0, n) for n in range(10)] and again[0] is not got[0]
        again[1]["n"] = -1
        assert h.recent() == [_msg(0, n) for n in range(10)]
        assert h[0] == _msg(0, 0)
        h.append(_msg(0, 10))
        assert h.recent() == [_msg(0, n) for n in range(11)]
        assert h.recent(2) == [_msg(0, 9), _msg(0, 10)]


def _batch_saver(path: str, **options: object) -> tieredmem.MemorySaver:
    return tieredmem.MemorySaver(
        path=path,
        chunk_items=10,
        durability="batch",
        flush_interval=60,
        maintenance_interval=0,
        **options,  # type: ignore[arg-type]
    )


def test_batch_appends_reach_the_file_with_the_next_commit(tmp_path) -> None:
    path = str(tmp_path / "defer.db")
    with _batch_saver(path) as memory:
        h = memory.history("s")
        for n in range(15):
            h.append(_msg(0, n))
        memory.store.put(("facts",), "after", {"n": 15})  # written after the items
        with tieredmem.open(path) as other:
            ns = other.raw.internal_ns("history", "s")
            assert other.raw.keys(ns) == [] and other.get(("facts",), "after") is None
        memory.store.flush()
        # The commit holds the items appended before the put, not only the put.
        with tieredmem.open(path) as other:
            assert [k[0] for k in other.raw.keys(ns)] == ["c", "f"] + ["s"] * 5
            assert other.get(("facts",), "after") is not None
        h.append(_msg(0, 15))
        assert h[:] == [_msg(0, n) for n in range(16)]
    with _batch_saver(path) as memory:  # close() committed the last one
        assert memory.history("s")[:] == [_msg(0, n) for n in range(16)]


def test_batch_appends_of_a_dropped_history_object_are_not_lost(tmp_path) -> None:
    import gc

    from tieredmem.history import History

    path = str(tmp_path / "gc.db")
    with tieredmem.open(path, durability="batch", maintenance_interval=0) as store:
        h = History(store, "s", chunk_items=10)
        for n in range(7):
            h.append(_msg(0, n))
        del h
        gc.collect()
        store.flush()
    with tieredmem.open(path) as store:
        assert History(store, "s", chunk_items=10)[:] == [_msg(0, n) for n in range(7)]


def test_batch_appends_survive_release_budget_drops_and_retention(tmp_path) -> None:
    path = str(tmp_path / "drops.db")
    with _batch_saver(path, history_bytes=8 * 1024, open_histories=2) as memory:
        held = [memory.history(f"s{i}") for i in range(20)]
        for n in range(27):
            for i, h in enumerate(held):
                h.append(_msg(i, n))
            held[n % 20].release()
        assert memory.stats()["history_drops"] > 0
        for i, h in enumerate(held):
            assert h[:] == [_msg(i, n) for n in range(27)]
        memory.history("s3", retention=Retention(max_items=4))
        memory.maintain()
        assert memory.history("s3")[:] == [_msg(3, n) for n in range(23, 27)]
        for n in range(27, 30):
            held[3].append(_msg(3, n))
    with _batch_saver(path) as memory:
        for i in range(20):
            expected = [_msg(i, n) for n in range(23 if i == 3 else 0, 30 if i == 3 else 27)]
            assert memory.history(f"s{i}")[:] == expected
            assert memory.history(f"s{i}").recent(3) == expected[-3:]


def test_batch_appends_from_threads_while_flushing(tmp_path) -> None:
    import threading

    path = str(tmp_path / "threads.db")
    stop = threading.Event()
    errors: list[BaseException] = []
    with _batch_saver(path, history_bytes=16 * 1024, max_pending_bytes=4096) as memory:

        def flusher() -> None:
            while not stop.is_set():
                memory.store.flush()

        def writer(t: int) -> None:
            try:
                hs = [memory.history(f"s{t}-{i}") for i in range(12)]
                for n in range(35):
                    for i, h in enumerate(hs):
                        h.append(_msg(i, n))
                        if n % 9 == 0:
                            assert h.recent(2)[-1] == _msg(i, n)
            except BaseException as exc:
                errors.append(exc)

        background = threading.Thread(target=flusher)
        background.start()
        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        stop.set()
        background.join()
        assert not errors
    with _batch_saver(path) as memory:
        for t in range(4):
            for i in range(12):
                assert memory.history(f"s{t}-{i}")[:] == [_msg(i, n) for n in range(35)]


def test_tail_slots_left_by_sealed_items_are_never_read_back(tmp_path) -> None:
    """Sealing leaves the slot rows of sealed items for the next tail to overwrite; a
    reopen must not take them for items, even once retention deleted every chunk."""
    clock = FakeClock()
    path = str(tmp_path / "slots.db")
    options = {"path": path, "chunk_items": 5, "maintenance_interval": 0, "clock": clock}
    with tieredmem.MemorySaver(**options) as memory:  # type: ignore[arg-type]
        h = memory.history("s", retention=Retention(ttl=10))
        for i in range(10):
            h.append(i)  # two chunks; slots 0-3 still hold items 5-8
        clock.tick(20)
        h.extend([10, 11])  # the tail: items 10 and 11 in slots 0 and 1
        h.apply_retention(Retention(ttl=10))
        assert list(h) == [10, 11]
    with tieredmem.MemorySaver(**options) as memory:  # type: ignore[arg-type]
        h = memory.history("s")
        assert list(h) == [10, 11]
        h.extend(range(12, 20))  # seals 10-14 by count; 15-19 stay in the tail
        h.apply_retention(Retention(max_items=3))  # also deletes tail items 15 and 16
        assert list(h) == [17, 18, 19]
        h.append(20)
    with tieredmem.MemorySaver(**options) as memory:  # type: ignore[arg-type]
        h = memory.history("s")
        assert list(h) == [17, 18, 19, 20]
        h.extend(range(21, 30))
    with tieredmem.MemorySaver(**options) as memory:  # type: ignore[arg-type]
        assert list(memory.history("s")) == list(range(17, 30))


def test_items_left_in_the_tail_by_a_seal_are_read_back_once(tmp_path) -> None:
    """A seal that leaves written tail items behind (here: reopened with a smaller
    chunk_items) moves them to new slots; a reopen reads each of them once."""
    path = str(tmp_path / "moved.db")
    with tieredmem.MemorySaver(path=path, chunk_items=50, maintenance_interval=0) as memory:
        h = memory.history("s")
        for i in range(8):
            h.append(i)
    with tieredmem.MemorySaver(path=path, chunk_items=5, maintenance_interval=0) as memory:
        h = memory.history("s")
        h.append(8)  # seals 0-4; 5-7 move from slots 5-7 to slots 0-2, and 8 joins them
        assert list(h) == list(range(9))
        assert h.stats()["chunks"] == 1 and h.stats()["tail_items"] == 4
    with tieredmem.MemorySaver(path=path, chunk_items=5, maintenance_interval=0) as memory:
        assert list(memory.history("s")) == list(range(9))


def test_tail_rows_of_the_format_before_slots_are_migrated(tmp_path) -> None:
    """Files written before slots keep a tail row per item under ``t{seq}``."""
    from tieredmem.history import _tail_key, pack_chunk

    path = str(tmp_path / "old.db")
    with tieredmem.open(path, maintenance_interval=0) as store:
        ns = store.raw.internal_ns("history", "s")
        chunk = pack_chunk([(1.0, b'"a"'), (1.0, b'"b"')])
        store.raw.write([(ns, "c000000000000.000002", chunk)])
        store.raw.write([(ns, _tail_key(2), b'"c"'), (ns, _tail_key(3), b'"d"')], compress=False)
    with tieredmem.MemorySaver(path=path, chunk_items=2, maintenance_interval=0) as memory:
        h = memory.history("s")
        assert list(h) == ["a", "b", "c", "d"]
        assert not [k for k in memory.store.raw.keys(ns) if k.startswith("t")]
        h.append("e")
    with tieredmem.MemorySaver(path=path, chunk_items=2, maintenance_interval=0) as memory:
        assert list(memory.history("s")) == ["a", "b", "c", "d", "e"]

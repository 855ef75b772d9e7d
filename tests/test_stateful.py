"""Store against a plain dict under random operations, reopen, and constant spilling;
several handles on one file against one shared model."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import tieredmem

from .conftest import FakeClock

namespaces = st.sampled_from([("a",), ("a", "b"), ("c",)])
keys = st.sampled_from(["k1", "k2", "k3", "k4"])
ints = st.integers(-(2**63), 2**63 - 1)  # orjson's range
values = st.one_of(
    ints,
    st.text(max_size=20),
    st.binary(max_size=20),
    st.lists(ints, max_size=5),
    st.dictionaries(st.sampled_from(["x", "y"]), ints, max_size=2),
)


class StoreVsDict(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp()
        self.path = f"{self.dir}/s.db"
        self.clock = FakeClock()
        self.durability = "sync"
        self.store = self._open()
        self.model: dict[tuple[tuple[str, ...], str], tuple[object, float | None]] = {}

    def _open(self) -> tieredmem.Store:
        # hot_bytes=300: smaller than one entry, so every operation spills to disk.
        return tieredmem.open(
            self.path,
            hot_bytes=300,
            durability=self.durability,
            maintenance_interval=0,
            clock=self.clock,
        )

    def _live(self, k: tuple[tuple[str, ...], str]) -> object | None:
        v = self.model.get(k)
        if v is None:
            return None
        value, expires = v
        return None if expires is not None and expires <= self.clock() else value

    @rule(ns=namespaces, key=keys, value=values, ttl=st.one_of(st.none(), st.integers(1, 20)))
    def put(self, ns, key, value, ttl) -> None:
        self.store.put(ns, key, value, ttl=ttl)
        self.model[(ns, key)] = (value, self.clock() + ttl if ttl else None)

    @rule(ns=namespaces, key=keys)
    def delete(self, ns, key) -> None:
        self.store.delete(ns, key)
        self.model.pop((ns, key), None)

    @rule(ns=namespaces, key=keys)
    def get(self, ns, key) -> None:
        item = self.store.get(ns, key)
        expected = self._live((ns, key))
        assert (item.value if item else None) == expected

    @rule(items=st.lists(st.tuples(namespaces, keys, values), max_size=4))
    def put_many(self, items) -> None:
        self.store.put_many(items)
        for ns, key, value in items:
            self.model[(ns, key)] = (value, None)

    @rule(seconds=st.integers(1, 15))
    def tick(self, seconds: int) -> None:
        self.clock.tick(seconds)

    @rule()
    def maintain(self) -> None:
        self.store.maintain()

    @rule(batch=st.booleans())
    def reopen(self, batch: bool) -> None:
        self.store.close()
        self.durability = "batch" if batch else "sync"
        self.store = self._open()

    @precondition(lambda self: self.durability == "batch")
    @rule()
    def flush(self) -> None:
        self.store.flush()

    @invariant()
    def search_agrees(self) -> None:
        found = {(i.namespace, i.key): i.value for i in self.store.search((), limit=100)}
        expected = {k: self._live(k) for k in self.model if self._live(k) is not None}
        assert found == expected

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


StoreVsDict.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestStoreVsDict = StoreVsDict.TestCase


# -- several handles on one file -------------------------------------------------------
#
# DESIGN.md: "Several handles, processes and hosts may share one store.  A write
# acknowledged by one is visible to every other reader's next read ... Caches above the
# store (History objects, decoded lists) obey the same rule."  SharedFile checks that: each
# rule runs through one of two "processes" (Proc: a Store and a MemorySaver over it, on
# the same file) and the model is shared, so a read must see every write made before it,
# whichever handle made it.  SharedFileHistories adds histories.  test_two_handles_one_file
# runs both Procs here (two handles in one process); tests/test_stateful_processes.py runs
# one of them in a child process.


class Proc:
    """One process's view of the shared file: its own Store and a MemorySaver over it.

    Arguments and results are plain values (namespaces may come as lists), and the class
    uses nothing but tieredmem and builtins: tests/test_stateful_processes.py runs this
    very source in a child process, driven by JSON lines.
    """

    class Rollback(Exception):
        """Raised into a transaction to roll it back."""

    def __init__(self, path: str, hot_bytes: int | str, now: float) -> None:
        self.path = path
        self.hot_bytes = hot_bytes
        self.durability = "sync"
        self.now = now
        self.txs: list[Any] = []  # open transaction() blocks, innermost last
        self._open()

    def _clock(self) -> float:
        return self.now

    def _open(self) -> None:
        self.store = tieredmem.open(
            self.path,
            hot_bytes=self.hot_bytes,
            durability=self.durability,
            maintenance_interval=0,
            clock=self._clock,
        )
        # Histories go through this process's handle (its hot tier, its coherence checks).
        # Tiny chunks and windows: appends seal chunks and reads cross them constantly.
        self.memory = tieredmem.MemorySaver(store=self.store, max_history=2, chunk_items=3)

    def _published(self) -> None:
        # durability="batch" buffers writes per handle: another handle sees them only once
        # they are committed.  So a batch handle flushes after each write (outside a
        # transaction) before any other handle reads; sync handles need nothing.
        if self.durability == "batch" and not self.txs:
            self.store.flush()

    def set_now(self, now: float) -> None:
        self.now = now

    def put(self, ns: Any, key: str, value: Any, ttl: int | None) -> None:
        self.store.put(tuple(ns), key, value, ttl=ttl)
        self._published()

    def get(self, ns: Any, key: str) -> Any:
        item = self.store.get(tuple(ns), key)
        return None if item is None else item.value

    def get_many(self, keys: Any) -> list[Any]:
        items = self.store.get_many([(tuple(ns), key) for ns, key in keys])
        return [None if item is None else item.value for item in items]

    def put_many(self, items: Any, ttl: int | None) -> None:
        self.store.put_many([(tuple(ns), key, value) for ns, key, value in items], ttl=ttl)
        self._published()

    def delete(self, ns: Any, key: str) -> None:
        self.store.delete(tuple(ns), key)
        self._published()

    def delete_many(self, keys: Any) -> None:
        self.store.delete_many([(tuple(ns), key) for ns, key in keys])
        self._published()

    def search(self) -> list[Any]:
        return [[list(i.namespace), i.key, i.value] for i in self.store.search((), limit=1000)]

    def tx_begin(self) -> None:
        tx = self.store.transaction()
        tx.__enter__()
        self.txs.append(tx)

    def tx_end(self, rollback: bool) -> None:
        """Leave the innermost block: normally, or raising Rollback out of it."""
        tx = self.txs.pop()
        if rollback:
            exc = self.Rollback()
            suppressed = tx.__exit__(type(exc), exc, None)
            assert not suppressed, "transaction() swallowed the exception"
        else:
            tx.__exit__(None, None, None)
            self._published()

    def h_append(self, name: str, item: Any) -> None:
        self.memory.history(name).append(item)
        self._published()

    def h_extend(self, name: str, items: list[Any]) -> None:
        self.memory.history(name).extend(items)
        self._published()

    def h_len(self, name: str) -> int:
        return len(self.memory.history(name))

    def h_slice(self, name: str, start: int | None, stop: int | None) -> list[Any]:
        return self.memory.history(name)[start:stop]

    def h_get(self, name: str, index: int) -> Any:
        return self.memory.history(name)[index]

    def h_recent(self, name: str, n: int) -> list[Any]:
        return self.memory.history(name).recent(n)

    def maintain(self) -> None:
        self.store.maintain()

    def reopen(self, durability: str) -> None:
        self.close()
        self.durability = durability
        self._open()

    def close(self) -> None:
        self.memory.close()  # does not close a store it was given
        self.store.close()


Key = tuple[tuple[str, ...], str]
ALL_KEYS: list[Key] = [
    (ns, k) for ns in [("a",), ("a", "b"), ("c",)] for k in ["k1", "k2", "k3", "k4"]
]
procs = st.sampled_from([0, 1])  # which process (handle) runs the operation
addresses = st.tuples(namespaces, keys)
ttls = st.one_of(st.none(), st.integers(1, 20))
tx_ops = st.one_of(
    st.tuples(st.just("put"), namespaces, keys, values),
    st.tuples(st.just("delete"), namespaces, keys),
)
history_names = st.sampled_from(["h1", "h2"])
history_items = st.one_of(
    st.integers(-1000, 1000),
    st.text(max_size=8),
    st.dictionaries(st.sampled_from(["role", "content"]), st.text(max_size=8), max_size=2),
)
positions = st.one_of(st.none(), st.integers(-8, 8))


class SharedFile(RuleBasedStateMachine):
    """Two processes' handles on one file against one model (see the comment above)."""

    hot_bytes: int | str = "64MiB"  # set by the parametrized tests below

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp()
        self.path = f"{self.dir}/s.db"
        self.now = FakeClock().now  # one clock for both: the same machine's time
        self.model: dict[Key, tuple[object, float | None]] = {}
        self.histories: dict[str, list[object]] = {"h1": [], "h2": []}
        self.procs: list[Any] = []
        self.procs = self.make_procs()

    def make_procs(self) -> list[Any]:
        return [Proc(self.path, self.hot_bytes, self.now) for _ in range(2)]

    def _live(self, k: Key) -> object | None:
        v = self.model.get(k)
        if v is None:
            return None
        value, expires = v
        return None if expires is not None and expires <= self.now else value

    def _expires(self, ttl: int | None) -> float | None:
        return self.now + ttl if ttl else None

    def _committed(self) -> dict[Key, object]:
        return {k: v for k in self.model if (v := self._live(k)) is not None}

    # -- store ----------------------------------------------------------------------------
    @rule(p=procs, ns=namespaces, key=keys, value=values, ttl=ttls)
    def put(self, p, ns, key, value, ttl) -> None:
        self.procs[p].put(ns, key, value, ttl)
        self.model[(ns, key)] = (value, self._expires(ttl))

    @rule(p=procs, ns=namespaces, key=keys)
    def delete(self, p, ns, key) -> None:
        self.procs[p].delete(ns, key)
        self.model.pop((ns, key), None)

    @rule(p=procs, ns=namespaces, key=keys)
    def get(self, p, ns, key) -> None:
        assert self.procs[p].get(ns, key) == self._live((ns, key))

    @rule(p=procs, wanted=st.lists(addresses, max_size=5))
    def get_many(self, p, wanted) -> None:
        assert self.procs[p].get_many(wanted) == [self._live(k) for k in wanted]

    @rule(p=procs, items=st.lists(st.tuples(namespaces, keys, values), max_size=4), ttl=ttls)
    def put_many(self, p, items, ttl) -> None:
        self.procs[p].put_many(items, ttl)
        for ns, key, value in items:
            self.model[(ns, key)] = (value, self._expires(ttl))

    @rule(p=procs, wanted=st.lists(addresses, max_size=4))
    def delete_many(self, p, wanted) -> None:
        self.procs[p].delete_many(wanted)
        for k in wanted:
            self.model.pop(k, None)

    @rule(p=procs)
    def search(self, p) -> None:
        found = {(tuple(ns), key): value for ns, key, value in self.procs[p].search()}
        assert found == self._committed()

    def _check_all(self, proc: Any) -> None:
        assert proc.get_many(ALL_KEYS) == [self._live(k) for k in ALL_KEYS]

    def _tx_ops(self, proc: Any, ops: list[Any], overlay: dict[Key, object]) -> None:
        for op in ops:
            if op[0] == "put":
                _, ns, key, value = op
                proc.put(ns, key, value, None)
                overlay[(ns, key)] = value
            else:
                _, ns, key = op
                proc.delete(ns, key)
                overlay[(ns, key)] = None

    @rule(
        p=procs,
        outer=st.lists(tx_ops, min_size=1, max_size=4),
        inner=st.lists(tx_ops, max_size=3),
        inner_rollback=st.booleans(),
        rollback=st.booleans(),
        reads=st.lists(addresses, max_size=3),
        other_put=st.one_of(st.none(), st.tuples(namespaces, keys, values)),
    )
    def transaction(self, p, outer, inner, inner_rollback, rollback, reads, other_put) -> None:
        """``with store.transaction():`` puts and deletes, maybe a nested block, maybe
        raising out of either; the other process meanwhile sees none of it.  A write of
        the other process just before the block is what the block reads: the block holds
        the write lock from its start (a write of the other handle meanwhile would wait
        for its end, here in the same thread: forever)."""
        owner, other = self.procs[p], self.procs[1 - p]
        overlay: dict[Key, object] = {}  # None: deleted in the transaction
        if other_put is not None:
            ns, key, value = other_put
            other.put(ns, key, value, None)
            self.model[(ns, key)] = (value, None)
        owner.tx_begin()
        self._tx_ops(owner, outer, overlay)
        self._check_all(other)
        if inner:
            owner.tx_begin()
            inner_overlay = dict(overlay)
            self._tx_ops(owner, inner, inner_overlay)
            owner.tx_end(inner_rollback)
            if not inner_rollback:
                overlay = inner_overlay
        for k in reads:  # the block reads its own writes, over what is committed
            assert owner.get(*k) == (overlay[k] if k in overlay else self._live(k))
        owner.tx_end(rollback)
        if not rollback:
            for k, value in overlay.items():
                if value is None:
                    self.model.pop(k, None)
                else:
                    self.model[k] = (value, None)

    # -- time, maintenance, restarts ------------------------------------------------------
    @rule(seconds=st.integers(1, 15))
    def tick(self, seconds: int) -> None:
        self.now += seconds
        for proc in self.procs:
            proc.set_now(self.now)

    @rule(p=procs)
    def maintain(self, p) -> None:
        self.procs[p].maintain()

    @rule(p=procs, batch=st.booleans())
    def reopen(self, p, batch) -> None:
        # A batch handle flushes after each write (see Proc._published), so the model
        # still holds at every read.
        self.procs[p].reopen("batch" if batch else "sync")

    def teardown(self) -> None:
        for proc in self.procs:
            try:
                proc.close()
            except Exception:
                pass  # a failed step may leave a transaction open: the failure is reported
        shutil.rmtree(self.dir, ignore_errors=True)


class SharedFileHistories(SharedFile):
    """SharedFile plus histories: appends through either process, reads through either."""

    @rule(p=procs, name=history_names, item=history_items)
    def h_append(self, p, name, item) -> None:
        self.procs[p].h_append(name, item)
        self.histories[name].append(item)

    @rule(p=procs, name=history_names, items=st.lists(history_items, max_size=5))
    def h_extend(self, p, name, items) -> None:
        self.procs[p].h_extend(name, items)
        self.histories[name].extend(items)

    @rule(p=procs, name=history_names)
    def h_len(self, p, name) -> None:
        assert self.procs[p].h_len(name) == len(self.histories[name])

    @rule(p=procs, name=history_names, start=positions, stop=positions)
    def h_slice(self, p, name, start, stop) -> None:
        assert self.procs[p].h_slice(name, start, stop) == self.histories[name][start:stop]

    @rule(p=procs, name=history_names, index=st.integers(-8, 7))
    def h_get(self, p, name, index) -> None:
        expected = self.histories[name]
        if -len(expected) <= index < len(expected):
            assert self.procs[p].h_get(name, index) == expected[index]

    @rule(p=procs, name=history_names, n=st.integers(0, 6))
    def h_recent(self, p, name, n) -> None:
        expected = self.histories[name]
        assert self.procs[p].h_recent(name, n) == (expected[-n:] if n else [])


def shared_file_settings(stress: bool, examples: int = 150) -> settings:
    """Seconds per machine by default; --stress explores far more.  One failure is shrunk
    and reported (shrinking several distinct ones at once took minutes)."""
    return settings(
        max_examples=examples * 10 if stress else examples,
        stateful_step_count=100 if stress else 50,
        deadline=None,
        report_multiple_bugs=False,
    )


def with_hot_bytes(machine: type[SharedFile], hot_bytes: int | str) -> type[SharedFile]:
    """*machine* with that hot tier (its own class: its own examples database entry)."""
    return type(f"{machine.__name__}_{hot_bytes}", (machine,), {"hot_bytes": hot_bytes})


HOT_SIZES = [
    pytest.param("64MiB", id="hot-64MiB"),  # everything stays hot: staleness shows
    pytest.param(2_000, id="hot-2000B"),  # entries spill and are read back constantly
]


MACHINES = [
    pytest.param(SharedFile, id="store"),
    pytest.param(SharedFileHistories, id="histories"),
]


@pytest.mark.parametrize("hot_bytes", HOT_SIZES)
@pytest.mark.parametrize("base", MACHINES)
def test_two_handles_one_file(base: type[SharedFile], hot_bytes: int | str, stress: bool) -> None:
    """Two handles in one process on one file behave like one store."""
    machine = with_hot_bytes(base, hot_bytes)
    run_state_machine_as_test(machine, settings=shared_file_settings(stress))

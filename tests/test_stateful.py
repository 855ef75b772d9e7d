"""Store against a plain dict under random operations, reopen, and constant spilling."""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

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
    def put(self, ns, key, value, ttl) -> None:  # type: ignore[no-untyped-def]
        self.store.put(ns, key, value, ttl=ttl)
        self.model[(ns, key)] = (value, self.clock() + ttl if ttl else None)

    @rule(ns=namespaces, key=keys)
    def delete(self, ns, key) -> None:  # type: ignore[no-untyped-def]
        self.store.delete(ns, key)
        self.model.pop((ns, key), None)

    @rule(ns=namespaces, key=keys)
    def get(self, ns, key) -> None:  # type: ignore[no-untyped-def]
        item = self.store.get(ns, key)
        expected = self._live((ns, key))
        assert (item.value if item else None) == expected

    @rule(items=st.lists(st.tuples(namespaces, keys, values), max_size=4))
    def put_many(self, items) -> None:  # type: ignore[no-untyped-def]
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

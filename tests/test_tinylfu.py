"""The W-TinyLFU hot tier: its invariants under any sequence of operations, scan
resistance, honest accounting, and the ``hot_policy`` option of the public API."""

from __future__ import annotations

import gc
import random
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import tieredmem
from tieredmem.hot import Entry, HotTier, new_tier
from tieredmem.tinylfu import FrequencySketch, TinyLFUTier


def _entry(key: str, payload_len: int, absent: bool = False) -> Entry:
    if absent:
        return Entry.tombstone(HotTier.charge(key, 0))
    return Entry(1, None, payload_len, 0.0, 0.0, None, HotTier.charge(key, payload_len))


class TierMachine(RuleBasedStateMachine):
    """Random offers (reads and writes, entries of varying size, tombstones), reads,
    removals and invalidations against a model of what each key last held."""

    def __init__(self) -> None:
        super().__init__()
        self.tier = TinyLFUTier(40_000)
        self.last: dict[str, Entry] = {}

    keys = st.sampled_from([f"ns\x1ek{i}" for i in range(60)])

    @rule(key=keys, size=st.integers(0, 6000), read=st.booleans(), absent=st.booleans())
    def offer(self, key: str, size: int, read: bool, absent: bool) -> None:
        entry = _entry(key, size, absent)
        self.tier.offer(key, entry, read)
        self.last[key] = entry

    @rule(key=keys)
    def lookup(self, key: str) -> None:
        assert self.tier.lookup is not None
        self.tier.lookup(key)

    @rule(key=keys)
    def pop(self, key: str) -> None:
        self.tier.pop(key, None)

    @rule()
    def invalidate(self) -> None:
        self.tier = self.tier.fresh()

    @invariant()
    def budget_is_kept(self) -> None:
        tier = self.tier
        assert tier.currsize <= tier.maxsize
        data = tier._data
        assert sum(tier._used) == sum(e.size for e in data.values())
        segments = [set(s) for s in tier._segments]
        assert set().union(*segments) == set(data)
        assert sum(len(s) for s in segments) == len(data)  # each key in one segment
        assert tier.miss_bytes == sum(e.size for e in data.values() if e.absent)
        assert tier.miss_bytes <= tier.maxsize // tier.MISS_SHARE

    @invariant()
    def holds_only_the_latest_entry(self) -> None:
        for key in self.tier:
            assert self.tier.peek(key) is self.last[key]


TestTierMachine = TierMachine.TestCase
TestTierMachine.settings = settings(max_examples=60, stateful_step_count=80, deadline=None)


@pytest.mark.parametrize("policy", ["tinylfu", "lru"])
def test_a_scan_does_not_flush_the_hot_set(policy: str) -> None:
    """A hot set read again and again stays hot through a scan of keys read once (with
    W-TinyLFU); an LRU loses it, which is what the policy is for."""
    size = HotTier.charge("ns\x1ehot-000", 500)
    tier = new_tier(300 * size, policy)
    assert tier.lookup is not None
    hot = [f"ns\x1ehot-{i:03d}" for i in range(100)]
    rng = random.Random(3)

    def read(key: str) -> None:
        assert tier.lookup is not None
        if tier.lookup(key) is None:
            tier.offer(key, _entry(key, 500), True)

    for _ in range(2000):
        read(rng.choice(hot))
    for i in range(3000):  # the scan: each key once, a hot read now and then
        read(f"ns\x1escan-{i}")
        if i % 10 == 0:
            read(rng.choice(hot))
    kept = sum(key in tier for key in hot)
    if policy == "tinylfu":
        assert kept >= 90
    else:
        assert kept < 50


def test_the_sketch_counts_and_ages() -> None:
    sketch = FrequencySketch(1024)
    for _ in range(8):
        sketch.increment("popular")
    sketch.increment("once")
    assert sketch.frequency("popular") >= 8 > sketch.frequency("once") >= 1
    assert sketch.frequency("never") <= 1
    assert sketch.admits("popular", "once") and not sketch.admits("once", "popular")
    before = sketch.frequency("popular")
    sketch.age()
    assert sketch.frequency("popular") <= before // 2 + 1


def test_accounting_is_honest() -> None:
    """The memory the tier holds, sketch included, stays within a small factor of the
    budget whatever passes through (entries of every size)."""
    budget = 2_000_000
    gc.collect()
    tracemalloc.start()
    tier = TinyLFUTier(budget)
    base = tracemalloc.get_traced_memory()[0] - tier._sketch.nbytes
    for size in (10, 100, 1000, 10_000):
        for i in range(6000 if size < 10_000 else 2000):
            key = f"ns\x1fnamespace\x1ekey-{size}-{i}"
            tier.offer(key, _entry(key, size), i % 3 == 0)
            if i % 4 == 0:
                assert tier.lookup is not None
                tier.lookup(f"ns\x1fnamespace\x1ekey-{size}-{i // 2}")
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert tier.currsize <= budget
    assert held < 1.25 * budget, held


def test_hot_policy_option(tmp_path: Path) -> None:
    for policy in ("tinylfu", "lru"):
        with tieredmem.open(str(tmp_path / f"{policy}.db"), hot_policy=policy) as store:
            store.put(("a",), "k", {"v": 1})
            assert store.get(("a",), "k").value == {"v": 1}  # type: ignore[union-attr]
            assert store._engine._hot.policy == policy
    with tieredmem.open(str(tmp_path / "default.db")) as store:
        assert store._engine._hot.policy == "lru"
    with pytest.raises(ValueError, match="hot_policy"):
        tieredmem.open(str(tmp_path / "bad.db"), hot_policy="fifo")


def test_expired_items_are_not_served_from_the_tier(tmp_path: Path) -> None:
    """TTL still rules what a read returns, whatever the tier keeps (a popular entry
    the policy protects expires like any other)."""
    now = [1000.0]
    with tieredmem.open(
        str(tmp_path / "t.db"), hot_policy="tinylfu", clock=lambda: now[0]
    ) as store:
        store.put(("a",), "k", {"v": 1}, ttl=10)
        for _ in range(20):
            assert store.get(("a",), "k") is not None
        now[0] += 11
        assert store.get(("a",), "k") is None
        store.put(("a",), "k", {"v": 2}, ttl=10)
        assert store.get(("a",), "k").value == {"v": 2}  # type: ignore[union-attr]

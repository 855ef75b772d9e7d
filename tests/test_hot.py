from __future__ import annotations

import gc
import tracemalloc

import pytest

from tieredmem.hot import Entry, HotTier, parse_bytes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64MiB", 64 * 2**20),
        ("512kB", 512_000),
        ("1 GiB", 2**30),
        ("10", 10),
        (7, 7),
        ("1.5KiB", 1536),
    ],
)
def test_parse_bytes(text: str | int, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["lots", "-1MiB", -5, True, "12 parsecs", None])
def test_parse_bytes_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_bytes(bad)  # type: ignore[arg-type]


def _entry(key: str, payload: bytes) -> Entry:
    return Entry(1, payload, None, 0.0, 0.0, None, HotTier.charge(key, len(payload)))


def test_lru_evicts_by_bytes_and_counts_spills() -> None:
    tier = HotTier(10_000)
    for i in range(100):
        tier[f"k{i}"] = _entry(f"k{i}", b"x" * 500)
    assert tier.currsize <= 10_000
    assert "k99" in tier and "k0" not in tier
    assert tier.spills == 100 - len(tier)


def test_oversized_entry_is_not_cached() -> None:
    tier = HotTier(1000)
    tier.offer("small", _entry("small", b"x"))
    tier.offer("small", _entry("small", b"x" * 5000))
    assert "small" not in tier


def test_accounting_is_honest() -> None:
    """Memory really held stays within a small factor of the budget, whatever passes through."""
    budget = 2_000_000
    gc.collect()
    tracemalloc.start()
    tier = HotTier(budget)
    base = tracemalloc.get_traced_memory()[0]
    for size in (10, 100, 1000, 10_000):
        for i in range(20_000):
            key = f"ns\x1fnamespace\x1ekey-{size}-{i}"
            tier.offer(key, _entry(key, bytes(size)))
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    # Small entries are the worst case for per-entry overhead; allow a factor of 1.25.
    assert held < 1.25 * budget, held


@pytest.mark.parametrize("policy", ["lru", "tinylfu"])
def test_lockfree_readers_beside_an_evicting_writer(tmp_path: object, policy: str) -> None:
    """Hot reads take no lock: four reader threads and a writer that evicts all the time
    must neither raise nor see a wrong value, and the LRU stays within its budget."""
    import sys
    import threading

    import tieredmem

    with tieredmem.open(
        ":memory:", hot_bytes="64KiB", maintenance_interval=0, hot_policy=policy
    ) as store:
        assert store._engine._hot.lookup is not None  # the lock-free path is the one under test
        for i in range(200):
            store.put(("t",), f"k{i}", {"i": i, "pad": "x" * 200})
        errors: list[str] = []
        done = threading.Event()

        def reader(seed: int) -> None:
            n = seed
            for _ in range(5000):
                n = (n * 31 + 7) % 200
                item = store.get(("t",), f"k{n}")
                if item is None or item.value["i"] != n:
                    errors.append(f"k{n}: {item!r}")
                pair = [(n + 1) % 200, (n + 2) % 200]
                items = store.get_many([(("t",), f"k{m}") for m in pair])
                if [it.value["i"] if it else None for it in items] != pair:
                    errors.append(f"get_many {pair}: {items!r}")

        def writer() -> None:  # evicts on every put while the readers run
            j = 0
            while not done.is_set():
                store.put(("w",), f"w{j % 500}", {"j": j, "pad": "y" * 300})
                j += 1

        spills_before = store.stats().spills
        old_interval = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)  # interleave the threads finely
        try:
            readers = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
            writing = threading.Thread(target=writer)
            writing.start()
            for t in readers:
                t.start()
            for t in readers:
                t.join()
            done.set()
            writing.join()
        finally:
            sys.setswitchinterval(old_interval)
        assert errors == []
        assert store.stats().spills > spills_before  # the writer did evict meanwhile
        assert store.stats().hot_bytes <= store.stats().hot_budget

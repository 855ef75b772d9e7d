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

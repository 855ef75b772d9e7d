"""The hot tier: a byte-bounded LRU in process memory (the default policy; W-TinyLFU
admission is :mod:`tieredmem.tinylfu`, chosen with ``hot_policy="tinylfu"``).

:class:`HotTier` is a small :class:`cachetools.LRUCache` subclass, following cachetools'
composition: every eviction goes through :meth:`popitem`, which counts the spill.  The
budget is in bytes; each entry is charged its payload plus a fixed per-entry overhead
measured on CPython (the key string, the entry object, and the LRU's own bookkeeping), so
the memory the tier really holds stays within a small factor of ``maxsize`` (the test
suite measures it with :mod:`tracemalloc`).

The tier is *not* thread-safe on its own; :class:`tieredmem.Store` guards its writes with a
lock.  Reads may go through :meth:`HotTier.lookup` without that lock (see there), so hot
reads from many threads do not queue on it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any, Union

from cachetools import Cache, LRUCache

from .tinylfu import TinyLFUTier

__all__ = ["ENTRY_OVERHEAD", "POLICIES", "Entry", "HotTier", "Tier", "new_tier", "parse_bytes"]

#: Bytes charged per entry on top of its payload and key: the Entry object, the key's
#: str header, and the LRU's dict/order slots.  Measured in tests/test_hot.py.
ENTRY_OVERHEAD = 400

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


#: A hot tier of either policy.
Tier = Union["HotTier", TinyLFUTier]


def parse_bytes(size: int | str) -> int:
    """Parse a byte size: an int, or a string such as ``"64MiB"``, ``"512 kB"`` or ``"1G"``.

    >>> parse_bytes("64MiB")
    67108864
    >>> parse_bytes(1000)
    1000

    :raises ValueError: the size is negative or not understood.
    """
    if isinstance(size, bool):
        raise ValueError(f"not a byte size: {size!r}")
    if isinstance(size, int):
        if size < 0:
            raise ValueError(f"byte size must be >= 0, got {size}")
        return size
    if isinstance(size, str):
        match = _SIZE.match(size)
        if match and match.group(2).lower() in _UNITS:
            return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    raise ValueError(
        f"not a byte size: {size!r} (use an int or a string like '64MiB', '512kB', '1GB')"
    )


class Entry:
    """A cached item: its decoded scalar or its JSON payload, and its timestamps.

    ``payload`` holds the uncompressed codec payload for containers (decoded afresh on
    every read, so callers can mutate what they get); ``value`` holds immutable scalars
    as they are.  A tombstone (``absent``) remembers that a key does not exist.
    """

    __slots__ = (
        "absent",
        "codec",
        "created",
        "expires",
        "payload",
        "size",
        "ttl",
        "updated",
        "value",
    )

    def __init__(
        self,
        codec: int,
        payload: bytes | None,
        value: Any,
        created: float | None,
        updated: float,
        expires: float | None,
        size: int,
        ttl: float | None = None,
        absent: bool = False,
    ) -> None:
        self.absent = absent
        self.codec = codec
        self.ttl = ttl
        self.payload = payload
        self.value = value
        self.created = created
        self.updated = updated
        self.expires = expires
        self.size = size

    @classmethod
    def tombstone(cls, size: int) -> Entry:
        """An entry remembering that a key does not exist (charged *size* bytes)."""
        return cls(0, None, None, None, 0.0, None, size, None, absent=True)


def _entry_size(entry: Entry) -> int:
    return entry.size


class HotTier(LRUCache[str, Entry]):
    """A byte-bounded LRU of :class:`Entry` objects; ``maxsize`` is a byte budget."""

    policy = "lru"
    #: At most this share of the budget holds remembered absences (read misses and
    #: deletes' tombstones), so lookups of absent keys or mass deletes cannot push real
    #: data out.
    MISS_SHARE = 8

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize=maxsize, getsizeof=_entry_size)
        self.spills = 0
        self.spilled_bytes = 0
        self.miss_bytes = 0
        # cachetools' own structures (None where its internals differ: then only its API
        # is used), for offer()'s one-frame insert and for lock-free reads.
        data = getattr(self, "_Cache__data", None)
        sizes = getattr(self, "_Cache__size", None)
        order = getattr(self, "_LRUCache__order", None)
        known = all(isinstance(x, dict) for x in (data, sizes, order))
        self._parts: tuple[dict[str, Entry], dict[str, int], Any] | None = (
            (data, sizes, order) if known and "_Cache__currsize" in self.__dict__ else None  # type: ignore[assignment]
        )
        self.lookup: Callable[[str], Entry | None] | None = self._lockfree_lookup()

    def _lockfree_lookup(self) -> Callable[[str], Entry | None] | None:
        """A reader that needs no lock, or ``None`` where that is not safe.

        Under the GIL a dict ``get`` and an ``OrderedDict.move_to_end`` are each atomic,
        so a reader can find an entry and mark it recently used while one writer (holding
        the store's lock) inserts or evicts: at worst it returns an entry evicted a moment
        ago (still the right value) or its move loses a race with the eviction (ignored).
        The one thing a concurrent move can break is the writer's own iteration in
        :meth:`popitem` and :meth:`offer`, which retry.  It relies on cachetools' private
        attributes and on the GIL; when either is missing, readers take the lock.
        """
        gil = getattr(sys, "_is_gil_enabled", lambda: True)()
        if not gil or self._parts is None:
            return None
        get, touch = self._parts[0].get, self._parts[2].move_to_end

        def lookup(key: str) -> Entry | None:
            entry = get(key)
            if entry is not None:
                try:
                    touch(key)
                except KeyError:  # evicted between the two steps
                    pass
            return entry

        return lookup

    def fresh(self) -> HotTier:
        """An empty tier with the same budget and counters (faster than ``clear()``,
        which would count every entry as a spill)."""
        tier = HotTier(int(self.maxsize))
        tier.spills, tier.spilled_bytes = self.spills, self.spilled_bytes
        return tier

    def __setitem__(self, key: str, value: Entry) -> None:
        # Only look at the old entry when it can be a miss (the common path stays cheap).
        old = self.peek(key) if self.miss_bytes else None
        super().__setitem__(key, value)
        if old is not None and old.absent:
            self.miss_bytes -= old.size
        if value.absent:
            self.miss_bytes += value.size

    def __delitem__(self, key: str) -> None:
        old = self.peek(key) if self.miss_bytes else None
        super().__delitem__(key)
        if old is not None and old.absent:
            self.miss_bytes -= old.size

    @staticmethod
    def charge(key: str, payload_len: int) -> int:
        """Bytes charged for an entry under *key* holding *payload_len* payload bytes."""
        return ENTRY_OVERHEAD + sys.getsizeof(key) + payload_len

    def popitem(self) -> tuple[str, Entry]:
        """Evict the least recently used entry (the spill hook) and count it."""
        while True:
            try:
                key, entry = super().popitem()
                break
            except RuntimeError:  # a lock-free reader reordered the LRU mid-iteration
                continue
        self.spills += 1
        self.spilled_bytes += entry.size
        return key, entry

    def peek(self, key: str) -> Entry | None:
        """The entry under *key* without making it recently used, or ``None``."""
        if not Cache.__contains__(self, key):
            return None
        return Cache.__getitem__(self, key)

    def offer(self, key: str, entry: Entry, read: bool = True) -> None:
        """Insert *entry* unless it alone exceeds the budget, or it remembers an absence
        past :attr:`MISS_SHARE` of it (then drop any old copy of the key instead).
        (*read*: whether a read loaded it; the LRU admits either alike.)"""
        size = entry.size
        if size > self.maxsize or (
            entry.absent and self.miss_bytes + size > self.maxsize // self.MISS_SHARE
        ):
            # Too large; or a remembered absence (a delete's tombstone) past the misses'
            # share of the budget: forget the key instead, so deletes (retention deletes
            # thousands) cannot fill the tier with tombstones and push real data out.
            self.pop(key, None)
            return
        parts = self._parts
        if parts is None or key in parts[0]:
            self[key] = entry
            return
        # A new key (every cold read, most writes): evict and insert on cachetools' own
        # structures in one frame instead of a dozen calls through its layers.
        data, sizes, order = parts
        state = self.__dict__
        current = state["_Cache__currsize"]
        maxsize = self.maxsize
        while current + size > maxsize:
            try:
                old_key = next(iter(order))
            except RuntimeError:  # a lock-free reader reordered the LRU mid-iteration
                continue
            except StopIteration:  # pragma: no cover - empty tier: nothing left to evict
                break
            del order[old_key]
            old = data.pop(old_key)
            old_size = sizes.pop(old_key)
            current -= old_size
            self.spills += 1
            self.spilled_bytes += old_size
            if old.absent:
                self.miss_bytes -= old_size
        data[key] = entry
        sizes[key] = size
        order[key] = None
        state["_Cache__currsize"] = current + size
        if entry.absent:
            self.miss_bytes += size


#: The hot tier's policies: ``"tinylfu"`` (W-TinyLFU admission, see
#: :mod:`tieredmem.tinylfu`) and ``"lru"`` (admit everything, evict the least recently
#: used, the default).
POLICIES = ("lru", "tinylfu")


def new_tier(maxsize: int, policy: str) -> Tier:
    """An empty hot tier of *maxsize* bytes under *policy* (one of :data:`POLICIES`).

    :raises ValueError: an unknown policy.
    """
    if policy == "lru":
        return HotTier(maxsize)
    if policy == "tinylfu":
        return TinyLFUTier(maxsize)
    raise ValueError(f"hot_policy must be 'lru' or 'tinylfu', not {policy!r}")

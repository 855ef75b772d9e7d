"""The hot tier's admission policy: W-TinyLFU over a byte budget.

An LRU admits every miss and evicts on every insert, so one pass over cold keys (a scan, a
backfill, a uniform read of a store larger than the tier) pushes the hot set out.
W-TinyLFU (Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache Admission
Policy", 2017; the policy of Java's Caffeine) keeps the hot set instead:

- a small **window** LRU takes every new entry, so a burst of new keys still hits while
  it is recent; it starts at 1% of the budget and Caffeine's **hill climber** resizes it
  (up to 80%) after each sample of ``10 x entries`` accesses, in the direction that raised
  the hit rate, so recency-heavy workloads get a larger window;
- the **main** segment is a segmented LRU: a **probation** part for entries admitted once
  and a **protected** part (80% of the main segment) for entries read again while there;
- a **frequency sketch** (a count-min sketch of counters saturating at 15, four rows, one
  byte a counter) estimates how often each key was read lately; every counter is halved
  after a sample of ``10 x width`` reads (aging), so old popularity fades; writes do not
  count, so a burst of writes or deletes cannot outrank what is read;
- a **doorkeeper** (a two-probe Bloom filter, cleared with the aging) takes a key's
  first read, so keys read once never reach the sketch's counters;
- when the window overflows, its least recently used entry is a **candidate** for the
  main segment: it is admitted only if the sketch says it is asked for more often than
  the main segment's victim (probation's least recently used entry), else it is dropped.

The budget is in bytes and entries differ in size: the candidate replaces as many victims
as it needs, each compared with it, and is dropped on the first victim it does not beat.
The sketch and doorkeeper are charged to the budget too (their bytes are not available to
entries), so the memory the tier holds stays honest.

Reads take no lock: :meth:`TinyLFUTier.lookup` is a ``dict.get`` and a ``deque.append`` of
the key into a bounded read buffer (both atomic under the GIL); the writer, which holds
the store's lock, replays the buffer into the sketch and the segments' recency before
each change (Caffeine's read buffer, here lossy when full: a read that finds it full
drops its oldest record).  So a hit costs about what an LRU hit costs, and the sketch
work it defers is paid by the next miss.  Readers never touch the segments, so the
writer's iteration never races with them.

>>> from tieredmem.hot import Entry
>>> tier = TinyLFUTier(100_000)
>>> tier.offer("a", Entry(1, None, "x", 0.0, 0.0, None, 500))
>>> tier.lookup("a").value
'x'
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .hot import Entry

__all__ = ["FrequencySketch", "TinyLFUTier"]

#: Counters a row at most (2**20: the rows' bit ranges of a 64-bit hash overlap past it).
_MAX_WIDTH = 1 << 20
#: Counters saturate at 15 (4 bits' worth, as Caffeine's).
_CAP = 15
#: ``bytes.translate`` table that halves every counter (the aging step, at C speed).
_HALVE = bytes(b >> 1 for b in range(256))


class FrequencySketch:
    """A count-min sketch of saturating counters with a doorkeeper, over ``hash(key)``.

    :param int width: counters per row (about the number of keys it tells apart).
    """

    __slots__ = ("_dm", "_door", "_m", "_rows", "_samples", "_until_reset", "width")

    def __init__(self, width: int) -> None:
        width = min(_MAX_WIDTH, 1 << (max(64, width) - 1).bit_length())
        self.width = width
        self._m = width - 1
        self._rows = [bytearray(width) for _ in range(4)]
        self._door = bytearray(4 * width)
        self._dm = 4 * width - 1
        self._samples = 10 * width
        self._until_reset = self._samples

    @property
    def nbytes(self) -> int:
        """Bytes the sketch holds (charged to the tier's budget)."""
        return 4 * self.width + len(self._door) + 400

    # A key's counter in each row, and its two doorkeeper slots, are bit ranges of
    # hash(key) (str hashes are cached and SipHash-mixed, with a per-process seed).
    def increment(self, key: str) -> None:
        """Count one access to *key* (its first since the last aging goes to the
        doorkeeper only)."""
        h = hash(key)
        door, dm = self._door, self._dm
        d1, d2 = (h >> 3) & dm, (h >> 37) & dm
        if door[d1] and door[d2]:
            m = self._m
            r0, r1, r2, r3 = self._rows
            i = h & m
            if r0[i] < _CAP:
                r0[i] += 1
            i = (h >> 16) & m
            if r1[i] < _CAP:
                r1[i] += 1
            i = (h >> 32) & m
            if r2[i] < _CAP:
                r2[i] += 1
            i = (h >> 44) & m
            if r3[i] < _CAP:
                r3[i] += 1
        else:
            door[d1] = door[d2] = 1
        self._until_reset -= 1
        if self._until_reset <= 0:
            self.age()

    def increment_all(self, keys: list[str]) -> None:
        """:meth:`increment` of each of *keys* (a drained read buffer) in one call."""
        door, dm, m = self._door, self._dm, self._m
        r0, r1, r2, r3 = self._rows
        left = self._until_reset
        for key in keys:
            h = hash(key)
            d1, d2 = (h >> 3) & dm, (h >> 37) & dm
            if door[d1] and door[d2]:
                i = h & m
                if r0[i] < _CAP:
                    r0[i] += 1
                i = (h >> 16) & m
                if r1[i] < _CAP:
                    r1[i] += 1
                i = (h >> 32) & m
                if r2[i] < _CAP:
                    r2[i] += 1
                i = (h >> 44) & m
                if r3[i] < _CAP:
                    r3[i] += 1
            else:
                door[d1] = door[d2] = 1
            left -= 1
            if left <= 0:
                self.age()
                door = self._door
                r0, r1, r2, r3 = self._rows
                left = self._until_reset
        self._until_reset = left

    def frequency(self, key: str) -> int:
        """The estimated number of recent accesses to *key* (0 to 16)."""
        h = hash(key)
        m = self._m
        r0, r1, r2, r3 = self._rows
        count = min(r0[h & m], r1[(h >> 16) & m], r2[(h >> 32) & m], r3[(h >> 44) & m])
        door, dm = self._door, self._dm
        if door[(h >> 3) & dm] and door[(h >> 37) & dm]:
            count += 1
        return count

    def admits(self, candidate: str, victim: str) -> bool:
        """True if *candidate* was asked for more often than *victim* (one call for the
        two :meth:`frequency` estimates an admission compares)."""
        m, dm = self._m, self._dm
        r0, r1, r2, r3 = self._rows
        door = self._door
        h = hash(candidate)
        a = min(r0[h & m], r1[(h >> 16) & m], r2[(h >> 32) & m], r3[(h >> 44) & m])
        if door[(h >> 3) & dm] and door[(h >> 37) & dm]:
            a += 1
        h = hash(victim)
        b = min(r0[h & m], r1[(h >> 16) & m], r2[(h >> 32) & m], r3[(h >> 44) & m])
        if door[(h >> 3) & dm] and door[(h >> 37) & dm]:
            b += 1
        return a > b

    def age(self) -> None:
        """Halve every counter and clear the doorkeeper (old popularity fades)."""
        self._rows = [bytearray(row.translate(_HALVE)) for row in self._rows]
        self._door = bytearray(len(self._door))
        self._until_reset = self._samples


class TinyLFUTier:
    """A byte-bounded W-TinyLFU tier of :class:`~tieredmem.hot.Entry` objects; the same
    interface as :class:`~tieredmem.hot.HotTier` (``maxsize`` is a byte budget).

    :param int maxsize: the byte budget (sketch included).
    :param int average_entry: the entry size the sketch is sized for (one counter a row
        per that many bytes of budget; entries are charged at least
        :data:`~tieredmem.hot.ENTRY_OVERHEAD` bytes each).
    """

    #: See :attr:`tieredmem.hot.HotTier.MISS_SHARE`.
    MISS_SHARE = 8
    #: Share of the entry budget given to the window (Caffeine's default, 1%).
    WINDOW_SHARE = 0.01
    #: Share of the main segment given to protected entries.
    PROTECTED_SHARE = 0.8
    #: The window's largest share of the budget (the hill climber's bound).
    WINDOW_LIMIT = 0.8
    #: The hill climber's first step (share of the budget), the decay of its steps, and
    #: the change in hit rate that restarts them (Caffeine's defaults).
    CLIMB_STEP = 0.0625
    CLIMB_DECAY = 0.98
    CLIMB_RESTART = 0.05
    #: Reads remembered between two writes (older ones are dropped when it is full).
    READ_BUFFER = 4096
    policy = "tinylfu"

    def __init__(self, maxsize: int, *, average_entry: int = 512) -> None:
        self.maxsize = maxsize
        self.spills = 0
        self.spilled_bytes = 0
        self.miss_bytes = 0
        self._data: dict[str, Entry] = {}
        self._window: OrderedDict[str, None] = OrderedDict()
        self._probation: OrderedDict[str, None] = OrderedDict()
        self._protected: OrderedDict[str, None] = OrderedDict()
        self._segments = (self._window, self._probation, self._protected)
        self._used = [0, 0, 0]
        self._sketch = FrequencySketch(maxsize // max(1, average_entry))
        self._reads: deque[str] = deque(maxlen=self.READ_BUFFER)
        self._budgets()
        self._sample_hits = self._sample_misses = 0
        self._last_rate = 0.0
        self._step = self.CLIMB_STEP * self._room
        self._climb_at = 640  # accesses a sample (10 x entries; the climber updates it)
        data_get, record = self._data.get, self._reads.append

        def lookup(key: str) -> Entry | None:
            entry = data_get(key)
            if entry is not None:
                record(key)
            return entry

        #: A reader that needs no lock (see the module text).
        self.lookup: Callable[[str], Entry | None] | None = lookup

    def _budgets(self, window_max: int | None = None) -> None:
        room = max(0, self.maxsize - self._sketch.nbytes)
        self._room = room
        if window_max is None:
            window_max = int(room * self.WINDOW_SHARE)
        self._window_max = min(max(1, window_max), int(room * self.WINDOW_LIMIT))
        self._protected_max = int((room - self._window_max) * self.PROTECTED_SHARE)

    def _climb(self) -> None:
        """Caffeine's hill climber: after each sample of accesses, move the window's
        share a step in the direction that raised the hit rate (recency-heavy workloads
        get a larger window, frequency-heavy ones a smaller one); steps shrink while the
        hit rate settles and restart when it jumps."""
        total = self._sample_hits + self._sample_misses
        rate = self._sample_hits / total
        self._sample_hits = self._sample_misses = 0
        self._climb_at = 10 * max(64, len(self._data))
        change = rate - self._last_rate
        self._last_rate = rate
        step = self._step if change >= 0 else -self._step
        if abs(change) >= self.CLIMB_RESTART:
            self._step = self.CLIMB_STEP * self._room * (1 if step >= 0 else -1)
        else:
            self._step = self.CLIMB_DECAY * step
        self._budgets(int(self._window_max + step))
        self._shrink()

    # -- the mapping part of HotTier's interface ------------------------------------------
    @property
    def currsize(self) -> int:
        """Bytes charged: entries plus the sketch."""
        return sum(self._used) + self._sketch.nbytes

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def __getitem__(self, key: str) -> Entry:
        entry: Entry | None = self.get(key)
        if entry is None:
            raise KeyError(key)
        return entry

    def __setitem__(self, key: str, entry: Entry) -> None:
        self.offer(key, entry)

    def __delitem__(self, key: str) -> None:
        if self._remove(key) is None:
            raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        """The entry under *key*, recorded as a read, or *default*."""
        entry = self._data.get(key)
        if entry is None:
            return default
        self._reads.append(key)
        return entry

    def peek(self, key: str) -> Entry | None:
        """The entry under *key* without recording a read, or ``None``."""
        return self._data.get(key)

    def pop(self, key: str, default: Any = None) -> Any:
        """Remove *key* (not counted as a spill) and return its entry, or *default*."""
        entry = self._remove(key)
        return default if entry is None else entry

    def fresh(self) -> TinyLFUTier:
        """An empty tier with the same budget and counters; the sketch is kept (what
        was popular stays so after an invalidation)."""
        tier = TinyLFUTier.__new__(TinyLFUTier)
        TinyLFUTier.__init__(tier, self.maxsize)
        tier._sketch = self._sketch
        tier._budgets()
        tier.spills, tier.spilled_bytes = self.spills, self.spilled_bytes
        return tier

    # -- policy -----------------------------------------------------------------------------
    # Segments by index: 0 window, 1 probation, 2 protected; self._used[i] is its bytes.
    def _where(self, key: str) -> int:
        if key in self._window:
            return 0
        return 1 if key in self._probation else 2

    def _remove(self, key: str) -> Entry | None:
        self._drain()
        entry = self._data.pop(key, None)
        if entry is None:
            return None
        i = self._where(key)
        del self._segments[i][key]
        self._used[i] -= entry.size
        if entry.absent:
            self.miss_bytes -= entry.size
        return entry

    def _evict(self, key: str, i: int) -> None:
        del self._segments[i][key]
        entry = self._data.pop(key)
        size = entry.size
        self._used[i] -= size
        if entry.absent:
            self.miss_bytes -= size
        self.spills += 1
        self.spilled_bytes += size

    def _drain(self) -> None:
        """Replay the reads recorded since the last change: count them in the sketch,
        refresh their recency, promote probation entries read again."""
        reads = self._reads
        if not reads:
            return
        pop = reads.popleft  # only the writer pops (readers append): n are there
        keys = [pop() for _ in range(len(reads))]
        self._sample_hits += len(keys)
        self._sketch.increment_all(keys)
        data, window, probation, protected = self._data, *self._segments
        used = self._used
        for key in keys:
            if key in protected:
                protected.move_to_end(key)
            elif key in window:
                window.move_to_end(key)
            elif key in probation:
                entry = data[key]
                del probation[key]
                protected[key] = None
                used[1] -= entry.size
                used[2] += entry.size
                if used[2] > self._protected_max:
                    self._demote()

    def _demote(self) -> None:
        """Move protected overflow back to probation (most recently used end)."""
        protected, probation, used = self._protected, self._probation, self._used
        while used[2] > self._protected_max and protected:
            key = next(iter(protected))
            del protected[key]
            probation[key] = None
            size = self._data[key].size
            used[2] -= size
            used[1] += size

    def offer(self, key: str, entry: Entry, read: bool = True) -> None:
        """Insert *entry* (into the window; it reaches the main segment only if it is
        asked for more often than what it would replace), unless it alone exceeds the
        budget, or it remembers an absence past :attr:`MISS_SHARE` of it (then drop any
        old copy of the key instead).

        *read*: the entry was read (a miss loaded it), so it counts as an access in the
        sketch; a write's entry (``False``) does not: only reads make a key popular, so
        a burst of writes (a backfill, retention's deletes) cannot outrank what is read."""
        size = entry.size
        if size > self._room or (
            entry.absent and self.miss_bytes + size > self.maxsize // self.MISS_SHARE
        ):
            self._remove(key)
            return
        if self._reads:
            self._drain()
        if read:
            self._sketch.increment(key)
            self._sample_misses += 1
            if self._sample_hits + self._sample_misses >= self._climb_at:
                self._climb()
        data, used = self._data, self._used
        old = data.get(key)
        if old is not None:  # an update: in place, and recently used
            i = self._where(key)
            data[key] = entry
            self._segments[i].move_to_end(key)
            used[i] += size - old.size
            self.miss_bytes += (size if entry.absent else 0) - (old.size if old.absent else 0)
        else:
            data[key] = entry
            self._window[key] = None
            used[0] += size
            if entry.absent:
                self.miss_bytes += size
        if used[0] > self._window_max or used[1] + used[2] > self._room - used[0]:
            self._shrink()

    def _shrink(self) -> None:
        """Bring every segment back within its share: window overflow becomes candidates
        for the main segment, which admits each only against its victims.  The window
        always keeps its newest entry (a tier whose 1% is smaller than one entry still
        serves the read that follows a write); the main segment may use what the window
        leaves free, and yields it back as the window fills."""
        window, probation, protected = self._segments
        used, data, admits = self._used, self._data, self._sketch.admits
        room = self._room
        while used[0] > self._window_max and len(window) > 1:
            cand = next(iter(window))
            cand_size = data[cand].size
            while used[1] + used[2] + cand_size > room - used[0] + cand_size:
                # Room for the candidate: each victim it beats goes; the first it does
                # not beat sends the candidate out instead.
                if probation:
                    victim, i = next(iter(probation)), 1
                elif protected:
                    victim, i = next(iter(protected)), 2
                else:
                    break  # larger than the main segment on its own
                if not admits(cand, victim):
                    break
                self._evict(victim, i)
            if used[1] + used[2] + cand_size <= room - used[0] + cand_size:
                del window[cand]
                used[0] -= cand_size
                probation[cand] = None
                used[1] += cand_size
            else:
                self._evict(cand, 0)
        # The main segment yields to an oversized newest entry, to an update that grew an
        # entry, or to a window the hill climber widened.
        while used[1] + used[2] > room - used[0]:
            if probation:
                self._evict(next(iter(probation)), 1)
            elif protected:
                self._evict(next(iter(protected)), 2)
            else:  # pragma: no cover - nothing left
                break
        if used[2] > self._protected_max:
            self._demote()

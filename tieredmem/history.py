"""History: an append-only sequence of any length, stored in chunks, loaded lazily.

Layout, under the internal namespace ``("tieredmem", "history", name)``:

- ``t{seq:012d}``: one row per item of the open *tail* (an append writes one small row,
  never a whole chunk), holding the item's encoded bytes;
- ``c{seq:012d}.{count:06d}``: one row per sealed *chunk* of consecutive items: a small
  binary frame (count, append times, lengths, payloads), compressed by the store.  When
  the tail reaches ``chunk_items`` items or ``chunk_bytes`` bytes it becomes a chunk and its
  rows are deleted, in one transaction.

Items are encoded by ``dumps``/``loads`` (orjson by default); the LangGraph checkpointer
reuses the same machinery with LangGraph's serializer for its append-only channel logs.

The in-memory index is the list of chunk keys (read without their values on open) and
their cumulative counts; an index lookup finds the chunk holding a position, and only
the chunks read are loaded.  Recently written chunks stay in the store's hot tier.
"""

from __future__ import annotations

import struct
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate
from typing import Any, overload

import orjson

from .codec import dumps_json
from .errors import InvalidKeyError
from .retention import Retention
from .store import _CONTROL, ColdReadError, Store, memory_only_active

__all__ = ["History"]


def _tail_key(seq: int) -> str:
    return f"t{seq:012d}"


def _chunk_key(seq: int, count: int) -> str:
    return f"c{seq:012d}.{count:06d}"


_HEAD = struct.Struct("<I")


def pack_chunk(entries: Sequence[tuple[float, bytes]]) -> bytes:
    """Binary chunk: count, append times (f64), lengths (u32), then the payloads."""
    n = len(entries)
    return b"".join(
        (
            _HEAD.pack(n),
            struct.pack(f"<{n}d", *(ts for ts, _ in entries)),
            struct.pack(f"<{n}I", *(len(p) for _, p in entries)),
            *(p for _, p in entries),
        )
    )


def unpack_chunk(data: bytes) -> list[tuple[float, bytes]]:
    """Inverse of :func:`pack_chunk`."""
    (n,) = _HEAD.unpack_from(data, 0)
    times = struct.unpack_from(f"<{n}d", data, 4)
    return list(zip(times, chunk_payloads(data)))


def chunk_payloads(data: bytes, begin: int = 0, end: int | None = None) -> list[bytes]:
    """The payloads ``[begin:end]`` of a packed chunk, without decoding the others."""
    (n,) = _HEAD.unpack_from(data, 0)
    lengths = struct.unpack_from(f"<{n}I", data, 4 + 8 * n)
    ends = list(accumulate(lengths, initial=4 + 12 * n))
    stop = n if end is None else min(end, n)
    return [data[ends[i] : ends[i + 1]] for i in range(begin, stop)]


def _json_loads_many(payloads: Sequence[bytes]) -> list[Any]:
    if not payloads:
        return []
    result: list[Any] = orjson.loads(b"[" + b",".join(payloads) + b"]")
    return result


def check_name(kind: str, name: Any) -> str:
    """Validate a history/state name (it becomes a namespace label)."""
    if not isinstance(name, str) or not name or _CONTROL.search(name):
        raise InvalidKeyError(f"{kind} name must be a non-empty string without control characters")
    return name


class _Lock:
    """An RLock that, in a memory-only read (an event loop), never waits: a writer holding
    it may be doing disk I/O, so the reader gives up and retries in a thread instead."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=not memory_only_active()):
            raise ColdReadError

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class _Entry:
    """A tail item: its position and time; its bytes stay in the store (hot tier or
    file), so an open history holds no item data of its own."""

    __slots__ = ("payload", "seq", "size", "ts")

    def __init__(self, seq: int, ts: float, payload: bytes | None, size: int) -> None:
        self.seq = seq
        self.ts = ts
        self.payload = payload
        self.size = size


class History(Sequence[Any]):
    """An append-only, lazily loaded sequence (get one from :meth:`MemorySaver.history`).

    Supports ``append``, ``extend``, ``len``, integer and slice indexing (negative too),
    iteration and :meth:`recent`.  Values returned are the caller's own copies.
    Items must be JSON-compatible (see :mod:`tieredmem.codec`).
    """

    def __init__(
        self,
        store: Store,
        name: str,
        *,
        max_history: int = 100,
        chunk_items: int = 50,
        chunk_bytes: int = 64 * 1024,
        retention: Retention | None = None,
        ns: str | None = None,
        dumps: Callable[[Any], bytes] | None = None,
        loads: Callable[[bytes], Any] | None = None,
    ) -> None:
        self.name = check_name("history", name)
        if chunk_items < 1 or chunk_bytes < 1 or max_history < 0:
            raise ValueError("chunk_items and chunk_bytes must be >= 1, max_history >= 0")
        self._store = store
        self._ns = ns if ns is not None else store.internal_ns("history", name)
        self._dumps = dumps
        self._loads: Callable[[bytes], Any] = loads or orjson.loads
        self._loads_many: Callable[[Sequence[bytes]], list[Any]] = (
            _json_loads_many if loads is None else (lambda ps: [self._loads(p) for p in ps])
        )
        self.max_history = max_history
        self.chunk_items = chunk_items
        self.chunk_bytes = chunk_bytes
        self.retention = retention
        self._lock = _Lock()
        self.chunk_reads = 0
        self._released = False
        self._load()

    # -- index ------------------------------------------------------------------------
    def _load(self) -> None:
        with self._lock:
            chunks: list[tuple[int, int, str]] = []
            tail_keys = []
            for key in self._store.keys(self._ns):
                if key[0] == "c":
                    seq, count = key[1:].split(".")
                    chunks.append((int(seq), int(count), key))
                elif key[0] == "t":
                    tail_keys.append(key)
            self._set_chunks(chunks)
            self._tail: list[_Entry] = []
            self._tail_bytes = 0
            if tail_keys:
                for item in self._store.rows(self._ns, "t", "u"):
                    size = len(item.value)
                    self._tail.append(_Entry(int(item.key[1:]), item._updated, None, size))
                    self._tail_bytes += size
            last_chunk_end = chunks[-1][0] + chunks[-1][1] if chunks else 0
            self._next_seq = max(last_chunk_end, self._tail[-1].seq + 1 if self._tail else 0)

    def _set_chunks(self, chunks: list[tuple[int, int, str]]) -> None:
        self._chunks = chunks
        self._starts: list[int] = []
        total = 0
        for _, count, _ in chunks:
            self._starts.append(total)
            total += count
        self._chunked = total

    def reload(self) -> None:
        """Re-read the index from the store (after another process appended)."""
        self._load()

    # -- writes -----------------------------------------------------------------------
    def append(self, item: Any) -> None:
        """Append one item (committed when this returns, with ``durability="sync"``).

        :raises SerializationError: *item* cannot be encoded; the history is unchanged.
        """
        self._add([self._encode(item, len(self))])

    def extend(self, items: Any) -> None:
        """Append several items atomically (all or none)."""
        base = len(self)
        payloads = [self._encode(item, base + i) for i, item in enumerate(items)]
        if payloads:
            self._add(payloads)

    def _encode(self, item: Any, position: int) -> bytes:
        if self._dumps is not None:
            return self._dumps(item)
        return dumps_json(item, key=f"{self.name}[{position}]")

    def _add(self, payloads: list[bytes]) -> None:
        store = self._store
        with self._lock:
            now = store.clock()
            seq = self._next_seq
            if (
                len(payloads) == 1
                and len(self._tail) + 1 < self.chunk_items
                and self._tail_bytes + len(payloads[0]) < self.chunk_bytes
            ):
                # The common append: one small row; no chunk is due.
                payload = payloads[0]
                # Tail rows are short-lived (rewritten into a chunk soon): no zstd for them.
                store.write([(self._ns, _tail_key(seq), payload)], compress=False)
                entry = _Entry(seq, now, None if self._released else payload, len(payload))
                self._tail.append(entry)
                self._tail_bytes += entry.size
                self._next_seq = seq + 1
                return
            new = [_Entry(seq + i, now, p, len(p)) for i, p in enumerate(payloads)]
            entries = self._tail + new
            chunks: list[list[_Entry]] = []
            current: list[_Entry] = []
            size = 0
            for e in entries:
                current.append(e)
                size += e.size
                if len(current) >= self.chunk_items or size >= self.chunk_bytes:
                    chunks.append(current)
                    current, size = [], 0
            tail = current
            ns = self._ns
            if chunks:
                self._fill([e for c in chunks for e in c])
            puts: list[tuple[str, str, Any]] = [
                (ns, _chunk_key(c[0].seq, len(c)), pack_chunk([(e.ts, e.payload) for e in c]))  # type: ignore[misc]
                for c in chunks
            ]
            fresh = {e.seq for e in new}
            rows = [(ns, _tail_key(e.seq), e.payload) for e in tail if e.seq in fresh]
            # Tail rows that became part of a chunk are deleted in the same transaction.
            # (Point deletes, not a range: they stay in the write batch with durability="batch".)
            sealed = {e.seq for c in chunks for e in c}
            deletes = [(ns, _tail_key(e.seq)) for e in self._tail if e.seq in sealed]
            if puts:
                store.write(puts + rows, deletes=deletes)
            else:
                # Tail rows are short-lived (rewritten into a chunk soon): no zstd for them.
                store.write(rows, compress=False)
            for c in chunks:
                self._chunks.append((c[0].seq, len(c), _chunk_key(c[0].seq, len(c))))
                self._starts.append(self._chunked)
                self._chunked += len(c)
            self._tail = tail
            if self._released:
                for e in tail:
                    e.payload = None  # the store has it
            self._tail_bytes = sum(e.size for e in tail)
            self._next_seq = seq + len(payloads)

    def _fill(self, entries: Sequence[_Entry]) -> None:
        """Load the bytes of tail entries from the store (usually its hot tier)."""
        missing = [e for e in entries if e.payload is None]
        if not missing:
            return
        items = self._store.read_many([(self._ns, _tail_key(e.seq)) for e in missing])
        for e, item in zip(missing, items):
            if item is None:
                raise RuntimeError(
                    f"history {self.name!r}: item {e.seq} vanished (another process wrote "
                    "this history?); call reload()"
                )
            e.payload = item.value

    def _tail_payloads(self, entries: Sequence[_Entry]) -> list[bytes]:
        entries = list(entries)
        self._fill(entries)
        out = [e.payload for e in entries]
        if self._released:
            for e in entries:
                e.payload = None
        return out  # type: ignore[return-value]

    def release(self) -> None:
        """Drop the tail's bytes from this object (they stay in the store and are read
        back when needed); a MemorySaver does this for histories it has not used lately."""
        with self._lock:
            self._released = True
            for e in self._tail:
                e.payload = None

    def retain(self) -> None:
        """Keep tail bytes in this object again (the default): faster ``recent()``."""
        self._released = False

    # -- reads ------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._chunked + len(self._tail)

    def _load_chunk(self, key: str) -> list[tuple[float, bytes]] | None:
        item = self._store.read(self._ns, key)
        self.chunk_reads += 1
        return unpack_chunk(item.value) if item is not None else None

    def _chunk_items(self, index: int) -> list[Any]:
        """Decoded items of chunk *index*."""
        return self._loads_many(self._chunk_payloads(index))

    def _chunk_payloads(self, index: int, begin: int = 0, end: int | None = None) -> list[bytes]:
        """Encoded items ``[begin:end]`` of chunk *index* (retrying if retention rewrote it
        meanwhile)."""
        for _ in range(3):
            with self._lock:
                key = self._chunks[index][2] if index < len(self._chunks) else None
            if key is not None:
                item = self._store.read(self._ns, key)
                self.chunk_reads += 1
                if item is not None:
                    return chunk_payloads(item.value, begin, end)
            self._load()
        raise RuntimeError(f"history {self.name!r} changed while being read; retry")

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return self._slice(index)
        with self._lock:
            n = len(self)
            i = index + n if index < 0 else index
            if not 0 <= i < n:
                raise IndexError(f"history index {index} out of range ({n} items)")
            if i >= self._chunked:
                return self._loads(self._tail_payloads([self._tail[i - self._chunked]])[0])
            c = bisect_right(self._starts, i) - 1
            offset = i - self._starts[c]
        return self._loads(self._chunk_payloads(c, offset, offset + 1)[0])

    def _slice(self, s: slice) -> list[Any]:
        with self._lock:
            positions = range(len(self))[s]
            if not positions:
                return []
            if s.step not in (None, 1):
                return [self[i] for i in positions]
            lo, hi = positions.start, positions.stop
            chunked = self._chunked
            starts = list(self._starts)
            tail = self._tail_payloads(self._tail[max(lo - chunked, 0) : max(hi - chunked, 0)])
        payloads: list[bytes] = []
        if lo < chunked:
            first = bisect_right(starts, lo) - 1
            last = bisect_right(starts, min(hi, chunked) - 1) - 1
            for c in range(first, last + 1):
                payloads += self._chunk_payloads(c, max(lo - starts[c], 0), hi - starts[c])
        # One decoding call for the whole range (orjson parses one array fastest).
        return self._loads_many(payloads + tail)

    def __iter__(self) -> Iterator[Any]:
        # One chunk in memory at a time, whatever the length.
        with self._lock:
            n_chunks = len(self._chunks)
            tail = self._tail_payloads(self._tail)
        for c in range(n_chunks):
            yield from self._chunk_items(c)
        for payload in tail:
            yield self._loads(payload)

    def recent(self, n: int | None = None) -> list[Any]:
        """The last *n* items (``max_history`` by default), oldest first."""
        n = self.max_history if n is None else n
        if n <= 0:
            return []
        return self._slice(slice(-n, None))

    def stats(self) -> dict[str, Any]:
        """Items, chunks, tail size and chunk reads of this history object."""
        with self._lock:
            return {
                "name": self.name,
                "items": len(self),
                "chunks": len(self._chunks),
                "tail_items": len(self._tail),
                "tail_bytes": self._tail_bytes,
                "chunk_reads": self.chunk_reads,
            }

    def __repr__(self) -> str:
        return f"<History {self.name!r} items={len(self)} chunks={len(self._chunks)}>"

    # -- retention --------------------------------------------------------------------
    def apply_retention(self, policy: Retention) -> int:
        """Delete what *policy* no longer keeps; return the number of items deleted.

        ``keep`` runs without any lock held.  Chunks that keep pinned items are rewritten
        with just those items.
        """
        if not policy.active:
            return 0
        now = self._store.clock()
        horizon = policy.horizon(now)
        deleted = 0
        with self._lock:
            total = len(self)
            cut = total - policy.max_items if policy.max_items is not None else 0
            chunks = list(self._chunks)
            starts = list(self._starts)
            tail = list(self._tail)
            chunked = self._chunked

        def candidate(position: int, ts: float) -> bool:
            return position < cut or (horizon is not None and ts < horizon)

        ns = self._ns
        for c, (seq, count, key) in enumerate(chunks):
            if not candidate(starts[c], float("inf")) and horizon is None:
                break
            chunk = self._load_chunk(key)
            if chunk is None:
                continue
            if not any(candidate(starts[c] + i, ts) for i, (ts, _) in enumerate(chunk)):
                break  # positions and times only grow: nothing later is due either
            kept = [
                (ts, p)
                for i, (ts, p) in enumerate(chunk)
                if not candidate(starts[c] + i, ts) or policy.pinned(self._loads(p))
            ]
            if len(kept) == count:
                continue
            puts: list[tuple[str, str, Any]] = []
            if kept:
                puts.append((ns, _chunk_key(seq, len(kept)), pack_chunk(kept)))
            self._store.write(puts, deletes=[(ns, key)])
            deleted += count - len(kept)
        doomed = [
            e.seq
            for i, e in enumerate(tail)
            if candidate(chunked + i, e.ts)
            and not policy.pinned(self._loads(self._tail_payloads([e])[0]))
        ]
        with self._lock:
            # Only rows still in the tail: an append may have sealed some into a chunk.
            live = {e.seq for e in self._tail}
            doomed = [seq for seq in doomed if seq in live]
            if doomed:
                self._store.write(deletes=[(ns, _tail_key(seq)) for seq in doomed])
                deleted += len(doomed)
            if deleted:
                self._load()
        return deleted

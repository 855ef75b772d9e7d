"""History: an append-only sequence of any length, stored in chunks, loaded lazily.

Layout, under the internal namespace ``("tieredmem", "history", name)``:

- ``s{slot:06d}``: one row per item of the open *tail* (an append writes one small row,
  never a whole chunk): the item's sequence number (8 bytes) and its encoded bytes.  Item
  ``seq`` goes to slot ``seq - base``; with ``durability="batch"`` the row waits in the
  History until the store's next commit (see :class:`_Deferred`);
- ``c{seq:012d}.{count:06d}``: one row per sealed *chunk* of consecutive items: a small
  binary frame (count, append times, lengths, payloads), compressed by the store.  When
  the tail reaches ``chunk_items`` items or ``chunk_bytes`` bytes it becomes a chunk, in one
  transaction that also moves ``base`` past it;
- ``f``: ``base``, the first sequence number not sealed into a chunk.

Sealing leaves the slot rows in place: the next tail overwrites them, and a slot row
holding a number below ``base`` is a leftover that reads ignore.  So after the first
chunk an append *updates* a row of the same size in place (one page written per commit)
instead of inserting a row that a seal deletes again: SQLite writes a sequential insert
into a WITHOUT ROWID table as 2.5 pages a commit on average (its sibling rebalancing),
and the range delete of a seal frees pages that the next inserts allocate again.
Files written before slots (tail rows ``t{seq:012d}``) are migrated when a history is
opened.

Items are encoded by ``dumps``/``loads`` (orjson by default); the LangGraph checkpointer
reuses the same machinery with LangGraph's serializer for its append-only channel logs.

The in-memory index is the chunks' sequence numbers and counts (read from their keys,
without their values, on open) and their cumulative counts; an index lookup finds the
chunk holding a position, and only the chunks read are loaded (and kept in the store's
hot tier).  The History holds its open tail and its last ``max_history`` items itself.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import threading
import weakref
from array import array
from bisect import bisect_right
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import accumulate
from typing import Any, overload

import orjson

from .codec import JSON_OPTIONS as _JSON_OPTIONS
from .codec import check_finite, dumps_json
from .errors import CorruptValueError, SharingError
from .names import check_name
from .retention import Retention
from .shared import AlreadyOpen, SharedObjects
from .store import ColdReadError, Store, memory_only_active

__all__ = ["History", "TailBudget", "decode_row", "encode_row"]


def _tail_key(seq: int) -> str:
    """Key of a tail row in the format before slots (read and migrated by ``_load``)."""
    return f"t{seq:012d}"


def _slot_key(slot: int) -> str:
    return f"s{slot:06d}"


#: Key of the row holding the first sequence number not sealed into a chunk (the tail's
#: base): slot rows holding an older number are left over from an earlier tail.
_BASE_KEY = "f"
_SEQ = struct.Struct("<q")
_SLOT_ROW = re.compile(r"s[0-9]{6}")
_CHUNK_ROW = re.compile(r"c[0-9]{12}\.[0-9]{6}")


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


def _item_data(payload: bytes) -> dict[str, Any]:
    # A JSON item as its value (when it encodes back to the very same bytes), any other
    # item (a LangGraph log's serializer output) as base64.
    try:
        value = orjson.loads(payload)
        if dumps_json(value) == payload:
            return {"item": value}
    except (orjson.JSONDecodeError, TypeError, ValueError):
        pass
    return {"bytes": base64.b64encode(payload).decode("ascii")}


def _item_payload(data: Mapping[str, Any]) -> bytes:
    if "item" in data:
        return dumps_json(data["item"])
    return base64.b64decode(data["bytes"], validate=True)


def decode_row(key: str, payload: bytes) -> dict[str, Any] | None:
    """A history row (a chunk, a slot of the open tail or the tail's base) as JSON-ready
    data, for ``tieredmem export``: ``{"base": n}``, ``{"slot": {"seq": n, "item": v}}``
    or ``{"chunk": [{"at": t, "item": v}, ...]}`` (``"bytes"``, base64, instead of
    ``"item"`` for an item that is not JSON).  :func:`encode_row` gives the payload back
    byte for byte; ``None`` when *key* names no history row or the payload would not
    round-trip exactly (the caller then keeps it as bytes).

    >>> decode_row("f", _SEQ.pack(100))
    {'base': 100}
    >>> data = decode_row("c000000000000.000001", pack_chunk([(1.5, b'{"a":1}')]))
    >>> data
    {'chunk': [{'at': 1.5, 'item': {'a': 1}}]}
    >>> encode_row("c000000000000.000001", data) == pack_chunk([(1.5, b'{"a":1}')])
    True
    """
    try:
        if key == _BASE_KEY and len(payload) == _SEQ.size:
            data: dict[str, Any] = {"base": _SEQ.unpack(payload)[0]}
        elif _SLOT_ROW.fullmatch(key) and len(payload) >= _SEQ.size:
            data = {"slot": {"seq": _SEQ.unpack_from(payload)[0], **_item_data(payload[8:])}}
        elif _CHUNK_ROW.fullmatch(key):
            data = {"chunk": [{"at": t, **_item_data(p)} for t, p in unpack_chunk(payload)]}
        else:
            return None
        if encode_row(key, data) != payload:
            return None
    except (struct.error, ValueError, KeyError, TypeError):
        return None
    return data


def encode_row(key: str, data: Mapping[str, Any]) -> bytes:
    """The payload of the history row *key* described by *data* (see :func:`decode_row`).

    :raises ValueError: *data* describes no history row.
    """
    try:
        if "base" in data:
            return _SEQ.pack(int(data["base"]))
        if "slot" in data:
            slot = data["slot"]
            return _SEQ.pack(int(slot["seq"])) + _item_payload(slot)
        if "chunk" in data:
            return pack_chunk([(float(e["at"]), _item_payload(e)) for e in data["chunk"]])
    except (KeyError, TypeError, struct.error, binascii.Error) as exc:
        raise ValueError(f"not a history row for key {key!r}: {exc}") from None
    raise ValueError(f"not a history row for key {key!r}")


def _json_loads_many(payloads: Sequence[bytes]) -> list[Any]:
    if not payloads:
        return []
    return _loads_array(b"[" + b",".join(payloads) + b"]")


def _loads_array(data: bytes) -> list[Any]:
    """Items joined as one JSON array, decoded; a damaged one is a typed error."""
    try:
        result: list[Any] = orjson.loads(data)
    except orjson.JSONDecodeError as exc:  # a chunk written before frame checksums
        raise CorruptValueError(f"a stored history item is damaged ({exc})") from None
    return result


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


#: Bytes charged per held item on top of its payload (the bytes object and list slot).
_ITEM_OVERHEAD = 48


class TailBudget:
    """A byte budget shared by the open tails of many histories.

    Each history charges the bytes it holds (its open tail and its last ``max_history``
    sealed items, kept so that ``recent()`` reads nothing from the store); when the total goes
    over ``max_bytes`` the histories used least recently drop what they hold (it stays
    in the store and is read back when they are used again).  So memory stays bounded
    however many histories are open.  Thread-safe.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self.drops = 0
        self._lock = threading.Lock()
        self._charges: OrderedDict[int, tuple[weakref.ref[History], int]] = OrderedDict()
        self._dead: deque[int] = deque()

    def charge(self, history: History, nbytes: int) -> None:
        """Set what *history* holds (and mark it most recently used); drop others' tails
        while the total is over budget."""
        key = id(history)
        victims: list[History] = []
        with self._lock:
            while self._dead:
                gone = self._dead.popleft()
                entry = self._charges.get(gone)
                if entry is not None and entry[0]() is None:  # not a new object at that id
                    self._forget(gone)
            old = self._charges.pop(key, None)
            if old is not None:
                ref = old[0]
                self.used -= old[1]
            else:
                ref = weakref.ref(history, self._reaper(key))
            self._charges[key] = (ref, nbytes)
            self.used += nbytes
            while self.used > self.max_bytes and len(self._charges) > 1:
                other, (other_ref, held) = self._charges.popitem(last=False)
                if other == key:  # never the caller: put it back as most recent
                    self._charges[key] = (other_ref, held)
                    continue
                self.used -= held
                victim = other_ref()
                if victim is not None:
                    victims.append(victim)
        for victim in victims:
            if victim._drop_held():
                self.drops += 1

    def _reaper(self, key: int) -> Callable[[object], None]:
        # Runs when a history is garbage-collected (maybe inside this budget's lock):
        # only queue its key; the next charge() forgets it.
        dead = self._dead

        def reap(_: object) -> None:
            dead.append(key)

        return reap

    def touch(self, history: History) -> None:
        """Mark *history* most recently used."""
        with self._lock:
            if id(history) in self._charges:
                self._charges.move_to_end(id(history))

    def forget(self, history: History) -> None:
        """*history* holds nothing any more."""
        with self._lock:
            self._forget(id(history))

    def _forget(self, key: int) -> None:
        old = self._charges.pop(key, None)
        if old is not None:
            self.used -= old[1]


_budgets: weakref.WeakKeyDictionary[Store, TailBudget] = weakref.WeakKeyDictionary()
_budgets_lock = threading.Lock()


def default_budget(store: Store) -> TailBudget:
    """The budget shared by the histories of *store* that were given none: an eighth of
    the store's hot-tier budget."""
    with _budgets_lock:
        budget = _budgets.get(store)
        if budget is None:
            budget = _budgets[store] = TailBudget(store.hot_budget // 8)
        return budget


class _Deferred:
    """Tail rows that the histories of one ``durability="batch"`` store have not handed to
    the store yet.

    An append to such a history writes nothing: the row waits here, and every flush (every
    commit) first hands all waiting rows over (a flush hook), so a commit includes every
    item appended before it, exactly as if each append had been a batched write.  Rows
    sealed into a chunk before that are never written at all.  The registry holds the
    histories with waiting rows, so none is lost if its object is dropped; over the
    store's ``max_pending_bytes`` the appender flushes, which bounds what waits here.
    """

    def __init__(self, store: Store) -> None:
        self.lock = threading.Lock()
        self.dirty: dict[int, History] = {}
        self.nbytes = 0
        self.limit: int = store.raw.max_pending_bytes
        self._store = weakref.ref(store)

    def hand_over(self) -> None:
        """The flush hook: write every waiting row (into the store's batch)."""
        store = self._store()
        if store is None:
            return
        with self.lock:
            if not self.dirty:
                return
            waiting = [(h, h._unwritten) for h in self.dirty.values()]
            rows = [h._slot_row(seq, p) for h, unwritten in waiting for seq, p in unwritten]
            # Under the lock: a seal claims a history's waiting rows under it.
            store.raw.write(rows, compress=False, cache_puts=False)
            for h, _ in waiting:
                h._unwritten = []
            self.dirty.clear()
            self.nbytes = 0

    def unclaim(self, history: History, rows: list[tuple[int, bytes]]) -> None:
        """Give back rows :meth:`claim` took (their write failed)."""
        with self.lock:
            history._unwritten = rows + history._unwritten
            self.dirty[id(history)] = history
            self.nbytes += sum(len(p) for _, p in rows)

    def claim(self, history: History) -> list[tuple[int, bytes]]:
        """Take *history*'s waiting rows (its caller writes them itself, or never)."""
        with self.lock:
            rows = history._unwritten
            if rows:
                history._unwritten = []
                self.dirty.pop(id(history), None)
                self.nbytes -= sum(len(p) for _, p in rows)
            return rows


_deferred: weakref.WeakKeyDictionary[Store, _Deferred] = weakref.WeakKeyDictionary()


def _deferred_for(store: Store) -> _Deferred:
    with _budgets_lock:
        registry = _deferred.get(store)
        if registry is None:
            registry = _deferred[store] = _Deferred(store)
            store.raw.add_flush_hook(registry.hand_over)
        return registry


#: Every live History, by store and joined namespace (see :meth:`History.shared`).
open_histories: SharedObjects[History] = SharedObjects()


def _same_codec(a: object, b: object) -> bool:
    try:
        return a is b or bool(a == b)
    except Exception:  # an __eq__ that cannot compare: not the same
        return False


class History(Sequence[Any]):
    """An append-only, lazily loaded sequence (get one from :meth:`MemorySaver.history`).

    Supports ``append``, ``extend``, ``len``, integer and slice indexing (negative too),
    iteration and :meth:`recent`.  Values returned are the caller's own copies.
    Items must be JSON-compatible (see :mod:`tieredmem.codec`).

    The open tail's items (and the last ``max_history`` sealed ones) are held by the object,
    charged to *budget* (shared with other histories; by default an eighth of the
    store's hot-tier budget): over budget, the least recently used histories drop them
    and read them back from the store when used again.

    There is at most one live History per (store, namespace) in a process: every user of
    the store gets it from :meth:`shared` (as :meth:`MemorySaver.history` and the
    LangGraph checkpointer do).  The constructor builds it when none is open and raises
    :class:`SharingError` when one is.  *codec* names the encoding (``dumps``/``loads``):
    users of one history must give equal codecs (default: ``(dumps, loads)``).
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
        loads_many: Callable[[Sequence[bytes]], list[Any]] | None = None,
        budget: TailBudget | None = None,
        codec: object = None,
    ) -> None:
        self.name = check_name("history", name)
        if chunk_items < 1 or chunk_bytes < 1 or max_history < 0:
            raise ValueError("chunk_items and chunk_bytes must be >= 1, max_history >= 0")
        self._store = store
        self._ns = ns if ns is not None else store.raw.internal_ns("history", name)
        if open_histories.get(store, self._ns) is not None:
            raise self._already_open()
        self._codec: object = codec if codec is not None else (dumps, loads)
        self._dumps = dumps
        self._loads: Callable[[bytes], Any] = loads or orjson.loads
        if loads_many is None:
            loads_many = (
                _json_loads_many if loads is None else (lambda ps: [self._loads(p) for p in ps])
            )
        self._loads_many = loads_many
        self.max_history = max_history
        self.chunk_items = chunk_items
        self.chunk_bytes = chunk_bytes
        self.retention = retention
        self._lock = _Lock()
        self._budget = budget if budget is not None else default_budget(store)
        self.chunk_reads = 0
        self.tail_loads = 0
        # Rows of the tail not handed to the store yet (``durability="batch"``), guarded
        # by the registry's lock; never empty while the tail's payloads are dropped.
        self._unwritten: list[tuple[int, bytes]] = []
        self._registry = _deferred_for(store) if store.durability == "batch" else None
        self._load()
        if open_histories.add(store, self._ns, self) is not self:
            raise self._already_open()  # another thread opened it meanwhile

    def _already_open(self) -> AlreadyOpen:
        return AlreadyOpen(
            f"history {self.name!r} is already open on this store: use "
            "History.shared(store, name) (or MemorySaver.history) to get that object; "
            "a second one would not see its writes"
        )

    @classmethod
    def shared(
        cls,
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
        loads_many: Callable[[Sequence[bytes]], list[Any]] | None = None,
        budget: TailBudget | None = None,
        codec: object = None,
    ) -> History:
        """The History *name* of *store* (in namespace *ns*, if given): the live one if a
        user of the store has it open, else a new one with these options.

        Every user of one store shares the object, so each sees the others' appends at
        once (other handles and processes are seen through the store's generation).  The
        first creator's options win: a later request's *max_history*, chunk sizes,
        *retention*, *budget* and *loads_many* are ignored (they shape memory and
        chunking, never what is read back).  The encoding must agree.

        :raises SharingError: the history is open with another *codec* (or other
            ``dumps``/``loads``): one of them would write items the other cannot read.
        """
        check_name("history", name)
        key = ns if ns is not None else store.raw.internal_ns("history", name)
        wanted = codec if codec is not None else (dumps, loads)
        live = open_histories.open(
            store,
            key,
            lambda: cls(
                store,
                name,
                max_history=max_history,
                chunk_items=chunk_items,
                chunk_bytes=chunk_bytes,
                retention=retention,
                ns=key,
                dumps=dumps,
                loads=loads,
                loads_many=loads_many,
                budget=budget,
                codec=codec,
            ),
        )
        if not _same_codec(live._codec, wanted):
            raise SharingError(
                f"history {live.name!r} is open on this store with another encoding "
                "(dumps/loads, or a serializer): every user of one history must encode "
                "its items the same way"
            )
        return live

    # -- index ------------------------------------------------------------------------
    def _load(self) -> None:
        """(Re)read the index and the open tail from the store.

        Everything is read before anything is assigned, so a read that fails midway
        (:class:`ColdReadError` in a memory-only read) leaves the object as it was.
        """
        if memory_only_active():
            raise ColdReadError  # reading the index is I/O: not on an event loop
        with self._lock:
            store, ns = self._store, self._ns
            if self._unwritten:
                # Rows appended here and not committed yet (durability="batch") go first:
                # the index read below must include them.
                store.flush()
            # The generation before the reads: a write by another process during them
            # moves it again, and the next use reloads once more.
            generation = store.generation()
            chunks: list[tuple[int, int, str]] = []
            kinds: set[str] = set()
            for key in store.raw.keys(ns):
                if key[0] == "c":
                    seq, count = key[1:].split(".")
                    chunks.append((int(seq), int(count), key))
                kinds.add(key[0])
            base = chunks[-1][0] + chunks[-1][1] if chunks else 0
            if _BASE_KEY in kinds:
                (value,) = store.raw.read_values(ns, [_BASE_KEY], cache=False)
                if value is not None:
                    base = max(base, _SEQ.unpack(value)[0])
            # The open tail: sequence numbers and append times always; the encoded items
            # (``_payloads``) while the budget lets this object hold them.
            tail: list[tuple[int, float, bytes]] = []
            if "s" in kinds:
                for item in store.raw.rows(ns, "s", "t"):
                    (seq,) = _SEQ.unpack_from(item.value)
                    if seq >= base:  # else left over from an earlier tail
                        tail.append((seq, item.updated, item.value[_SEQ.size :]))
            if "t" in kinds:
                tail += self._migrate_tail_rows(base)
            tail.sort()
            self._set_chunks(chunks)
            self._base = base
            self._seqs = array("q", [seq for seq, _, _ in tail])
            self._times = array("d", [ts for _, ts, _ in tail])
            payloads = [p for _, _, p in tail]
            self._tail_bytes = sum(len(p) for p in payloads)
            self._payloads: list[bytes] | None = payloads
            # The last sealed items, once known (recent() then reads no chunk).
            self._window: list[bytes] | None = None
            # recent()'s items joined as one JSON array, until the next append:
            # (n, len(self), bytes); charged to the budget with the rest.
            self._joined: tuple[int, int, bytes] | None = None
            self._held = self._tail_bytes + _ITEM_OVERHEAD * len(payloads)
            self._next_seq = max(base, self._seqs[-1] + 1 if self._seqs else 0)
            self._generation = generation
            self._budget.charge(self, self._held)

    def _sync(self) -> None:
        """Reload the index and what this object holds if another handle, process or host
        wrote to the store since they were read (its generation moved): every public
        read and write starts here, so a held History sees other processes' appends at
        its next use and appends after them."""
        if self._store.generation() != self._generation:
            self._load()

    def _length(self) -> int:
        """Items in the history as this object knows them (no coherence check)."""
        return self._chunked + len(self._seqs)

    def _migrate_tail_rows(self, base: int) -> list[tuple[int, float, bytes]]:
        """Move tail rows of the format before slots (``t{seq}``) to slots, in one write;
        return them as ``(seq, time, payload)``."""
        store, ns = self._store, self._ns
        tail = [
            (int(item.key[1:]), item.updated, item.value) for item in store.raw.rows(ns, "t", "u")
        ]
        puts = [(ns, _slot_key(seq - base), _SEQ.pack(seq) + p) for seq, _, p in tail]
        store.raw.write(
            puts, deletes=[(ns, _tail_key(seq)) for seq, _, _ in tail], tombstones=False
        )
        return tail

    def _slot_row(self, seq: int, payload: bytes) -> tuple[str, str, bytes]:
        """``(ns, key, value)`` of the tail row of item *seq* (see the module doc)."""
        return self._ns, _slot_key(seq - self._base), _SEQ.pack(seq) + payload

    def _set_chunks(self, chunks: list[tuple[int, int, str]]) -> None:
        # The index in arrays (a 1M-item history has 20,000 chunks: 0.5 MB, not 4 MB of
        # tuples and key strings); a chunk's key is rebuilt from its seq and count.
        self._cseqs = array("q", [seq for seq, _, _ in chunks])
        self._ccounts = array("q", [count for _, count, _ in chunks])
        self._starts = array("q")
        total = 0
        for count in self._ccounts:
            self._starts.append(total)
            total += count
        self._chunked = total

    def reload(self) -> None:
        """Re-read the index from the store now.

        Not needed for coherence: every use first checks whether another handle, process
        or host wrote (the store's :meth:`~tieredmem.Store.generation`) and reloads then.
        """
        self._load()

    def invalidate(self) -> None:
        """Re-read the index at the next use: for a user of this store that rewrote or
        deleted the history's rows other than through this object (a thread deleted or
        copied over by a checkpointer); costs nothing until then."""
        with self._lock:
            self._generation = -1

    # -- what this object holds ----------------------------------------------------------
    def _drop_held(self) -> bool:
        """Drop the tail's and the last sealed items (called by the budget); skipped
        if the history is busy in another thread."""
        lock = self._lock._lock
        if not lock.acquire(blocking=False):
            return False
        try:
            self._window = self._joined = None
            if self._unwritten:  # not in the store yet: keep the tail
                self._held = self._tail_bytes + _ITEM_OVERHEAD * len(self._seqs)
                return True
            if self._payloads is not None and self._seqs:
                self._payloads = None
            elif self._payloads is not None:
                self._payloads = []
            self._held = 0
        finally:
            lock.release()
        return True

    def _tail_items(self) -> list[bytes]:
        """The tail's encoded items, read back from the store if they were dropped.
        Call with the lock held."""
        payloads = self._payloads
        if payloads is not None:
            return payloads
        keys = [_slot_key(seq - self._base) for seq in self._seqs]
        values = self._store.raw.read_values(self._ns, keys, cache=False)
        payloads = []
        for seq, value in zip(self._seqs, values):
            if value is None or _SEQ.unpack_from(value)[0] != seq:
                raise RuntimeError(
                    f"history {self.name!r}: item {seq} vanished (another process wrote "
                    "this history?); call reload()"
                )
            payloads.append(value[_SEQ.size :])
        self.tail_loads += 1
        self._payloads = payloads
        self._held = self._tail_bytes + _ITEM_OVERHEAD * len(payloads) + _held_bytes(self._window)
        self._budget.charge(self, self._held)
        return payloads

    def release(self) -> None:
        """Drop the items this object holds now (they stay in the store and are read
        back when needed); a MemorySaver does this for histories it has not used lately."""
        with self._lock:
            self._window = self._joined = None
            if self._unwritten:  # not in the store yet: keep the tail
                return
            self._payloads = None if self._seqs else []
            self._held = 0
        self._budget.forget(self)

    # -- writes -----------------------------------------------------------------------
    def append(self, item: Any) -> None:
        """Append one item (committed when this returns, with ``durability="sync"``).

        The item is encoded now: changing *item* afterwards changes nothing stored.

        :raises SerializationError: *item* cannot be encoded; the history is unchanged.
        """
        if self._dumps is None:
            try:
                # dumps_json without its error path: orjson's buffer is over-allocated,
                # so keep a right-sized copy.
                payload = bytes(memoryview(orjson.dumps(item, option=_JSON_OPTIONS)))
            except TypeError:
                payload = self._encode(item, self._length())  # raises, naming the item
            if b"null" in payload:  # NaN and infinities are written as null: look closer
                check_finite(item, payload, key=f"{self.name}[{self._length()}]")
        else:
            payload = self._dumps(item)
        self._add([payload])

    def extend(self, items: Any) -> None:
        """Append several items atomically (all or none), encoded now."""
        base = self._length()  # for error messages only: _add re-reads the tail
        payloads = [self._encode(item, base + i) for i, item in enumerate(items)]
        if payloads:
            self._add(payloads)

    def _encode(self, item: Any, position: int) -> bytes:
        if self._dumps is not None:
            return self._dumps(item)
        return dumps_json(item, key=f"{self.name}[{position}]")

    def _add(self, payloads: list[bytes]) -> None:
        """Append encoded items after the tail as the store has it now (the one
        coherence check of an append)."""
        store = self._store
        if self._registry is not None and not store.raw.in_transaction():
            self._sync()
            self._add_locked(payloads)  # durability="batch": see _Deferred
            return
        # Serializable across handles and processes: the transaction holds the store's
        # write lock from before the tail is re-read to after the rows are committed, so
        # two processes appending at once never pick the same sequence numbers (slots).
        with store.transaction():
            self._sync()
            self._add_locked(payloads)

    def _add_locked(self, payloads: list[bytes]) -> None:
        store = self._store
        with self._lock:
            self._joined = None
            now = store.clock()
            seq = self._next_seq
            if (
                len(payloads) == 1
                and len(self._seqs) + 1 < self.chunk_items
                and self._tail_bytes + len(payloads[0]) < self.chunk_bytes
            ):
                # The common append: one small row; no chunk is due.  The object holds
                # the item itself, so the store's hot tier does not keep a second copy.
                payload = payloads[0]
                registry = self._registry
                over = False
                if (
                    registry is not None
                    and self._payloads is not None
                    and not store.raw.in_transaction()
                ):
                    # durability="batch": the row waits for the next flush (see _Deferred);
                    # this object holds it meanwhile (a dropped tail is written through).
                    if store.closed:
                        store.raw.write([])  # raises StoreClosedError
                    with registry.lock:
                        self._unwritten.append((seq, payload))
                        registry.dirty[id(self)] = self
                        registry.nbytes += len(payload)
                        over = registry.nbytes >= registry.limit
                else:
                    # A tail row's item is rewritten into a chunk soon: no zstd.
                    store.raw.write_row(*self._slot_row(seq, payload))
                self._seqs.append(seq)
                self._times.append(now)
                self._tail_bytes += len(payload)
                self._next_seq = seq + 1
                held = self._payloads
                if held is not None:
                    held.append(payload)
                    self._held += len(payload) + _ITEM_OVERHEAD
                    self._budget.charge(self, self._held)
                if over:
                    store.flush()  # back-pressure, as for the store's own batch
                return
            self._seal(payloads, seq, now)

    def _seal(self, payloads: list[bytes], seq: int, now: float) -> None:
        """Append *payloads* when chunks are due: seal them in the same transaction."""
        ns = self._ns
        old_seqs = list(self._seqs)
        items = self._tail_items() + payloads
        # Tail rows [written:] are not in the store yet (durability="batch"): sealed ones
        # are never written, the others are written below.
        registry = self._registry
        claimed = registry.claim(self) if registry is not None else []
        written = len(old_seqs) - len(claimed)
        seqs = old_seqs + list(range(seq, seq + len(payloads)))
        times = list(self._times) + [now] * len(payloads)
        bounds: list[tuple[int, int]] = []  # [begin, end) of each sealed chunk in items
        begin = size = 0
        for i, p in enumerate(items):
            size += len(p)
            if i + 1 - begin >= self.chunk_items or size >= self.chunk_bytes:
                bounds.append((begin, i + 1))
                begin, size = i + 1, 0
        puts: list[tuple[str, str, Any]] = [
            (ns, _chunk_key(seqs[b], e - b), pack_chunk(list(zip(times[b:e], items[b:e]))))
            for b, e in bounds
        ]
        old_base = self._base
        if not bounds:
            base, first = old_base, written  # only the rows not written yet
        else:
            # The base moves past the chunks, so the items left in the tail move to new
            # slots.  Slots of sealed items are left for the next tail to overwrite.
            base = seqs[begin] if begin < len(items) else seq + len(payloads)
            puts.append((ns, _BASE_KEY, _SEQ.pack(base)))
            first = begin
        rows = [
            (ns, _slot_key(seqs[i] - base), _SEQ.pack(seqs[i]) + items[i])
            for i in range(first, len(items))
        ]
        # Rows of moved items under the old base go (a load would see them twice), unless
        # a moved row took their slot.
        fresh = {key for _, key, _ in rows}
        moved_from = (
            {_slot_key(seqs[i] - old_base) for i in range(begin, written)} if bounds else set()
        )
        moved = [(ns, key) for key in sorted(moved_from - fresh)]
        try:
            # Chunks are not kept in the hot tier on write: this object holds the newest
            # items itself (``_window``), and a chunk read later is cached by the read path.
            self._store.raw.write(
                puts + rows, deletes=moved, compress=bool(puts), cache_puts=False, tombstones=False
            )
        except BaseException:
            if registry is not None and claimed:
                registry.unclaim(self, claimed)
            raise
        self._base = base
        for b, e in bounds:
            self._cseqs.append(seqs[b])
            self._ccounts.append(e - b)
            self._starts.append(self._chunked)
            self._chunked += e - b
        if bounds:
            # The last max_history sealed items (at least the newest chunk's), so that
            # recent() reads nothing from the store.
            newly = items[: bounds[-1][1]]
            keep = max(self.max_history, bounds[-1][1] - bounds[-1][0])
            window = self._window
            self._window = (window + newly if window is not None else newly)[-keep:]
        tail = items[begin:]
        self._seqs = array("q", seqs[begin:])
        self._times = array("d", times[begin:])
        self._payloads = tail
        self._tail_bytes = sum(len(p) for p in tail)
        self._next_seq = seq + len(payloads)
        self._held = self._tail_bytes + _ITEM_OVERHEAD * len(tail) + _held_bytes(self._window)
        self._budget.charge(self, self._held)

    # -- reads ------------------------------------------------------------------------
    def __len__(self) -> int:
        self._sync()
        return self._chunked + len(self._seqs)

    def _load_chunk(self, key: str) -> list[tuple[float, bytes]] | None:
        (value,) = self._store.raw.read_values(self._ns, [key])
        self.chunk_reads += 1
        return unpack_chunk(value) if value is not None else None

    def _chunk_items(self, index: int) -> list[Any]:
        """Decoded items of chunk *index*."""
        return self._loads_many(self._chunk_payloads(index))

    def _chunk_payloads(self, index: int, begin: int = 0, end: int | None = None) -> list[bytes]:
        """Encoded items ``[begin:end]`` of chunk *index* (retrying if retention rewrote it
        meanwhile)."""
        for _ in range(3):
            with self._lock:
                key = (
                    _chunk_key(self._cseqs[index], self._ccounts[index])
                    if index < len(self._cseqs)
                    else None
                )
                window = self._window
                if window is not None and key is not None:
                    # The window holds the sealed items [_chunked - len(window), _chunked).
                    offset = self._starts[index] - (self._chunked - len(window))
                    if offset >= 0:
                        count = self._ccounts[index]
                        stop = count if end is None else min(end, count)
                        return window[offset + begin : offset + max(stop, begin)]
            if key is not None:
                (value,) = self._store.raw.read_values(self._ns, [key])
                self.chunk_reads += 1
                if value is not None:
                    return chunk_payloads(value, begin, end)
            self._load()
        raise RuntimeError(f"history {self.name!r} changed while being read; retry")

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        self._sync()
        if isinstance(index, slice):
            return self._slice(index)
        with self._lock:
            n = self._length()
            i = index + n if index < 0 else index
            if not 0 <= i < n:
                raise IndexError(f"history index {index} out of range ({n} items)")
        return self._item(i)

    def _item(self, i: int) -> Any:
        """Item at position *i* (``0 <= i < len``), without a coherence check."""
        with self._lock:
            if i >= self._chunked:
                return self._loads(self._tail_items()[i - self._chunked])
            c = bisect_right(self._starts, i) - 1
            offset = i - self._starts[c]
        return self._loads(self._chunk_payloads(c, offset, offset + 1)[0])

    def _slice(self, s: slice) -> list[Any]:
        with self._lock:
            positions = range(self._length())[s]
            if not positions:
                return []
            if s.step not in (None, 1):
                return [self._item(i) for i in positions]
            lo, hi = positions.start, positions.stop
            chunked = self._chunked
            starts = array("q", self._starts)
            tail = self._tail_items()[max(lo - chunked, 0) : max(hi - chunked, 0)]
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
        self._sync()
        with self._lock:
            n_chunks = len(self._cseqs)
            tail = list(self._tail_items())
        for c in range(n_chunks):
            yield from self._chunk_items(c)
        for payload in tail:
            yield self._loads(payload)

    def recent(self, n: int | None = None) -> list[Any]:
        """The last *n* items (``max_history`` by default), oldest first."""
        n = self.max_history if n is None else n
        if n <= 0:
            return []
        self._sync()
        json = self._loads_many is _json_loads_many
        if json:
            cached = self._joined
            if cached is not None and cached[0] == n and cached[1] == self._length():
                self._budget.touch(self)
                return _loads_array(cached[2])
        found = self._recent_parts(n)
        if found is None and n <= self.max_history and self._fill_window():
            found = self._recent_parts(n)
        if found is None:
            return self._slice(slice(-n, None))
        parts, length = found
        if json and n == self.max_history:
            # Until the next append, recent() decodes these bytes again without joining.
            data = b"[" + b",".join(parts) + b"]"
            with self._lock:
                if self._length() == length and self._payloads is not None:
                    self._joined = (n, length, data)
                    self._budget.charge(self, self._held + len(data))
            return _loads_array(data)
        self._budget.touch(self)
        return self._loads_many(parts)

    def _recent_parts(self, n: int) -> tuple[list[bytes], int] | None:
        """The encoded last *n* items and the length then, if this object holds them."""
        with self._lock:
            t = len(self._seqs)
            length = self._length()
            if n <= t:
                return self._tail_items()[t - n :], length
            window = self._window
            if n > length:
                n = length
            if window is not None and n - t <= len(window):
                return window[len(window) - (n - t) :] + self._tail_items(), length
            if n == t:
                return list(self._tail_items()), length
        return None

    def _fill_window(self) -> bool:
        """Read the last ``max_history`` sealed items into the window; False if the
        history changed meanwhile."""
        with self._lock:
            chunked, n_chunks = self._chunked, len(self._cseqs)
            lo = max(chunked - self.max_history, 0)
            first = bisect_right(self._starts, lo) - 1 if lo < chunked else n_chunks
            starts = self._starts[first:n_chunks]
            self._window = self._joined = None  # so _chunk_payloads reads the store
        payloads: list[bytes] = []
        for c, start in enumerate(starts, first):
            payloads += self._chunk_payloads(c, max(lo - start, 0))
        with self._lock:
            if self._chunked != chunked or len(self._cseqs) != n_chunks:
                return False
            self._window = payloads
            self._held = (
                (self._tail_bytes + _ITEM_OVERHEAD * len(self._seqs) + _held_bytes(payloads))
                if self._payloads is not None
                else _held_bytes(payloads)
            )
            self._budget.charge(self, self._held)
        return True

    def stats(self) -> dict[str, Any]:
        """Items, chunks, tail size, chunk reads and what this object holds."""
        self._sync()
        with self._lock:
            return {
                "name": self.name,
                "items": self._length(),
                "chunks": len(self._cseqs),
                "tail_items": len(self._seqs),
                "tail_bytes": self._tail_bytes,
                "tail_held": self._payloads is not None,
                "held_bytes": self._held,
                "chunk_reads": self.chunk_reads,
                "tail_loads": self.tail_loads,
            }

    def __repr__(self) -> str:
        return f"<History {self.name!r} items={self._length()} chunks={len(self._cseqs)}>"

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
        cut = 0

        def candidate(position: int, ts: float) -> bool:
            return position < cut or (horizon is not None and ts < horizon)

        self._sync()
        with self._lock:
            total = self._length()
            cut = total - policy.max_items if policy.max_items is not None else 0
            cseqs, ccounts = array("q", self._cseqs), array("q", self._ccounts)
            starts = array("q", self._starts)
            chunked = self._chunked
            due = [
                (seq, i)
                for i, (seq, ts) in enumerate(zip(self._seqs, self._times))
                if candidate(chunked + i, ts)
            ]
            tail = list(self._tail_items()) if due else []

        ns = self._ns
        for c, (seq, count) in enumerate(zip(cseqs, ccounts)):
            if not candidate(starts[c], float("inf")) and horizon is None:
                break
            key = _chunk_key(seq, count)
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
            self._store.raw.write(puts, deletes=[(ns, key)])
            deleted += count - len(kept)
        doomed = [seq for seq, i in due if not policy.pinned(self._loads(tail[i]))]
        with self._lock:
            # Only rows still in the tail: an append may have sealed some into a chunk.
            live = set(self._seqs) - {seq for seq, _ in list(self._unwritten)}
            doomed = [seq for seq in doomed if seq in live]
            if doomed:
                base = self._base
                self._store.raw.write(deletes=[(ns, _slot_key(seq - base)) for seq in doomed])
                deleted += len(doomed)
            if deleted:
                self._load()
        return deleted


def _held_bytes(items: list[bytes] | None) -> int:
    if not items:
        return 0
    return sum(len(p) for p in items) + _ITEM_OVERHEAD * len(items)

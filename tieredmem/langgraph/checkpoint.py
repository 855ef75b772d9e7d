"""TieredSaver: a LangGraph checkpointer whose storage grows linearly with a conversation.

``SqliteSaver`` stores every channel value in full at every step, so a thread's file grows
with the square of its length.  TieredSaver stores a channel value only when its version
changes, and a list value that extends the list it had at the previous step (``messages``
under ``add_messages``) is appended to a chunked append-only log (the
:class:`~tieredmem.History` machinery) shared by all its versions: a version records
"this log, this length", an append writes only the new items, and a read loads only the
chunks it needs.  Any other change (a removal, a replacement) starts a new log.

Rows, all in one :class:`tieredmem.Store` (and so in its hot tier), under the internal
namespace ``("tieredmem", "lg", thread_id, "~" + checkpoint_ns)``:

- ``latest``: the newest checkpoint id;
- ``c<id>``: checkpoint (without values), metadata and parent id;
- ``v<channel>\\x1f<version>``: the channel's value at that version, or a log reference;
- ``w<id>``: every pending write of that checkpoint.

Logs live below, in ``(..., "log", <log id>)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import operator
import os
import random
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from types import FunctionType
from typing import Any, cast

import ormsgpack
from cachetools import LRUCache
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from ..backends import SEP
from ..errors import InvalidKeyError, SharingError
from ..history import History, TailBudget, default_budget, open_histories
from ..hot import parse_bytes
from ..item import Stats
from ..memory import DEFAULT_PATH, MemorySaver
from ..names import is_text, ttl_seconds
from ..store import ColdReadError, Store
from ._common import config as config_for
from ._common import resolve_store
from .owned import GC_PAUSE, GC_PAUSE_ITEMS, owned_list
from .serde import AllowedTypes, CheckpointSerializer, serializer

__all__ = ["TieredSaver"]

log = logging.getLogger(__name__)

_V = "v"
_LATEST = "latest"
_ITEM_BYTES = 2048  # estimated memory of one decoded message (a ~500 B text)
_MSGPACK = b"msgpack\x00"  # a log item's prefix: the serializer's type tag, NUL
_TOUCHED = "touched"
_PAGE = 64
#: Threads whose checkpoint count the saver keeps in memory at most.
_TRACKED = 4096
#: Estimated memory of an open log's History besides its tail (its index, lock, ...).
_HISTORY_BYTES = 4096
#: Open logs a saver keeps at most, whatever its budget.
_MAX_LOGS = 256
#: Key of the marker row in the id index: every checkpoint of the file has its index row.
_IDS_BUILT = "~built"
#: The id index's keys sort before this (checkpoint ids are hex digits and dashes).
_IDS_END = "~"


def _id_key(cid: str, thread: str, cns: str) -> str:
    """Key of a checkpoint's row in the id index: newest first is reverse key order."""
    return f"{cid}{SEP}{thread}{SEP}{cns}"


def _pages(first: int) -> Iterator[int]:
    """Page sizes of a listing: *first*, then growing to a bound."""
    size = max(1, min(first, _PAGE))
    while True:
        yield size
        size = min(size * 4, 8 * _PAGE)


def _pack(obj: Any) -> bytes:
    return ormsgpack.packb(obj)


def _unpack(data: bytes) -> Any:
    return ormsgpack.unpackb(data)


# -- values the caller owns ----------------------------------------------------------
# A read hands out copies of the decoded lists the saver holds, never the held objects
# (nor a graph's own objects, which the saver never serves).  Copying a message is a few
# dict copies (~1 us), against ~6 us to decode it: get_state of a hot thread stays well
# below InMemorySaver's (which decodes every message each time).

#: ``weakref()`` for every mark in one C-level pass (``operator.call`` from 3.11).
_call: Callable[[Any], Any] = getattr(operator, "call", operator.methodcaller("__call__"))


class _Marks:
    """Which objects a list that a graph may still hold contains, so that its next ``put``
    sees in O(1) memory accesses per item whether its list extends that one (the same
    objects, then new ones) without comparing values.

    Weak references when the items allow them (messages do): the saver then keeps none of
    the caller's objects alive.  Otherwise the objects themselves, kept only to be
    compared by identity, never served.
    """

    __slots__ = ("length", "refs", "weak")

    def __init__(self, items: list[Any]) -> None:
        self.length = len(items)
        try:
            self.refs: list[Any] = list(map(weakref.ref, items))
            self.weak = True
        except TypeError:
            self.refs = list(items)
            self.weak = False

    def extended_by(self, value: list[Any]) -> bool:
        """True if ``value[:length]`` are the very objects marked."""
        if len(value) < self.length:
            return False
        marked = map(_call, self.refs) if self.weak else self.refs
        return all(map(operator.is_, value, marked))

    def alive(self) -> bool:
        """False once the list's first item is gone (the list cannot come back)."""
        return not self.weak or not self.refs or self.refs[0]() is not None

    def size(self) -> int:
        """Cost in held items: the objects kept alive (none for weak references, which
        the marks of one list's successive versions share: ~3% of a message each)."""
        return 0 if self.weak else self.length


#: Lists marked per channel (the one a graph got from get_tuple, the one it put, ...).
_MAX_MARKS = 4


class _Held:
    """What the saver keeps for one (thread, namespace, channel): the log of its newest
    list value, the first *n* items of that log decoded (``items``, private: a read
    gets copies) and marks of lists handed out or put (``marks``).  Valid while the
    store's generation is *generation* (no other handle or process wrote)."""

    __slots__ = ("generation", "items", "log", "marks", "n")

    def __init__(
        self, generation: int, log: str, n: int, items: list[Any] | None, marks: list[_Marks]
    ) -> None:
        self.generation = generation
        self.log = log
        self.n = n
        self.items = items
        # Lists read and dropped (a get_state whose result is gone) make room first.
        self.marks = [m for m in marks if m.alive()][-_MAX_MARKS:]

    def size(self) -> int:
        return 1 + (self.n if self.items is not None else 0) + sum(m.size() for m in self.marks)


def _held_size(entry: _Held) -> int:
    return entry.size()


class _SerdeCodec:
    """The encoding of a saver's log items (its serializer), as :meth:`History.shared`
    compares it: savers on one store share a log's History when their serializers are
    the same object or equivalent (same class, equal settings), and are refused
    otherwise (one would write items the other cannot read)."""

    __slots__ = ("serde",)

    def __init__(self, serde: SerializerProtocol) -> None:
        self.serde = serde

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _SerdeCodec) and _equivalent(self.serde, other.serde, 6)

    __hash__ = None  # type: ignore[assignment]


def _equivalent(a: Any, b: Any, depth: int, seen: set[tuple[int, int]] | None = None) -> bool:
    """True if *a* and *b* are the same object, equal, or of one class with equivalent
    attributes (functions: the same code, defaults and closure), *depth* levels down; a
    pair met again while it is being compared (a function closing over itself) counts
    as equivalent.  Anything else counts as different."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if not isinstance(a, FunctionType):
        try:
            if a == b:
                return True
        except Exception:  # an __eq__ that cannot compare
            return False
    if depth <= 0:
        return False
    seen = set() if seen is None else seen
    pair = (id(a), id(b))
    if pair in seen:
        return True
    seen.add(pair)
    if isinstance(a, FunctionType):
        cells_a, cells_b = a.__closure__ or (), b.__closure__ or ()
        try:
            contents = [(x.cell_contents, y.cell_contents) for x, y in zip(cells_a, cells_b)]
        except ValueError:  # an empty cell
            return False
        return (
            a.__code__ is b.__code__
            and len(cells_a) == len(cells_b)
            and _equivalent(a.__defaults__, b.__defaults__, depth - 1, seen)
            and all(_equivalent(x, y, depth - 1, seen) for x, y in contents)
        )
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_equivalent(x, y, depth - 1, seen) for x, y in zip(a, b))
    state_a, state_b = getattr(a, "__dict__", None), getattr(b, "__dict__", None)
    if not isinstance(state_a, dict) or not isinstance(state_b, dict):
        return False
    return state_a.keys() == state_b.keys() and all(
        _equivalent(state_a[k], state_b[k], depth - 1, seen) for k in state_a
    )


def _vkey(channel: str, version: Any) -> str:
    return f"{_V}{channel}{SEP}{version}"


def _label(thread_id: Any) -> str:
    label = str(thread_id)
    if not label or any(ord(ch) < 32 for ch in label) or not is_text(label):
        raise InvalidKeyError(
            f"thread_id {thread_id!r} must be a non-empty string without control characters "
            "or lone surrogates"
        )
    return label


class TieredSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer over a :class:`tieredmem.Store` (sync and async).

    :param conn: a path, ``":memory:"``, a store URL, a :class:`tieredmem.Store` or a
        :class:`tieredmem.MemorySaver` (then the saver shares its file and hot tier).
        Default ``"tieredmem.db"`` in the current directory, the file
        ``tieredmem.MemorySaver()`` uses: checkpoints survive a restart unless you ask
        for ``":memory:"`` (or use :class:`tieredmem.langgraph.MemorySaver` with
        ``persistent=False``).
    :param hot_bytes: the memory budget of everything the saver holds, when it opens
        the store itself, whatever the number of threads it has seen: half is the
        store's hot tier, a quarter the decoded lists below, a quarter its open logs
        (the History objects of recently used threads, at most 256, and their tails).
        With a :class:`~tieredmem.Store` or :class:`~tieredmem.MemorySaver` passed as
        *conn*, the budget is that store's ``hot_bytes``, and the saver's lists and logs
        come on top of its hot tier (the logs' tails on the budget the store's histories
        share).  The saver keeps the decoded list values (``messages``) of recently used
        threads' newest checkpoints, up to an estimated quarter of the budget (2 KiB per
        item), so that ``get_state`` on a hot thread decodes no message: it copies them
        (a message's copy costs about a fifth of its decoding; a list of 256 items or
        more is built with Python's cyclic garbage collector paused, see
        :mod:`tieredmem.langgraph.owned`).  So a read, and each turn of a graph, costs
        O(messages) with a small constant.  Every value a read returns is the caller's
        own, and nothing a graph passed to ``put`` is kept by reference: mutating either
        never changes what is stored or what later reads return.  (A message a node
        changes in place, against LangGraph's rule that state is immutable, is not
        written again: a list that extends the previous step's, by object identity,
        gets only its new items appended.)
    :param max_checkpoints: keep at most this many checkpoints per thread and namespace
        (older ones are pruned; what a kept checkpoint needs to be read back is kept).
    :param ttl: seconds; threads idle longer than this are deleted by maintenance.
    :param serde: LangGraph serializer; by default a
        :class:`~tieredmem.langgraph.serde.CheckpointSerializer`: LangGraph's format, but
        reading a checkpoint imports and calls only allowed types (no pickle).
    :param allowed_types: classes (pydantic models, dataclasses, enums) or ``(module,
        name)`` pairs that checkpoints may hold besides the default allow-list
        (:data:`~tieredmem.langgraph.serde.DEFAULT_ALLOWED`); anything else raises
        :class:`~tieredmem.CheckpointTypeError` on read.
    :param wal_bytes: when the saver opens the file itself: bound of SQLite's write-ahead
        log (1 MiB: a graph commits a few rows per step, so checkpointing the log more
        often than a plain store's 4 MiB costs nothing measurable and keeps files small).
    """

    def __init__(
        self,
        conn: str | os.PathLike[str] | Store | MemorySaver = DEFAULT_PATH,
        *,
        hot_bytes: int | str = "64MiB",
        max_checkpoints: int | None = None,
        ttl: float | None = None,
        serde: SerializerProtocol | None = None,
        chunk_items: int = 64,
        durability: str = "sync",
        maintenance_interval: float = 60.0,
        wal_bytes: int | str = "1MiB",
        clock: Any = time.time,
        allowed_types: AllowedTypes = (),
    ) -> None:
        ttl = ttl_seconds(ttl)  # InvalidTTLError for nan, infinities, <= 0: before opening
        super().__init__(serde=serializer(serde, allowed_types))
        # Only LangGraph's own serializer (and ours) is known to decode "msgpack" with one
        # plain msgpack call, so that an array of items' encodings decodes to the items.
        self._batch_decode = type(self.serde) in (JsonPlusSerializer, CheckpointSerializer)
        budget = parse_bytes(hot_bytes)
        # Everything the saver holds comes out of one budget: half for the store's hot
        # tier (when the saver opens the store), a quarter for decoded lists, a quarter
        # for open logs (their tails and History objects).  A store passed in keeps its
        # own hot tier, and the saver's shares are of that tier's budget.
        self.store, self._owns = resolve_store(
            conn,
            hot_bytes=budget // 2,
            durability=durability,
            maintenance_interval=maintenance_interval,
            wal_bytes=wal_bytes,
            clock=clock,
        )
        if max_checkpoints is not None and max_checkpoints < 1:
            raise ValueError("max_checkpoints must be >= 1")
        self.max_checkpoints = max_checkpoints
        self.ttl = ttl
        self.chunk_items = chunk_items
        self.budget = budget if self._owns else self.store.hot_budget
        self._lock = threading.RLock()  # writes of this saver (held during disk I/O)
        self._cache_lock = threading.Lock()  # the in-memory LRUs below (never during I/O)
        # History objects of open logs: each checks the store's generation at every use
        # and reloads its index after another handle or process wrote.  Their tails are
        # charged to an eighth of the budget (of a store passed in: the budget its own
        # histories share), their objects (estimated) to another.
        self._tails = TailBudget(self.budget // 8) if self._owns else default_budget(self.store)
        self._logs: LRUCache[tuple[str, str], History] = LRUCache(
            maxsize=max(16, min(_MAX_LOGS, self.budget // 8 // _HISTORY_BYTES))
        )
        # Per (thread, ns, channel), the newest list's log, its items decoded (served as
        # copies: the newest checkpoint of a hot thread is read without decoding its log
        # again) and marks of the lists a graph holds (its next put sees in O(1) memory
        # accesses per item whether its value extends one).  Bounded by items held, at an
        # estimated _ITEM_BYTES each, to a quarter of the hot-tier budget; dropped when
        # the store's generation moves.
        self._last_lists: LRUCache[tuple[str, str, str], _Held] = LRUCache(
            maxsize=max(_PAGE, self.budget // 4 // _ITEM_BYTES),
            getsizeof=_held_size,
        )
        # Every checkpoint of the file by id, across threads (a row each, written with the
        # checkpoint): list(None, limit=N) reads N rows of it, newest first.
        self._ids = self.store.raw.internal_ns("lg-ids")
        self._ids_ready = self.store.raw.read(self._ids, _IDS_BUILT) is not None
        # No checkpoint yet: the first put marks the index complete.  (A file with older
        # checkpoints is indexed once, by the first list(None).)
        self._ids_fresh = not self._ids_ready and not any(
            True for _ in self.store.raw.iter_rows(self.store.raw.internal_ns("lg"), page=1)
        )
        # Checkpoints per (thread, ns) for max_checkpoints: bounded, so what the saver
        # holds does not grow with the threads it has seen (a count forgotten is read
        # again).  Threads' last uses (ttl) are written, and forgotten, at each maintenance.
        self._counts: LRUCache[tuple[str, str], int] = LRUCache(maxsize=_TRACKED)
        self._counts_generation = self.store.generation()
        self._touched: dict[str, float] = {}
        self.store.raw.add_maintenance_hook(self._maintenance_hook)

    # -- construction ---------------------------------------------------------------
    @classmethod
    def from_conn_string(cls, conn_string: str | os.PathLike[str], **kwargs: Any) -> TieredSaver:
        """LangGraph's idiom, sync or async: ``with TieredSaver.from_conn_string(path) as s:``
        or ``async with TieredSaver.from_conn_string(path) as s:`` (closed on exit)."""
        return cls(conn_string, **kwargs)

    def close(self) -> None:
        """Close the store if this saver opened it; idempotent."""
        if self._owns:
            self.store.close()

    def __enter__(self) -> TieredSaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> TieredSaver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ----------------------------------------------------------------------
    def _ns(self, thread: str, checkpoint_ns: str) -> str:
        return self.store.raw.internal_ns("lg", thread, "~" + checkpoint_ns)

    def _thread_ns(self, thread: str) -> str:
        return self.store.raw.internal_ns("lg", thread)

    def _log(self, thread: str, checkpoint_ns: str, log_id: str) -> History:
        """The log's History: one per store and log in the process, shared with every
        other saver on this store (each would otherwise miss the others' appends, which
        do not move the store's generation); this saver's LRU keeps the recent ones."""
        key = (self._ns(thread, checkpoint_ns), log_id)
        with self._cache_lock:
            h = self._logs.get(key)
        if h is None:
            # Opened outside the lock: opening reads the log's index from the store.
            try:
                fresh = History.shared(
                    self.store,
                    f"log-{log_id}",
                    ns=self.store.raw.internal_ns("lg", thread, "~" + checkpoint_ns, "log", log_id),
                    chunk_items=self.chunk_items,
                    chunk_bytes=256 * 1024,
                    dumps=self._dump_item,
                    loads=self._load_item,
                    loads_many=self._load_items,
                    codec=_SerdeCodec(self.serde),
                    budget=self._tails,
                )
            except SharingError:
                raise SharingError(
                    f"thread {thread!r} is open in another TieredSaver on this store with "
                    "a different serializer (serde); give the savers of one store the same "
                    "serde (or equivalent ones: same class and settings)"
                ) from None
            with self._cache_lock:
                h = self._logs.setdefault(key, fresh)
        return h

    def _invalidate_logs(self, prefix: str) -> None:
        """Logs under *prefix* were deleted or overwritten here: every open History of
        them (other savers' too) re-reads its index at its next use."""
        for h in open_histories.under(self.store, prefix):
            h.invalidate()

    def _remember(self, key: tuple[str, str, str], entry: _Held) -> None:
        with self._cache_lock:
            if entry.items is not None and entry.size() > self._last_lists.maxsize:
                entry.items = None  # too long to hold decoded: keep the marks only
            # Drop the older entry first: cachetools before 7.1.7 evicts as if a grown
            # entry's whole new size were added when a key is replaced.
            self._last_lists.pop(key, None)
            if entry.size() <= self._last_lists.maxsize:
                self._last_lists[key] = entry

    def _remembered(self, key: tuple[str, str, str], generation: int) -> _Held | None:
        """What is held for *key*, if filled at the store's current *generation*."""
        with self._cache_lock:
            entry = self._last_lists.get(key)
            if entry is not None and entry.generation != generation:
                del self._last_lists[key]  # another handle or process wrote meanwhile
                return None
            return entry

    def _dump_item(self, item: Any) -> bytes:
        typ, data = self.serde.dumps_typed(item)
        return typ.encode() + b"\x00" + data

    def _load_item(self, payload: bytes) -> Any:
        typ, _, data = payload.partition(b"\x00")
        return self.serde.loads_typed((typ.decode(), data))

    def _load_items(self, payloads: Sequence[bytes]) -> list[Any]:
        """Decode many log items; with LangGraph's default serializer, in one msgpack call
        (one array of the items' own encodings) instead of one call per message."""
        if self._batch_decode and all(p.startswith(_MSGPACK) for p in payloads):
            n = len(payloads)
            head = (
                bytes((0x90 | n,))
                if n < 16
                else b"\xdc" + n.to_bytes(2, "big")
                if n < 0x10000
                else b"\xdd" + n.to_bytes(4, "big")
            )
            skip = len(_MSGPACK)
            data = b"".join([head, *(p[skip:] for p in payloads)])
            return cast(list[Any], self.serde.loads_typed(("msgpack", data)))
        return [self._load_item(p) for p in payloads]

    def _get(self, ns: str, key: str) -> Any:
        item = self.store.raw.read(ns, key)
        return None if item is None else _unpack(item.value)

    def _touch(self, thread: str) -> None:
        if self.ttl is not None:
            self._touched[thread] = self.store.clock()

    # -- values -----------------------------------------------------------------------
    def _value_ref(
        self,
        thread: str,
        cns: str,
        channel: str,
        value: Any,
        parent_ref: Callable[[str], Any],
        generation: int,
        before_append: Callable[[], None],
    ) -> dict[str, Any]:
        """How to store *value*: appended to a log when it extends the previous list.

        The list the graph continues from is recognised by object identity (O(1) memory
        accesses per item); failing that (a new process, a dropped cache, a list read
        elsewhere), by comparing values with the parent checkpoint's list once.
        """
        if type(value) is not list or not value:
            typ, data = self.serde.dumps_typed(value)
            return {"t": typ, "d": data}
        key = (thread, cns, channel)
        held = self._remembered(key, generation)
        log_id: str | None = None
        start = 0
        if held is not None:
            for mark in reversed(held.marks):
                if mark.extended_by(value):
                    log_id, start = held.log, mark.length
                    break
        pref = parent_ref(channel) if log_id is None else None
        if isinstance(pref, dict) and "log" in pref and len(value) >= pref["n"]:
            plog, plen = pref["log"], pref["n"]
            if held is not None and held.log == plog and held.items is not None and held.n >= plen:
                prefix = held.items[:plen]  # decoded already
            else:
                prefix = self._log(thread, cns, plog)[:plen]
            if prefix == value[:plen]:
                log_id, start = plog, plen
        if log_id is not None:
            h = self._log(thread, cns, log_id)
            if len(h) != start:  # another branch (a fork) already extended it: new log
                log_id = None
        if log_id is None:
            log_id, start = uuid.uuid4().hex[:16], 0
        h = self._log(thread, cns, log_id)
        n = len(value)
        if n > start:
            before_append()
            h.extend(value[start:])  # encoded now: the items are not kept
        # The decoded items, as a cold read returns them (decoded back from the log),
        # never the graph's objects; a list that extends a held one decodes only the
        # new items.
        items: list[Any] | None = None
        same_log = held is not None and held.log == log_id
        if held is not None and same_log and held.items is not None and held.n == start:
            items = held.items  # private, never handed out: extended in place
            items[start:] = h[start:n]
        elif start == 0 and 1 + n <= self._last_lists.maxsize:
            items = h[:n]
        marks = held.marks if held is not None and same_log else []
        self._remember(key, _Held(generation, log_id, n, items, [*marks, _Marks(value)]))
        return {"log": log_id, "n": n}

    def _load_values(
        self, thread: str, cns: str, versions: ChannelVersions, remember: bool = False
    ) -> dict[str, Any]:
        ns = self._ns(thread, cns)
        keys = [(k, _vkey(k, v)) for k, v in versions.items()]
        items = self.store.raw.read_many([(ns, vk) for _, vk in keys]) if keys else []
        out: dict[str, Any] = {}
        generation = self.store.generation()
        for (channel, _), item in zip(keys, items):
            if item is None:
                continue
            ref = _unpack(item.value)
            if "log" not in ref:
                out[channel] = self.serde.loads_typed((ref["t"], ref["d"]))
                continue
            key = (thread, cns, channel)
            log_id, n = ref["log"], ref["n"]
            held = self._remembered(key, generation)
            if held is not None and held.log != log_id:
                held = None
            value: list[Any]
            with GC_PAUSE if n >= GC_PAUSE_ITEMS else contextlib.nullcontext():
                if held is not None and held.items is not None and n <= held.n:
                    # A prefix of the log is never rewritten: the held items are this
                    # version's, and copies of them are the caller's (no decoding).
                    value = owned_list(held.items[:n])
                else:
                    value = self._log(thread, cns, log_id)[:n]  # decoded: the caller's own
                    if remember and (held is None or held.items is None or n > held.n):
                        # The saver keeps its own copy for the next reads, if it may.
                        fits = 1 + n <= self._last_lists.maxsize
                        own = owned_list(value) if fits else None
                        held = _Held(generation, log_id, n, own, held.marks if held else [])
                if remember:
                    # The graph continues from this list: its next put sees by identity
                    # that its value extends it.
                    assert held is not None
                    marks = [*held.marks, _Marks(value)]
                    self._remember(key, _Held(generation, log_id, held.n, held.items, marks))
            out[channel] = value
        return out

    def _writes(self, ns: str, checkpoint_id: str) -> list[tuple[str, str, Any]]:
        rows = self._get(ns, "w" + checkpoint_id) or []
        rows.sort(key=lambda w: (w[3], w[0], w[1]))  # writes_sort_key: path, task, idx
        return [(w[0], w[2], self.serde.loads_typed((w[4], w[5]))) for w in rows]

    def _tuple(
        self,
        thread: str,
        cns: str,
        checkpoint_id: str,
        row: Any,
        config: RunnableConfig | None,
        remember: bool = False,
    ) -> CheckpointTuple:
        ns = self._ns(thread, cns)
        checkpoint = cast(Checkpoint, self.serde.loads_typed((row["ct"], row["cd"])))
        metadata = cast(CheckpointMetadata, self.serde.loads_typed((row["mt"], row["md"])))
        checkpoint["channel_values"] = self._load_values(
            thread, cns, checkpoint["channel_versions"], remember
        )
        parent = row["p"]
        return CheckpointTuple(
            config=config or config_for(thread, cns, checkpoint_id),
            checkpoint=checkpoint,
            metadata=metadata,
            parent_config=(config_for(thread, cns, parent) if parent else None),
            pending_writes=self._writes(ns, checkpoint_id),
        )

    # -- the interface ----------------------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by ``config`` (or the thread's newest), or ``None``."""
        with self.store.snapshot():  # one coherence check for all the rows it reads
            return self._get_tuple(config)

    def _get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        thread = _label(conf["thread_id"])
        cns = conf.get("checkpoint_ns", "")
        ns = self._ns(thread, cns)
        checkpoint_id = get_checkpoint_id(config)
        given = config if checkpoint_id else None
        latest = self._get(ns, _LATEST)
        if not checkpoint_id:
            checkpoint_id = latest
            if checkpoint_id is None:
                return None
        row = self._get(ns, "c" + checkpoint_id)
        if row is None:
            return None
        self._touch(thread)
        return self._tuple(thread, cns, checkpoint_id, row, given, checkpoint_id == latest)

    def _namespaces(self, thread: str | None) -> list[tuple[str, str]]:
        """``(thread, checkpoint_ns)`` pairs that hold checkpoints."""
        root = self._thread_ns(thread) if thread is not None else self.store.raw.internal_ns("lg")
        out = []
        for joined in self.store.raw.namespaces_under(root):
            labels = joined.split(SEP)
            if len(labels) == 4 and labels[3].startswith("~"):
                out.append((labels[2], labels[3][1:]))
        return out

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first, read a page at a time through an index (``limit=N``
        reads about N checkpoints, whatever the number of threads); no lock is held while
        the caller iterates, and each page costs two batched reads."""
        conf = (config or {}).get("configurable", {})
        thread = _label(conf["thread_id"]) if conf.get("thread_id") is not None else None
        cns = conf.get("checkpoint_ns")
        only_id = conf.get("checkpoint_id")
        before_id = get_checkpoint_id(before) if before else None
        first = limit if limit is not None and not filter else _PAGE
        if thread is None:
            source = self._all_ids(before_id, first)
        else:
            spaces = [s for s in self._namespaces(thread) if cns is None or s[1] == cns]
            source = heapq.merge(
                *(self._thread_ids(t, n, before_id, first) for t, n in spaces), reverse=True
            )
        remaining = limit
        sizes = _pages(first)
        while True:
            page: list[tuple[str, str, str]] = []
            size = next(sizes)
            for cid, t, n in source:
                if (only_id and cid != only_id) or (cns is not None and n != cns):
                    continue
                page.append((cid, t, n))
                if len(page) >= size:
                    break
            if not page:
                return
            rows = self.store.raw.read_many([(self._ns(t, n), "c" + cid) for cid, t, n in page])
            for (cid, t, n), item in zip(page, rows):
                if item is None:
                    continue
                row = _unpack(item.value)
                if filter:
                    metadata = self.serde.loads_typed((row["mt"], row["md"]))
                    if not all(metadata.get(k) == v for k, v in filter.items()):
                        continue
                yield self._tuple(t, n, cid, row, None)
                if remaining is not None:
                    remaining -= 1
                    if remaining <= 0:
                        return

    def _thread_ids(
        self, thread: str, cns: str, before_id: str | None, first: int
    ) -> Iterator[tuple[str, str, str]]:
        """``(id, thread, ns)`` of one namespace's checkpoints, newest first, by pages."""
        ns = self._ns(thread, cns)
        stop = "c" + before_id if before_id else "d"
        for size in _pages(first):
            keys = [i.key for i in self.store.raw.rows(ns, "c", stop, limit=size, reverse=True)]
            for key in keys:
                yield key[1:], thread, cns
            if len(keys) < size:
                return
            stop = keys[-1]

    def _all_ids(self, before_id: str | None, first: int) -> Iterator[tuple[str, str, str]]:
        """``(id, thread, ns)`` of every checkpoint, newest first, from the id index."""
        self._build_id_index()
        stop = before_id or _IDS_END
        for size in _pages(first):
            keys = [
                i.key for i in self.store.raw.rows(self._ids, "", stop, limit=size, reverse=True)
            ]
            for key in keys:
                cid, thread, cns = key.split(SEP, 2)
                yield cid, thread, cns
            if len(keys) < size:
                return
            stop = keys[-1]

    def _build_id_index(self) -> None:
        """Index the checkpoints of a file written before the id index existed (once per
        file: the marker row says every checkpoint has its index row)."""
        if self._ids_ready or self.store.raw.read(self._ids, _IDS_BUILT) is not None:
            self._ids_ready = True
            return
        with self._lock:
            if self.store.raw.read(self._ids, _IDS_BUILT) is not None:
                return
            puts: list[tuple[str, str, Any]] = []
            for t, n in self._namespaces(None):
                for key in self.store.raw.keys(self._ns(t, n), "c", "d"):
                    puts.append((self._ids, _id_key(key[1:], t, n), b""))
                    if len(puts) >= 500:
                        self.store.raw.write(puts, cache_puts=False)
                        puts = []
            puts.append((self._ids, _IDS_BUILT, b""))
            self.store.raw.write(puts, cache_puts=False)
            self._ids_ready = True

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint; only channels in *new_versions* get a new value row."""
        conf = config["configurable"]
        thread = _label(conf["thread_id"])
        cns = conf.get("checkpoint_ns", "")
        parent = conf.get("checkpoint_id")
        ns = self._ns(thread, cns)
        cp: dict[str, Any] = dict(checkpoint)
        values = cp.pop("channel_values", {})
        parent_versions: dict[str, Any] | None = None

        def parent_ref(channel: str) -> Any:
            """The parent checkpoint's stored value of *channel* (read when needed)."""
            nonlocal parent_versions
            if parent_versions is None:
                parent_versions = {}
                prow = self._get(ns, "c" + parent) if parent else None
                if prow is not None:
                    pcp = self.serde.loads_typed((prow["ct"], prow["cd"]))
                    parent_versions = dict(pcp["channel_versions"])
            pv = parent_versions.get(channel)
            return self._get(ns, _vkey(channel, pv)) if pv is not None else None

        puts: list[tuple[str, str, Any]] = []
        # One coherence check for the reads below (a round trip each on Redis); the log
        # rows a list appends commit with the checkpoint's rows where they can (see
        # _one_commit: entered before the first append, as a put without one has no use
        # for it).
        with self._lock, self.store.snapshot():
            with contextlib.ExitStack() as stack:
                joined: list[bool] = []

                def before_append() -> None:
                    if not joined:
                        joined.append(True)
                        stack.enter_context(self._one_commit(thread))

                generation = self.store.generation()
                for channel, version in new_versions.items():
                    if channel not in values:
                        continue
                    ref = self._value_ref(
                        thread, cns, channel, values[channel], parent_ref, generation, before_append
                    )
                    puts.append((ns, _vkey(channel, version), _pack(ref)))
                ct, cd = self.serde.dumps_typed(cp)
                mt, md = self.serde.dumps_typed(get_checkpoint_metadata(config, metadata))
                row = {"p": parent, "ct": ct, "cd": cd, "mt": mt, "md": md}
                puts.append((ns, "c" + checkpoint["id"], _pack(row)))
                puts.append((self._ids, _id_key(checkpoint["id"], thread, cns), b""))
                if not self._ids_ready and self._ids_fresh:
                    puts.append((self._ids, _IDS_BUILT, b""))
                    self._ids_ready = True
                latest = self._get(ns, _LATEST)
                if latest is None or checkpoint["id"] >= latest:
                    puts.append((ns, _LATEST, _pack(checkpoint["id"])))
                if self.ttl is not None:
                    now = self.store.clock()
                    self._touched[thread] = now
                    puts.append((self._thread_ns(thread), _TOUCHED, _pack(now)))
                self.store.raw.write(puts)
            # Read now, in the writer, the rows the next get_tuple of this checkpoint will
            # ask for but that may not exist (its pending writes; versions of channels
            # without a value): their absence is then cached, and reading the checkpoint
            # back touches no disk.
            written = {key for _, key, _ in puts}
            self.store.raw.read_many(
                [(ns, "w" + checkpoint["id"])]
                + [
                    (ns, key)
                    for key in (_vkey(c, v) for c, v in checkpoint["channel_versions"].items())
                    if key not in written
                ]
            )
            self._after_put(thread, cns)
        return {
            "configurable": {
                "thread_id": thread,
                "checkpoint_ns": cns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    @contextlib.contextmanager
    def _one_commit(self, thread: str) -> Iterator[None]:
        """A transaction around a put's writes (its lists' log appends, its rows), so that
        they commit together: one round trip on Redis, not one per log and one for the
        rows.  Only with ``durability="sync"`` (with "batch" the rows wait for one flush
        anyway) and a backend that commits any namespaces together (a Redis Cluster
        commits one unit at a time, and the checkpoint-id index is another unit than the
        thread).  If the block raises, nothing is written, and the thread's open logs and
        lists, which counted on the appends, are re-read at their next use."""
        if self.store.durability != "sync" or hasattr(self.store.backend, "check_atomic"):
            yield
            return
        try:
            with self.store.transaction():
                yield
        except BaseException:
            self._forget(thread)
            raise

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes; a regular write stored before is kept (idempotent),
        special ones (errors, interrupts) are replaced."""
        conf = config["configurable"]
        thread = _label(conf["thread_id"])
        cns = conf.get("checkpoint_ns", "")
        ns = self._ns(thread, cns)
        key = "w" + conf["checkpoint_id"]
        with self._lock:
            rows = self._get(ns, key) or []
            index = {(w[0], w[1]): i for i, w in enumerate(rows)}
            changed = False
            for idx, (channel, value) in enumerate(writes):
                widx = WRITES_IDX_MAP.get(channel, idx)
                at = index.get((task_id, widx))
                if at is not None and widx >= 0:
                    continue
                typ, data = self.serde.dumps_typed(value)
                row = [task_id, widx, channel, task_path, typ, data]
                if at is None:
                    index[(task_id, widx)] = len(rows)
                    rows.append(row)
                else:
                    rows[at] = row
                changed = True
            if changed:
                self.store.raw.write([(ns, key, _pack(rows))])

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, write and log of a thread (no error if unknown)."""
        thread = _label(thread_id)
        root = self._thread_ns(thread)
        with self._lock:
            spaces = self.store.raw.namespaces_under(root)
            if spaces:
                ids = [
                    (self._ids, _id_key(key[1:], t, n))
                    for t, n in self._namespaces(thread)
                    for key in self.store.raw.keys(self._ns(t, n), "c", "d")
                ]
                self.store.raw.write(deletes=ids, ranges=[(ns, "", None) for ns in spaces])
            self._forget(thread)

    def _forget(self, thread: str) -> None:
        prefix = self._thread_ns(thread) + SEP
        with self._cache_lock:
            for key in [k for k in self._last_lists if k[0] == thread]:
                del self._last_lists[key]
            for lkey in [k for k in self._logs if k[0].startswith(prefix)]:
                del self._logs[lkey]
        self._invalidate_logs(prefix)
        for ckey in [k for k in self._counts if k[0] == thread]:
            del self._counts[ckey]
        self._touched.pop(thread, None)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) made by these runs, in every thread."""
        wanted = set(run_ids)
        if not wanted:
            return
        for thread, cns in self._namespaces(None):
            ns = self._ns(thread, cns)
            doomed = []
            for key in self.store.raw.keys(ns, "c", "d"):
                row = self._get(ns, key)
                if row is None:
                    continue
                metadata = self.serde.loads_typed((row["mt"], row["md"]))
                if metadata.get("run_id") in wanted:
                    doomed.append(key[1:])
            if doomed:
                self._delete_checkpoints(thread, cns, doomed)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, write and log of a thread to another thread id."""
        src, dst = _label(source_thread_id), _label(target_thread_id)
        src_root, dst_root = self._thread_ns(src), self._thread_ns(dst)
        with self._lock:
            for ns in self.store.raw.namespaces_under(src_root):
                target = dst_root + ns[len(src_root) :]
                puts = [(target, item.key, item.value) for item in self.store.raw.rows(ns)]
                labels = target.split(SEP)
                if len(labels) == 4 and labels[3].startswith("~"):
                    puts += [
                        (self._ids, _id_key(key[1:], dst, labels[3][1:]), b"")
                        for _, key, _ in list(puts)
                        if key.startswith("c")
                    ]
                for i in range(0, len(puts), 500):
                    self.store.raw.write(puts[i : i + 500])
            self._invalidate_logs(dst_root + SEP)

    def prune(
        self,
        thread_ids: Sequence[str],
        *,
        strategy: str = "keep_latest",
        keep_last: int | None = None,
    ) -> None:
        """``"keep_latest"`` keeps the newest checkpoint of each namespace (or the newest
        *keep_last*) with what it needs to be read back; ``"delete"`` removes everything."""
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r}; use 'keep_latest' or 'delete'")
        for thread_id in thread_ids:
            thread = _label(thread_id)
            if strategy == "delete":
                self.delete_thread(thread)
                continue
            for t, cns in self._namespaces(thread):
                self._keep_last(t, cns, keep_last or 1)

    def _keep_last(self, thread: str, cns: str, n: int) -> int:
        ns = self._ns(thread, cns)
        ids = [k[1:] for k in self.store.raw.keys(ns, "c", "d")]
        self._counts[(thread, cns)] = len(ids)
        if len(ids) <= n:
            return 0
        keep = set(ids[-n:])
        # Keep the ancestors a kept checkpoint needs: channels it versions whose value is
        # not stored at that version (DeltaChannel) are rebuilt from ancestors' writes.
        for cid in list(keep):
            row = self._get(ns, "c" + cid)
            if row is None:
                continue
            cp = self.serde.loads_typed((row["ct"], row["cd"]))
            need = {
                k
                for k, v in cp["channel_versions"].items()
                if self.store.raw.read(ns, _vkey(k, v)) is None
            }
            cursor = row["p"]
            while need and cursor:
                keep.add(cursor)
                prow = self._get(ns, "c" + cursor)
                if prow is None:
                    break
                pcp = self.serde.loads_typed((prow["ct"], prow["cd"]))
                for k in list(need):
                    pv = pcp["channel_versions"].get(k)
                    if pv is not None and self.store.raw.read(ns, _vkey(k, pv)) is not None:
                        need.discard(k)
                cursor = prow["p"]
        doomed = [cid for cid in ids if cid not in keep]
        self._delete_checkpoints(thread, cns, doomed)
        return len(doomed)

    def _delete_checkpoints(self, thread: str, cns: str, ids: Sequence[str]) -> None:
        """Delete checkpoints, then value rows and logs no remaining checkpoint uses."""
        ns = self._ns(thread, cns)
        with self._lock:
            deletes = [(ns, "c" + cid) for cid in ids] + [(ns, "w" + cid) for cid in ids]
            deletes += [(self._ids, _id_key(cid, thread, cns)) for cid in ids]
            for i in range(0, len(deletes), 500):
                self.store.raw.write(deletes=deletes[i : i + 500])
            remaining = [k[1:] for k in self.store.raw.keys(ns, "c", "d")]
            used: set[str] = set()
            logs: set[str] = set()
            for cid in remaining:
                row = self._get(ns, "c" + cid)
                if row is None:
                    continue
                cp = self.serde.loads_typed((row["ct"], row["cd"]))
                for k, v in cp["channel_versions"].items():
                    used.add(_vkey(k, v))
            stale = []
            for vk in self.store.raw.keys(ns, _V, chr(ord(_V) + 1)):
                if vk in used:
                    ref = self._get(ns, vk)
                    if isinstance(ref, dict) and "log" in ref:
                        logs.add(ref["log"])
                else:
                    stale.append((ns, vk))
            for i in range(0, len(stale), 500):
                self.store.raw.write(deletes=stale[i : i + 500])
            latest = self._get(ns, _LATEST)
            if latest is not None and latest not in remaining:
                if remaining:
                    self.store.raw.write([(ns, _LATEST, _pack(max(remaining)))])
                else:
                    self.store.raw.write(deletes=[(ns, _LATEST)])
            log_root = self.store.raw.internal_ns("lg", thread, "~" + cns, "log")
            dead = [
                lns
                for lns in self.store.raw.namespaces_under(log_root)
                if lns.rsplit(SEP, 1)[-1] not in logs and lns != log_root
            ]
            if dead:
                self.store.raw.write(ranges=[(lns, "", None) for lns in dead])
                for lns in dead:
                    self._invalidate_logs(lns)
                with self._cache_lock:
                    for lns in dead:
                        self._logs.pop((ns, lns.rsplit(SEP, 1)[-1]), None)
                    for key in [k for k in self._last_lists if k[:2] == (thread, cns)]:
                        if self._last_lists[key].log not in logs:
                            del self._last_lists[key]
            self._counts[(thread, cns)] = len(remaining)

    def get_next_version(self, current: str | int | None, channel: None) -> str:
        """``"<n>.<random>"`` like InMemorySaver's and SqliteSaver's, with ``n`` zero-padded
        to 10 digits instead of 32 for new threads (versions are stored many times per
        checkpoint).  A thread whose versions came from another saver keeps their width,
        so versions of one thread always compare as strings the way they do as numbers."""
        width = 10
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            head = current.split(".")[0]
            current_v = int(head)
            width = max(width, len(head))
        return f"{current_v + 1:0{width}d}.{random.random():.16f}"[: width + 12]

    # -- retention ----------------------------------------------------------------------
    def _after_put(self, thread: str, cns: str) -> None:
        if self.max_checkpoints is None:
            return
        key = (thread, cns)
        generation = self.store.generation()
        if generation != self._counts_generation:  # other processes may have written
            self._counts.clear()
            self._counts_generation = generation
        count = self._counts.get(key)
        if count is None:
            count = len(self.store.raw.keys(self._ns(thread, cns), "c", "d"))
        else:
            count += 1
        self._counts[key] = count
        # Prune in steps, not at every put: a quarter of slack amortizes the scan.
        if count > self.max_checkpoints + max(1, self.max_checkpoints // 4):
            self._keep_last(thread, cns, self.max_checkpoints)

    def _maintenance_hook(self) -> dict[str, Any]:
        pruned = 0
        expired = 0
        if self.max_checkpoints is not None:
            for thread, cns in self._namespaces(None):
                pruned += self._keep_last(thread, cns, self.max_checkpoints)
        if self.ttl is not None:
            now = self.store.clock()
            if self._touched:
                touched, self._touched = self._touched, {}
                self.store.raw.write(
                    [(self._thread_ns(t), _TOUCHED, _pack(ts)) for t, ts in touched.items()]
                )
            threads = {t for t, _ in self._namespaces(None)}
            for thread in threads:
                touched = self._get(self._thread_ns(thread), _TOUCHED)
                if touched is not None and touched < now - self.ttl:
                    self.delete_thread(thread)
                    expired += 1
        return {"checkpoints_pruned": pruned, "threads_expired": expired}

    def maintain(self) -> dict[str, Any]:
        """Apply retention, expire, compact and vacuum now (a thread also does it)."""
        return self.store.maintain()

    def stats(self) -> Stats:
        """The store's :class:`~tieredmem.Stats` plus, as extra fields, the threads
        (``threads``) and logs (``open_logs``) this saver knows, the items of decoded
        list values it holds (``held_list_items``, at most ``held_list_items_max``), the
        History objects of the store alive in the process (``live_histories``), the bytes
        the tails of its open logs hold (``tail_bytes``, at most ``tail_bytes_max``), the
        threads whose checkpoint count or last use it keeps (``tracked_threads``) and its
        budget (``saver_budget``, see *hot_bytes*)."""
        base = self.store.stats()
        threads = len({t for t, _ in self._namespaces(None)})
        tails = self._tails
        with self._cache_lock:
            held, held_max = self._last_lists.currsize, self._last_lists.maxsize
            open_logs = len(self._logs)
        return base.with_extra(
            threads=threads,
            open_logs=open_logs,
            held_list_items=held,
            held_list_items_max=held_max,
            live_histories=len(open_histories.under(self.store, "")),
            tail_bytes=tails.used,
            tail_bytes_max=tails.max_bytes,
            tracked_threads=len(self._counts) + len(self._touched),
            saver_budget=self.budget,
        )

    # -- migration ----------------------------------------------------------------------
    def import_from(
        self, source: BaseCheckpointSaver[Any], *, thread_ids: Sequence[str] | None = None
    ) -> int:
        """Copy every checkpoint (with its pending writes) from another saver.

        Streams one checkpoint at a time; checkpoints already here are skipped, so an
        interrupted import can simply be run again.  Returns the number imported.
        """
        count = 0
        configs: list[RunnableConfig | None] = (
            [{"configurable": {"thread_id": t}} for t in thread_ids] if thread_ids else [None]
        )
        for config in configs:
            for tup in source.list(config):
                conf = tup.config["configurable"]
                thread = _label(conf["thread_id"])
                cns = conf.get("checkpoint_ns", "")
                cid = tup.checkpoint["id"]
                if self.store.raw.read(self._ns(thread, cns), "c" + cid) is not None:
                    continue
                parent = (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")
                put_config: RunnableConfig = config_for(thread, cns, parent)
                versions = dict(tup.checkpoint["channel_versions"])
                self.put(put_config, tup.checkpoint, tup.metadata, versions)
                by_task: dict[str, list[tuple[str, Any]]] = {}
                for task_id, channel, value in tup.pending_writes or []:
                    by_task.setdefault(task_id, []).append((channel, value))
                target: RunnableConfig = config_for(thread, cns, cid)
                for task_id, task_writes in by_task.items():
                    self.put_writes(target, task_writes, task_id)
                count += 1
        return count

    # -- async twins: the same work in a worker thread, so the event loop never blocks --
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        # A hot thread is answered right here from memory; anything that would touch the
        # disk (or wait for a writer) is retried in a worker thread instead.
        try:
            with self.store.raw.memory_only():
                return self.get_tuple(config)
        except ColdReadError:
            return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        iterator = self.list(config, filter=filter, before=before, limit=limit)
        done = object()
        while True:
            item = await asyncio.to_thread(next, iterator, done)
            if item is done:
                return
            yield cast(CheckpointTuple, item)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(
        self,
        thread_ids: Sequence[str],
        *,
        strategy: str = "keep_latest",
        keep_last: int | None = None,
    ) -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy, keep_last=keep_last)

    async def aimport_from(
        self, source: BaseCheckpointSaver[Any], *, thread_ids: Sequence[str] | None = None
    ) -> int:
        """Async twin of :meth:`import_from` (the source's sync API is used)."""
        return await asyncio.to_thread(self.import_from, source, thread_ids=thread_ids)

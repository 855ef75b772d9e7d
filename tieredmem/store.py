"""Store: namespaced items over a hot tier and a cold backend.

A read looks in the hot tier (a byte-bounded LRU) and, on a miss, in the cold tier (one
SQLite file by default), keeping what it loaded hot.  A write goes to the cold tier and
then to the hot tier (``durability="sync"``), or to an in-memory batch flushed as one
transaction every ``flush_interval`` seconds (``durability="batch"``).

Every read goes through one path, :meth:`Store._fetch`: the coherence check, then this
thread's transaction, the write buffer, the hot tier and the cold tier, in that order.
Every commit ends in one hot-tier update, :meth:`Store._settle`.  The concerns around
them live in their own modules: :mod:`~tieredmem.names` (namespace and key rules),
:mod:`~tieredmem.filters` (filters, text), :mod:`~tieredmem.search` (search, listing),
:mod:`~tieredmem.buffer` (batched writes), :mod:`~tieredmem.worker` (the background
thread, fork) and :mod:`~tieredmem.item` (what reads return).

>>> import tieredmem
>>> with tieredmem.open(":memory:") as store:
...     store.put(("users", "alice"), "prefs", {"lang": "fr"})
...     store.get(("users", "alice"), "prefs").value
{'lang': 'fr'}
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import orjson

from .backends import SEP, Backend, Delete, DeleteRange, Put, Row, Touch, open_backend
from .buffer import Batch, WriteBuffer, backend_ops
from .codec import JSON, RAW, Codec
from .dictionaries import Dictionaries
from .errors import StoreClosedError, ValueTooLargeError
from .filters import matches, text_of, validate_filter
from .hot import ENTRY_OVERHEAD, Entry, HotTier, parse_bytes
from .item import Item, Stats
from .names import INTERNAL_ROOT, Namespace, check_key, hot_key, split
from .names import namespace as _namespace
from .names import prefix as _prefix
from .names import ttl_seconds as _ttl_seconds
from .search import list_namespaces as _list_namespaces
from .search import row_item, search_rows
from .worker import Worker, release_freed_memory, watch_forks, weak_callback

__all__ = ["ColdReadError", "Item", "Stats", "Store", "matches", "memory_only_active", "open"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]

_MEMORY_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tieredmem_memory_only", default=False
)
_SNAPSHOT: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tieredmem_snapshot", default=False
)
#: After a batch commit of at least this many bytes, hand freed memory back to the OS.
_TRIM_AFTER = 1 << 20


class ColdReadError(Exception):
    """Raised inside :meth:`Store.memory_only` when an answer needs the cold tier."""


def _cold() -> None:
    if _MEMORY_ONLY.get():
        raise ColdReadError


def memory_only_active() -> bool:
    """True inside :meth:`Store.memory_only` (layers above use it to avoid waiting)."""
    return _MEMORY_ONLY.get()


class _Tx:
    """One thread's open transaction: its writes, newest per hot key, until it commits."""

    __slots__ = ("overlay",)

    def __init__(self) -> None:
        self.overlay: Batch = {}


class Store:
    """Namespaced items in a byte-bounded hot tier over a cold backend.

    Build one with :func:`tieredmem.open`.  Thread-safe.  Use as a context manager or
    call :meth:`close`.

    :param backend: the cold tier.
    :param hot_bytes: byte budget of the hot tier (int or string such as ``"64MiB"``).
    :param str durability: ``"sync"`` (a returned call has committed) or ``"batch"``.
    :param float flush_interval: seconds between batch commits (``durability="batch"``).
    :param float maintenance_interval: seconds between background maintenance runs
        (``0`` disables the thread; :meth:`maintain` still works).
    :param clock: returns the time in seconds (``time.time``); inject one in tests.
    :param metrics: called with one dict per event (``load``, ``spill``, ``flush``,
        ``maintain``, ``compaction``) carrying sizes and durations; never under a lock,
        and its exceptions are logged, not raised.
    :param float coherence_interval: ``0`` (default): every read first checks whether
        another handle wrote, so it sees every write acknowledged before it began.  A
        positive number of seconds checks at most that often: a write by another handle
        or process is then seen within that many seconds (this handle's own writes at
        once), and a hot read skips the check's cost in between.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        hot_bytes: int | str = "64MiB",
        durability: str = "sync",
        flush_interval: float = 1.0,
        maintenance_interval: float = 60.0,
        max_pending_bytes: int | str = "16MiB",
        max_value_bytes: int | str = "256MiB",
        codec: Codec | None = None,
        clock: Clock = time.time,
        metrics: Callable[[dict[str, Any]], None] | None = None,
        coherence_interval: float = 0.0,
    ) -> None:
        if durability not in ("sync", "batch"):
            raise ValueError(f"durability must be 'sync' or 'batch', not {durability!r}")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        if coherence_interval < 0:
            raise ValueError("coherence_interval must be >= 0 seconds")
        self._coherence_interval = float(coherence_interval)
        self._next_check = 0.0
        self._backend = backend
        self._remote = bool(getattr(backend, "remote", False))
        self._metrics = metrics
        self._codec = codec or Codec()
        self._clock = clock
        self.durability = durability
        self.flush_interval = float(flush_interval)
        self.maintenance_interval = float(maintenance_interval)
        self._hot = HotTier(parse_bytes(hot_bytes))
        self._buffer = WriteBuffer(parse_bytes(max_pending_bytes))
        self._max_value = parse_bytes(max_value_bytes)
        self._closed = False
        self._hits = self._misses = self._loads = 0
        self._writes = self._deletes = self._expired = 0
        self._generation = 0  # bumped when another handle's writes invalidate the hot tier
        self._maintenance_hooks: list[Callable[[], dict[str, Any]]] = []
        self._flush_hooks: list[Callable[[], None]] = []
        self._last_maintenance = clock()
        self._init_process_state()
        self._dictionaries = Dictionaries(self._codec, backend, self.emit)
        self._atexit = weak_callback(self.close)
        atexit.register(self._atexit)
        watch_forks(self)

    def _init_process_state(self) -> None:
        """Locks, thread-locals and the worker: what a forked child must build anew."""
        self._lock = threading.Lock()  # hot tier, write buffer, counters; never held for I/O
        self._write_lock = threading.RLock()  # serializes writes in this process
        self._local = threading.local()
        self._epoch = 0  # bumped by every write and invalidation (guards stale fills)
        self._tx_active = 0  # open transactions in any thread (reads then check overlays)
        self._in_flush_hooks = False  # only read and set with _write_lock held
        self._worker: Worker | None = None
        if self.durability == "batch" or self.maintenance_interval > 0:
            period = (
                self.flush_interval if self.durability == "batch" else self.maintenance_interval
            )
            self._worker = Worker(self, period)

    def after_fork(self) -> None:
        """In a forked child: fresh locks and worker; the parent's buffered writes are the
        parent's to commit, so the child forgets them (called by :mod:`tieredmem.worker`)."""
        self._buffer.clear()
        self._hot = self._hot.fresh()
        self._init_process_state()

    # -- lifecycle -------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Where the cold tier lives (``":memory:"``, ``sqlite:///...``)."""
        return self._backend.url

    @property
    def backend(self) -> Backend:
        """The cold-tier backend (for tools such as ``tieredmem doctor``)."""
        return self._backend

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    @property
    def codec(self) -> Codec:
        """The codec that encodes values into frames."""
        return self._codec

    @property
    def clock(self) -> Clock:
        """The store's clock (seconds since the epoch)."""
        return self._clock

    @property
    def max_pending_bytes(self) -> int:
        """With ``durability="batch"``: bytes of buffered writes that start a commit."""
        return self._buffer.max_bytes

    def tick(self) -> None:
        """One round of the background worker: commit the batch, maintain when due."""
        if self.durability == "batch":
            self.flush()
        if self.maintenance_interval > 0:
            now = self._clock()
            if now - self._last_maintenance >= self.maintenance_interval:
                self.maintain()

    def close(self) -> None:
        """Flush pending writes and release the file; idempotent."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            atexit.unregister(self._atexit)
            if self._worker is not None:
                self._worker.stop()
            self._backend.close()
            with self._lock:
                self._hot = self._hot.fresh()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Store {self.url} durability={self.durability} {state}>"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{self.url} is closed; open the store again to use it")

    # -- observability --------------------------------------------------------------
    def emit(self, event: str, **fields: Any) -> None:
        """Send an event to the ``metrics`` hook (a no-op without one)."""
        hook = self._metrics
        if hook is None:
            return
        fields["event"] = event
        fields["url"] = self.url
        try:
            hook(fields)
        except Exception:
            log.exception("the metrics hook failed on %s", event)

    # -- entries ----------------------------------------------------------------------
    def _entry(
        self,
        hk: str,
        codec: int,
        payload: bytes,
        created: float | None,
        updated: float,
        expires: float | None,
        ttl: float | None = None,
    ) -> Entry:
        size = HotTier.charge(hk, len(payload))
        if codec == JSON and payload[:1] in (b"{", b"["):
            # A container: kept encoded and decoded on every read, so callers own what
            # they get.  Scalars and bytes are immutable and kept as they are.
            return Entry(codec, payload, None, created, updated, expires, size, ttl)
        value = self._codec.load_payload(codec, payload)
        return Entry(codec, None, value, created, updated, expires, size, ttl)

    def _row_entry(self, hk: str, row: Row) -> Entry:
        codec, payload = self._codec.unframe(row.frame)
        return self._entry(
            hk, codec, payload, row.created_at, row.updated_at, row.expires_at, row.ttl
        )

    @staticmethod
    def _absent(hk: str) -> Entry:
        """A tombstone: the remembered absence of *hk* (a read miss or a delete)."""
        return Entry.tombstone(ENTRY_OVERHEAD + len(hk))

    # -- the read path ----------------------------------------------------------------
    def _fetch(self, pairs: Sequence[tuple[str, str]], *, cache: bool = True) -> list[Entry | None]:
        """The one read path: the live entry of each ``(joined ns, key)``, ``None`` where
        absent or expired.

        First the coherence check (one per call; none inside :meth:`snapshot`), then for
        each key this thread's transaction, the write buffer, the hot tier, and for the
        rest one cold read (:meth:`_load`).
        """
        if self._closed:
            self._check_open()
        if self._foreign_change():
            self._invalidate_all()
        found: list[Entry | None] = [None] * len(pairs)
        cold: list[int] = []
        tx: _Tx | None = getattr(self._local, "tx", None) if self._tx_active else None
        lookup = self._hot.lookup
        if lookup is not None and tx is None and not self._buffer:
            # Hits take no lock (HotTier.lookup), so threads reading hot keys do not queue
            # on it; the hit counter is then approximate under threads.
            for i, (ns, key) in enumerate(pairs):
                entry = lookup(ns + "\x1e" + key)  # names.hot_key, inlined
                if entry is None:
                    cold.append(i)
                else:
                    found[i] = entry
            # Read after the lookups and before the cold read: a write that commits
            # meanwhile bumps it, and _load then keeps nothing it read.
            epoch = self._epoch
            self._hits += len(pairs) - len(cold)
            misses = len(cold)
        else:
            overlay = tx.overlay if tx is not None else None
            with self._lock:
                buffer, hot = self._buffer, self._hot
                for i, (ns, key) in enumerate(pairs):
                    hk = ns + "\x1e" + key
                    if overlay is not None and hk in overlay:
                        found[i] = overlay[hk][1]
                        continue
                    entry = buffer.get(hk) if buffer else None
                    if entry is None:
                        entry = hot.get(hk)
                        if entry is None:
                            cold.append(i)
                            continue
                        self._hits += 1
                    found[i] = entry
                epoch = self._epoch
                self._misses += len(cold)
            misses = 0
        if cold:
            self._load(pairs, cold, found, epoch, cache, misses)
        now: float | None = None
        for i, entry in enumerate(found):
            if entry is None:
                continue
            if entry.absent:
                found[i] = None
            elif entry.expires is not None:
                if now is None:
                    now = self._clock()
                if entry.expires <= now:
                    found[i] = None
        return found

    def _load(
        self,
        pairs: Sequence[tuple[str, str]],
        cold: list[int],
        found: list[Entry | None],
        epoch: int,
        cache: bool,
        misses: int,
    ) -> None:
        """Read ``pairs[i]`` for *i* in *cold* from the cold tier (one snapshot) into
        *found*, keeping them hot (a miss too, as a tombstone) when *cache* and no write
        or invalidation happened since *epoch*.  *misses*: hot-tier misses to count."""
        _cold()
        started = time.perf_counter() if self._metrics is not None else 0.0
        wanted = [pairs[i] for i in cold]
        rows = (
            [self._backend.get(*wanted[0])] if len(wanted) == 1 else self._backend.get_many(wanted)
        )
        hks = [hot_key(ns, key) for ns, key in wanted]
        loaded = [
            self._row_entry(hk, row) if row is not None else self._absent(hk)
            for hk, row in zip(hks, rows)
        ]
        with self._lock:
            hot = self._hot
            spills = hot.spills
            self._misses += misses
            self._loads += sum(row is not None for row in rows)
            if cache and epoch == self._epoch:
                for hk, entry in zip(hks, loaded):
                    hot.offer(hk, entry)  # a miss too (within its share)
            spilled = hot.spills - spills
        for i, entry in zip(cold, loaded):
            found[i] = entry
        if self._metrics is not None:
            size = sum(len(row.frame) for row in rows if row is not None)
            self.emit("load", bytes=size, seconds=time.perf_counter() - started)
            if spilled:
                self.emit("spill", entries=spilled)

    def _item(self, ns_t: Namespace, ns: str, key: str, entry: Entry) -> Item:
        created = entry.created
        if created is None:
            # A batched or transactional write whose row may already exist: ask the cold
            # tier for the created_at it keeps.
            _cold()
            row = self._backend.get(ns, key)
            created = entry.created = row.created_at if row is not None else entry.updated
        value = entry.value if entry.payload is None else orjson.loads(entry.payload)
        return Item(ns_t, key, value, created, entry.updated, entry.expires)

    # -- reads -------------------------------------------------------------------------
    def get(self, namespace: Sequence[str], key: str, *, refresh_ttl: bool = False) -> Item | None:
        """Return the item, or ``None`` if it does not exist or has expired.

        :param refresh_ttl: restart the item's ttl (an item put with ``ttl=`` then lives
            another ``ttl`` from now).
        :raises InvalidNamespaceError: *namespace* is not a non-empty tuple of strings.
        :raises StoreClosedError: the store was closed.
        """
        ns_t, ns = _namespace(namespace)
        if type(key) is not str or not key:
            check_key(key)
        (entry,) = self._fetch(((ns, key),))
        if entry is None:
            return None
        item = self._item(ns_t, ns, key, entry)
        if refresh_ttl and item.expires_at is not None:
            self._refresh([item], [(ns, key)])
        return item

    def get_many(self, keys: Iterable[tuple[Sequence[str], str]]) -> list[Item | None]:
        """Return items for ``(namespace, key)`` pairs, in order (``None`` where absent)."""
        wanted = []
        for ns_given, key in keys:
            ns_t, ns = _namespace(ns_given)
            check_key(key)
            wanted.append((ns_t, ns, key))
        found = self._fetch([(ns, key) for _, ns, key in wanted])
        return [
            None if entry is None else self._item(ns_t, ns, key, entry)
            for (ns_t, ns, key), entry in zip(wanted, found)
        ]

    def __contains__(self, address: tuple[Sequence[str], str]) -> bool:
        ns_given, key = address
        return self.get(ns_given, key) is not None

    def read(self, ns: str, key: str) -> Item | None:
        """:meth:`get` for a joined (possibly internal) namespace.

        The item's ``namespace`` is left empty: internal readers know where they read.
        """
        (entry,) = self._fetch(((ns, key),))
        return None if entry is None else self._item((), ns, key, entry)

    def read_many(self, keys: Sequence[tuple[str, str]]) -> list[Item | None]:
        """:meth:`get_many` for joined (possibly internal) namespaces."""
        found = self._fetch(keys)
        return [
            None if entry is None else self._item(split(ns), ns, key, entry)
            for (ns, key), entry in zip(keys, found)
        ]

    def read_values(self, ns: str, keys: Sequence[str], *, cache: bool = True) -> list[Any]:
        """Values of *keys* in a joined (possibly internal) namespace, ``None`` where
        absent or expired: :meth:`read_many` without the items' timestamps, so a batched
        write is answered from the buffer (its ``created_at`` is never looked up) and the
        keys missing from the hot tier are loaded in one query.

        ``cache=False``: values loaded from the cold tier are not kept in the hot tier.
        """
        found = self._fetch([(ns, key) for key in keys], cache=cache)
        return [
            None
            if entry is None
            else entry.value
            if entry.payload is None
            else orjson.loads(entry.payload)
            for entry in found
        ]

    def _refresh(self, items: Sequence[Item], keys: Sequence[tuple[str, str]]) -> None:
        """Restart the ttl of *items* (at *keys*): ``expires_at = now + ttl``."""
        if not keys:
            return
        self.flush()  # buffered items must exist in the cold tier to be touched
        now = self._clock()
        with self._write_lock:
            self._backend.write([Touch(ns, key, now) for ns, key in keys])
            with self._lock:
                self._epoch += 1
                for item, (ns, key) in zip(items, keys):
                    entry = self._hot.peek(hot_key(ns, key))
                    if entry is not None and entry.ttl is not None:
                        entry.expires = now + entry.ttl
                        item.expires_at = entry.expires
                    elif entry is not None:
                        self._hot.pop(hot_key(ns, key), None)  # ttl unknown here: reload

    # -- writes ------------------------------------------------------------------------
    def _prepare(
        self,
        ns: str,
        key: str,
        value: Any,
        ttl: float | timedelta | None,
        compress: bool = True,
    ) -> tuple[Put, Entry]:
        seconds = None if ttl is None else _ttl_seconds(ttl)
        codec, payload = self._codec.payload(value, key=key)
        # With durability="batch", compression waits for the commit (often in the
        # background thread, beside the caller), so put() only encodes.
        defer = compress and self.durability == "batch"
        if defer:
            frame = payload  # framed at the commit (see backend_ops): no second copy meanwhile
        elif compress:
            frame = self._codec.frame(codec, payload)
        else:
            frame = bytes((codec,)) + payload
        size = len(frame) + defer
        if size > self._max_value:
            raise ValueTooLargeError(
                f"value for key {key!r} is {size} bytes encoded, over max_value_bytes "
                f"({self._max_value}); split it (a History stores long sequences in chunks)"
            )
        now = self._clock()
        expires = now + seconds if seconds is not None else None
        return Put(ns, key, frame, now, expires, None, defer, seconds), self._entry(
            hot_key(ns, key), codec, payload, None, now, expires, seconds
        )

    def put(
        self,
        namespace: Sequence[str],
        key: str,
        value: Any,
        *,
        ttl: float | timedelta | None = None,
    ) -> None:
        """Store *value* under ``(namespace, key)``, replacing any previous value.

        :param ttl: seconds (or a timedelta) after which the item expires; ``None``: never.
        :raises SerializationError: *value* cannot be encoded; nothing was written.
        :raises ValueTooLargeError: the encoded value exceeds ``max_value_bytes``.
        """
        self._check_open()
        _, ns = _namespace(namespace)
        check_key(key)
        self._apply([self._prepare(ns, key, value, ttl)])

    def put_many(
        self,
        items: Iterable[tuple[Sequence[str], str, Any]],
        *,
        ttl: float | timedelta | None = None,
    ) -> None:
        """Store several ``(namespace, key, value)`` items atomically (all or none)."""
        self._check_open()
        prepared = []
        for ns_given, key, value in items:
            _, ns = _namespace(ns_given)
            check_key(key)
            prepared.append(self._prepare(ns, key, value, ttl))
        self._apply(prepared)

    def delete(self, namespace: Sequence[str], key: str) -> None:
        """Delete an item; deleting an absent item is not an error."""
        self.delete_many([(namespace, key)])

    def delete_many(self, keys: Iterable[tuple[Sequence[str], str]]) -> None:
        """Delete several items atomically."""
        self._check_open()
        ops = []
        for ns_given, key in keys:
            _, ns = _namespace(ns_given)
            check_key(key)
            ops.append((Delete(ns, key), self._absent(hot_key(ns, key))))
        self._apply(ops)

    def _apply(
        self,
        ops: Sequence[tuple[Any, Entry]],
        cache_puts: bool = True,
        tombstones: bool = True,
    ) -> None:
        """Write ops (each with the hot entry it leaves behind) in one atomic step: into
        this thread's transaction, the write buffer (``durability="batch"``) or the cold
        tier now.

        ``cache_puts=False``: written values are not kept in the hot tier (any cached
        version is dropped); ``tombstones=False``: deleted keys are dropped from the hot
        tier instead of being remembered as absent.
        """
        if not ops:
            return
        tx: _Tx | None = getattr(self._local, "tx", None)
        if tx is not None:
            for op, entry in ops:
                hk = hot_key(op.ns, op.key)
                prev = tx.overlay.get(hk)
                with self._lock:
                    self._inherit_created(hk, entry, prev[1] if prev else None)
                tx.overlay[hk] = (op, entry)
            return
        if self.durability == "batch":
            with self._lock:
                buffer = self._buffer
                for op, entry in ops:
                    hk = hot_key(op.ns, op.key)
                    self._inherit_created(hk, entry, None)
                    buffer.add(hk, op, entry, cache_puts if type(op) is Put else tombstones)
                    self._count(op)
                self._epoch += 1
                pending = buffer.pending_bytes
            if pending >= buffer.max_bytes:
                if buffer.flushing or pending >= 2 * buffer.max_bytes:
                    # Back-pressure: a commit is already under way and the writer outpaces
                    # it; waiting here keeps what is buffered within ~2x max_pending_bytes.
                    self.flush()
                elif self._worker is not None:
                    self._worker.wake()
            return
        self._commit([], ops, cache_puts, tombstones)
        self._dictionaries.after_write()

    def _commit(
        self,
        ranges: Sequence[DeleteRange],
        ops: Sequence[tuple[Any, Entry]],
        cache_puts: bool,
        tombstones: bool,
    ) -> None:
        """Write *ranges* and *ops* to the cold tier in one transaction, then settle them."""
        with self._write_lock:
            created = iter(self._backend.write([*ranges, *backend_ops(ops, self._codec)]))
            settled = []
            for op, entry in ops:
                put = type(op) is Put
                if put:
                    entry.created = next(created)
                settled.append((hot_key(op.ns, op.key), entry, cache_puts if put else tombstones))
            with self._lock:
                for op, _ in ops:
                    self._count(op)
            self._settle(settled, ranges)

    def _settle(
        self,
        entries: Iterable[tuple[str, Entry | None, bool]],
        ranges: Sequence[DeleteRange] = (),
    ) -> None:
        """The one hot-tier update after a commit: each ``(hot key, entry, keep)`` enters
        the tier (``keep``) or leaves it; keys in deleted *ranges* leave it.  The epoch
        moves, so reads that began before the commit keep nothing they loaded."""
        with self._lock:
            self._epoch += 1
            hot = self._hot
            for r in ranges:
                lo = hot_key(r.ns, r.start)
                hi = hot_key(r.ns, r.stop if r.stop is not None else "\U0010ffff")
                for hk in [k for k in hot if lo <= k < hi]:
                    del hot[hk]
            for hk, entry, keep in entries:
                if keep and entry is not None:
                    hot.offer(hk, entry)
                else:
                    hot.pop(hk, None)

    def _inherit_created(self, hk: str, entry: Entry, prev: Entry | None) -> None:
        """Give a buffered write the ``created_at`` of the version it replaces, if known.

        Call with ``self._lock`` held.  Unknown stays ``None`` and is resolved from the
        cold tier on read (see :meth:`_item`).
        """
        if entry.absent:
            return
        if prev is None:
            # Only a buffered version matters: a committed row keeps its created_at in the
            # cold tier anyway (the upsert preserves it).
            prev = self._buffer.get(hk)
        if prev is None:
            return
        if prev.absent:
            entry.created = entry.updated  # the previous version is deleted: a new item
        elif prev.created is not None:
            entry.created = prev.created

    def _count(self, op: Any) -> None:
        if isinstance(op, Put):
            self._writes += 1
        else:
            self._deletes += 1

    def write(
        self,
        puts: Sequence[tuple[str, str, Any]] = (),
        deletes: Sequence[tuple[str, str]] = (),
        ranges: Sequence[tuple[str, str, str | None]] = (),
        *,
        ttl: float | timedelta | None = None,
        compress: bool = True,
        cache_puts: bool = True,
        tombstones: bool = True,
    ) -> None:
        """Write to joined (possibly internal) namespaces atomically.

        *puts* are ``(ns, key, value)``, *deletes* ``(ns, key)``, *ranges* ``(ns, start,
        stop)`` key ranges to delete.  Every value is encoded before anything is written.
        A write with ranges commits at once (batched writes are flushed first).
        ``compress=False`` stores short-lived rows without zstd.  ``cache_puts=False``
        keeps the written values out of the hot tier (the caller holds its own copy);
        ``tombstones=False`` drops deleted keys from the hot tier instead of remembering
        them as absent (for rows nobody will look up again).
        """
        self._check_open()
        prepared: list[tuple[Any, Entry]] = [
            self._prepare(ns, key, value, ttl, compress) for ns, key, value in puts
        ]
        prepared += [(Delete(ns, key), self._absent(hot_key(ns, key))) for ns, key in deletes]
        if not ranges:
            self._apply(prepared, cache_puts, tombstones)
            return
        if getattr(self._local, "tx", None) is not None:
            raise RuntimeError("range deletes cannot run inside store.transaction()")
        self.flush()
        self._commit(
            [DeleteRange(ns, start, stop) for ns, start, stop in ranges],
            prepared,
            cache_puts,
            tombstones,
        )

    def write_row(self, ns: str, key: str, payload: bytes) -> None:
        """``write([(ns, key, payload)], compress=False, cache_puts=False)`` (a history's
        tail row), committed by one statement without the general path's per-op
        bookkeeping when ``durability="sync"`` and outside a transaction; the row's
        ``created_at`` is then the time of this write."""
        if (
            self.durability != "sync"
            or len(payload) >= self._max_value
            or getattr(self._local, "tx", None) is not None
        ):
            self.write([(ns, key, payload)], compress=False, cache_puts=False)
            return
        self._check_open()
        now = self._clock()
        # created_at = now: a tail row's is never read, and naming it spares the upsert
        # its RETURNING.
        put = Put(ns, key, bytes((RAW,)) + payload, now, None, now)
        with self._write_lock:
            self._backend.write([put])
            with self._lock:
                self._writes += 1
            self._settle([(hot_key(ns, key), None, False)])
        self._dictionaries.after_write()

    def flush(self) -> None:
        """Commit batched writes now (a no-op with ``durability="sync"``)."""
        if self._closed:
            return
        with self._write_lock:
            if self._flush_hooks and not self._in_flush_hooks:
                # Outside any transaction of this thread: what the hooks write is not
                # part of it.
                tx, self._local.tx = getattr(self._local, "tx", None), None
                self._in_flush_hooks = True
                try:
                    for hook in list(self._flush_hooks):
                        hook()
                finally:
                    self._in_flush_hooks = False
                    self._local.tx = tx
            with self._lock:
                if not self._buffer.pending:
                    return
                flushed_bytes = self._buffer.pending_bytes
                batch = self._buffer.take()
            started = time.perf_counter()
            try:
                created = iter(self._backend.write(backend_ops(batch.values(), self._codec)))
            except BaseException:
                with self._lock:  # keep them pending: nothing acknowledged is dropped
                    self._buffer.restore(batch)
                raise
            for op, entry in batch.values():
                if type(op) is Put:
                    entry.created = next(created)
            with self._lock:
                settled = self._buffer.settled(batch)
            self._settle(settled)
        self.emit("flush", rows=len(batch), seconds=time.perf_counter() - started)
        if flushed_bytes >= _TRIM_AFTER:
            release_freed_memory()
        self._dictionaries.after_write()

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """Group writes so they commit together, or not at all if the block raises.

        Reads inside the block see its own writes; nested blocks roll back to where they
        began.  Writes are buffered until the outermost block exits, so no lock is held
        while your code runs.

        >>> import tieredmem
        >>> store = tieredmem.open(":memory:")
        >>> with store.transaction():
        ...     store.put(("a",), "x", 1)
        ...     store.put(("a",), "y", 2)
        >>> store.get(("a",), "y").value
        2
        """
        self._check_open()
        tx: _Tx | None = getattr(self._local, "tx", None)
        outer = tx is None
        if tx is None:
            tx = self._local.tx = _Tx()
            with self._lock:
                self._tx_active += 1
        snapshot = dict(tx.overlay)
        try:
            yield self
        except BaseException:
            tx.overlay = snapshot
            raise
        finally:
            if outer:
                self._local.tx = None
                with self._lock:
                    self._tx_active -= 1
        if outer:
            self._apply(list(tx.overlay.values()))

    # -- coherence and the layer API (histories, states, the LangGraph adapters) ------
    def _foreign_change(self) -> bool:
        """Ask the backend whether another handle wrote, once per :meth:`snapshot`."""
        if _SNAPSHOT.get():
            return False
        if self._coherence_interval:
            now = time.monotonic()
            if now < self._next_check:
                return False  # checked less than coherence_interval ago
            self._next_check = now + self._coherence_interval
        if self._remote:
            _cold()  # a network round trip is I/O: not on an event loop
        return self._backend.foreign_change()

    def _invalidate_all(self) -> None:
        with self._lock:
            self._hot = self._hot.fresh()
            self._epoch += 1
            self._generation += 1

    def generation(self) -> int:
        """Check for writes by other handles, processes or hosts (as every read does) and
        return the cache generation.

        The number changes whenever such a write made this store drop its hot tier; a
        layer that caches decoded data above the store (a History's index, a saver's
        lists) keeps the generation it filled its cache at and drops the cache when
        this returns another.  Inside :meth:`snapshot` no new check is made.
        """
        self._check_open()
        if self._foreign_change():
            self._invalidate_all()
        return self._generation

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads in the block share one coherence check (taken on entry) instead of one
        each: a reader of several related rows pays one round trip on Redis, not one a row.
        Writes by other processes during the block may be missed until it ends."""
        if _SNAPSHOT.get():
            yield
            return
        if self._foreign_change():
            self._invalidate_all()
        token = _SNAPSHOT.set(True)
        try:
            yield
        finally:
            _SNAPSHOT.reset(token)

    @contextmanager
    def memory_only(self) -> Iterator[None]:
        """Within the block, reads that would touch the cold tier raise
        :class:`ColdReadError` instead (an async caller then retries in a thread, and
        answers from the hot tier never leave the event loop)."""
        token = _MEMORY_ONLY.set(True)
        try:
            yield
        finally:
            _MEMORY_ONLY.reset(token)

    def internal_ns(self, *labels: str) -> str:
        """Joined namespace under the reserved ``tieredmem`` root (for tieredmem's layers)."""
        return _namespace((INTERNAL_ROOT, *labels), internal=True)[1]

    def in_transaction(self) -> bool:
        """True inside :meth:`transaction` in this thread."""
        return getattr(self._local, "tx", None) is not None

    def keys(self, ns: str, start: str = "", stop: str | None = None) -> list[str]:
        """Keys of a joined namespace in ``[start, stop)``, without loading values."""
        self._check_open()
        _cold()
        self.flush()
        return self._backend.keys(ns, start, stop)

    def rows(self, ns: str, start: str = "", stop: str | None = None) -> list[Item]:
        """Live items of a joined namespace in key range ``[start, stop)``, in key order."""
        self._check_open()
        _cold()
        self.flush()
        now = self._clock()
        found = (row_item(self._codec, row, now) for row in self._backend.range(ns, start, stop))
        return [item for item in found if item is not None]

    def iter_rows(self, ns_prefix: str, page: int = 500) -> Iterator[Item]:
        """Live items at or below a joined (possibly internal) namespace, a page at a time."""
        self._check_open()
        _cold()
        self.flush()
        after: tuple[str, str] | None = None
        while True:
            rows = self._backend.scan(ns_prefix, after=after, limit=page)
            now = self._clock()
            for row in rows:
                item = row_item(self._codec, row, now)
                if item is not None:
                    yield item
            if len(rows) < page:
                return
            after = (rows[-1].ns, rows[-1].key)

    def namespaces_under(self, ns_prefix: str) -> list[str]:
        """Joined namespaces at or below a joined (possibly internal) prefix."""
        self._check_open()
        _cold()
        self.flush()
        out: list[str] = []
        after: str | None = None
        while True:
            batch = self._backend.namespaces(ns_prefix, after=after, limit=1000)
            out += batch
            if len(batch) < 1000:
                return out
            after = batch[-1]

    def add_flush_hook(self, hook: Callable[[], None]) -> None:
        """Run *hook* at the start of every :meth:`flush` (with ``durability="batch"``,
        every commit), with the write lock held: a layer that buffers its own writes
        (histories' tail rows) hands them over with :meth:`write`, so the commit includes
        everything written before it."""
        self._flush_hooks.append(hook)

    def add_maintenance_hook(self, hook: Callable[[], dict[str, Any]]) -> None:
        """Run *hook* on every :meth:`maintain` (retention policies of higher layers)."""
        self._maintenance_hooks.append(hook)

    # -- search ------------------------------------------------------------------------
    def search(
        self,
        namespace_prefix: Sequence[str] = (),
        *,
        query: str | None = None,
        filter: Mapping[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        refresh_ttl: bool = False,
    ) -> list[Item]:
        """Items under *namespace_prefix* matching *filter* and the full-text *query*.

        Without *query* items come in (namespace, key) order; with it, best match first,
        each with ``score``.  *filter* takes exact matches and ``$eq $ne $gt $gte $lt $lte``
        on fields of dict values (dotted for nested fields).  Batched writes are flushed
        first; writes buffered in an open :meth:`transaction` are not searched.
        ``refresh_ttl`` restarts the ttl of the items returned.
        """
        self._check_open()
        _, joined = _prefix(namespace_prefix)
        validate_filter(filter)
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        self.flush()
        items = search_rows(
            self._backend,
            self._codec,
            joined,
            query=query,
            filter=filter,
            limit=limit,
            offset=offset,
            now=self._clock(),
        )
        if refresh_ttl:
            due = [i for i in items if i.expires_at is not None]
            self._refresh(due, [(SEP.join(i.namespace), i.key) for i in due])
        return items

    def list_namespaces(
        self,
        *,
        prefix: Sequence[str] | None = None,
        suffix: Sequence[str] | None = None,
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Namespace]:
        """Namespaces that hold items, sorted; ``"*"`` in *prefix*/*suffix* matches any label.

        *max_depth* truncates deeper namespaces to that many labels (deduplicated).
        Reading never creates a namespace.
        """
        self._check_open()
        self.flush()
        return _list_namespaces(
            self._backend,
            prefix=prefix,
            suffix=suffix,
            max_depth=max_depth,
            limit=limit,
            offset=offset,
        )

    # -- maintenance -------------------------------------------------------------------
    def maintain(self) -> dict[str, Any]:
        """Expire, apply retention, index, vacuum and checkpoint now; return what was done."""
        self._check_open()
        started = time.perf_counter()
        self._last_maintenance = self._clock()
        self.flush()
        report: dict[str, Any] = {}
        for hook in list(self._maintenance_hooks):
            for k, v in hook().items():
                report[k] = report.get(k, 0) + v if isinstance(v, int) else v
        report["expired"] = self.sweep()
        report.update(self._backend.maintain())
        self.emit("maintain", seconds=time.perf_counter() - started, **report)
        return report

    def sweep(self) -> int:
        """Delete expired items now (maintenance does it too); return how many."""
        self._check_open()
        expired = 0
        while True:
            with self._write_lock:
                keys = self._backend.expire(self._clock())
                if keys:
                    self._settle([(hot_key(ns, key), None, False) for ns, key in keys])
            expired += len(keys)
            if len(keys) < 10_000:
                break
        with self._lock:
            self._expired += expired
        return expired

    def stats(self) -> Stats:
        """Counters and sizes of both tiers."""
        self._check_open()
        cold = self._backend.stats()
        with self._lock:
            return Stats(
                hot_items=len(self._hot),
                hot_bytes=int(self._hot.currsize),
                hot_budget=int(self._hot.maxsize),
                hits=self._hits,
                misses=self._misses,
                spills=self._hot.spills,
                loads=self._loads,
                writes=self._writes,
                deletes=self._deletes,
                expired=self._expired,
                pending_writes=len(self._buffer.pending),
                cold_bytes=cold["cold_bytes"],
                cold_free_bytes=cold["cold_free_bytes"],
                cold_rows=cold["cold_rows"],
                wal_bytes=cold["wal_bytes"],
                url=self.url,
                durability=self.durability,
            )


def open(  # noqa: A001 - the library's entry point, like dbm.open / shelve.open
    url: str | os.PathLike[str],
    *,
    hot_bytes: int | str = "64MiB",
    durability: str = "sync",
    flush_interval: float = 1.0,
    maintenance_interval: float = 60.0,
    synchronous: str = "NORMAL",
    busy_timeout: float = 60.0,
    compress_threshold: int = 256,
    compress_level: int = 3,
    max_value_bytes: int | str = "256MiB",
    max_pending_bytes: int | str = "16MiB",
    wal_bytes: int | str = "4MiB",
    clock: Clock = time.time,
    metrics: Callable[[dict[str, Any]], None] | None = None,
    coherence_interval: float = 0.0,
) -> Store:
    """Open (or create) a store.

    :param str url: ``":memory:"`` (nothing on disk), a file path, ``"sqlite:///path"``,
        or a URL whose scheme a backend registered (see ``tieredmem.backends``).
    :param hot_bytes: hot-tier budget in bytes, e.g. ``"64MiB"``.
    :param str durability: ``"sync"`` (default) or ``"batch"``.
    :param float flush_interval: seconds between batch commits (the most a crash loses).
    :param str synchronous: SQLite ``synchronous``: ``"NORMAL"`` survives a process crash,
        ``"FULL"`` also a power loss.
    :param float busy_timeout: seconds to wait for another process's lock.
    :param max_pending_bytes: with ``durability="batch"``, commit early once this many
        bytes of writes are waiting (bounds the memory the batch holds).
    :param wal_bytes: SQLite files: checkpoint the write-ahead log at about this size and
        truncate it back to it (smaller: smaller files, more frequent checkpoints).
    :param metrics: a callable receiving event dicts (see :class:`Store`).
    :param float coherence_interval: ``0`` (default) for strict coherence; a positive
        number of seconds bounds how stale a read may be instead (see :class:`Store`).
    :raises NotAStoreError: the file is not a tieredmem store (it is left untouched).
    :raises SchemaVersionError: the file was written by a newer tieredmem.
    :raises UnsupportedURLError: unknown URL scheme.

    >>> import tieredmem
    >>> store = tieredmem.open(":memory:", hot_bytes="1MiB")
    >>> store.put(("notes",), "n1", "remember the milk")
    >>> [i.key for i in store.search(("notes",), query="milk")]
    ['n1']
    >>> store.close()
    """
    codec = Codec(compress_threshold=compress_threshold, level=compress_level)
    backend = open_backend(
        url,
        synchronous=synchronous,
        busy_timeout=busy_timeout,
        text_of=text_of(codec),
        wal_bytes=wal_bytes,
    )
    try:
        return Store(
            backend,
            hot_bytes=hot_bytes,
            durability=durability,
            flush_interval=flush_interval,
            maintenance_interval=maintenance_interval,
            max_value_bytes=max_value_bytes,
            max_pending_bytes=max_pending_bytes,
            codec=codec,
            clock=clock,
            metrics=metrics,
            coherence_interval=coherence_interval,
        )
    except BaseException:
        backend.close()
        raise

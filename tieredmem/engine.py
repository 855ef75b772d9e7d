"""The engine under :class:`tieredmem.Store` and :class:`tieredmem.raw.Raw`: the hot
tier, the write buffer, transactions, coherence and the background worker.

Every read goes through one path, :meth:`Engine.fetch`: the coherence check, then this
thread's transaction, the write buffer, the hot tier and the cold tier, in that order.
Every commit ends in one hot-tier update, :meth:`Engine.settle`.  Keys here are joined
namespaces (see :mod:`tieredmem.names`); :class:`~tieredmem.Store` validates the tuples
users pass, :class:`~tieredmem.raw.Raw` serves tieredmem's own layers.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import timedelta
from typing import Any

import orjson

from .backends import Backend, DeleteRange, Put, Row, Touch
from .buffer import Batch, WriteBuffer, backend_ops
from .codec import JSON, RAW, Codec
from .dictionaries import Dictionaries
from .errors import CorruptValueError, ReadOnlyError, StoreClosedError, ValueTooLargeError
from .hot import ENTRY_OVERHEAD, Entry, HotTier, new_tier, parse_bytes
from .item import Item, Stats
from .names import Namespace, damaged, hot_key
from .names import ttl_seconds as _ttl_seconds
from .worker import Worker, release_freed_memory, watch_forks, weak_callback

__all__ = ["Clock", "ColdReadError", "Engine", "cold_access", "memory_only_active"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]

_MEMORY_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tieredmem_memory_only", default=False
)
#: Engines (by id) inside their snapshot() in this context.
_SNAPSHOT: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "tieredmem_snapshot", default=frozenset()
)
#: After a batch commit of at least this many bytes, hand freed memory back to the OS.
_TRIM_AFTER = 1 << 20


class ColdReadError(Exception):
    """Raised inside :meth:`Engine.memory_only` when an answer needs the cold tier."""


def cold_access() -> None:
    """Raise :class:`ColdReadError` inside :meth:`Engine.memory_only` (call before any
    cold-tier read)."""
    if _MEMORY_ONLY.get():
        raise ColdReadError


def memory_only_active() -> bool:
    """True inside :meth:`Engine.memory_only` (layers above use it to avoid waiting)."""
    return _MEMORY_ONLY.get()


class _Tx:
    """One thread's open transaction: its writes, newest per hot key, until it commits,
    and the hot keys whose last write asked to stay out of the hot tier."""

    __slots__ = ("overlay", "uncached")

    def __init__(self) -> None:
        self.overlay: Batch = {}
        self.uncached: set[str] = set()


class _Local(threading.local):
    """A thread's state: its open transaction, if any (a class default, so reading it
    never raises and catches ``AttributeError``)."""

    tx: _Tx | None = None


class Engine:
    """The hot tier, write buffer and transactions over one cold backend (thread-safe).

    Parameters are :class:`tieredmem.Store`'s (see there).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        hot_bytes: int | str = "64MiB",
        hot_policy: str = "lru",
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
        #: The backend's lock-free "nothing was committed since the last check", if any.
        self._unchanged: Callable[[], bool] | None = getattr(backend, "unchanged", None)
        self._remote = bool(getattr(backend, "remote", False))
        #: Opened with readonly=True: writes raise ReadOnlyError, no background worker.
        self._readonly = bool(getattr(backend, "readonly", False))
        #: The backend's write lock held for a block (SQLite: BEGIN IMMEDIATE), if any.
        #: A backend's refusal of a transaction it cannot commit atomically (Redis Cluster).
        self._check_atomic: Callable[[Sequence[Any]], None] | None = getattr(
            backend, "check_atomic", None
        )
        self._locked: Callable[[], AbstractContextManager[None]] | None = getattr(
            backend, "locked", None
        )
        self._metrics = metrics
        self._codec = codec or Codec()
        self._clock = clock
        self.durability = durability
        self.flush_interval = float(flush_interval)
        self.maintenance_interval = float(maintenance_interval)
        self._hot = new_tier(parse_bytes(hot_bytes), hot_policy)
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
        attach = getattr(backend, "attach_codec", None)
        if attach is not None:  # a backend that indexes values (PostgreSQL's jsonb)
            attach(self._codec)
        self._atexit = weak_callback(self.close)
        atexit.register(self._atexit)
        watch_forks(self)

    def _init_process_state(self) -> None:
        """Locks, thread-locals and the worker: what a forked child must build anew."""
        self._lock = threading.Lock()  # hot tier, write buffer, counters; never held for I/O
        self._coherence_lock = threading.Lock()  # a coherence check and the drop it leads to
        self._check_seq = 0  # odd while a check runs (see _check_coherence)
        self._write_lock = threading.RLock()  # serializes writes in this process
        self._local = _Local()
        self._epoch = 0  # bumped by every write and invalidation (guards stale fills)
        self._tx_active = 0  # open transactions in any thread (reads then check overlays)
        self._in_flush_hooks = False  # only read and set with _write_lock held
        self._worker: Worker | None = None
        if not self._readonly and (self.durability == "batch" or self.maintenance_interval > 0):
            period = (
                self.flush_interval if self.durability == "batch" else self.maintenance_interval
            )
            self._worker = Worker(self, period)

    def after_fork(self) -> None:
        """In a forked child: fresh locks and worker; the parent's buffered writes are the
        parent's to commit, so the child forgets them (called by :mod:`tieredmem.worker`)."""
        self._buffer.clear()
        self._hot = self._hot.fresh()
        self._generation += 1  # caches above may predate writes the child cannot rule out
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
    def hot_budget(self) -> int:
        """The hot tier's budget in bytes."""
        return int(self._hot.maxsize)

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

    def check_open(self) -> None:
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
        try:
            codec, payload = self._codec.unframe(row.frame)
            return self._entry(
                hk, codec, payload, row.created_at, row.updated_at, row.expires_at, row.ttl
            )
        except CorruptValueError as exc:
            raise damaged(row.ns, row.key, exc) from None

    @staticmethod
    def absent(hk: str) -> Entry:
        """A tombstone: the remembered absence of *hk* (a read miss or a delete)."""
        return Entry.tombstone(ENTRY_OVERHEAD + len(hk))

    # -- the read path ----------------------------------------------------------------
    def fetch(self, pairs: Sequence[tuple[str, str]], *, cache: bool = True) -> list[Entry | None]:
        """The one read path: the live entry of each ``(joined ns, key)``, ``None`` where
        absent or expired.

        First the coherence check (one per call; none inside :meth:`snapshot`), then for
        each key this thread's transaction, the write buffer, the hot tier, and for the
        rest one cold read (:meth:`_load`).
        """
        if self._closed:
            self.check_open()
        # _check_coherence's lock-free proof, inlined (every read pays it); the rest of
        # the check (an interval, a snapshot, asking the backend) in the method.
        seq = self._check_seq
        unchanged = self._unchanged
        if (
            seq & 1
            or unchanged is None
            or self._coherence_interval
            or not unchanged()
            or self._check_seq != seq
        ):
            self._check_coherence()
        tx: _Tx | None = self._local.tx if self._tx_active else None
        lookup = self._hot.lookup
        buffer = self._buffer
        if tx is not None or buffer.pending or buffer.flushing:
            lookup = None  # a transaction or buffered writes: the locked path
        if lookup is not None and len(pairs) == 1:
            # One key (every get): the steps below without their lists and loops.
            ns, key = pairs[0]
            entry = lookup(ns + "\x1e" + key)  # names.hot_key, inlined
            if entry is None:
                if self._metrics is None:
                    entry = self._load_one(ns, key, self._epoch, cache, 1)
                else:
                    one: list[Entry | None] = [None]
                    self._load(pairs, [0], one, self._epoch, cache, 1)
                    entry = one[0]
            else:
                self._hits += 1
            if entry is None or entry.absent:
                return [None]
            if entry.expires is not None and entry.expires <= self._clock():
                return [None]
            return [entry]
        found: list[Entry | None] = [None] * len(pairs)
        cold: list[int] = []
        if lookup is not None:
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
        if len(cold) == 1 and self._metrics is None:
            found[cold[0]] = self._load_one(*pairs[cold[0]], epoch, cache, misses)
            return
        cold_access()
        started = time.perf_counter() if self._metrics is not None else 0.0
        wanted = [pairs[i] for i in cold]
        rows = (
            [self._backend.get(*wanted[0])] if len(wanted) == 1 else self._backend.get_many(wanted)
        )
        hks = [hot_key(ns, key) for ns, key in wanted]
        loaded = [
            self._row_entry(hk, row) if row is not None else self.absent(hk)
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

    def _load_one(self, ns: str, key: str, epoch: int, cache: bool, misses: int) -> Entry:
        """:meth:`_load` of one key without metrics (every cold ``get``): the same steps
        without the lists and generators a batch needs; returns the entry."""
        if _MEMORY_ONLY.get():
            raise ColdReadError
        row = self._backend.get(ns, key)
        hk = ns + "\x1e" + key  # names.hot_key, inlined
        entry = self._row_entry(hk, row) if row is not None else self.absent(hk)
        with self._lock:
            self._misses += misses
            if row is not None:
                self._loads += 1
            if cache and epoch == self._epoch:
                self._hot.offer(hk, entry)  # a miss too (within its share)
        return entry

    def item(self, ns_t: Namespace, ns: str, key: str, entry: Entry) -> Item:
        created = entry.created
        if created is None:
            # A batched or transactional write whose row may already exist: ask the cold
            # tier for the created_at it keeps.
            cold_access()
            row = self._backend.get(ns, key)
            created = entry.created = row.created_at if row is not None else entry.updated
        try:
            value = entry.value if entry.payload is None else orjson.loads(entry.payload)
        except orjson.JSONDecodeError as exc:  # a frame written before checksums
            raise damaged(ns, key, exc) from None
        return Item(ns_t, key, value, created, entry.updated, entry.expires)

    def refresh_ttl(self, items: Sequence[Item], keys: Sequence[tuple[str, str]]) -> None:
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
    def prepare(
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
            frame = self._codec.plain(codec, payload)
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

    def apply(
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
        if self._readonly:
            raise ReadOnlyError(
                f"{self.url} was opened with readonly=True; open it without readonly to write"
            )
        tx: _Tx | None = self._local.tx
        if tx is not None:
            for op, entry in ops:
                hk = hot_key(op.ns, op.key)
                prev = tx.overlay.get(hk)
                with self._lock:
                    self._inherit_created(hk, entry, prev[1] if prev else None)
                tx.overlay[hk] = (op, entry)
                if cache_puts if type(op) is Put else tombstones:
                    tx.uncached.discard(hk)
                else:
                    tx.uncached.add(hk)
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
        self.commit([], ops, cache_puts, tombstones)
        self._dictionaries.after_write()

    def commit(
        self,
        ranges: Sequence[DeleteRange],
        ops: Sequence[tuple[Any, Entry]],
        cache_puts: bool,
        tombstones: bool,
        uncached: Collection[str] = (),
    ) -> None:
        """Write *ranges* and *ops* to the cold tier in one transaction, then settle them
        (keys in *uncached* leave the hot tier whatever *cache_puts* and *tombstones*)."""
        with self._write_lock:
            generation = self._generation
            created = iter(self._backend.write([*ranges, *backend_ops(ops, self._codec)]))
            settled = []
            for op, entry in ops:
                put = type(op) is Put
                if put:
                    entry.created = next(created)
                hk = hot_key(op.ns, op.key)
                keep = (cache_puts if put else tombstones) and hk not in uncached
                settled.append((hk, entry, keep))
            with self._lock:
                for op, _ in ops:
                    self._count(op)
            self.settle(settled, ranges, generation)

    def settle(
        self,
        entries: Iterable[tuple[str, Entry | None, bool]],
        ranges: Sequence[DeleteRange] = (),
        generation: int | None = None,
    ) -> None:
        """The one hot-tier update after a commit: each ``(hot key, entry, keep)`` enters
        the tier (``keep``) or leaves it; keys in deleted *ranges* leave it.  The epoch
        moves, so reads that began before the commit keep nothing they loaded.

        *generation*: :attr:`_generation` when the commit began.  If another handle's
        write was detected since, it may be newer than this commit, so nothing enters."""
        with self._lock:
            self._settle_locked(entries, ranges, generation)

    def _settle_locked(
        self,
        entries: Iterable[tuple[str, Entry | None, bool]],
        ranges: Sequence[DeleteRange],
        generation: int | None,
    ) -> None:
        self._epoch += 1
        hot = self._hot
        current = generation is None or generation == self._generation
        for r in ranges:
            lo = hot_key(r.ns, r.start)
            hi = hot_key(r.ns, r.stop if r.stop is not None else "\U0010ffff")
            for hk in [k for k in hot if lo <= k < hi]:
                del hot[hk]
        for hk, entry, keep in entries:
            if keep and current and entry is not None:
                hot.offer(hk, entry, False)
            else:
                hot.pop(hk, None)

    def _inherit_created(self, hk: str, entry: Entry, prev: Entry | None) -> None:
        """Give a buffered write the ``created_at`` of the version it replaces, if known.

        Call with ``self._lock`` held.  Unknown stays ``None`` and is resolved from the
        cold tier on read (see :meth:`item`).
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

    def write_row(self, ns: str, key: str, payload: bytes) -> None:
        """``write([(ns, key, payload)], compress=False, cache_puts=False)`` (a history's
        tail row), committed by one statement without the general path's per-op
        bookkeeping when ``durability="sync"`` and outside a transaction; the row's
        ``created_at`` is then the time of this write."""
        if (
            self.durability != "sync"
            or len(payload) >= self._max_value
            or self._local.tx is not None
        ):
            self.check_open()
            self.apply([self.prepare(ns, key, payload, None, compress=False)], cache_puts=False)
            return
        self.check_open()
        now = self._clock()
        # created_at = now: a tail row's is never read, and naming it spares the upsert
        # its RETURNING.
        put = Put(ns, key, self._codec.plain(RAW, payload), now, None, now)
        with self._write_lock:
            self._backend.write([put])
            with self._lock:
                self._writes += 1
                self._settle_locked([(hot_key(ns, key), None, False)], (), None)
        self._dictionaries.after_write()

    def flush(self) -> None:
        """Commit batched writes now (a no-op with ``durability="sync"``)."""
        if self._closed:
            return
        with self._write_lock:
            if self._flush_hooks and not self._in_flush_hooks:
                # Outside any transaction of this thread: what the hooks write is not
                # part of it.
                tx, self._local.tx = self._local.tx, None
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
            generation = self._generation
            try:
                created = iter(self._backend.write(backend_ops(batch.values(), self._codec)))
            except BaseException:
                with self._lock:  # keep them pending: nothing acknowledged is dropped
                    self._buffer.restore(batch)
                raise
            for op, entry in batch.values():
                if type(op) is Put:
                    entry.created = next(created)
            with self._lock:  # one section: no read sees the batch gone but not yet hot
                self._settle_locked(self._buffer.settled(batch), (), generation)
        self.emit("flush", rows=len(batch), seconds=time.perf_counter() - started)
        if flushed_bytes >= _TRIM_AFTER:
            release_freed_memory()
        self._dictionaries.after_write()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """This thread's writes in the block commit together when the outermost block
        exits, or not at all if it raises (a nested block rolls back to where it began);
        reads in the block see them.

        Serializable: the outermost block holds the write lock from its start to its
        commit (the backend's ``locked()``: SQLite's ``BEGIN IMMEDIATE``, waited for up to
        the busy timeout; this process's other writers wait on the store's lock), and
        checks coherence once it has it, so what the block reads is the latest committed
        state and stays so until it commits.  Backends without ``locked()`` (Redis,
        PostgreSQL) check on entry (in their pushed-invalidation modes, only if one
        arrived), and other clients may commit while the block runs.  It commits when it
        exits, also with ``durability="batch"`` (batched writes before it are committed
        first).
        """
        self.check_open()
        tx: _Tx | None = self._local.tx
        if tx is not None:  # nested: a rollback point of the outer block
            snapshot, uncached = dict(tx.overlay), set(tx.uncached)
            try:
                yield
            except BaseException:
                tx.overlay, tx.uncached = snapshot, uncached
                raise
            return
        if self._readonly:
            raise ReadOnlyError(
                f"{self.url} was opened with readonly=True; open it without readonly to write"
            )
        with self._write_lock:
            self.flush()
            locked = self._locked() if self._locked is not None else nullcontext()
            committing = False
            try:
                with locked:
                    if self._locked is not None or not self._pushed_quiet():
                        self._recheck()  # no commit by anyone else from here to ours
                    tx = self._local.tx = _Tx()
                    with self._lock:
                        self._tx_active += 1
                    try:
                        yield
                    finally:
                        self._local.tx = None
                        with self._lock:
                            self._tx_active -= 1
                    ops = list(tx.overlay.values())
                    if ops and self._check_atomic is not None:
                        self._check_atomic([op for op, _ in ops])  # e.g. one Redis slot
                    if ops:
                        # Joins the held transaction; settles the hot tier before the
                        # final COMMIT, so a failed COMMIT drops the tier (below).
                        committing = True
                        self.commit([], ops, True, True, tx.uncached)
            except BaseException:
                if committing:
                    self._invalidate_all()
                raise
        self._dictionaries.after_write()

    # -- coherence and the layer API (histories, states, the LangGraph adapters) ------
    def _check_coherence(self) -> None:
        """Drop the hot tier if another handle wrote (once per :meth:`snapshot`).

        Check and drop happen under one lock: a thread that finds nothing new behind
        another thread's check waits for that thread's drop, so neither reads a hot entry
        older than a commit acknowledged before its read began.  A backend's cheap proof
        that nothing was committed (``unchanged()``) is taken without the lock, guarded
        by a sequence number that is odd while a check runs (a seqlock): a proof that
        overlapped a check does not count.
        """
        if id(self) in _SNAPSHOT.get():
            return
        if self._coherence_interval:
            now = time.monotonic()
            if now < self._next_check:
                return  # checked less than coherence_interval ago
            self._next_check = now + self._coherence_interval
        seq = self._check_seq
        unchanged = self._unchanged
        if not seq & 1 and unchanged is not None and unchanged() and self._check_seq == seq:
            return
        if self._remote:
            cold_access()  # a network round trip is I/O: not on an event loop
        self._recheck()

    def _pushed_quiet(self) -> bool:
        """The backend's pushed proof that nothing was committed (``unchanged()``, e.g.
        Redis ``coherence=tracking``), not overlapping a check (see
        :meth:`_check_coherence`).  Without a backend write lock (Redis, PostgreSQL) a
        transaction's reads are not locked against other clients anyway, so there the
        proof of a pushed-invalidation mode stands in for the round trip."""
        seq = self._check_seq
        unchanged = self._unchanged
        return not seq & 1 and unchanged is not None and unchanged() and self._check_seq == seq

    def _recheck(self) -> None:
        """The full coherence check, whatever the interval or snapshot."""
        with self._coherence_lock:
            self._check_seq += 1
            try:
                if self._backend.foreign_change():
                    self._invalidate_all()
            finally:
                self._check_seq += 1

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
        self.check_open()
        self._check_coherence()
        return self._generation

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads in the block share one coherence check (taken on entry) instead of one
        each: a reader of several related rows pays one round trip on Redis, not one a row.
        Writes by other processes during the block may be missed until it ends."""
        inside = _SNAPSHOT.get()
        if id(self) in inside:
            yield
            return
        self._check_coherence()
        token = _SNAPSHOT.set(inside | {id(self)})
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

    def in_transaction(self) -> bool:
        """True inside :meth:`transaction` in this thread."""
        return self._local.tx is not None

    def add_flush_hook(self, hook: Callable[[], None]) -> None:
        """Run *hook* at the start of every :meth:`flush` (with ``durability="batch"``,
        every commit), with the write lock held: a layer that buffers its own writes
        (histories' tail rows) hands them over with :meth:`write`, so the commit includes
        everything written before it."""
        self._flush_hooks.append(hook)

    def add_maintenance_hook(self, hook: Callable[[], dict[str, Any]]) -> None:
        """Run *hook* on every :meth:`maintain` (retention policies of higher layers)."""
        self._maintenance_hooks.append(hook)

    # -- maintenance -------------------------------------------------------------------
    def maintain(self) -> dict[str, Any]:
        """Expire, apply retention, index, vacuum and checkpoint now; return what was done."""
        self.check_open()
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
        self.check_open()
        expired = 0
        while True:
            with self._write_lock:
                keys = self._backend.expire(self._clock())
                if keys:
                    self.settle([(hot_key(ns, key), None, False) for ns, key in keys])
            expired += len(keys)
            if len(keys) < 10_000:
                break
        with self._lock:
            self._expired += expired
        return expired

    def stats(self) -> Stats:
        """Counters and sizes of both tiers."""
        self.check_open()
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

"""Store: namespaced items over a hot tier and a cold backend.

A read looks in the hot tier (a byte-bounded LRU) and, on a miss, in the cold tier (one
SQLite file by default), keeping what it loaded hot.  A write goes to the cold tier and
then to the hot tier (``durability="sync"``), or to an in-memory batch flushed as one
transaction every ``flush_interval`` seconds (``durability="batch"``).

>>> import tieredmem
>>> with tieredmem.open(":memory:") as store:
...     store.put(("users", "alice"), "prefs", {"lang": "fr"})
...     store.get(("users", "alice"), "prefs").value
{'lang': 'fr'}
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import logging
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from .backends import SEP, Backend, Delete, DeleteRange, Put, Row, Touch, open_backend
from .codec import JSON, RAW, Codec
from .errors import (
    InvalidKeyError,
    InvalidNamespaceError,
    SerializationError,
    StoreClosedError,
    ValueTooLargeError,
)
from .hot import ENTRY_OVERHEAD, Entry, HotTier, parse_bytes

__all__ = ["Item", "Stats", "Store", "open"]

log = logging.getLogger(__name__)

#: Root label of the namespaces tieredmem uses for itself (histories, states).
INTERNAL_ROOT = "tieredmem"
_HK = "\x1e"  # between the joined namespace and the key in hot-tier keys
_CONTROL = re.compile(r"[\x00-\x1f]")
_MISSING = -1  # Entry.codec of a remembered miss
_WORD = re.compile(r"\w+", re.UNICODE)

Namespace = tuple[str, ...]
Clock = Callable[[], float]


_MEMORY_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tieredmem_memory_only", default=False
)


_SNAPSHOT: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tieredmem_snapshot", default=False
)


class ColdReadError(Exception):
    """Raised inside :meth:`Store.memory_only` when an answer needs the cold tier."""


def _cold() -> None:
    if _MEMORY_ONLY.get():
        raise ColdReadError


def memory_only_active() -> bool:
    """True inside :meth:`Store.memory_only` (layers above use it to avoid waiting)."""
    return _MEMORY_ONLY.get()


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


class Item:
    """One stored item, as :meth:`Store.get` and :meth:`Store.search` return it.

    ``value`` is the caller's own copy: mutating it changes nothing stored.
    ``created_at`` survives updates; ``updated_at`` is the last write.  ``score`` is set
    by full-text search (higher is better) and ``None`` otherwise.
    """

    __slots__ = ("_created", "_updated", "expires_at", "key", "namespace", "score", "value")

    def __init__(
        self,
        namespace: Namespace,
        key: str,
        value: Any,
        created: float,
        updated: float,
        expires_at: float | None = None,
        score: float | None = None,
    ) -> None:
        self.namespace = namespace
        self.key = key
        self.value = value
        self._created = created
        self._updated = updated
        self.expires_at = expires_at
        self.score = score

    @property
    def created_at(self) -> datetime:
        """When the item was first written (UTC)."""
        return _utc(self._created)

    @property
    def updated_at(self) -> datetime:
        """When the item was last written (UTC)."""
        return _utc(self._updated)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Item):
            return NotImplemented
        return (self.namespace, self.key, self.value, self._created, self._updated) == (
            other.namespace,
            other.key,
            other.value,
            other._created,
            other._updated,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Item(namespace={self.namespace!r}, key={self.key!r}, value={self.value!r}, "
            f"created_at={self.created_at.isoformat()}, updated_at={self.updated_at.isoformat()})"
        )

    def dict(self) -> dict[str, Any]:
        """The item as a plain dict (times as ISO 8601 strings)."""
        return {
            "namespace": list(self.namespace),
            "key": self.key,
            "value": self.value,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class Stats:
    """A snapshot of a store's counters and sizes (see :meth:`Store.stats`)."""

    hot_items: int
    hot_bytes: int
    hot_budget: int
    hits: int
    misses: int
    spills: int
    loads: int
    writes: int
    deletes: int
    expired: int
    pending_writes: int
    cold_bytes: int
    cold_free_bytes: int
    cold_rows: int
    wal_bytes: int
    url: str
    durability: str

    @property
    def hit_rate(self) -> float:
        """Hits over reads (0.0 before the first read)."""
        reads = self.hits + self.misses
        return self.hits / reads if reads else 0.0

    def as_dict(self) -> dict[str, Any]:
        """All fields plus ``hit_rate``, for JSON output."""
        out = asdict(self)
        out["hit_rate"] = self.hit_rate
        return out


# -- validation ------------------------------------------------------------------------
@functools.lru_cache(maxsize=8192)
def _join(namespace: Namespace, internal: bool) -> str:
    if not namespace:
        raise InvalidNamespaceError("a namespace needs at least one label, e.g. ('users',)")
    for label in namespace:
        if not isinstance(label, str) or not label:
            raise InvalidNamespaceError(
                f"namespace {namespace!r}: every label must be a non-empty string"
            )
        if _CONTROL.search(label):
            raise InvalidNamespaceError(
                f"namespace {namespace!r}: labels may not contain control characters"
            )
    if not internal and namespace[0] == INTERNAL_ROOT:
        raise InvalidNamespaceError(
            f"namespace {namespace!r}: the root label {INTERNAL_ROOT!r} is reserved"
        )
    return SEP.join(namespace)


def _as_namespace(namespace: Any) -> Namespace:
    if type(namespace) is tuple:
        return namespace
    if isinstance(namespace, (list, tuple)):
        return tuple(namespace)
    if isinstance(namespace, str):
        raise InvalidNamespaceError(
            f"namespace {namespace!r} is a string; use a tuple of labels, e.g. ({namespace!r},)"
        )
    raise InvalidNamespaceError(f"namespace must be a tuple of strings, not {namespace!r}")


def _ns(namespace: Any, internal: bool = False) -> tuple[Namespace, str]:
    ns = _as_namespace(namespace)
    try:
        return ns, _join(ns, internal)
    except TypeError:  # unhashable label
        raise InvalidNamespaceError(
            f"namespace {namespace!r}: every label must be a non-empty string"
        ) from None


def _prefix(namespace_prefix: Any) -> tuple[Namespace, str]:
    ns = _as_namespace(namespace_prefix)
    if not ns:
        return ns, ""
    return _ns(ns)


def _check_key(key: Any) -> None:
    if type(key) is not str or not key:
        raise InvalidKeyError(f"key must be a non-empty string, not {key!r}")


def _ttl_seconds(ttl: float | timedelta | None) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        raise ValueError(f"ttl must be seconds or a timedelta, not {ttl!r}")
    if seconds <= 0:
        raise ValueError(f"ttl must be positive, got {ttl!r}")
    return seconds


# -- filters and text ------------------------------------------------------------------
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": lambda a, b: a == b,
    "$ne": lambda a, b: a != b,
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}
_ABSENT = object()


def _field(value: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _ABSENT
        value = value[part]
    return value


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if actual is _ABSENT:
        return op == "$ne"
    try:
        return _OPS[op](actual, expected)
    except TypeError:  # e.g. "a" > 1: not comparable, so no match
        return False


def validate_filter(filter: Mapping[str, Any] | None) -> None:
    """Raise ``ValueError`` for an operator that :func:`matches` does not know."""
    if filter is None:
        return
    if not isinstance(filter, Mapping):
        raise ValueError(f"filter must be a mapping, not {filter!r}")
    for spec in filter.values():
        if isinstance(spec, Mapping) and spec and all(str(k).startswith("$") for k in spec):
            for op in spec:
                if op not in _OPS:
                    raise ValueError(
                        f"unknown filter operator {op!r}; use one of {', '.join(_OPS)}"
                    )


def matches(value: Any, filter: Mapping[str, Any] | None) -> bool:
    """True if *value* satisfies *filter*: exact matches and ``$eq $ne $gt $gte $lt $lte``.

    Keys are field names of the (dict) value, dotted for nested fields.

    >>> matches({"age": 30, "lang": "fr"}, {"lang": "fr", "age": {"$gte": 18}})
    True
    """
    if not filter:
        return True
    for path, spec in filter.items():
        actual = _field(value, path)
        if isinstance(spec, Mapping) and spec and all(str(k).startswith("$") for k in spec):
            if not all(_compare(op, actual, expected) for op, expected in spec.items()):
                return False
        elif actual is _ABSENT or actual != spec:
            return False
    return True


def compile_filter(filter: Mapping[str, Any] | None) -> Callable[[Any], bool] | None:
    """:func:`matches` with *filter* bound: ``compile_filter(f)(v) == matches(v, f)``.

    The filter is taken apart once (paths split, operators looked up), not once a row:
    ~0.4 us a call instead of ~1.9 us for a two-field filter.  ``None`` for no filter.
    """
    if not filter:
        return None
    checks: list[tuple[list[str], Any, list[tuple[str, Callable[[Any, Any], bool], Any]]]] = []
    for path, spec in filter.items():
        if isinstance(spec, Mapping) and spec and all(str(k).startswith("$") for k in spec):
            checks.append(
                (path.split("."), None, [(op, _OPS[op], exp) for op, exp in spec.items()])
            )
        else:
            checks.append((path.split("."), spec, []))
    absent = _ABSENT

    def test(value: Any) -> bool:
        for parts, exact, ops in checks:
            actual = value
            for part in parts:
                if not isinstance(actual, dict) or part not in actual:
                    actual = absent
                    break
                actual = actual[part]
            if not ops:
                if actual is absent or actual != exact:
                    return False
                continue
            for op, fn, expected in ops:
                if actual is absent:
                    if op != "$ne":
                        return False
                    continue
                try:
                    if not fn(actual, expected):
                        return False
                except TypeError:  # e.g. "a" > 1: not comparable, so no match
                    return False
        return True

    return test


def filter_needles(filter: Mapping[str, Any] | None) -> tuple[bytes, ...]:
    """Byte strings that the JSON payload of any value matching *filter* must contain.

    An exact (or ``$eq``) match on a ``str`` or on ``None`` needs that JSON token in the
    payload: orjson writes a string the same way wherever it is (compact, only ``"``,
    ``\\`` and control characters escaped), so ``orjson.dumps(spec)`` is a substring of
    the payload of every match.  Numbers and booleans give none (``1 == 1.0 == True``), nor
    do containers or other operators.  A row whose payload lacks a needle is skipped
    without being parsed; the rest still go through :func:`matches`, which decides.
    """
    if not filter:
        return ()
    out: list[bytes] = []
    for spec in filter.values():
        if isinstance(spec, Mapping) and spec and all(str(k).startswith("$") for k in spec):
            spec = spec.get("$eq", _ABSENT)
        if type(spec) is str:
            try:
                out.append(orjson.dumps(spec))
            except orjson.JSONEncodeError:  # e.g. a lone surrogate: no stored str equals it
                continue
        elif spec is None:
            out.append(b"null")
    return tuple(out)


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


def fts_query(query: str) -> str:
    """Turn free text into an FTS5 query: any of its words, each quoted (no syntax)."""
    return " OR ".join(f'"{w}"' for w in _WORD.findall(query))


# -- the store -------------------------------------------------------------------------
class _Tx:
    __slots__ = ("depth", "overlay")

    def __init__(self) -> None:
        self.depth = 0
        self.overlay: dict[str, tuple[Any, Entry]] = {}


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
    ) -> None:
        if durability not in ("sync", "batch"):
            raise ValueError(f"durability must be 'sync' or 'batch', not {durability!r}")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        self._backend = backend
        self._remote = bool(getattr(backend, "remote", False))
        self._metrics = metrics
        self._codec = codec or Codec()
        self._clock = clock
        self.durability = durability
        self.flush_interval = float(flush_interval)
        self.maintenance_interval = float(maintenance_interval)
        self._hot = HotTier(parse_bytes(hot_bytes))
        self._max_pending = parse_bytes(max_pending_bytes)
        self._max_value = parse_bytes(max_value_bytes)
        self._lock = threading.Lock()  # hot tier, pending batch, counters; never held for I/O
        self._write_lock = threading.RLock()  # serializes writes in this process
        self._local = threading.local()
        self._epoch = 0  # bumped by every write and invalidation (guards stale fills)
        self._tx_active = 0  # open transactions in any thread (reads then check overlays)
        self._pending: dict[str, tuple[Any, Entry]] = {}
        self._pending_bytes = 0
        self._flushing: dict[str, tuple[Any, Entry]] = {}
        # Buffered writes that must not enter the hot tier when they commit
        # (``write(cache_puts=False)`` / ``tombstones=False``).
        self._uncached: set[str] = set()
        self._closed = False
        self._hits = self._misses = self._loads = 0
        self._writes = self._deletes = self._expired = 0
        self._maintenance_hooks: list[Callable[[], dict[str, Any]]] = []
        self._flush_hooks: list[Callable[[], None]] = []
        self._in_flush_hooks = False  # only read and set with _write_lock held
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_maintenance = clock()
        self._training = False
        self._load_dictionaries()
        if durability == "batch" or maintenance_interval > 0:
            self._start_worker()
        self._atexit = _weak_method(self.close)
        atexit.register(self._atexit)

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

    def _start_worker(self) -> None:
        ref = weakref.ref(self)
        stop, wake = self._stop, self._wake
        period = self.flush_interval if self.durability == "batch" else self.maintenance_interval

        def run() -> None:
            while True:
                wake.wait(period)
                wake.clear()
                store = ref()
                if stop.is_set() or store is None or store._closed:
                    return
                try:
                    store._tick()
                except Exception:  # keep the worker alive; the next tick retries
                    log.exception("background maintenance of %s failed", store.url)
                del store

        self._thread = threading.Thread(target=run, name="tieredmem-worker", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
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
            self._stop.set()
            self._wake.set()
            atexit.unregister(self._atexit)
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(timeout=5)
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

    # -- zstd dictionaries (see tieredmem.codec) -------------------------------------
    def _load_dictionaries(self) -> None:
        backend = self._backend
        if not hasattr(backend, "add_dictionary"):  # a third-party backend without them
            self._codec._sampling = False
            return
        self._codec.set_loader(backend.dictionary)
        for dict_id, data in sorted(backend.dictionaries().items()):
            self._codec.add_dictionary(dict_id, data)

    def _after_write(self) -> None:
        """Start training the codec's dictionary once it has seen enough values."""
        if self._training or not self._codec.wants_dictionary():
            return
        self._training = True
        thread = threading.Thread(
            target=self._train_dictionary, name="tieredmem-zstd-dict", daemon=True
        )
        thread.start()

    def _train_dictionary(self) -> None:
        started = time.perf_counter()
        data = self._codec.train()
        if data is None or self._closed:
            return
        try:
            dict_id = self._backend.add_dictionary(data)
        except Exception:  # closed meanwhile, or the file is read-only: no dictionary
            log.debug("storing a zstd dictionary in %s failed", self.url, exc_info=True)
            return
        self._codec.add_dictionary(dict_id, data)
        self.emit("dictionary", id=dict_id, bytes=len(data), seconds=time.perf_counter() - started)

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
            return Entry(codec, payload, None, created, updated, expires, size, ttl)
        value = self._codec.load_payload(codec, payload)
        return Entry(codec, None, value, created, updated, expires, size, ttl)

    def _row_entry(self, hk: str, row: Row) -> Entry:
        codec, payload = self._codec.unframe(row.frame)
        return self._entry(
            hk, codec, payload, row.created_at, row.updated_at, row.expires_at, row.ttl
        )

    @staticmethod
    def _missing(hk: str) -> Entry:
        return Entry(_MISSING, None, None, None, 0.0, None, ENTRY_OVERHEAD + len(hk))

    def _value(self, entry: Entry) -> Any:
        if entry.payload is not None:
            return orjson.loads(entry.payload)
        return entry.value

    def _created(self, ns: str, key: str, entry: Entry) -> float:
        if entry.created is not None:
            return entry.created
        # A batched or transactional write whose row may already exist: ask the cold tier.
        _cold()
        row = self._backend.get(ns, key)
        entry.created = row.created_at if row is not None else entry.updated
        return entry.created

    # -- reads -------------------------------------------------------------------------
    def _load(self, ns: str, key: str, hk: str, epoch: int, *, count_miss: bool = False) -> Entry:
        """Read one key from the cold tier and keep it hot (a miss is remembered too),
        unless a write or an invalidation happened since *epoch*.  *count_miss*: count
        the hot-tier miss that led here (one lock round trip for both)."""
        if _MEMORY_ONLY.get():
            raise ColdReadError
        started = time.perf_counter() if self._metrics is not None else 0.0
        row = self._backend.get(ns, key)
        entry = self._row_entry(hk, row) if row is not None else self._missing(hk)
        with self._lock:
            hot = self._hot
            spills = hot.spills
            self._misses += count_miss
            self._loads += row is not None
            if epoch == self._epoch:
                hot.offer(hk, entry)  # a miss too (within the misses' share)
            spilled = hot.spills - spills
        if self._metrics is not None and row is not None:
            self.emit("load", bytes=len(row.frame), seconds=time.perf_counter() - started)
            if spilled:
                self.emit("spill", entries=spilled)
        return entry

    def _lookup(self, ns: str, key: str, hk: str) -> Entry | None:
        """The live entry for a key (None when absent or expired)."""
        tx: _Tx | None = getattr(self._local, "tx", None)
        entry: Entry | None = None
        if tx is not None and hk in tx.overlay:
            entry = tx.overlay[hk][1]
        else:
            if self._foreign_change():
                self._invalidate_all()
            with self._lock:
                if self._pending or self._flushing:
                    pend = self._pending.get(hk) or self._flushing.get(hk)
                    if pend is not None:
                        entry = pend[1]
                if entry is None:
                    entry = self._hot.get(hk)
                    if entry is not None:
                        self._hits += 1
                    else:
                        self._misses += 1
                        epoch = self._epoch
            if entry is None:
                entry = self._load(ns, key, hk, epoch)
        if entry.codec == _MISSING:
            return None
        if entry.expires is not None and entry.expires <= self._clock():
            return None
        return entry

    def get(self, namespace: Sequence[str], key: str, *, refresh_ttl: bool = False) -> Item | None:
        """Return the item, or ``None`` if it does not exist or has expired.

        :param refresh_ttl: restart the item's ttl (an item put with ``ttl=`` then lives
            another ``ttl`` from now).
        :raises InvalidNamespaceError: *namespace* is not a non-empty tuple of strings.
        :raises StoreClosedError: the store was closed.
        """
        if self._closed:
            self._check_open()
        ns_t, ns = _ns(namespace)
        if type(key) is not str or not key:
            _check_key(key)
        item = self._read(ns_t, ns, key)
        if refresh_ttl and item is not None and item.expires_at is not None:
            self._refresh([item], [(ns, key)])
        return item

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
                    entry = self._hot.peek(ns + _HK + key)
                    if entry is not None and entry.ttl is not None:
                        entry.expires = now + entry.ttl
                        item.expires_at = entry.expires
                    elif entry is not None:
                        self._hot.pop(ns + _HK + key, None)  # ttl unknown here: reload

    def _read(self, ns_t: Namespace, ns: str, key: str) -> Item | None:
        # Fast path: no transaction, nothing batched, no other process wrote, and hot.
        if not (self._tx_active or self._pending or self._flushing):
            if self._foreign_change():
                self._invalidate_all()
            else:
                hk = ns + _HK + key
                lookup = self._hot.lookup
                # Hits take no lock (HotTier.lookup), so threads reading hot keys do
                # not queue on it; the hit counter is then approximate under threads.
                entry: Entry | None
                if lookup is not None:
                    entry = lookup(hk)
                    epoch = self._epoch
                else:
                    with self._lock:
                        entry = self._hot.get(hk)  # the current tier (not a replaced one)
                        epoch = self._epoch
                if entry is None:
                    # The epoch was read before the row: a write committed meanwhile bumps
                    # it, and _load then does not cache what it read.
                    entry = self._load(ns, key, hk, epoch, count_miss=True)
                elif entry.codec == _MISSING or entry.created is not None:
                    self._hits += 1
                if entry.codec == _MISSING:
                    return None
                if entry.created is not None:
                    return self._live_item(ns_t, key, entry, entry.created)
        return self._get(ns_t, ns, key)

    def _live_item(self, ns_t: Namespace, key: str, entry: Entry, created: float) -> Item | None:
        """The item of a hot entry (its ``created_at`` known: *created*); None once expired."""
        if entry.expires is not None and entry.expires <= self._clock():
            return None
        value = entry.value if entry.payload is None else orjson.loads(entry.payload)
        return Item(ns_t, key, value, created, entry.updated, entry.expires)

    def _get(self, ns_t: Namespace, ns: str, key: str) -> Item | None:
        entry = self._lookup(ns, key, ns + _HK + key)
        if entry is None:
            return None
        return Item(
            ns_t,
            key,
            self._value(entry),
            self._created(ns, key, entry),
            entry.updated,
            entry.expires,
        )

    def get_many(self, keys: Iterable[tuple[Sequence[str], str]]) -> list[Item | None]:
        """Return items for ``(namespace, key)`` pairs, in order (``None`` where absent)."""
        self._check_open()
        wanted = []
        for namespace, key in keys:
            ns_t, ns = _ns(namespace)
            _check_key(key)
            wanted.append((ns_t, ns, key))
        return self._get_many(wanted)

    def read_many(self, keys: Sequence[tuple[str, str]]) -> list[Item | None]:
        """:meth:`get_many` for joined (possibly internal) namespaces."""
        self._check_open()
        return self._get_many([(tuple(ns.split(SEP)), ns, key) for ns, key in keys])

    def _get_many(self, wanted: list[tuple[Namespace, str, str]]) -> list[Item | None]:
        lookup = self._hot.lookup
        checked = False
        if lookup is not None and not (self._tx_active or self._pending or self._flushing):
            # Fast path, as in _read: every key hot, answered without the store's lock
            # (threads reading the same hot rows, like LangGraph's get_state, would queue
            # on it).
            checked = True
            if self._foreign_change():
                self._invalidate_all()
            else:
                out: list[Item | None] = []
                for ns_t, ns, key in wanted:
                    entry = lookup(ns + _HK + key)
                    if entry is None:
                        break
                    if entry.codec == _MISSING:
                        out.append(None)
                    elif entry.created is None:
                        break
                    else:
                        out.append(self._live_item(ns_t, key, entry, entry.created))
                else:
                    self._hits += len(wanted)
                    return out
        # Load every cold miss in one snapshot, then answer through the hot tier (one
        # coherence check: not a second one, a round trip on Redis, after the fast path's).
        if checked:
            token = _SNAPSHOT.set(True)
            try:
                return self._get_many_loading(wanted)
            finally:
                _SNAPSHOT.reset(token)
        if self._foreign_change():
            self._invalidate_all()
        return self._get_many_loading(wanted)

    def _get_many_loading(self, wanted: list[tuple[Namespace, str, str]]) -> list[Item | None]:
        with self._lock:
            cold = [
                (ns, key)
                for _, ns, key in wanted
                if ns + _HK + key not in self._hot
                and ns + _HK + key not in self._pending
                and ns + _HK + key not in self._flushing
            ]
            epoch = self._epoch
        if len(cold) > 1:
            _cold()
            rows = self._backend.get_many(cold)
            with self._lock:
                if epoch == self._epoch:
                    for (ns, key), row in zip(cold, rows):
                        hk = ns + _HK + key
                        self._loads += row is not None
                        entry = self._row_entry(hk, row) if row is not None else self._missing(hk)
                        self._hot.offer(hk, entry)
        return [self._get(ns_t, ns, key) for ns_t, ns, key in wanted]

    def __contains__(self, address: tuple[Sequence[str], str]) -> bool:
        namespace, key = address
        return self.get(namespace, key) is not None

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
            frame = payload  # framed at the commit (see _ops): no second copy meanwhile
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
        hk = ns + _HK + key
        return Put(ns, key, frame, now, expires, None, defer, seconds), self._entry(
            hk, codec, payload, None, now, expires, seconds
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
        _, ns = _ns(namespace)
        _check_key(key)
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
        for namespace, key, value in items:
            _, ns = _ns(namespace)
            _check_key(key)
            prepared.append(self._prepare(ns, key, value, ttl))
        self._apply(prepared)

    def delete(self, namespace: Sequence[str], key: str) -> None:
        """Delete an item; deleting an absent item is not an error."""
        self._check_open()
        _, ns = _ns(namespace)
        _check_key(key)
        self._apply([(Delete(ns, key), self._missing(ns + _HK + key))])

    def delete_many(self, keys: Iterable[tuple[Sequence[str], str]]) -> None:
        """Delete several items atomically."""
        self._check_open()
        ops = []
        for namespace, key in keys:
            _, ns = _ns(namespace)
            _check_key(key)
            ops.append((Delete(ns, key), self._missing(ns + _HK + key)))
        self._apply(ops)

    def _apply(
        self,
        ops: Sequence[tuple[Any, Entry]],
        cache_puts: bool = True,
        tombstones: bool = True,
    ) -> None:
        """Write ops (each with the hot entry it leaves behind) in one atomic step.

        ``cache_puts=False``: written values are not kept in the hot tier (any cached
        version is dropped); ``tombstones=False``: deleted keys are dropped from the hot
        tier instead of being remembered as absent.
        """
        if not ops:
            return
        tx: _Tx | None = getattr(self._local, "tx", None)
        if tx is not None:
            for op, entry in ops:
                hk = op.ns + _HK + op.key
                prev = tx.overlay.get(hk)
                with self._lock:
                    self._inherit_created(hk, entry, prev[1] if prev else None)
                tx.overlay[hk] = (op, entry)
            return
        if self.durability == "batch":
            with self._lock:
                uncached = self._uncached
                for op, entry in ops:
                    hk = op.ns + _HK + op.key
                    put = type(op) is Put
                    self._inherit_created(hk, entry, None)
                    old = self._pending.get(hk)
                    if old is not None:
                        self._pending_bytes -= old[1].size
                    self._pending[hk] = (op, entry)
                    self._pending_bytes += entry.size
                    self._count(op)
                    if cache_puts if put else tombstones:
                        uncached.discard(hk)
                    else:
                        uncached.add(hk)
                self._epoch += 1
                pending = self._pending_bytes
            if pending >= self._max_pending:
                if self._flushing or pending >= 2 * self._max_pending:
                    # Back-pressure: a commit is already under way and the writer outpaces
                    # it; waiting here keeps what is buffered within ~2x max_pending_bytes.
                    self.flush()
                else:
                    self._wake.set()
            return
        with self._write_lock:
            created = self._backend.write(_ops(ops, self._codec))
            with self._lock:
                it = iter(created)
                self._epoch += 1
                for op, entry in ops:
                    put = type(op) is Put
                    if put:
                        entry.created = next(it)
                    self._count(op)
                    if cache_puts if put else tombstones:
                        self._hot.offer(op.ns + _HK + op.key, entry)
                    else:
                        self._hot.pop(op.ns + _HK + op.key, None)
        self._after_write()

    def _inherit_created(self, hk: str, entry: Entry, prev: Entry | None) -> None:
        """Give a buffered write the ``created_at`` of the version it replaces, if known.

        Call with ``self._lock`` held.  Unknown stays ``None`` and is resolved from the
        cold tier on read (see :meth:`_created`).
        """
        if entry.codec == _MISSING:
            return
        if prev is None:
            # Only a buffered version matters: a committed row keeps its created_at in the
            # cold tier anyway (the upsert preserves it).
            pend = self._pending.get(hk) or self._flushing.get(hk)
            prev = pend[1] if pend is not None else None
        if prev is None:
            return
        if prev.codec == _MISSING:
            entry.created = entry.updated  # the previous version is deleted: a new item
        elif prev.created is not None:
            entry.created = prev.created

    def _count(self, op: Any) -> None:
        if isinstance(op, Put):
            self._writes += 1
        else:
            self._deletes += 1

    # -- internal API for the layers above (histories, states, LangGraph adapters) -----
    def _foreign_change(self) -> bool:
        """Ask the backend whether another process wrote, once per :meth:`snapshot`."""
        if _SNAPSHOT.get():
            return False
        if self._remote:
            _cold()  # a network round trip is I/O: not on an event loop
        return self._backend.foreign_change()

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
        return _ns((INTERNAL_ROOT, *labels), internal=True)[1]

    def read(self, ns: str, key: str) -> Item | None:
        """:meth:`get` for a joined (possibly internal) namespace.

        The item's ``namespace`` is left empty: internal readers know where they read.
        """
        if self._closed:
            self._check_open()
        return self._read((), ns, key)

    def in_transaction(self) -> bool:
        """True inside :meth:`transaction` in this thread."""
        return getattr(self._local, "tx", None) is not None

    def read_values(self, ns: str, keys: Sequence[str], *, cache: bool = True) -> list[Any]:
        """Values of *keys* in a joined (possibly internal) namespace, ``None`` where
        absent or expired: :meth:`read_many` without the items' timestamps, so a batched
        write is answered from the buffer (its ``created_at`` is never looked up) and the
        keys missing from the hot tier are loaded in one query.

        ``cache=False``: values loaded from the cold tier are not kept in the hot tier.
        """
        if self._closed:
            self._check_open()
        if getattr(self._local, "tx", None) is not None:
            # Inside store.transaction(): _lookup sees the transaction's own writes.
            found = [self._lookup(ns, key, ns + _HK + key) for key in keys]
            return [None if e is None else self._value(e) for e in found]
        if self._foreign_change():
            self._invalidate_all()
        entries: list[Entry | None] = [None] * len(keys)
        cold: list[int] = []
        with self._lock:
            pending, flushing = self._pending, self._flushing
            for i, key in enumerate(keys):
                hk = ns + _HK + key
                entry: Entry | None = None
                if pending or flushing:
                    pend = pending.get(hk) or flushing.get(hk)
                    if pend is not None:
                        entry = pend[1]
                if entry is None:
                    entry = self._hot.get(hk)
                    if entry is None:
                        self._misses += 1
                        cold.append(i)
                        continue
                    self._hits += 1
                entries[i] = entry
            epoch = self._epoch
        if cold:
            _cold()
            wanted = [(ns, keys[i]) for i in cold]
            rows = (
                self._backend.get_many(wanted)
                if len(wanted) > 1
                else [self._backend.get(*wanted[0])]
            )
            loaded = [
                self._row_entry(ns + _HK + key, row)
                if row is not None
                else self._missing(ns + _HK + key)
                for (_, key), row in zip(wanted, rows)
            ]
            with self._lock:
                self._loads += sum(row is not None for row in rows)
                fresh = epoch == self._epoch
                for i, entry in zip(cold, loaded):
                    entries[i] = entry
                    if cache and fresh:
                        self._hot.offer(ns + _HK + keys[i], entry)
        now = self._clock()
        return [
            None
            if e is None or e.codec == _MISSING or (e.expires is not None and e.expires <= now)
            else self._value(e)
            for e in entries
        ]

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
        prepared += [(Delete(ns, key), self._missing(ns + _HK + key)) for ns, key in deletes]
        if not ranges:
            self._apply(prepared, cache_puts, tombstones)
            return
        if getattr(self._local, "tx", None) is not None:
            raise RuntimeError("range deletes cannot run inside store.transaction()")
        self.flush()
        ops: list[Any] = [DeleteRange(ns, start, stop) for ns, start, stop in ranges]
        with self._write_lock:
            created = self._backend.write(ops + _ops(prepared, self._codec))
            with self._lock:
                self._epoch += 1
                for ns, start, stop in ranges:
                    lo, hi = (
                        ns + _HK + start,
                        ns + _HK + (stop if stop is not None else "\U0010ffff"),
                    )
                    for hk in [k for k in self._hot if lo <= k < hi]:
                        del self._hot[hk]
                it = iter(created)
                for op, entry in prepared:
                    put = type(op) is Put
                    if put:
                        entry.created = next(it)
                    self._count(op)
                    if cache_puts if put else tombstones:
                        self._hot.offer(op.ns + _HK + op.key, entry)
                    else:
                        self._hot.pop(op.ns + _HK + op.key, None)

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
        if self._closed:
            self._check_open()
        now = self._clock()
        # created_at = now: a tail row's is never read, and naming it spares the upsert
        # its RETURNING.
        put = Put(ns, key, bytes((RAW,)) + payload, now, None, now)
        with self._write_lock:
            self._backend.write([put])
            with self._lock:
                self._epoch += 1
                self._writes += 1
                self._hot.pop(ns + _HK + key, None)
        self._after_write()

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
        out = []
        for row in self._backend.range(ns, start, stop):
            item = self._row_item(row, now, None)
            if item is not None:
                out.append(item)
        return out

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
                item = self._row_item(row, now, None)
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
                if not self._pending:
                    return
                flushed_bytes = self._pending_bytes
                batch, self._pending, self._pending_bytes = self._pending, {}, 0
                self._flushing = batch
            started = time.perf_counter()
            try:
                created = self._backend.write(_ops(batch.values(), self._codec))
            except BaseException:
                with self._lock:  # keep them pending: nothing acknowledged is dropped
                    batch.update(self._pending)
                    self._pending = batch
                    self._pending_bytes = sum(e.size for _, e in batch.values())
                    self._flushing = {}
                raise
            with self._lock:
                it = iter(created)
                uncached = self._uncached
                for hk, (op, entry) in batch.items():
                    if type(op) is Put:
                        entry.created = next(it)
                    if hk not in self._pending:
                        if hk in uncached:
                            uncached.discard(hk)
                            self._hot.pop(hk, None)
                        else:
                            self._hot.offer(hk, entry)
                self._flushing = {}
                self._epoch += 1
        self.emit("flush", rows=len(batch), seconds=time.perf_counter() - started)
        if flushed_bytes >= _TRIM_AFTER:
            _release_freed_memory()
        self._after_write()

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
        tx.depth += 1
        try:
            yield self
        except BaseException:
            tx.overlay = snapshot
            raise
        finally:
            tx.depth -= 1
            if outer:
                self._local.tx = None
                with self._lock:
                    self._tx_active -= 1
        if outer:
            self._apply(list(tx.overlay.values()))

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
        _, prefix = _prefix(namespace_prefix)
        validate_filter(filter)
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        self.flush()
        items = self._search(prefix, query=query, filter=filter, limit=limit, offset=offset)
        if refresh_ttl:
            due = [i for i in items if i.expires_at is not None]
            self._refresh(due, [(SEP.join(i.namespace), i.key) for i in due])
        return items

    def _search(
        self,
        prefix: str,
        *,
        query: str | None,
        filter: Mapping[str, Any] | None,
        limit: int,
        offset: int,
        internal: bool = False,
    ) -> list[Item]:
        skip = None if internal or prefix else INTERNAL_ROOT
        now = self._clock()
        wanted = offset + limit
        if limit == 0:
            return []
        needles = filter_needles(filter)
        test = compile_filter(filter)
        names: dict[str, Namespace] = {}
        found: list[Item] = []
        if query is not None:
            q = fts_query(query)
            if not q:
                return []
            ask = max(wanted * 2, 20)
            while True:
                hits = self._backend.text_search(prefix, q, limit=ask, skip_prefix=skip)
                found = []
                for row, score in hits:  # best first: decode only until enough matched
                    item = self._match_row(row, now, score, test, needles, names)
                    if item is not None:
                        found.append(item)
                        if len(found) >= wanted:
                            break
                if len(found) >= wanted or len(hits) < ask:
                    break
                ask *= 4
            return found[offset:wanted]
        # Rows come in (ns, key) order: stop reading (and decoding) at the wanted-th match.
        # Without a filter every live row matches, so the first page asks for little more.
        page = 500 if filter else min(500, wanted + 8)
        after: tuple[str, str] | None = None
        unframe, load = self._codec.unframe, self._codec.load_payload
        first, rest = (needles[0], needles[1:]) if needles else (None, ())
        while True:
            rows = self._backend.scan(prefix, after=after, limit=page, skip_prefix=skip)
            # _match_row, inlined: this loop runs for every row under the prefix.
            for row in rows:
                if row.expires_at is not None and row.expires_at <= now:
                    continue
                codec, payload = unframe(row.frame)
                if (
                    first is not None
                    and codec == JSON
                    # find() rather than 'in': ~0.1 us less on a 1 KB payload (CPython 3.11)
                    and (payload.find(first) < 0 or (rest and not all(n in payload for n in rest)))
                ):
                    continue
                try:
                    value = load(codec, payload)
                except orjson.JSONDecodeError as exc:
                    raise SerializationError(f"damaged JSON frame: {exc}") from None
                if test is not None and not test(value):
                    continue
                namespace = names.get(row.ns)
                if namespace is None:
                    namespace = names[row.ns] = tuple(row.ns.split(SEP))
                found.append(
                    Item(
                        namespace,
                        row.key,
                        value,
                        row.created_at,
                        row.updated_at,
                        row.expires_at,
                    )
                )
                if len(found) >= wanted:
                    return found[offset:wanted]
            if len(rows) < page:
                return found[offset:wanted]
            after = (rows[-1].ns, rows[-1].key)
            page = 500

    def _match_row(
        self,
        row: Row,
        now: float,
        score: float | None,
        test: Callable[[Any], bool] | None,
        needles: tuple[bytes, ...],
        names: dict[str, Namespace],
    ) -> Item | None:
        """The live item of *row* if it passes *test* (a :func:`compile_filter`), else
        ``None``.

        A JSON payload lacking one of *needles* (see :func:`filter_needles`) cannot match,
        so it is not parsed.
        """
        if row.expires_at is not None and row.expires_at <= now:
            return None
        codec, payload = self._codec.unframe(row.frame)
        if needles and codec == JSON:
            for needle in needles:
                if needle not in payload:
                    return None
        try:
            value = self._codec.load_payload(codec, payload)
        except orjson.JSONDecodeError as exc:
            raise SerializationError(f"damaged JSON frame: {exc}") from None
        if test is not None and not test(value):
            return None
        namespace = names.get(row.ns)
        if namespace is None:
            namespace = names[row.ns] = tuple(row.ns.split(SEP))
        return Item(
            namespace, row.key, value, row.created_at, row.updated_at, row.expires_at, score
        )

    def _row_item(self, row: Row, now: float, score: float | None) -> Item | None:
        if row.expires_at is not None and row.expires_at <= now:
            return None
        value = self._codec.decode(row.frame)
        return Item(
            tuple(row.ns.split(SEP)),
            row.key,
            value,
            row.created_at,
            row.updated_at,
            row.expires_at,
            score,
        )

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
        if max_depth is not None and max_depth < 1:
            raise ValueError("max_depth must be >= 1")
        self.flush()
        pre = tuple(prefix or ())
        suf = tuple(suffix or ())
        literal: list[str] = []
        for label in pre:
            if label == "*":
                break
            literal.append(label)
        _, lit = _prefix(tuple(literal))
        skip = None if lit else INTERNAL_ROOT
        out: list[Namespace] = []
        seen: set[Namespace] = set()
        after: str | None = None
        while len(out) < offset + limit:
            batch = self._backend.namespaces(lit, after=after, limit=500, skip_prefix=skip)
            for joined in batch:
                ns = tuple(joined.split(SEP))
                if not _match_labels(ns, pre) or not _match_labels(ns[::-1], suf[::-1]):
                    continue
                if max_depth is not None:
                    ns = ns[:max_depth]
                if ns not in seen:
                    seen.add(ns)
                    out.append(ns)
            if len(batch) < 500:
                break
            after = batch[-1]
        return out[offset : offset + limit]

    # -- maintenance -------------------------------------------------------------------
    def _invalidate_all(self) -> None:
        with self._lock:
            self._hot = self._hot.fresh()
            self._epoch += 1

    def _invalidate_prefix(self, hk_prefix: str) -> None:
        with self._lock:
            for hk in [k for k in self._hot if k.startswith(hk_prefix)]:
                del self._hot[hk]
            self._epoch += 1

    def add_flush_hook(self, hook: Callable[[], None]) -> None:
        """Run *hook* at the start of every :meth:`flush` (with ``durability="batch"``,
        every commit), with the write lock held: a layer that buffers its own writes
        (histories' tail rows) hands them over with :meth:`write`, so the commit includes
        everything written before it."""
        self._flush_hooks.append(hook)

    def add_maintenance_hook(self, hook: Callable[[], dict[str, Any]]) -> None:
        """Run *hook* on every :meth:`maintain` (retention policies of higher layers)."""
        self._maintenance_hooks.append(hook)

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
                    with self._lock:
                        for ns, key in keys:
                            self._hot.pop(ns + _HK + key, None)
                        self._epoch += 1
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
                pending_writes=len(self._pending),
                cold_bytes=cold["cold_bytes"],
                cold_free_bytes=cold["cold_free_bytes"],
                cold_rows=cold["cold_rows"],
                wal_bytes=cold["wal_bytes"],
                url=self.url,
                durability=self.durability,
            )


#: After a batch commit of at least this many bytes, hand freed memory back to the OS.
_TRIM_AFTER = 1 << 20


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # only where it is used: a process that never trims does not load it

    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
        return trim
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to do
        return None


def _release_freed_memory() -> None:
    """Return the free pages of glibc's heaps to the OS (``malloc_trim``).

    A batch commit frees megabytes of buffered payloads that threads allocated in their
    own malloc arenas; glibc keeps those pages, so a multi-threaded writer's RSS grows
    far past what it holds (benchmarks/agent_memory.py (b): 105 -> 90 MB peak).  About
    a millisecond, once per MiB committed."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _ops(ops: Iterable[tuple[Any, Entry]], codec: Codec) -> list[Any]:
    """Backend ops of buffered writes: each Put compressed if it waited for the commit,
    and carrying the created_at it settled on."""
    ops = list(ops)
    waiting = [(e.codec, op.frame) for op, e in ops if type(op) is Put and op.deferred]
    frames = iter(codec.frames(waiting) if waiting else ())  # none on the sync path
    out = []
    new = tuple.__new__  # Put(...) without namedtuple's Python-level __new__/_replace
    for op, entry in ops:
        if type(op) is Put:
            ns, key, payload, now, expires, created, deferred, ttl = op
            if created is None:
                created = entry.created
            if deferred:
                payload = next(frames)
            if deferred or created is not op.created:
                op = new(Put, (ns, key, payload, now, expires, created, False, ttl))
        out.append(op)
    return out


def _match_labels(ns: Namespace, pattern: Namespace) -> bool:
    if len(ns) < len(pattern):
        return False
    return all(p == "*" or p == label for p, label in zip(pattern, ns))


def _weak_method(method: Callable[[], None]) -> Callable[[], None]:
    ref = weakref.WeakMethod(method)

    def call() -> None:
        bound = ref()
        if bound is not None:
            bound()

    return call


def _text_of(codec: Codec) -> Callable[[bytes], str | None]:
    def text_of(frame: bytes) -> str | None:
        try:
            value = codec.decode(frame)
        except SerializationError:
            return None
        parts: list[str] = []
        _strings(value, parts)
        return "\n".join(parts) or None

    return text_of


def open(  # noqa: A001 - the library's entry point, like dbm.open / shelve.open
    url: str,
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
        text_of=_text_of(codec),
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
        )
    except BaseException:
        backend.close()
        raise

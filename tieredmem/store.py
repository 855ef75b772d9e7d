"""Store: namespaced items over a hot tier and a cold backend.

A read looks in the hot tier (a byte-bounded LRU) and, on a miss, in the cold tier (one
SQLite file by default), keeping what it loaded hot.  A write goes to the cold tier and
then to the hot tier (``durability="sync"``), or to an in-memory batch flushed as one
transaction every ``flush_interval`` seconds (``durability="batch"``).

:class:`Store` is the API users call, with namespaces as tuples of labels.  Under it one
:class:`~tieredmem.engine.Engine` holds the tiers, the write buffer and transactions;
:attr:`Store.raw` (:class:`~tieredmem.raw.Raw`) is the same engine as tieredmem's own layers
(histories, states, the LangGraph adapters) see it, with joined namespaces.  The other
concerns live in :mod:`~tieredmem.names`, :mod:`~tieredmem.filters`,
:mod:`~tieredmem.search`, :mod:`~tieredmem.buffer`, :mod:`~tieredmem.worker`,
:mod:`~tieredmem.dictionaries` and :mod:`~tieredmem.item`.

>>> import tieredmem
>>> with tieredmem.open(":memory:") as store:
...     store.put(("users", "alice"), "prefs", {"lang": "fr"})
...     store.get(("users", "alice"), "prefs").value
{'lang': 'fr'}
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from .backends import SEP, Backend, Delete, open_backend
from .codec import Codec
from .engine import Clock, ColdReadError, Engine, memory_only_active
from .errors import TieredMemError
from .fieldindex import fields_of
from .filters import check_page, check_query, matches, text_of, validate_filter
from .item import Item, Stats
from .names import VALIDATED, Namespace, check_key, hot_key
from .names import namespace as _namespace
from .names import prefix as _prefix
from .raw import EngineView, Raw
from .search import list_namespaces as _list_namespaces
from .search import search_rows

__all__ = [
    "Clock",
    "ColdReadError",
    "Item",
    "Stats",
    "Store",
    "matches",
    "memory_only_active",
    "open",
]


class Store(EngineView):
    """Namespaced items in a byte-bounded hot tier over a cold backend.

    Build one with :func:`tieredmem.open`.  Thread-safe.  Use as a context manager or
    call :meth:`close`.

    :param backend: the cold tier.
    :param hot_bytes: byte budget of the hot tier (int or string such as ``"64MiB"``).
    :param str hot_policy: what the hot tier keeps: ``"lru"`` (default) the most recently
        used entries; ``"tinylfu"`` (W-TinyLFU) admits a new entry past a small window
        only if it was read more often than what it would replace, so scans and one-off
        reads do not flush what is read often, at a few microseconds of bookkeeping per
        miss (see docs/concepts/tiers.md).
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
        super().__init__(
            Engine(
                backend,
                hot_bytes=hot_bytes,
                hot_policy=hot_policy,
                durability=durability,
                flush_interval=flush_interval,
                maintenance_interval=maintenance_interval,
                max_pending_bytes=max_pending_bytes,
                max_value_bytes=max_value_bytes,
                codec=codec,
                clock=clock,
                metrics=metrics,
                coherence_interval=coherence_interval,
            )
        )
        #: The same store with joined namespaces, for tieredmem's own layers.
        self.raw = Raw(self._engine)

    # -- lifecycle -------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Where the cold tier lives (``":memory:"``, ``sqlite:///...``, a server URL with
        its password shown as ``***``)."""
        return self._engine.url

    @property
    def backend(self) -> Backend:
        """The cold-tier backend (for tools such as ``tieredmem doctor``)."""
        return self._engine.backend

    @property
    def flush_interval(self) -> float:
        """Seconds between batch commits (``durability="batch"``)."""
        return self._engine.flush_interval

    @property
    def maintenance_interval(self) -> float:
        """Seconds between background maintenance runs (``0``: none)."""
        return self._engine.maintenance_interval

    def close(self) -> None:
        """Flush pending writes and release the file; idempotent."""
        self._engine.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Store {self.url} durability={self.durability} {state}>"

    # -- reads -------------------------------------------------------------------------
    def get(self, namespace: Sequence[str], key: str, *, refresh_ttl: bool = False) -> Item | None:
        """Return the item, or ``None`` if it does not exist or has expired.

        :param refresh_ttl: restart the item's ttl (an item put with ``ttl=`` then lives
            another ``ttl`` from now).
        :raises InvalidNamespaceError: *namespace* is not a non-empty tuple of strings.
        :raises StoreClosedError: the store was closed.
        """
        try:  # a namespace seen before (names.namespace's first step, inlined)
            ns_t, ns = VALIDATED[namespace]
        except (KeyError, TypeError):  # new, not a tuple, or unhashable
            ns_t, ns = _namespace(namespace)
        if type(key) is not str or not key or not key.isascii():
            check_key(key)
        engine = self._engine
        (entry,) = engine.fetch(((ns, key),))
        if entry is None:
            return None
        item = engine.item(ns_t, ns, key, entry)
        if refresh_ttl and item.expires_at is not None:
            engine.refresh_ttl([item], [(ns, key)])
        return item

    def get_many(self, keys: Iterable[tuple[Sequence[str], str]]) -> list[Item | None]:
        """Return items for ``(namespace, key)`` pairs, in order (``None`` where absent)."""
        wanted = []
        for ns_given, key in keys:
            ns_t, ns = _namespace(ns_given)
            check_key(key)
            wanted.append((ns_t, ns, key))
        found = self._engine.fetch([(ns, key) for _, ns, key in wanted])
        return [
            None if entry is None else self._engine.item(ns_t, ns, key, entry)
            for (ns_t, ns, key), entry in zip(wanted, found)
        ]

    def __contains__(self, address: tuple[Sequence[str], str]) -> bool:
        ns_given, key = address
        return self.get(ns_given, key) is not None

    # -- writes ------------------------------------------------------------------------
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
        self.put_many([(namespace, key, value)], ttl=ttl)

    def put_many(
        self,
        items: Iterable[tuple[Sequence[str], str, Any]],
        *,
        ttl: float | timedelta | None = None,
    ) -> None:
        """Store several ``(namespace, key, value)`` items atomically (all or none)."""
        engine = self._engine
        engine.check_open()
        prepared = []
        for ns_given, key, value in items:
            _, ns = _namespace(ns_given)
            check_key(key)
            prepared.append(engine.prepare(ns, key, value, ttl))
        engine.apply(prepared)

    def delete(self, namespace: Sequence[str], key: str) -> None:
        """Delete an item; deleting an absent item is not an error."""
        self.delete_many([(namespace, key)])

    def delete_many(self, keys: Iterable[tuple[Sequence[str], str]]) -> None:
        """Delete several items atomically."""
        engine = self._engine
        engine.check_open()
        ops = []
        for ns_given, key in keys:
            _, ns = _namespace(ns_given)
            check_key(key)
            ops.append((Delete(ns, key), engine.absent(hot_key(ns, key))))
        engine.apply(ops)

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """Group writes so they commit together, or not at all if the block raises.

        Reads inside the block see its own writes; nested blocks roll back to where they
        began.  Serializable: the outermost block takes the write lock when it starts
        (waiting up to ``busy_timeout``) and holds it until it commits, and its reads see
        the latest committed state, so a read-modify-write in it never loses an update to
        another thread, handle or process.  Other writers wait meanwhile: keep blocks
        short, and never wait in one for another thread that writes to the store.  Writes
        are applied when the outermost block exits (also with ``durability="batch"``).

        :raises BusyTimeoutError: another connection held the lock past the busy timeout.
        :raises ReadOnlyError: the store was opened with ``readonly=True``.

        >>> import tieredmem
        >>> store = tieredmem.open(":memory:")
        >>> with store.transaction():
        ...     store.put(("a",), "x", 1)
        ...     store.put(("a",), "y", 2)
        >>> store.get(("a",), "y").value
        2
        """
        with self._engine.transaction():
            yield self

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
        each with ``score``.  *filter* takes exact matches and ``$eq $ne $gt $gte $lt $lte
        $in $nin $exists $contains $not`` on fields of dict values (dotted for nested
        fields), and ``$and $or $not`` of filters (see :mod:`tieredmem.filters`); fields
        declared with :meth:`declare_index` are answered by an index.  Batched writes are flushed
        first; writes buffered in an open :meth:`transaction` are not searched.
        ``refresh_ttl`` restarts the ttl of the items returned.
        """
        self._engine.check_open()
        _, joined = _prefix(namespace_prefix)
        validate_filter(filter)
        check_query(query)
        check_page(limit, offset)
        self._engine.flush()
        items = search_rows(
            self._engine.backend,
            self._engine.codec,
            joined,
            query=query,
            filter=filter,
            limit=limit,
            offset=offset,
            now=self._engine.clock(),
        )
        if refresh_ttl:
            due = [i for i in items if i.expires_at is not None]
            self._engine.refresh_ttl(due, [(SEP.join(i.namespace), i.key) for i in due])
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
        self._engine.check_open()
        self._engine.flush()
        return _list_namespaces(
            self._engine.backend,
            prefix=prefix,
            suffix=suffix,
            max_depth=max_depth,
            limit=limit,
            offset=offset,
        )

    def declare_index(self, fields: Sequence[str]) -> None:
        """Index these fields of dict values for search filters, from now on and for the
        items already stored (see ``tieredmem.open(..., index=...)``); a no-op on backends
        without field indexes."""
        self._engine.check_open()
        declare = getattr(self._engine.backend, "declare_index", None)
        if declare is not None:
            self._engine.flush()
            declare(list(fields))

    # -- maintenance -------------------------------------------------------------------
    def maintain(self) -> dict[str, Any]:
        """Expire, apply retention, index, vacuum and checkpoint now; return what was done."""
        return self._engine.maintain()

    def sweep(self) -> int:
        """Delete expired items now (maintenance does it too); return how many."""
        return self._engine.sweep()

    def stats(self) -> Stats:
        """Counters and sizes of both tiers."""
        return self._engine.stats()


def open(  # noqa: A001 - the library's entry point, like dbm.open / shelve.open
    url: str | os.PathLike[str],
    *,
    hot_bytes: int | str = "64MiB",
    hot_policy: str = "lru",
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
    readonly: bool = False,
    index: Sequence[str] | None = None,
) -> Store:
    """Open (or create) a store.

    :param str url: ``":memory:"`` (nothing on disk), a file path, ``"sqlite:///path"``,
        or a URL whose scheme a backend registered (see ``tieredmem.backends``).
    :param hot_bytes: hot-tier budget in bytes, e.g. ``"64MiB"``.
    :param str hot_policy: ``"lru"`` (default) or ``"tinylfu"`` (see :class:`Store`).
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
    :param bool readonly: open an existing store for reading only: SQLite never writes
        the database file (it may create the empty ``-wal``/``-shm`` it coordinates
        through, where the directory is writable, and removes them on close when no other
        connection uses the file), no background maintenance runs, and every write raises
        :class:`ReadOnlyError`.  Works on a read-only file, directory or mount.  On
        PostgreSQL: nothing is created or migrated (a database, schema or prefix without a
        store raises :class:`NotAStoreError`), and nothing is written.
    :param index: fields of dict values to index, dotted for nested ones (``["n",
        "user.lang"]``): a search filter on them (exact match or a range on a number or a
        string) reads only the matching items through SQL instead of decoding every item
        under the prefix.  Declared in the file from then on (every later writer keeps it);
        declaring a field indexes the items already stored, once.  SQLite files; other
        backends ignore it (filters still work, by reading the items).
    :raises NotAStoreError: the file is not a tieredmem store (it is left untouched).
    :raises CorruptStoreError: the file is damaged; the message says how to recover.
    :raises CannotOpenError: the file or its directory cannot be opened or created.
    :raises ReadOnlyError: the file is read-only (use ``readonly=True``).
    :raises DiskFullError: a new store cannot be created on a full disk.
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
        fields_of=fields_of(codec),
        index=index,
        wal_bytes=wal_bytes,
        **({"readonly": True} if readonly else {}),
        check_frame=codec.check,
    )
    try:
        if readonly and not getattr(backend, "readonly", False):
            raise TieredMemError(
                f"readonly=True is supported for SQLite and PostgreSQL stores, not {backend.url}; "
                "open it without readonly"
            )
        return Store(
            backend,
            hot_bytes=hot_bytes,
            hot_policy=hot_policy,
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

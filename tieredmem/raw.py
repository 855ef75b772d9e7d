"""The store as tieredmem's own layers see it (histories, states, the LangGraph adapters):
joined namespaces, internal ones included, through :attr:`tieredmem.Store.raw`.

A joined namespace is one string (see :mod:`tieredmem.names`): the layers build it once
with :meth:`Raw.internal_ns` and pass it on every call, so no tuple is validated and joined
again per row.  Reads and writes take the same paths as :class:`~tieredmem.Store`'s:
:meth:`~tieredmem.engine.Engine.fetch` and :meth:`~tieredmem.engine.Engine.apply`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

import orjson

from .backends import Delete, DeleteRange
from .codec import Codec
from .engine import Clock, Engine, cold_access
from .hot import Entry
from .item import Item
from .names import INTERNAL_ROOT, damaged, hot_key, split
from .names import namespace as _namespace
from .search import row_item

__all__ = ["EngineView", "Raw"]


class EngineView:
    """What :class:`~tieredmem.Store` and :class:`Raw` both show of their engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def codec(self) -> Codec:
        """The codec that encodes values into frames."""
        return self._engine.codec

    @property
    def clock(self) -> Clock:
        """The store's clock (seconds since the epoch)."""
        return self._engine.clock

    @property
    def durability(self) -> str:
        """``"sync"`` (a returned call has committed) or ``"batch"``."""
        return self._engine.durability

    @property
    def closed(self) -> bool:
        """True once the store is closed."""
        return self._engine.closed

    @property
    def hot_budget(self) -> int:
        """The hot tier's budget in bytes (``hot_bytes``), read without touching the file."""
        return self._engine.hot_budget

    def flush(self) -> None:
        """Commit batched writes now (a no-op with ``durability="sync"``)."""
        self._engine.flush()

    def generation(self) -> int:
        """Check for writes by other handles, processes or hosts (as every read does) and
        return the cache generation.

        The number changes whenever such a write made this store drop its hot tier; a
        layer that caches decoded data above the store (a History's index, a saver's
        lists) keeps the generation it filled its cache at and drops the cache when
        this returns another.  Inside :meth:`snapshot` no new check is made.
        """
        return self._engine.generation()

    def snapshot(self) -> AbstractContextManager[None]:
        """Reads in the block share one coherence check (taken on entry) instead of one
        each: a reader of several related rows pays one round trip on Redis, not one a row.
        Writes by other processes during the block may be missed until it ends."""
        return self._engine.snapshot()


class Raw(EngineView):
    """Joined-namespace access to one store (``store.raw``); thread-safe."""

    # -- what the layers ask of the store -------------------------------------------
    @property
    def max_pending_bytes(self) -> int:
        """With ``durability="batch"``: bytes of buffered writes that start a commit."""
        return self._engine.max_pending_bytes

    def check_open(self) -> None:
        """Raise :class:`~tieredmem.StoreClosedError` if the store is closed."""
        self._engine.check_open()

    def internal_ns(self, *labels: str) -> str:
        """Joined namespace under the reserved ``tieredmem`` root."""
        return _namespace((INTERNAL_ROOT, *labels), internal=True)[1]

    def memory_only(self) -> AbstractContextManager[None]:
        """Within the block, reads that would touch the cold tier raise
        :class:`~tieredmem.engine.ColdReadError` instead (an async caller then retries in
        a thread, and answers from the hot tier never leave the event loop)."""
        return self._engine.memory_only()

    def in_transaction(self) -> bool:
        """True inside :meth:`tieredmem.Store.transaction` in this thread."""
        return self._engine.in_transaction()

    def emit(self, event: str, **fields: Any) -> None:
        """Send an event to the store's ``metrics`` hook (a no-op without one)."""
        self._engine.emit(event, **fields)

    def add_flush_hook(self, hook: Callable[[], None]) -> None:
        """Run *hook* at the start of every flush (with ``durability="batch"``, every
        commit), with the write lock held: a layer that buffers its own writes (histories'
        tail rows) hands them over with :meth:`write`, so the commit includes everything
        written before it."""
        self._engine.add_flush_hook(hook)

    def add_maintenance_hook(self, hook: Callable[[], dict[str, Any]]) -> None:
        """Run *hook* on every ``maintain()`` (retention policies of the layers)."""
        self._engine.add_maintenance_hook(hook)

    # -- reads -------------------------------------------------------------------------
    def read(self, ns: str, key: str) -> Item | None:
        """The item at ``(ns, key)``, or ``None``; its ``namespace`` is left empty."""
        (entry,) = self._engine.fetch(((ns, key),))
        return None if entry is None else self._engine.item((), ns, key, entry)

    def read_many(self, keys: Sequence[tuple[str, str]]) -> list[Item | None]:
        """Items at ``(ns, key)`` pairs, in order (``None`` where absent)."""
        found = self._engine.fetch(keys)
        return [
            None if entry is None else self._engine.item(split(ns), ns, key, entry)
            for (ns, key), entry in zip(keys, found)
        ]

    def read_values(self, ns: str, keys: Sequence[str], *, cache: bool = True) -> list[Any]:
        """Values of *keys* in *ns*, ``None`` where absent or expired: :meth:`read_many`
        without timestamps, so a batched write is answered from the buffer (its
        ``created_at`` is never looked up) and the keys missing from the hot tier are
        loaded in one query.  ``cache=False``: values loaded from the cold tier are not
        kept in the hot tier."""
        found = self._engine.fetch([(ns, key) for key in keys], cache=cache)
        return [
            None if entry is None else _value(ns, key, entry) for key, entry in zip(keys, found)
        ]

    def keys(self, ns: str, start: str = "", stop: str | None = None) -> list[str]:
        """Keys of *ns* in ``[start, stop)``, without loading values."""
        engine = self._engine
        engine.check_open()
        cold_access()
        engine.flush()
        return engine.backend.keys(ns, start, stop)

    def rows(
        self,
        ns: str,
        start: str = "",
        stop: str | None = None,
        *,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Item]:
        """Live items of *ns* in key range ``[start, stop)``, in key order (descending
        with *reverse*), at most *limit* rows read."""
        engine = self._engine
        engine.check_open()
        cold_access()
        engine.flush()
        now = engine.clock()
        rows = engine.backend.range(ns, start, stop, limit=limit, reverse=reverse)
        found = (row_item(engine.codec, row, now) for row in rows)
        return [item for item in found if item is not None]

    def iter_rows(self, ns_prefix: str, page: int = 500) -> Iterator[Item]:
        """Live items at or below *ns_prefix*, read a page at a time."""
        engine = self._engine
        engine.check_open()
        cold_access()
        engine.flush()
        after: tuple[str, str] | None = None
        while True:
            rows = engine.backend.scan(ns_prefix, after=after, limit=page)
            now = engine.clock()
            for row in rows:
                item = row_item(engine.codec, row, now)
                if item is not None:
                    yield item
            if len(rows) < page:
                return
            after = (rows[-1].ns, rows[-1].key)

    def namespaces_under(self, ns_prefix: str) -> list[str]:
        """Joined namespaces at or below *ns_prefix*."""
        engine = self._engine
        engine.check_open()
        cold_access()
        engine.flush()
        out: list[str] = []
        after: str | None = None
        while True:
            batch = engine.backend.namespaces(ns_prefix, after=after, limit=1000)
            out += batch
            if len(batch) < 1000:
                return out
            after = batch[-1]

    # -- writes ------------------------------------------------------------------------
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
        """Write atomically.

        *puts* are ``(ns, key, value)``, *deletes* ``(ns, key)``, *ranges* ``(ns, start,
        stop)`` key ranges to delete.  Every value is encoded before anything is written.
        A write with ranges commits at once (batched writes are flushed first).
        ``compress=False`` stores short-lived rows without zstd.  ``cache_puts=False``
        keeps the written values out of the hot tier (the caller holds its own copy);
        ``tombstones=False`` drops deleted keys from the hot tier instead of remembering
        them as absent (for rows nobody will look up again).
        """
        engine = self._engine
        engine.check_open()
        prepared: list[tuple[Any, Entry]] = [
            engine.prepare(ns, key, value, ttl, compress) for ns, key, value in puts
        ]
        prepared += [(Delete(ns, key), engine.absent(hot_key(ns, key))) for ns, key in deletes]
        if not ranges:
            engine.apply(prepared, cache_puts, tombstones)
            return
        if engine.in_transaction():
            raise RuntimeError("range deletes cannot run inside store.transaction()")
        engine.flush()
        engine.commit(
            [DeleteRange(ns, start, stop) for ns, start, stop in ranges],
            prepared,
            cache_puts,
            tombstones,
        )

    def write_row(self, ns: str, key: str, payload: bytes) -> None:
        """``write([(ns, key, payload)], compress=False, cache_puts=False)`` (a history's
        tail row), in one statement when ``durability="sync"`` outside a transaction; the
        row's ``created_at`` is then the time of this write."""
        self._engine.write_row(ns, key, payload)


def _value(ns: str, key: str, entry: Entry) -> Any:
    try:
        return entry.value if entry.payload is None else orjson.loads(entry.payload)
    except orjson.JSONDecodeError as exc:  # a frame written before checksums
        raise damaged(ns, key, exc) from None

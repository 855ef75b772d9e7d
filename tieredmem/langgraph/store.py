"""TieredStore: LangGraph's long-term memory store over a :class:`tieredmem.Store`.

Items live in the tieredmem store itself (same namespaces, same file, same hot tier), so a
``TieredStore`` and the ``Store`` (or ``MemorySaver.longterm``) it wraps see the same data.
Differences from LangGraph's own stores, on purpose:

- ``created_at`` survives updates (both LangGraph stores overwrite it);
- a read miss never creates a namespace;
- ``query`` without a vector index is a full-text search (SQLite FTS5, BM25 scores);
- TTL: ``omit_expired`` is always in effect (an expired item is never returned, swept or
  not), ``refresh_on_read`` restarts an item's ttl.

Embeddings (with ``index=``) live in the file's vector index (SQLite with sqlite-vec:
``pip install 'tieredmem[vector]'``), written in the transaction of their items; on other
backends, or without sqlite-vec, as float32 vectors under the internal namespace
``("tieredmem", "vec", *namespace)``, searched exactly with numpy (see
:mod:`tieredmem.langgraph._vectors`).  A search with ``query`` and an index runs
``search_mode``: ``"hybrid"`` (full-text and vector rankings fused), ``"vector"`` or
``"text"``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
)
from langgraph.store.base import validate_op_namespace as _validate_op_namespace
from langgraph.store.base.embed import ensure_embeddings

from ..backends import VectorBackend
from ..errors import InvalidTTLError
from ..filters import check_page, check_query, validate_filter
from ..memory import MemorySaver
from ..store import ColdReadError, Store, matches
from ..store import Item as TItem
from ._common import resolve_store
from ._hybrid import SEARCH_MODES, HybridRanking, fuse
from ._vectors import IndexedVectors, ScannedVectors, Vectors

__all__ = ["TieredStore"]

log = logging.getLogger(__name__)


_UTC = timezone.utc
_fromtimestamp = datetime.fromtimestamp


def _dt(ts: float) -> datetime:
    return _fromtimestamp(ts, _UTC)


# Items are built with __new__ and their slots set directly: Item.__init__ (keyword
# arguments, tuple(namespace), two isinstance checks) was ~0.7 us of the ~1.2 us a
# conversion took.  Only while Item and SearchItem have exactly the slots set below; a
# LangGraph release that adds a field gets the constructors instead.
_FAST_ITEMS = tuple(Item.__slots__) == (
    "value",
    "key",
    "namespace",
    "created_at",
    "updated_at",
) and tuple(SearchItem.__slots__) == ("score",)


_I = TypeVar("_I", bound=Item)


def _times(it: TItem) -> tuple[datetime, datetime]:
    created = _dt(it.created)
    # Never updated (the common case): one datetime serves both (datetimes are immutable).
    return created, created if it.updated == it.created else _dt(it.updated)


def _filled(out: _I, it: TItem, created: datetime, updated: datetime) -> _I:
    out.value = it.value
    out.key = it.key
    out.namespace = it.namespace
    out.created_at = created
    out.updated_at = updated
    return out


def _fields(it: TItem, created: datetime, updated: datetime) -> dict[str, Any]:
    return {
        "value": it.value,
        "key": it.key,
        "namespace": it.namespace,
        "created_at": created,
        "updated_at": updated,
    }


def _item(it: TItem) -> Item:
    created, updated = _times(it)
    if not _FAST_ITEMS:
        return Item(**_fields(it, created, updated))
    return _filled(Item.__new__(Item), it, created, updated)


def _search_item(it: TItem, score: float | None) -> SearchItem:
    created, updated = _times(it)
    if not _FAST_ITEMS:
        return SearchItem(**_fields(it, created, updated), score=score)
    out = _filled(SearchItem.__new__(SearchItem), it, created, updated)
    out.score = score
    return out


@functools.lru_cache(maxsize=4096)
def _check_lg_namespace(namespace: tuple[str, ...]) -> None:
    """LangGraph's namespace rules (non-empty labels, no '.', root not 'langgraph')."""
    _validate_op_namespace(GetOp(namespace, "k"))
    if not namespace:
        raise InvalidNamespaceError("Namespace cannot be empty.")
    if namespace[0] == "langgraph":
        raise InvalidNamespaceError(
            f'Root label for namespace cannot be "langgraph". Got: {namespace}'
        )


class TieredStore(BaseStore):
    """A ``BaseStore`` for cross-thread, cross-session memory (sync and async).

    :param conn: a path, ``":memory:"``, a store URL, a :class:`tieredmem.Store` or a
        :class:`tieredmem.MemorySaver` (then both share the file and the hot tier).
    :param index: ``{"dims": d, "embed": fn, "fields": [...]}`` for semantic search.
    :param ttl: LangGraph's ``TTLConfig`` (minutes); ``sweep_interval_minutes`` starts a
        background sweeper.
    :param filter_index: fields of item values (dotted for nested ones) that ``search``
        filters are answered for in SQL, through an index kept in the file (see
        ``tieredmem.open(..., index=...)``).  Not ``index["fields"]``: those are what
        semantic search embeds.
    """

    supports_ttl = True

    def __init__(
        self,
        conn: str | os.PathLike[str] | Store | MemorySaver = ":memory:",
        *,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        hot_bytes: int | str = "64MiB",
        clock: Any = time.time,
        filter_index: Sequence[str] | None = None,
        search_mode: str = "hybrid",
        hybrid: HybridRanking | None = None,
        quantization: str = "none",
        oversample: int = 8,
    ) -> None:
        if search_mode not in SEARCH_MODES:
            raise ValueError(
                f"search_mode must be one of {', '.join(SEARCH_MODES)}, not {search_mode!r}"
            )
        self.search_mode = search_mode
        self.hybrid = hybrid or HybridRanking()
        self.store, self._owns = resolve_store(conn, hot_bytes=hot_bytes, clock=clock)
        if filter_index:
            self.store.declare_index(filter_index)
        self.ttl_config = ttl
        self.index_config: dict[str, Any] | None = None
        self.embeddings: Any = None
        self._vectors: Vectors | None = None
        if index:
            self.index_config = dict(index)
            self.embeddings = ensure_embeddings(index.get("embed"))
            backend = self.store.backend
            if isinstance(backend, VectorBackend) and backend.vector_setup(
                int(index["dims"]), quantization, oversample
            ):
                indexed = IndexedVectors(self.store, self.index_config, self.embeddings, backend)
                if not getattr(backend, "readonly", False):
                    indexed.import_scanned()  # vectors a handle without the index stored
                self._vectors = indexed
            else:
                self._vectors = ScannedVectors(self.store, self.index_config, self.embeddings)
        self._stop = threading.Event()
        interval = (ttl or {}).get("sweep_interval_minutes")
        if interval:
            self._start_sweeper(float(interval) * 60)

    # -- lifecycle ----------------------------------------------------------------------
    def _start_sweeper(self, seconds: float) -> None:
        ref = weakref.ref(self)
        stop = self._stop

        def run() -> None:
            while not stop.wait(seconds):
                owner = ref()
                if owner is None or owner.store.closed:
                    return
                try:
                    owner.store.sweep()
                except Exception:
                    log.exception("TTL sweep failed")
                del owner

        threading.Thread(target=run, name="tieredmem-ttl-sweeper", daemon=True).start()

    def close(self) -> None:
        """Stop the sweeper; close the store if this object opened it."""
        self._stop.set()
        if self._owns:
            self.store.close()

    def __enter__(self) -> TieredStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def from_conn_string(cls, conn_string: str | os.PathLike[str], **kwargs: Any) -> TieredStore:
        """``with TieredStore.from_conn_string(path) as store:`` (sync or async ``with``)."""
        return cls(conn_string, **kwargs)

    async def __aenter__(self) -> TieredStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- the common single reads, without building a batch ------------------------------
    def get(
        self, namespace: tuple[str, ...], key: str, *, refresh_ttl: bool | None = None
    ) -> Item | None:
        """Like ``BaseStore.get`` (same validation and TTL rules), without a batch."""
        _check_lg_namespace(namespace if type(namespace) is tuple else tuple(namespace))
        if refresh_ttl is None:
            refresh_ttl = self._refresh(None)
        got = self.store.get(namespace, key, refresh_ttl=refresh_ttl)
        return _item(got) if got is not None else None

    def search(
        self,
        namespace_prefix: tuple[str, ...],
        /,
        *,
        query: str | None = None,
        filter: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        refresh_ttl: bool | None = None,
    ) -> list[SearchItem]:
        """Like ``BaseStore.search`` (same validation and TTL rules), without a batch."""
        op = SearchOp(namespace_prefix, filter, limit, offset, query, self._refresh(refresh_ttl))
        _validate_op_namespace(op)
        return self._search(op)

    # -- batches ------------------------------------------------------------------------
    def _refresh(self, flag: bool | None) -> bool:
        if flag is not None:
            return flag
        return bool((self.ttl_config or {}).get("refresh_on_read", True))

    def _ttl_seconds(self, minutes: Any) -> float | None:
        if minutes is None or minutes is NotImplemented:
            return None
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)):
            raise InvalidTTLError(f"ttl must be a number of minutes or None, not {minutes!r}")
        try:
            return float(minutes) * 60  # the store refuses nan, infinities, 0 and below
        except OverflowError:
            raise InvalidTTLError(f"ttl {minutes!r} minutes is out of range") from None

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the operations; reads see the store as it was before this batch's writes,
        which all commit in one transaction (as LangGraph's stores do)."""
        ops = list(ops)
        for op in ops:
            if isinstance(op, (PutOp, GetOp, SearchOp)):
                _validate_op_namespace(op)
        results: list[Result] = [None] * len(ops)
        puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for i, op in enumerate(ops):
            if isinstance(op, GetOp):
                got = self.store.get(
                    op.namespace, op.key, refresh_ttl=self._refresh(op.refresh_ttl)
                )
                results[i] = _item(got) if got is not None else None
            elif isinstance(op, SearchOp):
                results[i] = self._search(op)
            elif isinstance(op, ListNamespacesOp):
                results[i] = self._list_namespaces(op)
            elif isinstance(op, PutOp):
                puts[(tuple(op.namespace), op.key)] = op
            else:
                raise ValueError(f"unknown operation {op!r}")
        if puts:
            self._apply_puts(list(puts.values()))
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """:meth:`batch` without blocking the event loop: reads answered from the hot tier
        run here; anything that needs the disk runs in a worker thread."""
        ops = list(ops)
        if all(isinstance(op, GetOp) for op in ops) and not (self.ttl_config or {}):
            try:
                with self.store.raw.memory_only():
                    return self.batch(ops)
            except ColdReadError:
                pass
        return await asyncio.to_thread(self.batch, ops)

    def _apply_puts(self, puts: list[PutOp]) -> None:
        vectors = self._vectors
        # Embedding calls run before the write lock is taken.
        prepared = vectors.prepare(puts) if vectors is not None else None
        ttls: dict[tuple[tuple[str, ...], str], float | None] = {}
        # BaseStore.put already resolved default_ttl; a PutOp's None means "no expiry".
        with self.store.transaction():
            for op in puts:
                if op.value is None:
                    self.store.delete(op.namespace, op.key)
                    continue
                ttl = ttls[(tuple(op.namespace), op.key)] = self._ttl_seconds(op.ttl)
                self.store.put(op.namespace, op.key, dict(op.value), ttl=ttl)
            if vectors is not None:
                vectors.write(puts, prepared, ttls)

    # -- vectors ------------------------------------------------------------------------
    def _nearest_items(self, op: SearchOp, wanted: int) -> list[tuple[TItem, float]]:
        """The *wanted* best live items matching the op's filter, by vector similarity."""
        vectors = self._vectors
        assert vectors is not None and op.query is not None
        query = vectors.query(op.query)
        refresh = self._refresh(op.refresh_ttl)
        ask = max(wanted, 1)
        while True:
            found, more = vectors.nearest(tuple(op.namespace_prefix), query, ask)
            # One read for every candidate; the item decides (deleted or expired since,
            # or filtered out: skipped).
            items = self.store.raw.read_many([(ns, key) for ns, key, _ in found])
            out: list[tuple[TItem, float]] = []
            for got, (_, _, score) in zip(items, found):
                if got is None or not matches(got.value, op.filter):
                    continue
                out.append((got, score))
                if len(out) >= wanted:
                    break
            if len(out) >= wanted or not more:
                if refresh:
                    for got, _ in out:
                        if got.expires_at is not None:
                            self.store.get(got.namespace, got.key, refresh_ttl=True)
                return out
            ask *= 4

    def _vector_search(self, op: SearchOp) -> list[SearchItem]:
        found = self._nearest_items(op, op.offset + op.limit)
        return [_search_item(it, score) for it, score in found[op.offset :]]

    def _hybrid_search(self, op: SearchOp) -> list[SearchItem]:
        wanted = op.offset + op.limit
        pool = max(wanted * self.hybrid.candidates, 20)
        vector = self._nearest_items(op, pool)
        text = self.store.search(
            op.namespace_prefix,
            query=op.query,
            filter=op.filter,
            limit=pool,
            refresh_ttl=self._refresh(op.refresh_ttl),
        )
        fused = fuse(text, vector, self.hybrid, self.store.raw.clock())
        return [_search_item(it, score) for it, score in fused[op.offset : wanted]]

    # -- searches -----------------------------------------------------------------------
    def _search(self, op: SearchOp) -> list[SearchItem]:
        validate_filter(op.filter)
        check_query(op.query)
        check_page(op.limit, op.offset)
        if op.query and self._vectors is not None and self.search_mode != "text":
            # A backend without full-text search (Redis): hybrid is the vector ranking.
            if self.search_mode == "vector" or not getattr(
                self.store.backend, "has_text_search", True
            ):
                return self._vector_search(op)
            return self._hybrid_search(op)
        found = self.store.search(
            op.namespace_prefix,
            query=op.query or None,
            filter=op.filter,
            limit=op.limit,
            offset=op.offset,
            refresh_ttl=self._refresh(op.refresh_ttl),
        )
        return [_search_item(it, it.score) for it in found]

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        prefixes = [c.path for c in op.match_conditions or () if c.match_type == "prefix"]
        suffixes = [c.path for c in op.match_conditions or () if c.match_type == "suffix"]
        found = self.store.list_namespaces(
            prefix=prefixes[0] if prefixes else None,
            suffix=suffixes[0] if suffixes else None,
            max_depth=op.max_depth,
            limit=op.limit if len(prefixes) <= 1 and len(suffixes) <= 1 else 10**9,
            offset=op.offset if len(prefixes) <= 1 and len(suffixes) <= 1 else 0,
        )
        if len(prefixes) > 1 or len(suffixes) > 1:  # rare: several conditions of one kind

            def ok(ns: tuple[str, ...]) -> bool:
                return all(
                    len(ns) >= len(p) and all(a == "*" or a == b for a, b in zip(p, ns))
                    for p in prefixes
                ) and all(
                    len(ns) >= len(q) and all(a == "*" or a == b for a, b in zip(q[::-1], ns[::-1]))
                    for q in suffixes
                )

            found = [ns for ns in found if ok(ns)][op.offset : op.offset + op.limit]
        return found

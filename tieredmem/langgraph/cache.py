"""TieredCache: LangGraph's node cache, byte-bounded in memory and persisted in the file.

LangGraph's ``InMemoryCache`` has no size bound and forgets everything on restart;
``TieredCache`` keeps entries in a :class:`tieredmem.Store` (internal namespace
``("tieredmem", "cache", *namespace)``) behind the store's byte-bounded hot tier, with the
node ``cache_policy`` TTL as the row's expiry.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

from langgraph.cache.base import BaseCache, FullKey, Namespace
from langgraph.checkpoint.serde.base import SerializerProtocol

from ..memory import MemorySaver
from ..store import ColdReadError, Store
from ._common import resolve_store
from .serde import AllowedTypes, serializer

__all__ = ["TieredCache"]

ValueT = TypeVar("ValueT")


class TieredCache(BaseCache[ValueT], Generic[ValueT]):
    """A ``BaseCache`` for ``builder.compile(cache=TieredCache("agent.db"))``.

    :param conn: a path (``str`` or ``os.PathLike`` such as ``pathlib.Path``),
        ``":memory:"``, a store URL, a :class:`tieredmem.Store` or a
        :class:`tieredmem.MemorySaver`.
    :param hot_bytes: hot-tier budget when the cache opens the store itself.
    :param serde: LangGraph serializer; by default a
        :class:`~tieredmem.langgraph.serde.CheckpointSerializer`, which reads only
        allowed types (see :mod:`tieredmem.langgraph.serde`).
    :param allowed_types: classes (or ``(module, name)`` pairs) cached values may hold
        besides the default allow-list.
    """

    def __init__(
        self,
        conn: str | os.PathLike[str] | Store | MemorySaver = ":memory:",
        *,
        serde: SerializerProtocol | None = None,
        hot_bytes: int | str = "64MiB",
        clock: Any = time.time,
        allowed_types: AllowedTypes = (),
    ) -> None:
        super().__init__(serde=serializer(serde, allowed_types))
        self.store, self._owns = resolve_store(conn, hot_bytes=hot_bytes, clock=clock)

    def close(self) -> None:
        """Close the store if this cache opened it."""
        if self._owns:
            self.store.close()

    def _ns(self, namespace: Namespace) -> str:
        return self.store.raw.internal_ns("cache", *namespace)

    def get(self, keys: Sequence[FullKey]) -> dict[FullKey, ValueT]:
        """The cached values of *keys* that are present and not expired."""
        out: dict[FullKey, ValueT] = {}
        items = self.store.raw.read_many([(self._ns(ns), key) for ns, key in keys])
        for full, item in zip(keys, items):
            if item is not None:
                typ, _, data = item.value.partition(b"\x00")
                out[full] = self.serde.loads_typed((typ.decode(), data))
        return out

    def set(self, pairs: Mapping[FullKey, tuple[ValueT, int | None]]) -> None:
        """Store values, each with its ttl in seconds (``None``: no expiry)."""
        by_ttl: dict[int | None, list[tuple[str, str, Any]]] = {}
        for (ns, key), (value, ttl) in pairs.items():
            typ, data = self.serde.dumps_typed(value)
            by_ttl.setdefault(ttl, []).append((self._ns(ns), key, typ.encode() + b"\x00" + data))
        with self.store.transaction():
            for ttl, puts in by_ttl.items():
                self.store.raw.write(puts, ttl=ttl or None)

    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        """Delete the given namespaces' entries (all entries when ``None``)."""
        root = self.store.raw.internal_ns("cache")
        if namespaces is None:
            spaces = self.store.raw.namespaces_under(root)
        else:
            spaces = []
            for ns in namespaces:
                spaces += self.store.raw.namespaces_under(self._ns(ns))
        if spaces:
            self.store.raw.write(ranges=[(ns, "", None) for ns in spaces])

    async def aget(self, keys: Sequence[FullKey]) -> dict[FullKey, ValueT]:
        try:
            with self.store.raw.memory_only():
                return self.get(keys)
        except ColdReadError:
            return await asyncio.to_thread(self.get, keys)

    async def aset(self, pairs: Mapping[FullKey, tuple[ValueT, int | None]]) -> None:
        await asyncio.to_thread(self.set, pairs)

    async def aclear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        await asyncio.to_thread(self.clear, namespaces)

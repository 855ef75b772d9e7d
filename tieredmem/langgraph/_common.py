"""What the LangGraph adapters share: where their store comes from."""

from __future__ import annotations

from typing import Any

from ..memory import MemorySaver
from ..store import Store
from ..store import open as open_store

__all__ = ()


def resolve_store(conn: str | Store | MemorySaver, **open_options: Any) -> tuple[Store, bool]:
    """The store an adapter works on, and whether the adapter opened it (and closes it).

    *conn* is a path or URL (opened with *open_options*), a :class:`tieredmem.Store`, or a
    :class:`tieredmem.MemorySaver` (its store: one file, one hot tier for everything).
    """
    if isinstance(conn, MemorySaver):
        return conn.store, False
    if isinstance(conn, Store):
        return conn, False
    return open_store(conn, **open_options), True


def config(thread: str, checkpoint_ns: str, checkpoint_id: str | None) -> Any:
    """A LangGraph ``RunnableConfig`` naming one checkpoint."""
    return {
        "configurable": {
            "thread_id": thread,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
    }

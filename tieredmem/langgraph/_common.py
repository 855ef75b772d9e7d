"""What the LangGraph adapters share: where their store comes from."""

from __future__ import annotations

import os
from typing import Any

from ..memory import MemorySaver
from ..store import Store
from ..store import open as open_store

__all__ = ()


def resolve_store(
    conn: str | os.PathLike[str] | Store | MemorySaver, **open_options: Any
) -> tuple[Store, bool]:
    """The store an adapter works on, and whether the adapter opened it (and closes it).

    *conn* is a path or URL as a ``str`` or ``os.PathLike`` such as ``pathlib.Path``
    (opened with *open_options*), a :class:`tieredmem.Store`, or a
    :class:`tieredmem.MemorySaver` (its store: one file, one hot tier for everything).

    :raises TypeError: *conn* is none of these (e.g. a ``sqlite3.Connection``).
    """
    if isinstance(conn, MemorySaver):
        return conn.store, False
    if isinstance(conn, Store):
        return conn, False
    target: object = os.fspath(conn) if isinstance(conn, os.PathLike) else conn
    if not isinstance(target, str):
        hint = (
            "; tieredmem opens its own connections, so pass the database's file path"
            if type(conn).__module__.startswith(("sqlite3", "apsw", "aiosqlite"))
            else ""
        )
        raise TypeError(
            "conn must be a file path or store URL (a str or os.PathLike such as "
            "pathlib.Path), a tieredmem.Store or a tieredmem.MemorySaver, not "
            f"{type(conn).__module__}.{type(conn).__qualname__}{hint}"
        )
    return open_store(target, **open_options), True


def config(thread: str, checkpoint_ns: str, checkpoint_id: str | None) -> Any:
    """A LangGraph ``RunnableConfig`` naming one checkpoint."""
    return {
        "configurable": {
            "thread_id": thread,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
    }

"""``from tieredmem.langgraph import MemorySaver``: LangGraph's name, a bounded checkpointer.

Most LangGraph tutorials write ``from langgraph.checkpoint.memory import MemorySaver``: an
in-RAM checkpointer that keeps every checkpoint of every thread until the process exits
(and then forgets them all).  Changing that one import to this module's
:class:`MemorySaver` gives a :class:`~tieredmem.langgraph.TieredSaver` instead: at most
*max_history* checkpoints per thread, in a file that survives restarts
(``persistent=True``), or in a private temporary file removed on close
(``persistent=False``), so memory stays bounded either way.

Not to be confused with :class:`tieredmem.MemorySaver`, the agent-facing memory
(histories, working state, long-term facts), which is not a checkpointer: pass it to a
``TieredSaver`` to share its file (``TieredSaver(memory)``).
"""

from __future__ import annotations

import os
from typing import Any

from ..memory import DEFAULT_PATH
from ..memory import MemorySaver as AgentMemory
from .checkpoint import TieredSaver

__all__ = ["MemorySaver"]


class MemorySaver(TieredSaver):
    """A LangGraph checkpointer with tieredmem's seed arguments: a drop-in for
    ``langgraph.checkpoint.memory.MemorySaver`` that stays bounded.

    :param max_history: checkpoints kept per thread (and checkpoint namespace): older
        ones are pruned as new ones are written (a thread runs at most a quarter over
        before it is trimmed back) and by maintenance, keeping what a kept checkpoint
        needs.  ``None`` keeps them all.
    :param persistent: ``True`` (default): checkpoints live in *path* and survive a
        restart.  ``False``: in a private temporary file (its directory mode 0700),
        removed by :meth:`close`; RAM stays bounded by *hot_bytes* either way.
    :param path: the file (or store URL) when *persistent*; default ``tieredmem.db`` in
        the current directory, as for :class:`tieredmem.MemorySaver` and
        :class:`TieredSaver`.
    :param kwargs: any other :class:`TieredSaver` argument (``hot_bytes``, ``ttl``,
        ``durability``, ``serde``, ...).

    >>> from tieredmem.langgraph import MemorySaver
    >>> with MemorySaver(max_history=100, persistent=False) as checkpointer:
    ...     checkpointer.max_checkpoints
    100
    """

    def __init__(
        self,
        max_history: int | None = 100,
        persistent: bool = True,
        path: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.persistent = persistent
        self._private: AgentMemory | None = None
        if persistent:
            conn: str | os.PathLike[str] | AgentMemory = DEFAULT_PATH if path is None else path
        else:
            if path is not None:
                raise ValueError("path is for persistent=True; persistent=False uses a temp file")
            self._private = AgentMemory(
                persistent=False,
                hot_bytes=kwargs.pop("hot_bytes", "64MiB"),
                durability=kwargs.pop("durability", "sync"),
                maintenance_interval=kwargs.pop("maintenance_interval", 60.0),
            )
            conn = self._private
        try:
            super().__init__(conn, max_checkpoints=max_history, **kwargs)
        except BaseException:
            if self._private is not None:
                self._private.close()
            raise

    def close(self) -> None:
        """Close the file; with ``persistent=False`` also remove it.  Idempotent."""
        super().close()
        if self._private is not None:
            self._private.close()

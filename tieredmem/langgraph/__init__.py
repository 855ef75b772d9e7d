"""LangGraph adapters (install with ``pip install 'tieredmem[langgraph]'``).

``import tieredmem`` never imports this package; import it explicitly::

    from tieredmem.langgraph import TieredSaver
    graph = builder.compile(checkpointer=TieredSaver("agent.db"))

    from tieredmem.langgraph import MemorySaver   # instead of langgraph.checkpoint.memory's
    graph = builder.compile(checkpointer=MemorySaver(max_history=100, persistent=True))

``tieredmem.langgraph.MemorySaver`` is a checkpointer (a :class:`TieredSaver`);
``tieredmem.MemorySaver`` is the agent-facing memory (histories, state, long-term facts),
which a ``TieredSaver`` can share: ``TieredSaver(memory)``.
"""

from __future__ import annotations

from ._hybrid import HybridRanking
from .cache import TieredCache
from .checkpoint import TieredSaver
from .memory import MemorySaver
from .store import TieredStore

__all__ = ["HybridRanking", "MemorySaver", "TieredCache", "TieredSaver", "TieredStore"]

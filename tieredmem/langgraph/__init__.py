"""LangGraph adapters (install with ``pip install 'tieredmem[langgraph]'``).

``import tieredmem`` never imports this package; import it explicitly::

    from tieredmem.langgraph import TieredSaver
    graph = builder.compile(checkpointer=TieredSaver("agent.db"))
"""

from __future__ import annotations

from .cache import TieredCache
from .checkpoint import TieredSaver
from .store import TieredStore

__all__ = ["TieredCache", "TieredSaver", "TieredStore"]

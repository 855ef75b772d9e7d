"""pytest fixtures for testing agents that use tieredmem (no server needed).

Registered through the ``pytest11`` entry point, so installing tieredmem makes them
available to every test suite::

    def test_agent_remembers(memory_saver):
        memory_saver.history("s").append({"role": "user", "content": "hi"})
        assert len(memory_saver.history("s")) == 1

Each fixture gives a fresh, isolated instance backed by a file in the test's ``tmp_path``
and closes it afterwards.  ``tiered_saver`` needs the ``langgraph`` extra.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .memory import MemorySaver
from .store import Store
from .store import open as open_store

__all__ = ["memory_saver", "tiered_saver", "tiered_store"]


@pytest.fixture
def tiered_store(tmp_path: Path) -> Iterator[Store]:
    """A fresh :class:`tieredmem.Store` in a temporary file."""
    store = open_store(str(tmp_path / "tieredmem-store.db"), maintenance_interval=0)
    yield store
    store.close()


@pytest.fixture
def memory_saver(tmp_path: Path) -> Iterator[MemorySaver]:
    """A fresh persistent :class:`tieredmem.MemorySaver` in a temporary file."""
    memory = MemorySaver(path=str(tmp_path / "tieredmem-memory.db"), maintenance_interval=0)
    yield memory
    memory.close()


@pytest.fixture
def tiered_saver(tmp_path: Path) -> Iterator[Any]:
    """A fresh LangGraph :class:`tieredmem.langgraph.TieredSaver` in a temporary file."""
    pytest.importorskip("langgraph.checkpoint.base")
    from .langgraph import TieredSaver

    saver = TieredSaver(str(tmp_path / "tieredmem-saver.db"), maintenance_interval=0)
    yield saver
    saver.close()

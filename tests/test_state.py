"""State: delta rows, compaction, reopen, rollback."""

from __future__ import annotations

import pytest

import tieredmem
from tieredmem import SerializationError


def test_commit_and_reopen(tmp_path) -> None:
    path = str(tmp_path / "s.db")
    with tieredmem.MemorySaver(path=path) as memory:
        doc = memory.state("agent")
        doc["goal"] = "write report"
        doc["steps"] = ["search"]
        doc.commit()
        doc["steps"].append("draft")  # in-place mutation is seen by commit()
        del doc["goal"]
        doc["done"] = False
        doc.commit()
        doc["uncommitted"] = 1
    with tieredmem.MemorySaver(path=path) as memory:
        assert dict(memory.state("agent")) == {"steps": ["search", "draft"], "done": False}


def test_rollback(tmp_path) -> None:
    with tieredmem.MemorySaver(path=str(tmp_path / "s.db")) as memory:
        doc = memory.state("x")
        doc["a"] = 1
        doc.commit()
        doc["a"] = 2
        doc["b"] = 3
        doc.rollback()
        assert dict(doc) == {"a": 1}


def test_delta_rows_write_far_less_than_snapshots(tmp_path) -> None:
    with tieredmem.MemorySaver(path=str(tmp_path / "d.db")) as memory:
        doc = memory.state("big")
        for i in range(500):
            doc[f"key{i}"] = {"text": "x" * 200, "n": i}
        first = doc.commit()  # the first commit writes everything
        snapshot = first
        for i in range(200):
            doc[f"key{i % 500}"] = {"text": "y" * 200, "n": -i}
            doc.commit()
        stats = doc.stats()
        delta_bytes = stats["bytes_written"] - first
        assert delta_bytes < snapshot * 200 / 10  # at least 10x less than 200 snapshots
        assert stats["chain"] <= 32  # bounded replay
        assert stats["bases_written"] >= 1
    with tieredmem.MemorySaver(path=str(tmp_path / "d.db")) as memory:
        doc = memory.state("big")
        assert doc["key199"] == {"text": "y" * 200, "n": -199}
        assert doc["key300"] == {"text": "x" * 200, "n": 300}
        assert len(doc) == 500


def test_unserializable_value_writes_nothing(tmp_path) -> None:
    with tieredmem.MemorySaver(path=str(tmp_path / "u.db")) as memory:
        doc = memory.state("x")
        doc["a"] = 1
        doc.commit()
        doc["bad"] = {1, 2}
        with pytest.raises(SerializationError, match=r"x\.bad"):
            doc.commit()
        del doc["bad"]
        assert doc.commit() == 0
    with tieredmem.MemorySaver(path=str(tmp_path / "u.db")) as memory:
        assert dict(memory.state("x")) == {"a": 1}


def test_non_string_key(tmp_path) -> None:
    with tieredmem.MemorySaver(persistent=False) as memory, pytest.raises(TypeError):
        memory.state("x")[1] = 2  # type: ignore[index]

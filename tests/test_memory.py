"""MemorySaver: persistence modes, scratch, temp entries, long-term memory, config."""

from __future__ import annotations

import gc
import os
import types
import weakref

import pytest

import tieredmem
from tieredmem import MemorySaver, Retention, StoreClosedError


class Blob:
    def __init__(self, size: int) -> None:
        self.data = bytearray(size)


def test_default_path_is_tieredmem_db(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with MemorySaver(max_history=100, persistent=True) as memory:
        memory.history("s").append("hi")
    assert (tmp_path / "tieredmem.db").exists()


def test_not_persistent_leaves_no_file(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    memory = MemorySaver(persistent=False, hot_bytes="64KiB")
    h = memory.history("s")
    h.extend({"i": i, "pad": "x" * 100} for i in range(2000))  # more than the hot tier
    assert h[0]["i"] == 0
    where = memory.path
    assert where.startswith("sqlite:///")
    file = where[len("sqlite:///") :]
    assert os.path.exists(file)
    assert (os.stat(os.path.dirname(file)).st_mode & 0o777) == 0o700
    memory.close()
    assert not os.path.exists(file)
    assert not os.path.exists(os.path.dirname(file))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StoreClosedError):
        memory.history("s")


def test_scratch_is_released_after_the_block(tmp_path) -> None:
    with MemorySaver(persistent=False) as memory:
        big = Blob(10_000_000)
        ref = weakref.ref(big)
        with memory.task("job-1") as scratch:
            scratch["draft"] = big
            assert memory.active_tasks() == ["job-1"]
        del big
        gc.collect()
        assert ref() is None
        assert memory.active_tasks() == []


def test_scratch_is_released_on_exceptions(tmp_path) -> None:
    with MemorySaver(persistent=False) as memory:
        big = Blob(1000)
        ref = weakref.ref(big)
        with pytest.raises(RuntimeError), memory.task("job-2") as scratch:
            scratch["x"] = big
            del big
            raise RuntimeError("failed task")
        gc.collect()
        assert ref() is None
        assert memory.stats()["active_tasks"] == 0


def test_scratch_never_touches_disk(tmp_path) -> None:
    with MemorySaver(path=str(tmp_path / "m.db")) as memory:
        before = memory.store.stats().writes
        with memory.task("t") as scratch:
            scratch["big"] = "x" * 1_000_000
        assert memory.store.stats().writes == before


def test_temp_entries_live_while_the_caller_holds_them() -> None:
    with MemorySaver(persistent=False) as memory:
        obj = Blob(10)
        assert memory.temp("emb", obj) is obj
        assert memory.temp("emb") is obj
        del obj
        gc.collect()
        assert memory.temp("emb") is None
        with pytest.raises(TypeError, match="weakly"):
            memory.temp("d", {"plain": "dict"})


def test_longterm_recall_across_runs(tmp_path) -> None:
    path = str(tmp_path / "lt.db")
    with MemorySaver(path=path) as memory:
        memory.longterm.put(("user", "alice"), "prefs", {"lang": "fr"})
        memory.history("s").append("hello")
    with MemorySaver(path=path) as memory:
        item = memory.longterm.get(("user", "alice"), "prefs")
        assert item is not None and item.value == {"lang": "fr"}
        # Internal data never shows up as user namespaces.
        assert memory.longterm.list_namespaces() == [("user", "alice")]
        assert [i.key for i in memory.longterm.search(())] == ["prefs"]
        assert memory.histories() == ["s"]


def test_from_config_mapping_module_and_environment(tmp_path, monkeypatch) -> None:
    cfg = {
        "PERSISTENT_STORAGE": True,
        "MAX_HISTORY": 7,
        "CACHE_SIZE": "2MiB",
        "PATH": str(tmp_path / "c.db"),
        "RETENTION_MAX_ITEMS": 50,
    }
    with MemorySaver.from_config(cfg) as memory:
        assert memory.max_history == 7
        assert memory.store.stats().hot_budget == 2 * 1024 * 1024
        assert memory.retention == Retention(max_items=50)
        assert memory.path.endswith("c.db")
    module = types.ModuleType("settings")
    module.MAX_HISTORY = 9  # type: ignore[attr-defined]
    module.USE_MEMORY_SAVER = False  # type: ignore[attr-defined]
    monkeypatch.setenv("TIEREDMEM_MAX_HISTORY", "11")
    monkeypatch.setenv("TIEREDMEM_CACHE_SIZE", "3MiB")
    with MemorySaver.from_config(module) as memory:
        assert memory.max_history == 9  # the module wins over the environment
        assert memory.store.stats().hot_budget == 3 * 2**20  # the environment fills gaps
        assert not memory.persistent
    with MemorySaver.from_config(module, max_history=12) as memory:
        assert memory.max_history == 12  # arguments win over both
    monkeypatch.setenv("TIEREDMEM_CACHE_SIZE", "lots")
    with pytest.raises(ValueError, match="CACHE_SIZE"):
        MemorySaver.from_config({})


def test_stats_and_repr(tmp_path) -> None:
    with MemorySaver(path=str(tmp_path / "s.db")) as memory:
        memory.history("a").append(1)
        doc = memory.state("b")
        stats = memory.stats()
        assert stats["open_histories"] == 1 and stats["open_states"] == 1
        assert "MemorySaver" in repr(memory) and doc.name == "b"


def test_shares_a_store(tmp_path) -> None:
    with tieredmem.open(str(tmp_path / "shared.db")) as store:
        memory = MemorySaver(store=store)
        memory.history("s").append(1)
        memory.close()  # does not close a store it was given
        assert not store.closed

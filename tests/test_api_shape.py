"""One shape for the same things: every ``stats()`` returns a ``Stats``, and every
constructor that takes a path takes a ``str`` or an ``os.PathLike`` (and refuses anything
else with a ``TypeError`` that says what to pass)."""

from __future__ import annotations

import copy
import json
import operator
import pickle
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Annotated, Any

import pytest

import tieredmem
from tieredmem import MemorySaver, Stats

BAD_PATHS = [
    pytest.param(lambda: sqlite3.connect(":memory:"), id="sqlite3.Connection"),
    pytest.param(lambda: 42, id="int"),
    pytest.param(lambda: b"agent.db", id="bytes"),
]


# -- Stats ------------------------------------------------------------------------------
def _stats() -> Stats:
    return Stats(1, 100, 1024, 3, 1, 0, 1, 2, 0, 0, 0, 4096, 0, 2, 0, "sqlite:///a.db", "sync")


def _check_shape(stats: Any, extras: tuple[str, ...] = ()) -> None:
    """*stats* is a Stats: a read-only mapping whose every key is also an attribute."""
    assert type(stats) is Stats and isinstance(stats, Mapping)
    keys = list(stats)
    assert keys[: len(Stats.FIELDS)] == list(Stats.FIELDS)
    assert keys[len(Stats.FIELDS)] == "hit_rate"
    assert set(extras) <= set(keys[len(Stats.FIELDS) + 1 :]) == set(stats.extra)
    assert list(stats.keys()) == keys and len(stats) == len(keys)
    for key in keys:
        assert key in stats
        assert stats[key] == getattr(stats, key)
        assert stats.get(key) == stats[key]
    assert dict(stats.items()) == stats.as_dict() == dict(stats)
    assert json.loads(json.dumps(stats.as_dict())) == stats.as_dict()
    assert "no_such_field" not in stats and stats.get("no_such_field") is None
    with pytest.raises(KeyError):
        stats["no_such_field"]
    with pytest.raises(AttributeError):
        stats.no_such_field  # noqa: B018
    with pytest.raises(FrozenInstanceError):
        stats.hot_items = 0
    with pytest.raises(TypeError):
        stats["hot_items"] = 0


def test_stats_is_a_mapping_with_attributes() -> None:
    s = _stats()
    _check_shape(s)
    assert s.hot_items == s["hot_items"] == 1
    assert s.hit_rate == s["hit_rate"] == 0.75
    assert s.as_dict()["hit_rate"] == 0.75 and s.extra == {}
    assert s == _stats() and s == s.as_dict()


def test_stats_extra_fields() -> None:
    s = _stats()
    t = s.with_extra(threads=3, open_logs=1)
    _check_shape(t, ("threads", "open_logs"))
    assert t.threads == t["threads"] == 3 and t.open_logs == 1
    assert list(t)[-2:] == ["threads", "open_logs"]
    assert "threads" not in s  # with_extra returns a copy
    assert t.with_extra(threads=4).threads == 4  # a later value replaces an extra
    assert Stats(**{k: s[k] for k in Stats.FIELDS}, threads=3).threads == 3
    with pytest.raises(TypeError):  # a misspelled core field is an error, not an extra
        Stats(**{("hot_itemz" if k == "hot_items" else k): s[k] for k in Stats.FIELDS})
    for bad in ("hot_items", "hit_rate", "keys", "as_dict", "extra", "_private", "a b"):
        with pytest.raises(ValueError, match="extra stats field"):
            s.with_extra(**{bad: 1})


def test_stats_copy_pickle_and_repr() -> None:
    t = _stats().with_extra(threads=3)
    for other in (pickle.loads(pickle.dumps(t)), copy.copy(t), copy.deepcopy(t)):
        assert type(other) is Stats and other == t and other.threads == 3
    assert repr(t).startswith("Stats(hot_items=1, ") and repr(t).endswith("threads=3)")
    assert eval(repr(t), {"Stats": Stats}) == t


def test_store_and_memory_saver_return_stats(tmp_path: Path) -> None:
    with tieredmem.open(str(tmp_path / "s.db")) as store:
        store.put(("users",), "a", {"x": 1})
        assert store.get(("users",), "a") is not None
        _check_shape(store.stats())
        assert store.stats().writes == store.stats()["writes"] == 1
    with MemorySaver(path=str(tmp_path / "m.db"), maintenance_interval=0) as memory:
        memory.history("s").append({"role": "user", "content": "hi"})
        stats = memory.stats()
        _check_shape(stats, ("open_histories", "history_bytes_held", "chunk_reads"))
        assert stats.open_histories == stats["open_histories"] == 1
        assert stats.url == memory.store.stats().url


def test_tiered_saver_returns_stats(tmp_path: Path) -> None:
    pytest.importorskip("langgraph")
    from tieredmem.langgraph import TieredSaver

    with TieredSaver(str(tmp_path / "g.db")) as saver:
        config = _run_graph(saver, "t1")
        assert config["configurable"]["thread_id"] == "t1"
        stats = saver.stats()
        _check_shape(stats, ("threads", "open_logs", "held_list_items", "held_list_items_max"))
        assert stats.threads == stats["threads"] == 1
        assert type(stats) is type(saver.store.stats())


# -- paths ------------------------------------------------------------------------------
def _run_graph(checkpointer: Any, thread: str) -> Any:
    from langgraph.graph import END, START, StateGraph
    from typing_extensions import TypedDict

    class S(TypedDict):
        items: Annotated[list[int], operator.add]

    builder = StateGraph(S)
    builder.add_node("step", lambda state: {"items": [len(state["items"])]})
    builder.add_edge(START, "step")
    builder.add_edge("step", END)
    graph = builder.compile(checkpointer=checkpointer)
    config = {"configurable": {"thread_id": thread}}
    graph.invoke({"items": []}, config)
    graph.invoke({"items": []}, config)
    assert graph.get_state(config).values["items"] == [0, 1]
    return config


@contextmanager
def _bad(make: Any) -> Iterator[Any]:
    value = make()
    try:
        yield value
    finally:
        if isinstance(value, sqlite3.Connection):
            value.close()


def test_open_takes_a_pathlike(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    with tieredmem.open(path) as store:
        store.put(("n",), "k", 1)
        assert store.url.endswith("p.db")
    with tieredmem.open(str(path)) as store:  # the same file
        assert store.get(("n",), "k").value == 1


@pytest.mark.parametrize("make", BAD_PATHS)
def test_open_refuses_what_is_not_a_path(make: Any) -> None:
    with _bad(make) as bad, pytest.raises(TypeError, match=r"str or os\.PathLike"):
        tieredmem.open(bad)


def test_memory_saver_takes_a_pathlike(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with MemorySaver(path=path, maintenance_interval=0) as memory:
        memory.history("s").append("hi")
        assert memory.path.endswith("m.db")
    with MemorySaver(path=str(path), maintenance_interval=0) as memory:
        assert list(memory.history("s")) == ["hi"]


@pytest.mark.parametrize("make", BAD_PATHS)
def test_memory_saver_refuses_what_is_not_a_path(make: Any) -> None:
    with _bad(make) as bad, pytest.raises(TypeError, match=r"str or os\.PathLike"):
        MemorySaver(path=bad)


def test_langgraph_adapters_take_a_pathlike(tmp_path: Path) -> None:
    pytest.importorskip("langgraph")
    from tieredmem.langgraph import TieredCache, TieredSaver, TieredStore

    path = tmp_path / "lg.db"
    with TieredSaver(path) as saver:
        config = _run_graph(saver, "t1")
    with TieredSaver(str(path)) as saver:  # the same file
        assert saver.get_tuple(config) is not None
    with TieredSaver.from_conn_string(path) as saver:
        assert saver.get_tuple(config) is not None

    store = TieredStore(path)
    store.put(("users", "a"), "prefs", {"lang": "fr"})
    store.close()
    store = TieredStore(str(path))
    assert store.get(("users", "a"), "prefs").value == {"lang": "fr"}
    store.close()

    cache: TieredCache[Any] = TieredCache(path)
    cache.set({(("node",), "k"): ({"y": 6}, None)})
    cache.close()
    cache = TieredCache(str(path))
    assert cache.get([(("node",), "k")]) == {(("node",), "k"): {"y": 6}}
    cache.close()


@pytest.mark.parametrize("make", BAD_PATHS)
def test_langgraph_adapters_refuse_what_is_not_a_path(make: Any) -> None:
    pytest.importorskip("langgraph")
    from tieredmem.langgraph import TieredCache, TieredSaver, TieredStore

    with _bad(make) as bad:
        for adapter in (TieredSaver, TieredStore, TieredCache):
            with pytest.raises(TypeError, match=r"tieredmem\.Store or a tieredmem\.MemorySaver"):
                adapter(bad)
        if isinstance(bad, sqlite3.Connection):
            with pytest.raises(TypeError, match="pass the database's file path"):
                TieredSaver(bad)

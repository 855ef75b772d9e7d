"""Caches above one Store are shared: every user of a store sees every other's writes.

The store's generation moves only on writes by *other* handles, so two History (or
State) objects built on one Store would never see each other's writes, and an append
through the second would overwrite the first's.  There is exactly one live History per
(store, namespace) and one State per (store, name): every MemorySaver, TieredSaver and
direct user of the store gets the same object.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import pytest

import tieredmem
from tieredmem.history import History
from tieredmem.state import State

DURABILITY = pytest.mark.parametrize("durability", ["sync", "batch"])


def _open(path: Path, durability: str) -> tieredmem.Store:
    return tieredmem.open(str(path), durability=durability, maintenance_interval=0)


@DURABILITY
def test_two_memory_savers_on_one_store_share_histories(tmp_path: Path, durability: str) -> None:
    path = tmp_path / "h.db"
    expected: list[Any] = []
    with _open(path, durability) as store:
        m1 = tieredmem.MemorySaver(store=store, chunk_items=4, max_history=3)
        m2 = tieredmem.MemorySaver(store=store, chunk_items=4, max_history=3)
        h1 = m1.history("x")
        h1.append("a")
        h1.append("b")
        expected += ["a", "b"]
        h2 = m2.history("x")
        assert h2 is h1
        assert h2[:] == expected
        h2.append("c")  # must not overwrite the first's items
        expected.append("c")
        for n in range(23):  # across many seals, taking turns
            (h1 if n % 2 else m2.history("x")).append(n)
            expected.append(n)
            assert m1.history("x")[:] == m2.history("x")[:] == expected
            assert m2.history("x").recent(2) == expected[-2:]
        m2.history("x").extend(["y", "z"])
        expected += ["y", "z"]
        assert len(h1) == len(expected) and h1[:] == expected
    with tieredmem.open(str(path)) as fresh:  # what was acknowledged is in the file
        assert tieredmem.MemorySaver(store=fresh).history("x")[:] == expected


@DURABILITY
def test_two_memory_savers_on_one_store_share_states(tmp_path: Path, durability: str) -> None:
    path = tmp_path / "s.db"
    with _open(path, durability) as store:
        m1 = tieredmem.MemorySaver(store=store)
        m2 = tieredmem.MemorySaver(store=store)
        s1 = m1.state("doc")
        s1["a"] = 1
        s1.commit()
        s2 = m2.state("doc")
        assert s2 is s1
        assert dict(s2) == {"a": 1}
        s2["b"] = 2
        s2.commit()
        assert dict(m1.state("doc")) == {"a": 1, "b": 2}
        for n in range(70):  # past several compactions, taking turns
            s = (m1 if n % 2 else m2).state("doc")
            s[f"k{n % 7}"] = n
            if n % 5 == 0:
                s.pop("a", None)
            s.commit()
        want = dict(m1.state("doc"))
        assert want == dict(m2.state("doc"))
        assert want["b"] == 2 and "a" not in want and want["k6"] == 69
    with tieredmem.open(str(path)) as fresh:
        assert dict(tieredmem.MemorySaver(store=fresh).state("doc")) == want


def test_direct_users_share_the_same_objects(tmp_path: Path) -> None:
    with _open(tmp_path / "d.db", "sync") as store:
        memory = tieredmem.MemorySaver(store=store, chunk_items=4)
        h = History.shared(store, "x", chunk_items=9)
        assert memory.history("x") is h
        assert h.chunk_items == 9  # the first creator's options win
        with pytest.raises(ValueError, match=r"History\.shared"):
            History(store, "x")  # a second, incoherent object: refused
        with pytest.raises(ValueError, match="encod"):
            History.shared(store, "x", dumps=lambda v: b"x", loads=lambda b: b)
        s = State.shared(store, "doc")
        assert memory.state("doc") is s
        with pytest.raises(ValueError, match=r"State\.shared"):
            State(store, "doc")
        # Another store (handle) on the same file has its own objects: coherent through
        # the store's generation.
        with _open(tmp_path / "d.db", "sync") as other:
            assert History.shared(other, "x") is not h
            assert State.shared(other, "doc") is not s


def test_the_registry_keeps_nothing_alive(tmp_path: Path) -> None:
    with _open(tmp_path / "w.db", "sync") as store:
        memory = tieredmem.MemorySaver(store=store, open_histories=1)
        h = memory.history("x")
        h.append(1)
        ref = weakref.ref(h)
        sref = weakref.ref(memory.state("doc"))
        del h
        memory.history("y")  # evicts "x" from the saver's LRU
        gc.collect()
        assert ref() is None and sref() is None
        assert memory.history("x")[:] == [1]
        assert History(store, "z")[:] == []  # no live object: direct construction works


# -- LangGraph ------------------------------------------------------------------------
langgraph = pytest.importorskip("langgraph")

from langchain_core.messages import AIMessage, HumanMessage  # noqa: E402
from langchain_core.runnables import RunnableConfig  # noqa: E402
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer  # noqa: E402
from langgraph.graph import END, START, MessagesState, StateGraph  # noqa: E402

from tieredmem.langgraph import TieredSaver  # noqa: E402
from tieredmem.langgraph.serde import CheckpointSerializer  # noqa: E402


def _chat(checkpointer: Any) -> Any:
    def reply(state: MessagesState) -> dict[str, Any]:
        last = state["messages"][-1].content
        return {"messages": [AIMessage(f"re:{last}", id=f"re:{last}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=checkpointer)


def _contents(state: Any) -> list[str]:
    return [m.content for m in state.values["messages"]]


@DURABILITY
def test_two_tiered_savers_on_one_store_take_turns_on_a_thread(
    tmp_path: Path, durability: str
) -> None:
    path = tmp_path / "lg.db"
    config = {"configurable": {"thread_id": "t"}}
    expected: list[str] = []
    with _open(path, durability) as store:
        graphs = [
            _chat(TieredSaver(store, chunk_items=4)),
            _chat(TieredSaver(store, chunk_items=4)),
        ]
        for turn in range(15):
            text = f"m{turn}"
            graphs[turn % 2].invoke({"messages": [HumanMessage(text, id=text)]}, config)
            expected += [text, f"re:{text}"]
            assert _contents(graphs[0].get_state(config)) == expected
            assert _contents(graphs[1].get_state(config)) == expected
        history = [_contents(s) for s in graphs[1].get_state_history(config)]
        assert history[0] == expected and len(history) == 15 * 3
    with TieredSaver(str(path)) as fresh:
        assert _contents(_chat(fresh).get_state(config)) == expected


def test_tiered_savers_see_each_others_thread_deletes(tmp_path: Path) -> None:
    config: RunnableConfig = {"configurable": {"thread_id": "t"}}
    with _open(tmp_path / "del.db", "sync") as store:
        a, b = TieredSaver(store, chunk_items=4), TieredSaver(store, chunk_items=4)
        ga, gb = _chat(a), _chat(b)
        for turn in range(3):
            (ga if turn % 2 else gb).invoke({"messages": [HumanMessage(f"m{turn}")]}, config)
        a.delete_thread("t")
        assert b.get_tuple(config) is None
        gb.invoke({"messages": [HumanMessage("new", id="new")]}, config)
        assert _contents(ga.get_state(config)) == ["new", "re:new"]
        ga.invoke({"messages": [HumanMessage("again", id="again")]}, config)
        assert _contents(gb.get_state(config)) == ["new", "re:new", "again", "re:again"]


def test_tiered_savers_with_different_serializers_refuse_to_share_a_log(tmp_path: Path) -> None:
    config = {"configurable": {"thread_id": "t"}}
    with _open(tmp_path / "serde.db", "sync") as store:
        plain = TieredSaver(store)
        pickling = TieredSaver(store, serde=JsonPlusSerializer(pickle_fallback=True))
        _chat(plain).invoke({"messages": [HumanMessage("hi", id="hi")]}, config)
        with pytest.raises(ValueError, match="serializ"):
            _chat(pickling).invoke({"messages": [HumanMessage("x", id="x")]}, config)
        # Equivalent serializers (another default instance) share it.
        same = TieredSaver(store, serde=CheckpointSerializer())
        _chat(same).invoke({"messages": [HumanMessage("ok", id="ok")]}, config)
        assert _contents(_chat(plain).get_state(config)) == ["hi", "re:hi", "ok", "re:ok"]


def test_a_copy_over_a_thread_another_saver_holds_is_seen(tmp_path: Path) -> None:
    src = {"configurable": {"thread_id": "src"}}
    dst = {"configurable": {"thread_id": "dst"}}
    with _open(tmp_path / "copy.db", "sync") as store:
        a, b = TieredSaver(store, chunk_items=4), TieredSaver(store, chunk_items=4)
        ga, gb = _chat(a), _chat(b)
        for turn in range(3):
            ga.invoke({"messages": [HumanMessage(f"m{turn}", id=f"m{turn}")]}, src)
        a.copy_thread("src", "dst")
        assert len(_contents(gb.get_state(dst))) == 6  # b now holds dst's log
        a.delete_thread("dst")
        for turn in range(3, 6):
            ga.invoke({"messages": [HumanMessage(f"m{turn}", id=f"m{turn}")]}, src)
        a.copy_thread("src", "dst")  # the same log id, longer
        assert _contents(gb.get_state(dst)) == _contents(ga.get_state(src))
        assert len(_contents(gb.get_state(dst))) == 12


def test_concurrent_first_opens_build_one_object(tmp_path: Path) -> None:
    import threading

    with _open(tmp_path / "race.db", "sync") as store:
        for round_ in range(20):
            name = f"r{round_}"
            got: list[Any] = []
            barrier = threading.Barrier(4)

            def open_both(name: str, barrier: threading.Barrier, got: list[Any]) -> None:
                barrier.wait()
                got.append((History.shared(store, name), State.shared(store, name)))

            threads = [
                threading.Thread(target=open_both, args=(name, barrier, got)) for _ in range(4)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len({id(h) for h, _ in got}) == 1
            assert len({id(s) for _, s in got}) == 1

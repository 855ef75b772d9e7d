"""Values a caller receives from any read are its own, and nothing a caller passed to a
write is kept by reference: mutating either never changes what is stored, cached, or held
(DESIGN.md, "Semantics worth stating").

Each check reads a value, takes a deep copy, mutates every nested part of what it read
(and of what it wrote), reads again and compares with the copy.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest

pytest.importorskip("langgraph")

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from pydantic import BaseModel
from typing_extensions import TypedDict

import tieredmem
from tieredmem.langgraph import TieredSaver, TieredStore

MARK = "changed by the caller"


class ItemsState(TypedDict):
    items: Annotated[list[dict[str, Any]], operator.add]


def mutate(value: Any) -> None:
    """Change every mutable part of *value* in place, however deeply nested."""
    if isinstance(value, dict):
        for key in list(value):
            inner = value[key]
            if isinstance(inner, (dict, list, BaseModel)):
                mutate(inner)
            elif isinstance(inner, str):
                value[key] = MARK
        value[MARK] = MARK
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            if isinstance(inner, (dict, list, BaseModel)):
                mutate(inner)
            elif isinstance(inner, str):
                value[i] = MARK
        value.append(MARK)
    elif isinstance(value, BaseModel):
        for name, inner in list(vars(value).items()):
            if isinstance(inner, (dict, list, BaseModel)):
                mutate(inner)
            elif isinstance(inner, str) and name not in ("type", "id"):
                setattr(value, name, MARK)


def assert_owned(read: Callable[[], Any]) -> None:
    """What *read* returns is the caller's: mutating it changes no later read."""
    first = read()
    expected = copy.deepcopy(first)
    assert first == expected
    mutate(first)
    assert first != expected  # the mutation reached something
    assert read() == expected


def reply(id: str = "ai1") -> AIMessage:
    return AIMessage(
        content="",
        id=id,
        tool_calls=[{"id": "c1", "name": "search", "args": {"query": "query", "n": [1, 2]}}],
        additional_kwargs={"meta": {"k": ["v"]}},
        response_metadata={"model": "m", "scores": [0.5]},
    )


def chat_graph(checkpointer: Any, replies: list[AIMessage] | None = None) -> Any:
    """One node answering each message; with *replies*, always the first of them (the
    very object), else a new message each turn (tool calls every other turn)."""

    def node(state: MessagesState) -> dict[str, Any]:
        if replies:
            return {"messages": [replies[0]]}
        n = len(state["messages"])
        return {"messages": [reply(f"ai{n}") if n % 4 == 1 else AIMessage(f"plain {n}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    return builder.compile(checkpointer=checkpointer)


@pytest.fixture(params=["inmemory", "tiered-sync", "tiered-batch", "tiered-tiny-hot"])
def checkpointer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    kind = request.param
    if kind == "inmemory":  # the reference behaviour
        yield InMemorySaver()
        return
    saver = TieredSaver(
        str(tmp_path / "lg.db"),
        durability="batch" if kind == "tiered-batch" else "sync",
        hot_bytes=1 if kind == "tiered-tiny-hot" else "64MiB",
        chunk_items=4,
    )
    yield saver
    saver.close()


def test_issue_reproduction(checkpointer: Any) -> None:
    """The reproduction from the issue: a tool call's arguments changed by the caller."""
    node_reply = AIMessage(
        content="",
        id="ai1",
        tool_calls=[{"id": "c1", "name": "search", "args": {"query": "query"}}],
    )
    g = chat_graph(checkpointer, [node_reply])
    cfg = {"configurable": {"thread_id": "t"}}
    g.invoke({"messages": [("user", "hi")]}, cfg)
    last = g.get_state(cfg).values["messages"][-1]
    last.tool_calls[0]["args"]["query"] = MARK
    assert g.get_state(cfg).values["messages"][-1].tool_calls[0]["args"]["query"] == "query"
    assert node_reply.tool_calls[0]["args"]["query"] == "query"


def test_graph_reads_are_the_callers_own(checkpointer: Any) -> None:
    g = chat_graph(checkpointer)
    cfg = {"configurable": {"thread_id": "t"}}
    for turn in range(7):  # several turns: sealed chunks and a tail (chunk_items=4)
        g.invoke({"messages": [HumanMessage(f"hi {turn}", id=f"h{turn}")]}, cfg)
        assert_owned(lambda: g.get_state(cfg).values)
        assert_owned(lambda: checkpointer.get_tuple(cfg).checkpoint)
    assert_owned(lambda: [s.values for s in g.get_state_history(cfg)])
    assert_owned(lambda: [t.checkpoint for t in checkpointer.list(cfg)])
    assert_owned(lambda: [t.metadata for t in checkpointer.list(cfg)])
    older = list(checkpointer.list(cfg))[3].config
    assert_owned(lambda: checkpointer.get_tuple(older).checkpoint)
    assert_owned(lambda: g.get_state(older).values)
    # The graph continues from what it read: the next turn is unaffected by the above.
    g.invoke({"messages": [HumanMessage("again", id="h-again")]}, cfg)
    messages = g.get_state(cfg).values["messages"]
    assert [m.content for m in messages[:2]] == ["hi 0", ""]
    assert messages[1].tool_calls[0]["args"] == {"query": "query", "n": [1, 2]}
    assert len(messages) == 16


def test_graph_keeps_no_reference_to_what_a_node_returned(checkpointer: Any) -> None:
    node_reply = reply()
    pristine = reply()
    g = chat_graph(checkpointer, [node_reply])
    cfg = {"configurable": {"thread_id": "t"}}
    g.invoke({"messages": [HumanMessage("hi", id="h0")]}, cfg)
    expected_state = copy.deepcopy(g.get_state(cfg).values)
    expected_list = copy.deepcopy([t.checkpoint for t in checkpointer.list(cfg)])
    mutate(node_reply)  # the node's author changes the object it returned
    assert node_reply != pristine
    assert g.get_state(cfg).values == expected_state
    assert [t.checkpoint for t in checkpointer.list(cfg)] == expected_list
    assert g.get_state(cfg).values["messages"][-1] == pristine


def test_put_keeps_no_reference_to_the_checkpoint(checkpointer: Any) -> None:
    """Values handed to ``put`` and ``put_writes`` directly."""
    messages: list[Any] = [{"role": "user", "content": "hi", "extra": {"k": [1]}}]
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"messages": messages, "other": {"a": {"b": [1, 2]}}}
    checkpoint["channel_versions"] = {"messages": "1", "other": "1"}
    cfg: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    saved = checkpointer.put(cfg, checkpoint, {"step": 1}, {"messages": "1", "other": "1"})
    writes = [("other", {"deep": {"list": [1, 2]}})]
    checkpointer.put_writes(saved, writes, "task-1")
    expected = copy.deepcopy(checkpointer.get_tuple(cfg))
    mutate(messages)
    mutate(checkpoint["channel_values"])
    mutate(writes[0][1])
    got = checkpointer.get_tuple(cfg)
    assert got.checkpoint == expected.checkpoint
    assert got.pending_writes == expected.pending_writes
    assert_owned(lambda: checkpointer.get_tuple(cfg).pending_writes)
    # A second step whose list extends the first: the extension is not held either.
    second = copy.deepcopy(checkpoint)
    second["id"] = checkpoint["id"][:-1] + ("1" if checkpoint["id"][-1] != "1" else "2")
    grown = [{"role": "user", "content": "hi"}, {"role": "ai", "content": "yo", "x": [1]}]
    second["channel_values"] = {"messages": grown}
    second["channel_versions"] = {"messages": "2", "other": "1"}
    checkpointer.put(saved, second, {"step": 2}, {"messages": "2"})
    expected = copy.deepcopy(checkpointer.get_tuple(cfg).checkpoint)
    mutate(grown)
    assert checkpointer.get_tuple(cfg).checkpoint == expected
    assert_owned(lambda: checkpointer.get_tuple(cfg).checkpoint)


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[tieredmem.MemorySaver]:
    with tieredmem.MemorySaver(path=str(tmp_path / "m.db"), chunk_items=4, max_history=3) as m:
        yield m


def test_history_reads_are_the_callers_own(memory: tieredmem.MemorySaver) -> None:
    h = memory.history("chat")
    items = [{"i": i, "nested": {"list": [i, {"deep": [i]}]}} for i in range(11)]
    for item in items:
        h.append(item)
    assert_owned(lambda: list(h))
    assert_owned(lambda: h[:])
    assert_owned(lambda: h[2:9])
    assert_owned(lambda: h[::3])
    assert_owned(lambda: h[0])
    assert_owned(lambda: h[-1])
    assert_owned(lambda: h.recent())
    assert_owned(lambda: h.recent(2))
    assert_owned(lambda: h.recent(8))
    mutate(items)  # what was appended is not held by reference either
    assert list(h) == [{"i": i, "nested": {"list": [i, {"deep": [i]}]}} for i in range(11)]


def test_store_reads_are_the_callers_own(memory: tieredmem.MemorySaver) -> None:
    store = memory.longterm
    value = {"text": "french", "tags": ["a", {"b": [1]}], "nested": {"x": {"y": [1, 2]}}}
    store.put(("users", "alice"), "prefs", value)
    mutate(value)
    assert store.get(("users", "alice"), "prefs").value["tags"] == ["a", {"b": [1]}]
    assert_owned(lambda: store.get(("users", "alice"), "prefs").value)
    assert_owned(lambda: [i.value for i in store.search(("users",))])
    assert_owned(lambda: [i.value for i in store.search(("users",), query="french")])
    assert_owned(lambda: [i.value for i in store.get_many([(("users", "alice"), "prefs")])])


def test_tiered_store_reads_are_the_callers_own(tmp_path: Path) -> None:
    with TieredStore(str(tmp_path / "s.db")) as store:
        value = {"text": "french", "tags": ["a", {"b": [1]}], "nested": {"x": {"y": [1]}}}
        store.put(("users", "alice"), "prefs", value)
        mutate(value)
        assert store.get(("users", "alice"), "prefs").value["tags"] == ["a", {"b": [1]}]
        assert_owned(lambda: store.get(("users", "alice"), "prefs").value)
        assert_owned(lambda: [i.value for i in store.search(("users",))])
        assert_owned(lambda: [i.value for i in store.search(("users",), query="french")])
        assert_owned(lambda: store.batch([store_get_op()])[0].value)


def store_get_op() -> Any:
    from langgraph.store.base import GetOp

    return GetOp(("users", "alice"), "prefs")


def _logs(saver: TieredSaver) -> list[str]:
    root = saver.store.raw.internal_ns("lg")
    return [
        ns
        for ns in saver.store.raw.namespaces_under(root)
        if ns.rsplit("\x1f", 2)[-2:-1] == ["log"]
    ]


def test_copies_keep_one_append_only_log(tmp_path: Path) -> None:
    """Reads hand out copies, yet the graph's next put is still recognised as an
    extension of the list it read (one log, appended to), including when reads of
    the same thread during the run (held alive) crowd out what the saver marked."""
    with TieredSaver(str(tmp_path / "lg.db"), chunk_items=4) as saver:
        kept: list[Any] = []
        graph_holder: list[Any] = []
        cfg = {"configurable": {"thread_id": "t"}}

        def node(state: MessagesState) -> dict[str, Any]:
            n = len(state["messages"])
            if n > 6:  # a UI polling the thread while the graph runs
                kept.extend(graph_holder[0].get_state(cfg) for _ in range(6))
            return {"messages": [AIMessage(f"reply {n}", id=f"ai{n}")]}

        builder = StateGraph(MessagesState)
        builder.add_node("node", node)
        builder.add_edge(START, "node")
        builder.add_edge("node", END)
        g = builder.compile(checkpointer=saver)
        graph_holder.append(g)
        for turn in range(12):
            g.invoke({"messages": [HumanMessage(f"hi {turn}", id=f"h{turn}")]}, cfg)
            if turn % 3 == 0:
                g.get_state(cfg)
                list(g.get_state_history(cfg))
        assert len(g.get_state(cfg).values["messages"]) == 24
        assert len(_logs(saver)) == 1


def test_plain_dict_lists_keep_one_log(tmp_path: Path) -> None:
    """List items that cannot be weakly referenced (dicts) are recognised too."""

    def node(state: ItemsState) -> dict[str, Any]:
        return {"items": [{"n": len(state["items"]), "deep": {"list": [1]}}]}

    builder = StateGraph(ItemsState)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    with TieredSaver(str(tmp_path / "lg.db"), chunk_items=4) as saver:
        g = builder.compile(checkpointer=saver)
        cfg = {"configurable": {"thread_id": "t"}}
        for turn in range(9):
            g.invoke({"items": [{"turn": turn}]}, cfg)
            assert_owned(lambda: g.get_state(cfg).values)
        assert len(g.get_state(cfg).values["items"]) == 18
        assert len(_logs(saver)) == 1


def test_reads_leave_the_garbage_collector_as_they_found_it(tmp_path: Path) -> None:
    """Long lists are copied with the cyclic collector paused, and only then."""
    import gc

    with TieredSaver(str(tmp_path / "lg.db")) as saver:
        g = chat_graph(saver)
        cfg = {"configurable": {"thread_id": "t"}}
        for turn in range(140):  # 280 messages: over the pause threshold
            g.invoke({"messages": [HumanMessage(f"hi {turn}", id=f"h{turn}")]}, cfg)
        assert gc.isenabled()
        assert len(g.get_state(cfg).values["messages"]) == 280
        assert len(list(saver.list(cfg, limit=3))) == 3
        assert gc.isenabled()
        gc.disable()
        try:
            assert len(g.get_state(cfg).values["messages"]) == 280
            assert not gc.isenabled()
        finally:
            gc.enable()

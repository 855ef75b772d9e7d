"""TieredSaver with real LangGraph graphs, each compared with InMemorySaver."""

from __future__ import annotations

import asyncio
import operator
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Any

import pytest

pytest.importorskip("langgraph")

from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict

from tieredmem.langgraph import TieredSaver

from .conftest import FakeClock

ROOT = Path(__file__).resolve().parents[1]


def chat_graph(checkpointer: Any) -> Any:
    def bot(state: MessagesState) -> dict[str, Any]:
        n = len(state["messages"])
        return {"messages": [AIMessage(content=f"reply {n}: " + "x" * 400, id=f"ai-{n}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("bot", bot)
    builder.add_edge(START, "bot")
    builder.add_edge("bot", END)
    return builder.compile(checkpointer=checkpointer)


def run_chat(checkpointer: Any, turns: int, thread: str = "t1") -> Any:
    graph = chat_graph(checkpointer)
    config = {"configurable": {"thread_id": thread}}
    for i in range(turns):
        graph.invoke({"messages": [HumanMessage(content=f"hello {i}", id=f"h-{i}")]}, config)
    return graph, config


def contents(state: Any) -> list[str]:
    return [m.content for m in state.values["messages"]]


def history_summary(graph: Any, config: Any) -> list[tuple[Any, ...]]:
    return [
        (
            s.metadata.get("step"),
            s.metadata.get("source"),
            len(s.values.get("messages", [])),
            s.next,
        )
        for s in graph.get_state_history(config)
    ]


@pytest.fixture
def saver(tmp_path: Path) -> Any:
    s = TieredSaver(str(tmp_path / "lg.db"))
    yield s
    s.close()


def test_chat_loop_matches_inmemorysaver(saver: TieredSaver) -> None:
    g1, c1 = run_chat(InMemorySaver(), 25)
    g2, c2 = run_chat(saver, 25)
    assert contents(g2.get_state(c2)) == contents(g1.get_state(c1))
    assert history_summary(g2, c2) == history_summary(g1, c1)
    # One append-only log holds every version of `messages`.
    logs = [
        ns
        for ns in saver.store.raw.namespaces_under(saver.store.raw.internal_ns("lg"))
        if "log" in ns
    ]
    assert len(logs) == 1


def test_replay_and_fork_from_a_past_checkpoint(saver: TieredSaver) -> None:
    results = []
    for cp in (InMemorySaver(), saver):
        graph, config = run_chat(cp, 6)
        past = next(s for s in graph.get_state_history(config) if len(s.values["messages"]) == 6)
        replayed = graph.invoke(None, past.config)  # replay from a past checkpoint
        forked = graph.update_state(past.config, {"messages": [HumanMessage("fork!", id="f1")]})
        after_fork = graph.invoke(None, forked)
        results.append(
            (
                [m.content for m in replayed["messages"]],
                [m.content for m in after_fork["messages"]],
                contents(graph.get_state(config)),
            )
        )
    assert results[0] == results[1]


def test_removal_starts_a_new_log(saver: TieredSaver) -> None:
    graph, config = run_chat(saver, 3)
    graph.update_state(config, {"messages": [RemoveMessage(id="h-1")]})
    graph.invoke({"messages": [HumanMessage("after removal", id="h-x")]}, config)
    ref_graph, ref_config = run_chat(InMemorySaver(), 3)
    ref_graph.update_state(ref_config, {"messages": [RemoveMessage(id="h-1")]})
    ref_graph.invoke({"messages": [HumanMessage("after removal", id="h-x")]}, ref_config)
    assert contents(graph.get_state(config)) == contents(ref_graph.get_state(ref_config))
    assert history_summary(graph, config) == history_summary(ref_graph, ref_config)


class Approval(TypedDict):
    request: str
    answer: str


def approval_graph(checkpointer: Any) -> Any:
    def ask(state: Approval) -> dict[str, Any]:
        answer = interrupt({"question": f"approve {state['request']}?"})
        return {"answer": answer}

    builder = StateGraph(Approval)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    return builder.compile(checkpointer=checkpointer)


RESUME = """
import sys
sys.path.insert(0, sys.argv[2])
from langgraph.types import Command
from tests.test_langgraph_saver import approval_graph
from tieredmem.langgraph import TieredSaver
with TieredSaver(sys.argv[1]) as saver:
    graph = approval_graph(saver)
    out = graph.invoke(Command(resume="yes, approved"), {"configurable": {"thread_id": "hitl"}})
    print(out["answer"])
"""


def test_interrupt_resumed_in_a_new_process(tmp_path: Path) -> None:
    path = str(tmp_path / "hitl.db")
    with TieredSaver(path) as saver:
        graph = approval_graph(saver)
        out = graph.invoke({"request": "refund"}, {"configurable": {"thread_id": "hitl"}})
        assert "__interrupt__" in out
        state = graph.get_state({"configurable": {"thread_id": "hitl"}})
        assert state.next == ("ask",) and state.tasks[0].interrupts
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(RESUME), path, str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "yes, approved"
    with TieredSaver(path) as saver:
        state = approval_graph(saver).get_state({"configurable": {"thread_id": "hitl"}})
        assert state.values["answer"] == "yes, approved" and state.next == ()


class Parent(TypedDict):
    items: Annotated[list[str], operator.add]


def subgraph_and_branches(checkpointer: Any) -> Any:
    sub = StateGraph(Parent)
    sub.add_node("inner", lambda s: {"items": ["inner"]})
    sub.add_edge(START, "inner")
    sub.add_edge("inner", END)
    builder = StateGraph(Parent)
    builder.add_node("sub", sub.compile())
    builder.add_node("left", lambda s: {"items": ["left"]})
    builder.add_node("right", lambda s: {"items": ["right"]})
    builder.add_node("join", lambda s: {"items": [f"join:{len(s['items'])}"]})
    builder.add_edge(START, "left")
    builder.add_edge(START, "right")
    builder.add_edge("left", "sub")
    builder.add_edge("right", "sub")
    builder.add_edge("sub", "join")
    builder.add_edge("join", END)
    return builder.compile(checkpointer=checkpointer)


def test_subgraph_and_parallel_branches(saver: TieredSaver) -> None:
    outs = []
    for cp in (InMemorySaver(), saver):
        graph = subgraph_and_branches(cp)
        config = {"configurable": {"thread_id": "p"}}
        for _ in range(3):
            graph.invoke({"items": ["start"]}, config)
        outs.append((graph.get_state(config).values, history_summary_items(graph, config)))
    assert outs[0] == outs[1]


def history_summary_items(graph: Any, config: Any) -> list[tuple[Any, ...]]:
    return [
        (s.metadata.get("step"), tuple(s.values.get("items", [])))
        for s in graph.get_state_history(config)
    ]


def test_async_graph(tmp_path: Path) -> None:
    async def run(saver: Any) -> tuple[list[str], list[tuple[Any, ...]], int]:
        graph = chat_graph(saver)
        config = {"configurable": {"thread_id": "async"}}
        for i in range(5):
            await graph.ainvoke({"messages": [HumanMessage(f"hi {i}", id=f"a{i}")]}, config)
        chunks = [c async for c in graph.astream({"messages": [HumanMessage("s", id="s")]}, config)]
        state = await graph.aget_state(config)
        history = [
            (s.metadata.get("step"), len(s.values.get("messages", [])))
            async for s in graph.aget_state_history(config)
        ]
        return [m.content[:9] for m in state.values["messages"]], history, len(chunks)

    async def main() -> tuple[Any, Any]:
        async with TieredSaver.from_conn_string(str(tmp_path / "a.db")) as saver:
            ours = await run(saver)
        return ours, await run(InMemorySaver())

    ours, reference = asyncio.run(main())
    assert ours == reference
    assert len(ours[0]) == 12


def test_storage_grows_linearly(tmp_path: Path) -> None:
    sizes = {}
    with TieredSaver(str(tmp_path / "lin.db")) as saver:
        graph = chat_graph(saver)
        config = {"configurable": {"thread_id": "lin"}}
        for turn in range(1, 401):
            graph.invoke({"messages": [HumanMessage(f"q{turn}", id=f"q{turn}")]}, config)
            if turn in (100, 200, 400):
                saver.store.backend.checkpoint()  # type: ignore[attr-defined]
                sizes[turn] = os.path.getsize(tmp_path / "lin.db")
        assert len(graph.get_state(config).values["messages"]) == 800
    # Quadratic growth would give 16x from 100 to 400 turns; linear gives about 4x.
    assert sizes[400] / sizes[100] < 6, sizes
    assert sizes[400] < 3_000_000, sizes


def test_hot_thread_reads_no_disk(saver: TieredSaver) -> None:
    graph, config = run_chat(saver, 10)
    before = saver.store.stats()  # not even the first read of the newest checkpoint
    for _ in range(20):
        graph.get_state(config)
    after = saver.store.stats()
    assert after.loads == before.loads and after.misses == before.misses


def test_read_miss_creates_nothing(saver: TieredSaver) -> None:
    graph = chat_graph(saver)
    assert graph.get_state({"configurable": {"thread_id": "ghost"}}).values == {}
    assert list(saver.list({"configurable": {"thread_id": "ghost"}})) == []
    assert saver.store.raw.namespaces_under(saver.store.raw.internal_ns("lg")) == []


def test_max_checkpoints_keeps_what_resuming_needs(tmp_path: Path) -> None:
    with TieredSaver(str(tmp_path / "r.db"), max_checkpoints=5) as saver:
        graph, config = run_chat(saver, 30)
        history = list(graph.get_state_history(config))
        assert 5 <= len(history) <= 7
        assert len(graph.get_state(config).values["messages"]) == 60
        hitl = approval_graph(saver)
        hconf = {"configurable": {"thread_id": "h"}}
        hitl.invoke({"request": "x"}, hconf)
        saver.prune(["h"])
        saver.maintain()
        assert hitl.get_state(hconf).tasks[0].interrupts  # pending interrupt survived
        assert hitl.invoke(Command(resume="ok"), hconf)["answer"] == "ok"


def test_ttl_expires_idle_threads(tmp_path: Path) -> None:
    clock = FakeClock()
    with TieredSaver(
        str(tmp_path / "ttl.db"), ttl=3600, clock=clock, maintenance_interval=0
    ) as saver:
        run_chat(saver, 2, thread="old")
        clock.tick(3000)
        graph, fresh = run_chat(saver, 2, thread="fresh")
        clock.tick(1000)
        saver.maintain()
        assert graph.get_state({"configurable": {"thread_id": "old"}}).values == {}
        assert len(graph.get_state(fresh).values["messages"]) == 4


def test_import_from_sqlitesaver(tmp_path: Path) -> None:
    sqlite = pytest.importorskip("langgraph.checkpoint.sqlite")
    with sqlite.SqliteSaver.from_conn_string(str(tmp_path / "old.db")) as old:
        g_old, config = run_chat(old, 8)
        run_chat(old, 3, thread="t2")
        expected = (contents(g_old.get_state(config)), history_summary(g_old, config))
        with TieredSaver(str(tmp_path / "new.db")) as saver:
            assert saver.import_from(old) == len(list(old.list(None)))
            assert saver.import_from(old) == 0  # resumable: nothing twice
            g_new = chat_graph(saver)
            assert (contents(g_new.get_state(config)), history_summary(g_new, config)) == expected
            g_new.invoke({"messages": [HumanMessage("continue", id="c")]}, config)
            assert len(g_new.get_state(config).values["messages"]) == 18


def test_aimport_from_passes_thread_ids_on(tmp_path: Path) -> None:
    import asyncio

    sqlite = pytest.importorskip("langgraph.checkpoint.sqlite")
    with sqlite.SqliteSaver.from_conn_string(str(tmp_path / "old.db")) as old:
        run_chat(old, 4)
        run_chat(old, 3, thread="t2")
        only_t2 = len(list(old.list({"configurable": {"thread_id": "t2"}})))
        with TieredSaver(str(tmp_path / "new.db")) as saver:
            assert asyncio.run(saver.aimport_from(old, thread_ids=["t2"])) == only_t2
            assert list(saver.list({"configurable": {"thread_id": "t1"}})) == []


def test_reopen_reads_back(tmp_path: Path) -> None:
    path = str(tmp_path / "re.db")
    with TieredSaver(path) as saver:
        graph, config = run_chat(saver, 5)
        expected = (contents(graph.get_state(config)), history_summary(graph, config))
    with TieredSaver(path) as saver:
        graph = chat_graph(saver)
        assert (contents(graph.get_state(config)), history_summary(graph, config)) == expected
        graph.invoke({"messages": [HumanMessage("more", id="m")]}, config)
        assert len(graph.get_state(config).values["messages"]) == 12


WORKER = """
import sys
sys.path.insert(0, sys.argv[2])
from tests.test_langgraph_saver import run_chat
from tieredmem.langgraph import TieredSaver
with TieredSaver(sys.argv[1]) as saver:
    graph, config = run_chat(saver, 30, thread=sys.argv[3])
    print(len(graph.get_state(config).values["messages"]))
"""


def test_two_processes_different_threads(tmp_path: Path) -> None:
    path = str(tmp_path / "mp.db")
    TieredSaver(path).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WORKER), path, str(ROOT), f"proc-{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert out.strip() == "60"
    with TieredSaver(path) as saver:
        graph = chat_graph(saver)
        for i in range(2):
            state = graph.get_state({"configurable": {"thread_id": f"proc-{i}"}})
            assert len(state.values["messages"]) == 60


def test_delta_channel_graph(saver: TieredSaver) -> None:
    channels = pytest.importorskip("langgraph.channels")
    if not hasattr(channels, "DeltaChannel"):
        pytest.skip("this LangGraph has no DeltaChannel")
    from langgraph.graph.message import add_messages

    def reducer(state: list[Any], writes: list[Any]) -> list[Any]:
        for w in writes:
            state = add_messages(state, w)
        return state

    DeltaState = TypedDict(  # noqa: UP013 - the annotation needs a local object
        "DeltaState",
        {"messages": Annotated[list, channels.DeltaChannel(reducer, snapshot_frequency=4)]},
    )

    def bot(state: Any) -> dict[str, Any]:
        return {
            "messages": [AIMessage(f"r{len(state['messages'])}", id=f"r{len(state['messages'])}")]
        }

    results = []
    for cp in (InMemorySaver(), saver):
        builder = StateGraph(DeltaState)
        builder.add_node("bot", bot)
        builder.add_edge(START, "bot")
        builder.add_edge("bot", END)
        graph = builder.compile(checkpointer=cp)
        config = {"configurable": {"thread_id": "delta"}}
        for i in range(10):
            graph.invoke({"messages": [HumanMessage(f"h{i}", id=f"h{i}")]}, config)
        results.append([m.content for m in graph.get_state(config).values["messages"]])
    assert results[0] == results[1] and len(results[0]) == 20
    saver.prune(["delta"])  # keep_latest must keep the chain back to a snapshot
    graph = StateGraph(DeltaState)
    graph.add_node("bot", bot)
    graph.add_edge(START, "bot")
    graph.add_edge("bot", END)
    compiled = graph.compile(checkpointer=saver)
    assert [
        m.content
        for m in compiled.get_state({"configurable": {"thread_id": "delta"}}).values["messages"]
    ] == results[0]


def test_async_reads_of_a_hot_thread_stay_on_the_event_loop(
    saver: TieredSaver, monkeypatch
) -> None:
    graph, config = run_chat(saver, 5)
    graph.get_state(config)
    hops = []
    real = asyncio.to_thread

    async def counting(*args: Any, **kwargs: Any) -> Any:
        hops.append(args[0])
        return await real(*args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counting)

    async def main() -> Any:
        return await graph.aget_state(config)

    state = asyncio.run(main())
    assert len(state.values["messages"]) == 10
    assert hops == []
    cold = TieredSaver(saver.store.url.replace("sqlite:///", ""), hot_bytes=1)
    try:
        state = asyncio.run(chat_graph(cold).aget_state(config))
        assert len(state.values["messages"]) == 10 and hops  # cold: read in a worker thread
    finally:
        cold.close()


class ListState(TypedDict):
    items: Annotated[list[Any], operator.add]


def list_graph(checkpointer: Any) -> Any:
    def node(state: ListState) -> dict[str, Any]:
        return {}

    builder = StateGraph(ListState)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    return builder.compile(checkpointer=checkpointer)


@pytest.mark.parametrize("count", [3, 40, 70_000])  # the three msgpack array headers
def test_log_decoded_in_one_call_reads_back_every_kind_of_item(tmp_path: Path, count: int) -> None:
    # A cold read decodes a log slice with one msgpack call over the items' encodings;
    # the values must be those InMemorySaver gives back, whatever the items are.
    kinds: list[Any] = [
        AIMessage("a", id="m1", tool_calls=[{"name": "f", "args": {"x": 1}, "id": "c1"}]),
        {"nested": {"list": [1, 2.5, None]}, "b": b"\x00\xff"},
        "text",
        None,
        HumanMessage("h", id="m2"),
        7,
    ]
    items = [kinds[i % len(kinds)] for i in range(count)]
    path = str(tmp_path / "items.db")
    config = {"configurable": {"thread_id": "t"}}
    expected_graph = list_graph(InMemorySaver())
    expected_graph.invoke({"items": items}, config)
    expected = expected_graph.get_state(config).values["items"]
    with TieredSaver(path) as saver:
        list_graph(saver).invoke({"items": items}, config)
    with TieredSaver(path) as saver:  # a new saver: nothing decoded is held
        assert list_graph(saver).get_state(config).values["items"] == expected


def test_decoded_lists_held_stay_within_their_share_of_the_budget(tmp_path: Path) -> None:
    # 30 threads of 40 messages under a budget for about 256 held items: the saver keeps
    # only the most recently used threads' lists, and every thread still reads back.
    with TieredSaver(str(tmp_path / "b.db"), hot_bytes=256 * 2048 * 4) as saver:
        graphs = [run_chat(saver, 20, thread=f"t{i}") for i in range(30)]
        stats = saver.stats()
        assert stats["held_list_items_max"] == 256
        assert 200 < stats["held_list_items"] <= 256
        for i, (graph, config) in enumerate(graphs):
            assert contents(graph.get_state(config))[-1] == "reply 39: " + "x" * 400, i


def test_memory_a_saver_holds_stays_within_its_budget_whatever_the_threads(
    tmp_path: Path,
) -> None:
    # Issue #16: what a saver holds must not grow with the threads it has seen.  Every
    # Python allocation made while 150 threads run, and still alive after them, is
    # counted (tracemalloc): the hot tier, the decoded lists, the open logs' History
    # objects and tails, and anything kept per thread.  Deterministic: no timing.
    import gc
    import random
    import threading
    import tracemalloc

    import tieredmem

    path = str(tmp_path / "m.db")
    # A file whose zstd dictionary is trained: a new store samples its first 1 MiB of
    # values once to train one, a one-time cost that is not the saver's.
    trained = threading.Event()
    rng = random.Random(7)
    words = ["".join(rng.choices("abcdefghij", k=6)) for _ in range(500)]
    with tieredmem.open(
        path, metrics=lambda e: e["event"] == "dictionary" and trained.set()
    ) as store:
        for i in range(1600):
            store.put(("seed",), f"k{i}", {"text": " ".join(rng.choices(words, k=100))})
        assert trained.wait(60)
    budget = 2 * 1024 * 1024
    with TieredSaver(path, hot_bytes=budget, maintenance_interval=0) as saver:
        graph = chat_graph(saver)
        for i in range(3):  # warm up: LangGraph's and the codec's first-use caches
            for turn in range(3):
                msg = HumanMessage(content=f"hello {turn}", id=f"h-{i}-{turn}")
                graph.invoke({"messages": [msg]}, {"configurable": {"thread_id": f"w{i}"}})
        gc.collect()
        tracemalloc.start()
        try:
            for i in range(150):
                config = {"configurable": {"thread_id": f"t{i}"}}
                for turn in range(3):
                    msg = HumanMessage(content=f"hello {turn}", id=f"h-{i}-{turn}")
                    graph.invoke({"messages": [msg]}, config)
            gc.collect()
            held = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        stats = saver.stats()
        assert held <= 1.25 * budget, (held, dict(stats))
        assert stats["open_logs"] <= 64 and stats["live_histories"] <= 64
        assert stats["tracked_threads"] == 0
        state = graph.get_state({"configurable": {"thread_id": "t0"}})
        assert contents(state)[-1] == "reply 5: " + "x" * 400


def test_a_put_that_fails_after_its_log_append_writes_nothing(tmp_path: Path) -> None:
    """A put's log append and its rows commit together (#19): when the put raises after
    the append (its metadata cannot be encoded), neither is written, and the saver's open
    logs and lists, which counted on the append, do not lead the next turns astray."""
    import threading

    path = str(tmp_path / "lg.db")
    saver = TieredSaver(path)
    graph, config = run_chat(saver, 3)
    latest = saver.get_tuple(config)
    assert latest is not None
    checkpoint = dict(latest.checkpoint)
    values = dict(checkpoint["channel_values"])
    values["messages"] = [*values["messages"], HumanMessage("lost", id="lost")]
    version = saver.get_next_version(checkpoint["channel_versions"]["messages"], None)
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = {**checkpoint["channel_versions"], "messages": version}
    checkpoint["id"] = "1" + latest.checkpoint["id"][1:]  # later than every checkpoint
    with pytest.raises(TypeError):
        saver.put(
            latest.config,
            checkpoint,  # type: ignore[arg-type]
            {"bad": threading.Lock()},  # type: ignore[typeddict-unknown-key]
            {"messages": version},
        )
    for i in range(3, 5):
        graph.invoke({"messages": [HumanMessage(content=f"hello {i}", id=f"h-{i}")]}, config)
    expected, _ = run_chat(InMemorySaver(), 5)
    assert contents(graph.get_state(config)) == contents(expected.get_state(config))
    saver.close()
    # Nothing of the failed put reached the file (before #19 its log append had).
    assert not any(
        b"lost" in Path(f).read_bytes() for f in (path, path + "-wal") if os.path.exists(f)
    )
    reopened = TieredSaver(path)
    again = chat_graph(reopened)
    assert contents(again.get_state(config)) == contents(expected.get_state(config))
    assert "lost" not in contents(again.get_state(config))
    reopened.close()

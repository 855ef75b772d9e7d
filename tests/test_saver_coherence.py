"""Caches above the store obey writes by other processes (real processes, one file).

Two long-lived peer processes take turns on one thread (one process at a time, the
README's rule), each with its own :class:`TieredSaver` or :class:`MemorySaver` on the
same path; the test drives them over pipes and checks that what one wrote is what the
other reads next, and that the other's next write keeps it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .peers import LOOP, JsonPeer

pytest.importorskip("langgraph")


PEER = (
    """
import json, sys
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph
import tieredmem
from tieredmem.langgraph import TieredSaver

path, durability = sys.argv[1], sys.argv[2]
saver = TieredSaver(path, durability=durability, chunk_items=4)
builder = StateGraph(MessagesState)
builder.add_node("noop", lambda state: {"messages": []})
builder.add_edge(START, "noop")
builder.add_edge("noop", END)
graph = builder.compile(checkpointer=saver)
memory = tieredmem.MemorySaver(path=path, durability=durability, chunk_items=4, max_history=3)
held = {}


def contents(messages):
    return [m.content for m in messages]


def run(cmd):
    op = cmd["op"]
    cfg = {"configurable": {"thread_id": cmd.get("thread", "t")}}
    if op == "invoke":
        out = graph.invoke({"messages": [HumanMessage(cmd["text"], id=cmd["text"])]}, cfg)
        return contents(out["messages"])
    if op == "state":
        return contents(graph.get_state(cfg).values["messages"])
    if op == "tuple":
        tup = saver.get_tuple(cfg)
        return [tup.checkpoint["id"], contents(tup.checkpoint["channel_values"]["messages"])]
    if op == "list":
        return [
            contents(t.checkpoint["channel_values"].get("messages", []))
            for t in saver.list(cfg)
        ]
    if op == "flush":
        saver.store.flush()
        memory.store.flush()
        return None
    if op == "h_open":
        held[cmd["name"]] = memory.history(cmd["name"])
        return len(held[cmd["name"]])
    if op == "h_append":
        h = held[cmd["name"]]
        for item in cmd["items"]:
            h.append(item)
        return len(h)
    if op == "h_read":
        h = held[cmd["name"]]
        n = len(h)
        return {
            "len": n,
            "items": list(h),
            "slice": h[:],
            "last": h[-1] if n else None,
            "recent": h.recent(),
            "recent2": h.recent(2),
        }
    raise ValueError(op)

"""
    + LOOP
    + """
saver.close()
memory.close()
"""
)


class Peer(JsonPeer):
    """A process with its own saver on the shared file, driven one command at a time."""

    def __init__(self, path: str, durability: str) -> None:
        super().__init__(PEER, path, durability)
        self.durability = durability

    def turn(self, op: str, **args: Any) -> Any:
        """A command, then the flush that hands the file over (``durability="batch"``
        commits every second otherwise)."""
        out = self(op, **args)
        self("flush")
        return out


@pytest.fixture(params=["sync", "batch"])
def peers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Peer, Peer]]:
    path = str(tmp_path / "shared.db")
    a = Peer(path, request.param)
    a("flush")  # the file exists before the second process opens it
    b = Peer(path, request.param)
    try:
        yield a, b
    finally:
        for peer in (a, b):
            if peer.proc.poll() is None:
                peer.close()


def test_two_processes_take_turns_on_one_thread(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    assert a.turn("invoke", text="A:0") == ["A:0"]
    assert a("state") == ["A:0"]  # A now holds the thread's list and its log
    assert b.turn("invoke", text="B:1") == ["A:0", "B:1"]
    assert b.turn("invoke", text="B:2") == ["A:0", "B:1", "B:2"]
    checkpoint_id, values = a("tuple")
    assert values == ["A:0", "B:1", "B:2"]
    assert b("tuple")[0] == checkpoint_id
    assert a("state") == ["A:0", "B:1", "B:2"]
    # A's next turn continues from B's messages, and B sees A's turn.
    assert a.turn("invoke", text="A:3") == ["A:0", "B:1", "B:2", "A:3"]
    assert b("state") == ["A:0", "B:1", "B:2", "A:3"]
    # Long enough to seal chunks (chunk_items=4) on both sides, alternating.
    expected = ["A:0", "B:1", "B:2", "A:3"]
    for i in range(4, 16):
        peer, name = (a, "A") if i % 3 else (b, "B")
        expected.append(f"{name}:{i}")
        assert peer.turn("invoke", text=f"{name}:{i}") == expected
        assert (b if peer is a else a)("state") == expected
    assert a("list")[0] == expected == b("list")[0]
    assert [len(v) for v in a("list")] == [len(v) for v in b("list")]


def test_history_held_across_another_process_append(peers: tuple[Peer, Peer]) -> None:
    a, b = peers
    assert a("h_open", name="chat") == 0
    assert a.turn("h_append", name="chat", items=[{"i": 0}, {"i": 1}]) == 2
    seen = a("h_read", name="chat")  # A's held object now holds its tail and window
    assert seen["len"] == 2
    assert b("h_open", name="chat") == 2
    items = [{"i": i} for i in range(10)]
    for i in range(2, 7):  # B seals a chunk (chunk_items=4) and leaves a tail
        assert b.turn("h_append", name="chat", items=[{"i": i}]) == i + 1
    got = a("h_read", name="chat")
    assert got == {
        "len": 7,
        "items": items[:7],
        "slice": items[:7],
        "last": items[6],
        "recent": items[4:7],
        "recent2": items[5:7],
    }
    # A's held object appends after B's items, and B's held object sees them.
    assert a.turn("h_append", name="chat", items=[{"i": 7}, {"i": 8}]) == 9
    assert b("h_read", name="chat")["items"] == items[:9]
    assert b.turn("h_append", name="chat", items=[{"i": 9}]) == 10
    assert a("h_read", name="chat")["items"] == items

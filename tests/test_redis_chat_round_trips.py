"""Round trips of a steady-state LangGraph chat turn on a real redis-server (#19).

A turn of a one-node chat graph makes five checkpointer writes (``put`` of the input,
``put_writes`` of the input task, ``put`` of the step, ``put_writes`` of the node, ``put``
of the end); with ``durability="sync"`` each is one acknowledged write, and a ``put``
whose list extends a log appends to it in the same write.  Counted in redis-py (every
packed send but the tracking thread's: a pipeline or a script is one), so the figure is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("langgraph")
pytest.importorskip("redis")

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph

import tieredmem
from tieredmem.langgraph import TieredSaver

from .conftest import RedisServer


def _graph(checkpointer: Any) -> Any:
    def bot(state: MessagesState) -> dict[str, Any]:
        n = len(state["messages"])
        return {"messages": [AIMessage(f"reply {n}: " + "x" * 400, id=f"a{n}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("bot", bot)
    builder.add_edge(START, "bot")
    builder.add_edge("bot", END)
    return builder.compile(checkpointer=checkpointer)


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Packed sends of redis-py (a graph's checkpointer calls run on LangGraph's
    threads; the tracking thread's own sends are not a turn's): ``sends[0]``."""
    import threading

    from redis.connection import AbstractConnection

    count = [0]
    original = AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        if not threading.current_thread().name.startswith("tieredmem-tracking"):
            count[0] += 1
        original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    yield count


@pytest.mark.parametrize(
    ("mode", "most"),
    [
        # 5 writes, 3 reads a put makes of rows its checkpoint's next reader needs, and
        # now and then one more (a row the hot tier did not admit).
        ("tracking", 9),
        # the same, plus a version check for get_tuple, each put (two when it appends to
        # a log: its snapshot's and its transaction's) and each put_writes.
        ("strict", 17),
    ],
)
def test_a_chat_turn_round_trips(
    redis_server: RedisServer, sends: list[int], mode: str, most: int
) -> None:
    url = redis_server.url(f"rtt-{mode}:") + f"&coherence={mode}&tracking_bound=30"
    store = tieredmem.open(url, maintenance_interval=0)
    try:
        graph = _graph(TieredSaver(store))
        config = {"configurable": {"thread_id": "chat"}}
        per_turn = []
        for i in range(12):
            before = sends[0]
            graph.invoke({"messages": [HumanMessage(f"q{i}", id=f"q{i}")]}, config)
            per_turn.append(sends[0] - before)
        steady = per_turn[2:]
        assert max(steady) <= most, per_turn
        # The writes alone are five acknowledged round trips: never fewer.
        assert min(steady) >= 5, per_turn
        assert len(graph.get_state(config).values["messages"]) == 24
    finally:
        store.close()

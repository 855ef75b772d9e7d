"""Reading a checkpoint never imports or calls anything outside the allow-list
(issue #15, "Secrets and privacy"): a crafted checkpoint naming ``os.system`` is refused
with a typed error and the command does not run; registered types work."""

from __future__ import annotations

import enum
import operator
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pytest

pytest.importorskip("langgraph")

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel

import tieredmem
from tieredmem import CheckpointTypeError, SerializationError
from tieredmem.langgraph import TieredCache, TieredSaver
from tieredmem.langgraph.serde import DEFAULT_ALLOWED, CheckpointSerializer

CALLS: list[Any] = []


def sentinel(arg: Any) -> str:
    """A harmless stand-in for os.system: records that a read called it."""
    CALLS.append(arg)
    return "called"


def crafted(module: str, name: str, arg: Any) -> enum.Enum:
    """A value LangGraph's serializer writes as ``(module, name, arg)``, "call
    ``module.name(arg)`` to rebuild me" (an Enum member: a single-argument constructor)."""
    cls = enum.Enum(name, {"M": arg})  # type: ignore[misc]
    cls.__module__ = module
    return cls.M  # type: ignore[no-any-return,attr-defined]


def write_checkpoint(path: str, values: dict[str, Any]) -> dict[str, Any]:
    """Write a checkpoint holding *values* into the file, as an attacker with write access
    to it could (the bytes are LangGraph's own format)."""
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = dict.fromkeys(values, 1)
    versions = checkpoint["channel_versions"]
    with TieredSaver(path, serde=JsonPlusSerializer()) as writer:
        out = writer.put(config, checkpoint, {"source": "input", "step": 0}, versions)
    # The permissive writer decodes a list it appends to (and so runs what it names):
    # only what a read does counts here.
    for stray in Path(path).parent.glob("pwned"):
        stray.unlink()
    CALLS.clear()
    return out


@pytest.mark.parametrize("where", ["value", "list item"])
def test_crafted_checkpoint_naming_os_system_is_refused(tmp_path: Path, where: str) -> None:
    marker = tmp_path / "pwned"
    evil = crafted("os", "system", f"touch {marker}")
    path = str(tmp_path / "a.db")
    value = evil if where == "value" else [HumanMessage("hi", id="1"), evil]
    config = write_checkpoint(path, {"x": value})

    with TieredSaver(path) as saver, pytest.raises(CheckpointTypeError) as info:
        saver.get_tuple(config)
    message = str(info.value)
    assert "os.system" in message and "allowed_types" in message
    assert isinstance(info.value, SerializationError) and isinstance(info.value, TypeError)
    assert not marker.exists()

    # LangGraph's default serializer (what TieredSaver used before) runs the command.
    with TieredSaver(path, serde=JsonPlusSerializer()) as permissive:
        permissive.get_tuple(config)
    assert marker.exists()


def test_crafted_checkpoint_naming_a_sentinel_never_calls_it(tmp_path: Path) -> None:
    path = str(tmp_path / "a.db")
    config = write_checkpoint(path, {"x": crafted(__name__, "sentinel", "boom")})
    with TieredSaver(path) as saver:
        with pytest.raises(CheckpointTypeError, match=rf"{__name__}\.sentinel"):
            saver.get_tuple(config)
        with pytest.raises(CheckpointTypeError):
            list(saver.list(None))
    assert CALLS == []
    # Allowed explicitly, it is called: the allow-list is what decides.
    with TieredSaver(path, allowed_types=[(__name__, "sentinel")]) as trusting:
        got = trusting.get_tuple(config)
    assert got is not None and got.checkpoint["channel_values"]["x"] == "called"
    assert CALLS == ["boom"]


def test_nested_refused_type_inside_an_allowed_one(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    msg = AIMessage(
        "x", id="1", additional_kwargs={"e": crafted("os", "system", f"touch {marker}")}
    )
    path = str(tmp_path / "a.db")
    config = write_checkpoint(path, {"messages": [msg]})
    with TieredSaver(path) as saver, pytest.raises(CheckpointTypeError, match=r"os\.system"):
        saver.get_tuple(config)
    assert not marker.exists()


def test_pickle_is_refused() -> None:
    serde = CheckpointSerializer()
    with pytest.raises(CheckpointTypeError, match="pickle"):
        serde.loads_typed(("pickle", pickle.dumps({"a": 1})))
    with pytest.raises(SerializationError):
        serde.loads_typed(("msgpack", b"\xc1"))


def test_default_allow_list_round_trips_the_standard_types() -> None:
    import datetime as dt
    import decimal
    import ipaddress
    import uuid
    from collections import deque
    from zoneinfo import ZoneInfo

    value = {
        "when": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "day": dt.date(2024, 1, 2),
        "at": dt.time(3, 4),
        "span": dt.timedelta(seconds=5),
        "zone": ZoneInfo("Europe/Paris"),
        "id": uuid.UUID(int=7),
        "amount": decimal.Decimal("1.10"),
        "tags": {"a", "b"},
        "frozen": frozenset({1}),
        "queue": deque([1, 2]),
        "ip": ipaddress.ip_address("10.0.0.1"),
        "path": Path("/tmp/x"),
        "messages": [HumanMessage("hi", id="1"), AIMessage("yo", id="2")],
    }
    serde = CheckpointSerializer()
    assert serde.loads_typed(serde.dumps_typed(value)) == value
    assert ("uuid", "UUID") in DEFAULT_ALLOWED


class Profile(BaseModel):
    name: str
    level: int = 0


@dataclass
class Note:
    text: str


class State(BaseModel):
    profile: Profile
    notes: Annotated[list[Note], operator.add] = []


def profile_graph(saver: TieredSaver) -> Any:
    def step(state: State) -> dict[str, Any]:
        return {
            "profile": Profile(name=state.profile.name, level=state.profile.level + 1),
            "notes": [Note(f"level {state.profile.level + 1}")],
        }

    builder = StateGraph(State)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_edge("step", END)
    return builder.compile(checkpointer=saver)


def test_graph_with_registered_pydantic_state(tmp_path: Path) -> None:
    path = str(tmp_path / "g.db")
    config = {"configurable": {"thread_id": "p"}}
    with TieredSaver(path, allowed_types=[Profile, Note]) as saver:
        graph = profile_graph(saver)
        graph.invoke({"profile": Profile(name="ada")}, config)
        graph.invoke({"profile": graph.get_state(config).values["profile"]}, config)
    with TieredSaver(path, allowed_types=[Profile, Note]) as saver:
        values = profile_graph(saver).get_state(config).values
    assert values["profile"] == Profile(name="ada", level=2)
    assert values["notes"] == [Note("level 1"), Note("level 2")]
    # Unregistered, the user's types are refused by name, with the way to allow them.
    refused = pytest.raises(CheckpointTypeError, match=r"Profile.*allowed_types=\[Profile\]")
    with TieredSaver(path) as saver, refused:
        profile_graph(saver).get_state(config)


def test_allowed_types_and_serde_are_exclusive() -> None:
    with pytest.raises(ValueError, match="not both"):
        TieredSaver(":memory:", serde=JsonPlusSerializer(), allowed_types=[Profile])
    with pytest.raises(TypeError, match="allowed_types"):
        TieredSaver(":memory:", allowed_types=["Profile"])  # type: ignore[list-item]


def test_savers_with_equal_allow_lists_share_a_store(tmp_path: Path) -> None:
    with tieredmem.open(str(tmp_path / "s.db")) as store:
        a = TieredSaver(store, allowed_types=[Profile, Note])
        b = TieredSaver(store, allowed_types=[Note, Profile])
        config = {"configurable": {"thread_id": "t"}}
        graph_a = profile_graph(a)
        graph_a.invoke({"profile": Profile(name="x")}, config)
        assert profile_graph(b).get_state(config).values["profile"].level == 1


def test_node_cache_reads_through_the_allow_list(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    marker = tmp_path / "pwned"
    writer: TieredCache[Any] = TieredCache(path, serde=JsonPlusSerializer())
    writer.set({(("n",), "k"): (crafted("os", "system", f"touch {marker}"), None)})
    writer.close()
    cache: TieredCache[Any] = TieredCache(path)
    try:
        with pytest.raises(CheckpointTypeError, match=r"os\.system"):
            cache.get([(("n",), "k")])
    finally:
        cache.close()
    assert not marker.exists()

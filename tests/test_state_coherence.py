"""A held :class:`~tieredmem.State` follows commits by other processes and handles, and no
commit is lost when several commit to one state, even at the same moment.

Real processes on one file, driven over pipes (one command at a time, or both at once for
the races), and real second handles in this process; the test process then reopens the
file and checks what it holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tieredmem

from .peers import LOOP, JsonPeer

PEER = (
    """
import json, sys
import tieredmem

path, durability = sys.argv[1], sys.argv[2]
memory = tieredmem.MemorySaver(path=path, durability=durability, flush_interval=60)
doc = None


def run(cmd):
    global doc
    op = cmd["op"]
    if op == "open":
        doc = memory.state(cmd.get("name", "doc"))
        return dict(doc)
    if op == "read":
        return {"dict": dict(doc), "len": len(doc), "keys": sorted(doc),
                "get": {k: doc.get(k) for k in cmd.get("keys", [])}}
    if op == "set":
        for k, v in cmd["items"].items():
            doc[k] = v
        return None
    if op == "del":
        for k in cmd["keys"]:
            del doc[k]
        return None
    if op == "commit":
        return doc.commit()
    if op == "flush":
        memory.store.flush()
        return None
    if op == "burst":
        # Many commits as fast as they go (the other peer runs the same at once).
        for i in range(cmd["n"]):
            doc[cmd["prefix"] + str(i)] = i
            doc["shared"] = cmd["prefix"] + str(i)
            doc.commit()
        memory.store.flush()
        return None
    raise ValueError(op)

"""
    + LOOP
    + """
memory.close()
"""
)


class Peer(JsonPeer):
    """A process with its own MemorySaver on the shared file and one held State."""

    def __init__(self, path: str, durability: str) -> None:
        super().__init__(PEER, path, durability)

    def commit(self) -> Any:
        """Commit, then flush: hands the file over with ``durability="batch"``."""
        out = self("commit")
        self("flush")
        return out

    def read(self) -> dict[str, Any]:
        got: dict[str, Any] = self("read")
        assert got["keys"] == sorted(got["dict"]) and got["len"] == len(got["dict"])
        return got["dict"]  # type: ignore[no-any-return]


@pytest.fixture(params=["sync", "batch"])
def peers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Peer, Peer, str]]:
    path = str(tmp_path / "shared.db")
    a = Peer(path, request.param)
    a("flush")  # the file exists before the second process opens it
    b = Peer(path, request.param)
    try:
        yield a, b, path
    finally:
        for peer in (a, b):
            if peer.proc.poll() is None:
                peer.close()


def _stored(path: str, name: str = "doc") -> dict[str, Any]:
    """What a fresh handle reads from the file."""
    with tieredmem.MemorySaver(path=path) as memory:
        return dict(memory.state(name))


def test_held_state_follows_another_process_and_keeps_its_commit(
    peers: tuple[Peer, Peer, str],
) -> None:
    """The issue's reproduction: A holds a State, B commits to it, A reads and commits."""
    a, b, path = peers
    assert a("open") == {}
    a("set", items={"goal": "report", "n": 1})
    a.commit()
    assert a.read() == {"goal": "report", "n": 1}  # A now holds what it read
    assert b("open") == {"goal": "report", "n": 1}
    b("set", items={"n": 2, "by_b": [1, 2]})
    b.commit()
    # A's next read sees B's commit...
    assert a.read() == {"goal": "report", "n": 2, "by_b": [1, 2]}
    assert a("read", keys=["n", "by_b"])["get"] == {"n": 2, "by_b": [1, 2]}
    # ...and A's commit keeps it.
    a("set", items={"by_a": True})
    a.commit()
    expected = {"goal": "report", "n": 2, "by_b": [1, 2], "by_a": True}
    assert b.read() == expected
    assert a.read() == expected
    assert _stored(path) == expected


def test_commit_without_reading_first_keeps_the_other_commit(
    peers: tuple[Peer, Peer, str],
) -> None:
    """A commits straight after B, without a read in between: B's commit must survive."""
    a, b, path = peers
    a("open")
    b("open")
    b("set", items={"b": 1})
    b.commit()
    a("set", items={"a": 1})
    a.commit()
    assert _stored(path) == {"a": 1, "b": 1}
    assert a.read() == b.read() == {"a": 1, "b": 1}


def test_alternating_commits_through_compactions(peers: tuple[Peer, Peer, str]) -> None:
    """Long enough for both sides to write bases (compactions) and delta rows in turn."""
    a, b, path = peers
    a("open")
    b("open")
    expected: dict[str, Any] = {}
    for i in range(80):
        peer, other = (a, b) if i % 3 else (b, a)
        change = {f"k{i}": "x" * 40, "last": i}
        peer("set", items=change)
        expected.update(change)
        if i % 7 == 0 and i:
            peer("del", keys=[f"k{i - 1}"])
            del expected[f"k{i - 1}"]
        peer.commit()
        assert other.read() == expected, i
        assert peer.read() == expected, i
    assert _stored(path) == expected


def test_uncommitted_changes_survive_a_reload(peers: tuple[Peer, Peer, str]) -> None:
    """A reload brought by another process's commit keeps this object's pending changes."""
    a, b, path = peers
    a("open")
    a("set", items={"x": 1, "y": 1})
    a.commit()
    b("open")
    a("set", items={"x": "pending"})
    a("del", keys=["y"])
    b("set", items={"z": 3})
    b.commit()
    assert a.read() == {"x": "pending", "z": 3}  # B's commit and A's pending changes
    assert _stored(path) == {"x": 1, "y": 1, "z": 3}
    a.commit()
    assert b.read() == {"x": "pending", "z": 3} == _stored(path)


def test_commits_buffered_at_the_same_time_are_both_kept(tmp_path: Path) -> None:
    """durability="batch": both processes commit from the same view before either flushes
    (each computed its commit without the other's): neither commit is lost, and for a key
    both set, every reader sees the same winner."""
    path = str(tmp_path / "shared.db")
    a = Peer(path, "batch")
    a("flush")
    b = Peer(path, "batch")
    try:
        a("open")
        b("open")
        for i in range(60):  # through several compactions on each side
            a("set", items={f"a{i}": i, "both": f"a{i}"})
            if i >= 2:
                a("del", keys=[f"a{i - 2}"])  # a deletion racing B's commit
            b("set", items={f"b{i}": i, "both": f"b{i}"})
            a("commit")
            b("commit")
            a("flush")
            b("flush")
        got_a, got_b, stored = a.read(), b.read(), _stored(path)
        assert got_a == got_b == stored
        assert all(stored[f"b{i}"] == i for i in range(60))
        assert [k for k in stored if k.startswith("a")] == ["a58", "a59"]
        assert stored["both"] in ("a59", "b59")
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("target", ["sync", "batch", "redis", "postgres"])
def test_two_processes_committing_at_once_lose_nothing(
    tmp_path: Path, request: pytest.FixtureRequest, target: str
) -> None:
    path, durability = str(tmp_path / "shared.db"), target
    if target == "redis":  # two hosts' view of one server
        path, durability = request.getfixturevalue("redis_server").url("state:"), "sync"
    if target == "postgres":
        path, durability = request.getfixturevalue("pg_server").url(), "sync"
    a = Peer(path, durability)
    a("flush")
    b = Peer(path, durability)
    try:
        a("open")
        b("open")
        n = 150
        a.send("burst", prefix="a", n=n)  # both run at once
        b.send("burst", prefix="b", n=n)
        a.reply()
        b.reply()
        stored = _stored(path)
        assert a.read() == b.read() == stored
        missing = [f"{p}{i}" for p in "ab" for i in range(n) if f"{p}{i}" not in stored]
        assert missing == []
        assert stored["shared"] in (f"a{n - 1}", f"b{n - 1}")
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("durability", ["sync", "batch"])
def test_two_handles_in_one_process(tmp_path: Path, durability: str) -> None:
    path = str(tmp_path / "s.db")
    with (
        tieredmem.MemorySaver(path=path, durability=durability, flush_interval=60) as m1,
        tieredmem.MemorySaver(path=path, durability=durability, flush_interval=60) as m2,
    ):
        s1, s2 = m1.state("doc"), m2.state("doc")
        s1["a"] = 1
        s1.commit()
        m1.store.flush()
        assert dict(s2) == {"a": 1}
        s2["b"] = 2
        s2.commit()
        m2.store.flush()
        assert s1["b"] == 2 and dict(s1) == {"a": 1, "b": 2}
        s1["c"] = 3
        s1.commit()
        m1.store.flush()
        assert dict(s2) == dict(s1) == {"a": 1, "b": 2, "c": 3}
        # Both commit from the same view before either flushes (batch) or with a stale
        # view (a coherence check that has not run yet, as in a race): both kept.
        for i in range(50):
            s1[f"x{i}"] = i
            s2[f"y{i}"] = i
            with m2.store.snapshot():  # s2 reads no new generation: it commits stale
                s1.commit()
                s2.commit()
            m1.store.flush()
            m2.store.flush()
        final = dict(s1)
        assert dict(s2) == final
        assert all(final[f"x{i}"] == i and final[f"y{i}"] == i for i in range(50))
    assert _stored(path) == final


def test_rows_written_before_stamps_are_read_and_rewritten(tmp_path: Path) -> None:
    """A file of the layout before stamps (``base`` and ``d{seq:012d}`` rows) reads as it
    did; a compaction replaces those rows."""
    path = str(tmp_path / "old.db")
    with tieredmem.open(path) as store:
        ns = store.raw.internal_ns("state", "doc")
        store.raw.write(
            [
                (ns, "base", {"seq": 3, "data": {"a": 1, "b": 2, "gone": 0}}),
                (ns, "d000000000002", {"set": {"a": "folded"}, "del": []}),  # in the base
                (ns, "d000000000004", {"set": {"b": 20}, "del": ["gone"]}),
            ]
        )
    with tieredmem.MemorySaver(path=path) as memory:
        doc = memory.state("doc")
        assert dict(doc) == {"a": 1, "b": 20}
        doc["c"] = 3
        doc.commit()
        assert _stored(path) == {"a": 1, "b": 20, "c": 3}
        for i in range(40):
            doc["n"] = i
            doc.commit()
        assert doc.bases_written >= 1
        keys = memory.store.raw.keys(doc._ns)
        assert "base" not in keys and "d000000000004" not in keys
    assert _stored(path) == {"a": 1, "b": 20, "c": 3, "n": 39}


def test_bases_forget_old_deletions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deletions are kept in bases only while recent: a state that deletes many distinct
    keys keeps a bounded base."""
    from tieredmem import state as state_module

    monkeypatch.setattr(state_module, "_TOMBSTONE_SECONDS", 0.0)  # by commits only
    with tieredmem.MemorySaver(path=str(tmp_path / "t.db")) as memory:
        doc = memory.state("doc")
        for i in range(300):
            doc[f"tmp{i}"] = i
            if i:
                del doc[f"tmp{i - 1}"]
            doc.commit()
        assert dict(doc) == {"tmp299": 299}
        bases = [r.value for r in memory.store.raw.rows(doc._ns, "b", "c")]
        assert len(bases) == 1 and doc.bases_written >= 2
        forgotten = sum(len(keys) for keys in bases[0]["del"].values())
        assert 0 < forgotten <= state_module._TOMBSTONE_COMMITS
    assert _stored(str(tmp_path / "t.db")) == {"tmp299": 299}

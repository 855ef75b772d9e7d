"""The contract every backend must keep, run against SQLite (file, memory), Redis and
PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import tieredmem
from tieredmem.backends import SEP, Backend, Delete, DeleteRange, Put, Touch, open_backend

from .conftest import FakeClock, RedisServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(
    params=["sqlite-file", "sqlite-memory", "redis", "redis-tracking", "redis-cluster", "postgres"]
)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite-file":
        return str(tmp_path / "b.db")
    if request.param == "sqlite-memory":
        return ":memory:"
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_server").url(pool_timeout="5"))
    if request.param == "redis-cluster":
        return str(request.getfixturevalue("redis_cluster").url(f"t{uuid.uuid4().hex[:8]}:"))
    server: RedisServer = request.getfixturevalue("redis_server")
    url = server.url(f"t{uuid.uuid4().hex[:8]}:")
    return url + "&coherence=tracking" if request.param == "redis-tracking" else url


def test_protocol(url: str) -> None:
    b = open_backend(url)
    assert isinstance(b, Backend)
    ns = SEP.join(("h", "x"))
    created = b.write(
        [Put(ns, f"{i:04d}", b"\x02v", 1.0) for i in range(10)] + [Delete(ns, "0003")]
    )
    assert created == [1.0] * 10
    assert [r.key for r in b.range(ns, "0002", "0006")] == ["0002", "0004", "0005"]
    assert [r.key for r in b.range(ns, limit=2, reverse=True)] == ["0009", "0008"]
    assert b.keys(ns, "0007") == ["0007", "0008", "0009"]
    b.write([DeleteRange(ns, "0000", "0005")])
    assert [r.key for r in b.range(ns)] == ["0005", "0006", "0007", "0008", "0009"]
    assert b.get(ns, "0005") is not None and b.get(ns, "0000") is None
    assert [r.key for r in b.get_many([(ns, "0005"), (ns, "zz")]) if r] == ["0005"]
    # created_at survives an update unless given
    assert b.write([Put(ns, "0005", b"\x02w", 5.0)]) == [1.0]
    row = b.get(ns, "0005")
    assert row is not None and (row.frame, row.created_at, row.updated_at) == (b"\x02w", 1.0, 5.0)
    # expiry, ttl refresh
    b.write([Put("h", "k", b"\x02v", 2.0, expires_at=5.0, ttl=3.0)])
    b.write([Touch("h", "k", 4.0)])
    assert b.get("h", "k").expires_at == 7.0  # type: ignore[union-attr]
    assert b.namespaces("h") == ["h", ns]
    assert b.namespaces("", skip_prefix="h") == []
    assert b.expire(6.0) == []
    assert b.expire(8.0) == [("h", "k")]
    assert b.namespaces("h") == [ns]
    assert [r.key for r in b.scan("h", after=(ns, "0006"))] == ["0007", "0008", "0009"]
    assert b.stats()["cold_rows"] == 5
    b.close()
    b.close()


def test_store_contract(url: str) -> None:
    clock = FakeClock()
    with tieredmem.open(url, hot_bytes=1, maintenance_interval=0, clock=clock) as s:
        s.put(("users", "a"), "p", {"lang": "fr", "age": 30}, ttl=60)
        s.put(("users", "b"), "p", {"lang": "en", "age": 17})
        first = s.get(("users", "b"), "p")
        s.put(("users", "b"), "p", {"lang": "en", "age": 18})
        again = s.get(("users", "b"), "p")
        assert again is not None and first is not None and again.created_at == first.created_at
        assert [i.namespace[-1] for i in s.search(("users",), filter={"age": {"$gte": 18}})] == [
            "a",
            "b",
        ]
        assert s.list_namespaces(prefix=("users",)) == [("users", "a"), ("users", "b")]
        with pytest.raises(RuntimeError), s.transaction():
            s.put(("t",), "x", 1)
            raise RuntimeError
        assert s.get(("t",), "x") is None
        clock.tick(61)
        assert s.get(("users", "a"), "p") is None
        assert s.sweep() == 1
        assert s.list_namespaces() == [("users", "b")]
        memory = tieredmem.MemorySaver(store=s, chunk_items=8)
        h = memory.history("chat")
        h.extend({"i": i} for i in range(50))
        assert [x["i"] for x in h[-3:]] == [47, 48, 49] and len(h) == 50
        doc = memory.state("doc")
        doc["k"] = [1, 2]
        doc.commit()
    with tieredmem.open(url, maintenance_interval=0) as s:
        if url != ":memory:":
            memory = tieredmem.MemorySaver(store=s, chunk_items=8)
            assert len(memory.history("chat")) == 50 and dict(memory.state("doc")) == {"k": [1, 2]}


WRITER = """
import sys
sys.path.insert(0, sys.argv[1])
import tieredmem
with tieredmem.open(sys.argv[2]) as s:
    s.put(("shared",), "k", sys.argv[3])
"""


def test_coherence_across_processes(url: str) -> None:
    if url == ":memory:":
        pytest.skip("nothing to share")
    with tieredmem.open(url, hot_bytes="1MiB") as s:
        s.put(("shared",), "k", "mine")
        assert s.get(("shared",), "k").value == "mine"  # type: ignore[union-attr]
        for value in ("theirs", "theirs again"):
            subprocess.run([sys.executable, "-c", WRITER, str(ROOT), url, value], check=True)
            assert s.get(("shared",), "k").value == value  # type: ignore[union-attr]


def test_redis_refuses_text_search_clearly(redis_server: RedisServer) -> None:
    with tieredmem.open(redis_server.url("fts:")) as s:
        s.put(("a",), "k", {"text": "hello"})
        with pytest.raises(tieredmem.TieredMemError, match="not available on the Redis backend"):
            s.search(("a",), query="hello")


def test_redis_restart_reconnects_and_failed_writes_raise(redis_server: RedisServer) -> None:
    with tieredmem.open(redis_server.url("restart:"), maintenance_interval=0) as s:
        s.put(("a",), "before", 1)
        redis_server.stop()
        with pytest.raises(tieredmem.TieredMemError, match="did not complete"):
            s.put(("a",), "during", 2)
        redis_server.start()  # a fresh server (no persistence configured): empty
        s.put(("a",), "after", 3)
        assert s.get(("a",), "after").value == 3  # type: ignore[union-attr]
        assert s.get(("a",), "during") is None


def test_langgraph_conformance_on_redis(redis_server: RedisServer) -> None:
    pytest.importorskip("langgraph.checkpoint.conformance")
    import asyncio

    from langgraph.checkpoint.conformance import checkpointer_test, validate

    from tieredmem.langgraph import TieredSaver

    @checkpointer_test(name="TieredSaver(redis)")
    async def factory() -> Any:
        store = tieredmem.open(redis_server.url(f"lg{uuid.uuid4().hex[:8]}:"))
        saver = TieredSaver(store)
        yield saver
        store.close()

    report = asyncio.run(validate(factory))
    failures = {k: r.failures for k, r in report.results.items() if r.passed is not True}
    assert not failures, failures
    assert report.conformance_level() == "FULL"


def test_get_state_checks_coherence_once(redis_server: RedisServer) -> None:
    pytest.importorskip("langgraph")
    from .test_langgraph_saver import chat_graph, run_chat

    with tieredmem.open(redis_server.url("snap:")) as store:
        from tieredmem.langgraph import TieredSaver

        saver = TieredSaver(store)
        graph, config = run_chat(saver, 3)
        graph.get_state(config)
        calls = []
        real = store.backend.foreign_change

        def counting() -> bool:
            calls.append(1)
            return real()

        store.backend.foreign_change = counting  # type: ignore[method-assign]
        assert len(chat_graph(saver).get_state(config).values["messages"]) == 6
        assert len(calls) == 1


def test_zstd_dictionaries_are_stored_immutably_by_id(url: str) -> None:
    b = open_backend(url)
    try:
        assert b.dictionaries() == {}
        first = b.add_dictionary(b"dict one")
        second = b.add_dictionary(b"dict two")
        assert first != second
        assert b.dictionaries() == {first: b"dict one", second: b"dict two"}
        assert b.dictionary(second) == b"dict two"
        assert b.dictionary(second + 1000) is None
    finally:
        b.close()

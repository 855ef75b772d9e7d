"""TieredStore against LangGraph's InMemoryStore (the reference), plus what differs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph")
np = pytest.importorskip("numpy")

from langgraph.store.base import InvalidNamespaceError  # noqa: E402
from langgraph.store.memory import InMemoryStore  # noqa: E402

from tieredmem.langgraph import TieredStore  # noqa: E402

from .conftest import FakeClock  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["inmemory", "tiered", "tiered-spilling", "tiered-postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "inmemory":
        yield InMemoryStore()
        return
    url = str(tmp_path / "s.db")
    if request.param == "tiered-postgres":  # spilling too: every read reaches the server
        url = request.getfixturevalue("pg_server").url()
    s = TieredStore(url, hot_bytes=1 if "spilling" in request.param else "8MiB")
    yield s
    s.close()


def fill(store: Any) -> None:
    store.put(("users", "a"), "prefs", {"lang": "fr", "age": 30, "meta": {"tier": "gold"}})
    store.put(("users", "b"), "prefs", {"lang": "en", "age": 17, "meta": {"tier": "free"}})
    store.put(("users", "c"), "prefs", {"lang": "fr", "age": 50})
    store.put(("docs", "x", "1"), "d1", {"text": "hello"})
    store.put(("docs", "y", "1"), "d2", {"text": "world"})


def test_put_get_update_delete(store: Any) -> None:
    assert store.get(("a",), "k") is None
    store.put(("a",), "k", {"v": 1})
    item = store.get(("a",), "k")
    assert (item.namespace, item.key, item.value) == (("a",), "k", {"v": 1})
    store.put(("a",), "k", {"v": 2})
    assert store.get(("a",), "k").value == {"v": 2}
    store.delete(("a",), "k")
    assert store.get(("a",), "k") is None


def test_search_filters_limit_offset(store: Any) -> None:
    fill(store)

    def keys(**kw: Any) -> list[str]:
        return [i.namespace[-1] for i in store.search(("users",), **kw)]

    assert sorted(keys(filter={"lang": "fr"})) == ["a", "c"]
    assert keys(filter={"age": {"$gt": 20, "$lt": 40}}) == ["a"]
    assert keys(filter={"age": {"$gte": 50}}) == ["c"]
    assert keys(filter={"age": {"$lte": 17}}) == ["b"]
    assert keys(filter={"lang": {"$ne": "fr"}}) == ["b"]
    assert keys(filter={"lang": {"$eq": "en"}}) == ["b"]
    assert len(store.search(("users",), limit=2)) == 2
    assert len(store.search(("users",), limit=2, offset=2)) == 1
    assert len(store.search((), limit=100)) == 5
    assert [i.key for i in store.search(("docs", "x"))] == ["d1"]


def test_nested_filter_paths(store: Any) -> None:
    if isinstance(store, InMemoryStore):
        pytest.skip("InMemoryStore matches top-level fields only")
    fill(store)
    assert [i.namespace[-1] for i in store.search(("users",), filter={"meta.tier": "gold"})] == [
        "a"
    ]


def test_list_namespaces(store: Any) -> None:
    fill(store)
    assert sorted(store.list_namespaces()) == [
        ("docs", "x", "1"),
        ("docs", "y", "1"),
        ("users", "a"),
        ("users", "b"),
        ("users", "c"),
    ]
    assert sorted(store.list_namespaces(prefix=("docs",))) == [
        ("docs", "x", "1"),
        ("docs", "y", "1"),
    ]
    assert sorted(store.list_namespaces(prefix=("docs", "*", "1"))) == [
        ("docs", "x", "1"),
        ("docs", "y", "1"),
    ]
    assert sorted(store.list_namespaces(suffix=("1",))) == [("docs", "x", "1"), ("docs", "y", "1")]
    assert sorted(store.list_namespaces(max_depth=1)) == [("docs",), ("users",)]
    assert sorted(store.list_namespaces(prefix=("users",), max_depth=2))[:1] == [("users", "a")]
    assert len(store.list_namespaces(limit=2)) == 2


@pytest.mark.parametrize("bad", [("a.b",), ("",), ("langgraph", "x"), ()])
def test_namespace_validation(store: Any, bad: tuple[str, ...]) -> None:
    with pytest.raises((InvalidNamespaceError, ValueError)):
        store.put(bad, "k", {"v": 1})


@pytest.mark.parametrize("bad", [("a.b",), ("",), ("a", "x\x00")])
def test_search_prefix_validation(store: Any, bad: tuple[str, ...]) -> None:
    with pytest.raises(InvalidNamespaceError):
        store.search(bad)
    with pytest.raises(InvalidNamespaceError):
        store.get(bad, "k")


def test_async_twins(store: Any) -> None:
    async def main() -> Any:
        await store.aput(("a", "b"), "k", {"v": 1})
        got = await store.aget(("a", "b"), "k")
        found = await store.asearch(("a",), filter={"v": 1})
        spaces = await store.alist_namespaces(prefix=("a",))
        await store.adelete(("a", "b"), "k")
        return got.value, [i.key for i in found], spaces, await store.aget(("a", "b"), "k")

    assert asyncio.run(main()) == ({"v": 1}, ["k"], [("a", "b")], None)


# -- what TieredStore does differently, on purpose ----------------------------------------
@pytest.fixture
def tiered(tmp_path: Path) -> Any:
    s = TieredStore(str(tmp_path / "t.db"))
    yield s
    s.close()


def test_created_at_survives_updates(tiered: TieredStore) -> None:
    tiered.put(("a",), "k", {"v": 1})
    first = tiered.get(("a",), "k")
    tiered.put(("a",), "k", {"v": 2})
    second = tiered.get(("a",), "k")
    assert second.created_at == first.created_at and second.updated_at >= first.updated_at


def test_read_miss_creates_no_namespace(tiered: TieredStore) -> None:
    tiered.get(("ghost",), "k")
    tiered.search(("ghost2",))
    assert tiered.list_namespaces() == []


def test_full_text_query_without_index(tiered: TieredStore) -> None:
    tiered.put(("docs",), "1", {"text": "the cat sat on the mat"})
    tiered.put(("docs",), "2", {"text": "cat cat cat, all about cats and a cat"})
    tiered.put(("docs",), "3", {"text": "dogs only"})
    hits = tiered.search(("docs",), query="cat")
    assert [h.key for h in hits] == ["2", "1"]
    assert hits[0].score > hits[1].score


def test_ttl_with_injected_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    with TieredStore(str(tmp_path / "ttl.db"), ttl={"default_ttl": 1.0}, clock=clock) as s:
        s.put(("a",), "default", {"v": 1})
        s.put(("a",), "long", {"v": 2}, ttl=10)
        s.put(("a",), "forever", {"v": 3}, ttl=None)
        clock.tick(50)
        assert s.get(("a",), "default") is not None  # refresh_on_read: lives until t=110
        clock.tick(50)
        assert s.get(("a",), "default", refresh_ttl=False) is not None
        clock.tick(15)
        assert s.get(("a",), "default") is None
        assert s.get(("a",), "long") is not None and s.get(("a",), "forever") is not None
        clock.tick(601)
        assert [i.key for i in s.search(("a",))] == ["forever"]
        assert s.store.sweep() == 2


def test_background_sweeper_starts_by_itself(tmp_path: Path) -> None:
    import time

    with TieredStore(
        str(tmp_path / "sw.db"), ttl={"default_ttl": 0.001, "sweep_interval_minutes": 0.002}
    ) as s:
        s.put(("a",), "k", {"v": 1})
        deadline = time.time() + 10
        while s.store.stats().cold_rows and time.time() < deadline:
            time.sleep(0.05)
        assert s.store.stats().cold_rows == 0


VOCAB = ["cat", "dog", "fish", "car", "train", "plane", "pizza", "pasta"]


def embed(texts: list[str]) -> list[list[float]]:
    """Deterministic bag-of-words embedding: no network, no model."""
    out = []
    for text in texts:
        words = text.lower().replace(",", " ").split()
        out.append([float(sum(w.startswith(v) for w in words)) for v in VOCAB])
    return out


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_semantic_search_ranking(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    """The same exact vector search on every backend (no pgvector: see the PostgreSQL
    guide)."""
    index = {"dims": len(VOCAB), "embed": embed, "fields": ["text"]}
    url = str(tmp_path / "v.db")
    if backend == "postgres":
        url = request.getfixturevalue("pg_server").url()
    results = []
    for s in (InMemoryStore(index=index), TieredStore(url, index=index, search_mode="vector")):
        s.put(("docs",), "pets", {"text": "cat and dog and fish"})
        s.put(("docs",), "travel", {"text": "car train plane"})
        s.put(("docs",), "food", {"text": "pizza pasta pizza"})
        s.put(("docs",), "skip", {"text": "cat cat cat"}, index=False)
        hits = s.search(("docs",), query="a cat", limit=1)
        results.append([(h.key, round(h.score, 4)) for h in hits])
        hits = s.search(("docs",), query="pizza", filter={"text": "pizza pasta pizza"})
        results.append([h.key for h in hits])
    assert results[0] == results[2] and results[1] == results[3] == ["food"]
    assert results[0][0][0] == "pets"


def test_graph_uses_store_across_threads_and_runs(tmp_path: Path) -> None:
    from langgraph.config import get_config
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.store.base import BaseStore

    def remember(state: MessagesState, *, store: BaseStore) -> dict[str, Any]:
        user = get_config()["configurable"]["user_id"]
        text = state["messages"][-1].content
        if text.startswith("I like "):
            store.put(("prefs", user), "likes", {"what": text[len("I like ") :]})
            return {"messages": [("ai", "noted")]}
        item = store.get(("prefs", user), "likes")
        return {"messages": [("ai", f"you like {item.value['what']}" if item else "no idea")]}

    def build(store: Any) -> Any:
        builder = StateGraph(MessagesState)
        builder.add_node("remember", remember)
        builder.add_edge(START, "remember")
        return builder.compile(store=store)

    path = str(tmp_path / "graph.db")
    answers = []
    for s in (InMemoryStore(), TieredStore(path)):
        g = build(s)
        g.invoke({"messages": [("user", "I like tea")]}, {"configurable": {"user_id": "u1"}})
        out = g.invoke({"messages": [("user", "what?")]}, {"configurable": {"user_id": "u1"}})
        answers.append(out["messages"][-1].content)
    assert answers == ["you like tea", "you like tea"]
    with TieredStore(path) as s:  # a later run remembers
        out = build(s).invoke(
            {"messages": [("user", "what?")]}, {"configurable": {"user_id": "u1"}}
        )
        assert out["messages"][-1].content == "you like tea"


WRITER = """
import sys
sys.path.insert(0, sys.argv[2])
from tieredmem.langgraph import TieredStore
with TieredStore(sys.argv[1]) as s:
    for i in range(200):
        s.put(("w", sys.argv[3]), f"k{i}", {"i": i})
"""


def test_concurrent_writers_from_several_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "mp.db")
    TieredStore(path).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WRITER), path, str(ROOT), str(n)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    with TieredStore(path) as s:
        for n in range(3):
            assert len(s.search(("w", str(n)), limit=1000)) == 200


def test_shares_a_memorysaver(tmp_path: Path) -> None:
    import tieredmem

    with tieredmem.MemorySaver(path=str(tmp_path / "m.db")) as memory:
        s = TieredStore(memory)
        s.put(("user", "a"), "k", {"v": 1})
        assert memory.longterm.get(("user", "a"), "k").value == {"v": 1}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_cache_and_memoization(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    from langgraph.graph import START, StateGraph
    from langgraph.types import CachePolicy
    from typing_extensions import TypedDict

    import tieredmem
    from tieredmem.langgraph import TieredCache

    calls: list[int] = []

    class S(TypedDict):
        x: int
        y: int

    def slow(state: S) -> dict[str, int]:
        calls.append(state["x"])
        return {"y": state["x"] * 2}

    def build(cache: Any) -> Any:
        builder = StateGraph(S)
        builder.add_node("slow", slow, cache_policy=CachePolicy(ttl=60))
        builder.add_edge(START, "slow")
        return builder.compile(cache=cache)

    path = str(tmp_path / "c.db")
    if backend == "postgres":
        path = request.getfixturevalue("pg_server").url()
    cache = TieredCache(path)
    g = build(cache)
    assert g.invoke({"x": 3})["y"] == 6 and g.invoke({"x": 3})["y"] == 6
    assert calls == [3]
    cache.close()
    cache = TieredCache(path)  # persisted: a new process would not recompute either
    assert build(cache).invoke({"x": 3})["y"] == 6 and calls == [3]
    cache.clear()
    assert build(cache).invoke({"x": 3})["y"] == 6 and calls == [3, 3]
    cache.close()

    with tieredmem.open(str(tmp_path / "memo.db")) as store:
        seen: list[str] = []

        @tieredmem.cached(store, ttl=3600)
        def embed_text(text: str) -> list[float]:
            seen.append(text)
            return [float(len(text)), 1.0]

        @tieredmem.cached(store)
        async def fetch(n: int) -> dict[str, int]:
            seen.append(f"fetch{n}")
            return {"n": n}

        assert embed_text("abc") == embed_text("abc") == [3.0, 1.0]
        assert asyncio.run(fetch(2)) == asyncio.run(fetch(2)) == {"n": 2}
        assert seen == ["abc", "fetch2"]
        embed_text.cache_clear()  # type: ignore[attr-defined]
        embed_text("abc")
        assert seen == ["abc", "fetch2", "abc"]
    with tieredmem.open(str(tmp_path / "memo.db")) as store:

        @tieredmem.cached(
            store, ttl=3600, name=f"{__name__}.test_cache_and_memoization.<locals>.embed_text"
        )
        def again(text: str) -> list[float]:
            raise AssertionError("recomputed after a restart")

        assert again("abc") == [3.0, 1.0]
    assert os.path.exists(tmp_path / "memo.db")


@pytest.mark.parametrize("fast", [True, False])
def test_items_are_langgraph_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast: bool
) -> None:
    """Items built slot by slot equal the constructors' (and the slots still match)."""
    from datetime import datetime, timezone

    from langgraph.store.base import GetOp, Item, SearchItem

    from tieredmem.langgraph import store as lg_store

    assert lg_store._FAST_ITEMS  # the installed LangGraph has exactly the slots we set
    monkeypatch.setattr(lg_store, "_FAST_ITEMS", fast)
    clock = FakeClock()
    with TieredStore(str(tmp_path / "s.db"), clock=clock) as s:
        s.put(("a", "b"), "k", {"v": 1})
        first = s.get(("a", "b"), "k")
        assert type(first) is Item
        assert (
            first.created_at == first.updated_at == datetime.fromtimestamp(clock.now, timezone.utc)
        )
        clock.tick(5)
        s.put(("a", "b"), "k", {"v": 2})
        item = s.get(["a", "b"], "k")  # type: ignore[arg-type]
        assert item is not None and item.namespace == ("a", "b")
        assert item.created_at == first.created_at
        assert (item.updated_at - item.created_at).total_seconds() == 5
        ref = Item(
            value={"v": 2},
            key="k",
            namespace=("a", "b"),
            created_at=item.created_at,
            updated_at=item.updated_at,
        )
        assert item == ref and item.dict() == ref.dict() and repr(item) == repr(ref)
        assert s.batch([GetOp(("a", "b"), "k")]) == [ref]
        found = s.search(("a",))
        assert type(found[0]) is SearchItem and found[0].score is None
        assert found[0].dict() == {**ref.dict(), "score": None}
        hit = s.search(("a",), query="nothing")
        assert hit == []

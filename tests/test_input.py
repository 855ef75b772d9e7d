"""Bad input through every public entry point: a typed error (a ``TieredMemError`` that
is also the matching standard exception), and nothing written (issue #15, "Input")."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import tieredmem
from tieredmem import (
    InvalidFilterError,
    InvalidKeyError,
    InvalidNamespaceError,
    InvalidTTLError,
    SerializationError,
    TieredMemError,
)

NON_FINITE = [math.nan, math.inf, -math.inf]
NON_FINITE_VALUES = [
    math.nan,
    {"x": math.inf},
    [1.0, -math.inf],
    {"a": [{"b": math.nan}]},
    ({"t": (1, math.nan)},),
]
LONE = "\ud800"
BAD_TTLS: list[Any] = [
    math.nan,
    math.inf,
    -math.inf,
    0,
    -1,
    -0.5,
    timedelta(seconds=-1),
    timedelta(0),
    10**400,
    "60",
    True,
]
BAD_FILTERS: list[Any] = [
    {1: 2},
    {None: 1},
    {"x": {"$foo": 1}},
    {"x": {"$gt": 1, "y": 2}},
    {"$or": {"a": 1}},  # $or takes a list of filters
    {"$nor": [{"a": 1}]},
    {"x": {"$in": 3}},
    {"x": {"$exists": "yes"}},
    "lang=fr",
    [("lang", "fr")],
]


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tieredmem.Store]:
    url = ":memory:" if request.param == "memory" else str(tmp_path / "s.db")
    with tieredmem.open(url, maintenance_interval=0) as s:
        s.put(("keep",), "k", {"v": 1})
        yield s


def _snapshot(store: tieredmem.Store) -> list[tuple[tuple[str, ...], str, Any]]:
    return [(i.namespace, i.key, i.value) for i in store.search((), limit=1000)]


# -- values ----------------------------------------------------------------------------
@pytest.mark.parametrize("value", NON_FINITE_VALUES)
def test_non_finite_values_are_refused_and_nothing_is_written(
    store: tieredmem.Store, value: Any
) -> None:
    before = _snapshot(store)
    with pytest.raises(SerializationError, match="NaN and infinities"):
        store.put(("a",), "k", value)
    with pytest.raises(SerializationError):
        store.put_many([(("a",), "ok", 1), (("a",), "bad", value)])
    assert _snapshot(store) == before
    assert store.get(("a",), "k") is None and store.get(("a",), "ok") is None


def test_non_finite_error_names_where_it_is(store: tieredmem.Store) -> None:
    with pytest.raises(SerializationError, match=r"value\['a'\]\[0\]\['b'\] for key 'k'"):
        store.put(("a",), "k", {"a": [{"b": math.nan}]})


def test_finite_floats_and_null_round_trip_exactly(store: tieredmem.Store) -> None:
    value = {"n": None, "s": "null", "f": [0.1, -0.0, 1e308, 5e-324], "nested": {"x": None}}
    store.put(("a",), "k", value)
    got = store.get(("a",), "k")
    assert got is not None and got.value == value
    assert math.copysign(1.0, got.value["f"][1]) == -1.0


def test_numpy_non_finite_is_refused(store: tieredmem.Store) -> None:
    np = pytest.importorskip("numpy")
    with pytest.raises(SerializationError):
        store.put(("a",), "k", np.array([1.0, np.nan]))
    with pytest.raises(SerializationError):
        store.put(("a",), "k", {"x": np.float32("inf")})
    store.put(("a",), "k", np.array([1.5, 2.0]))
    got = store.get(("a",), "k")
    assert got is not None and got.value == [1.5, 2.0]


# -- ttl -------------------------------------------------------------------------------
@pytest.mark.parametrize("ttl", BAD_TTLS)
def test_bad_ttls_are_refused_and_nothing_is_written(store: tieredmem.Store, ttl: Any) -> None:
    before = _snapshot(store)
    with pytest.raises(InvalidTTLError) as info:
        store.put(("a",), "k", 1, ttl=ttl)
    assert isinstance(info.value, ValueError) and "ttl=None" in str(info.value)
    with pytest.raises(InvalidTTLError):
        store.put_many([(("a",), "k", 1)], ttl=ttl)
    assert _snapshot(store) == before


def test_good_ttls_are_kept(store: tieredmem.Store) -> None:
    store.put(("a",), "k", 1, ttl=timedelta(hours=1))
    store.put(("a",), "m", 1, ttl=tieredmem.names.MAX_TTL)
    item = store.get(("a",), "m")
    assert item is not None and item.expires_at is not None
    assert math.isfinite(item.expires_at)


# -- keys and namespaces ---------------------------------------------------------------
def test_lone_surrogates_in_keys_and_labels_are_typed_errors(store: tieredmem.Store) -> None:
    before = _snapshot(store)
    for call in (
        lambda: store.put(("a",), LONE, 1),
        lambda: store.put(("a",), "x" + LONE, 1),
        lambda: store.get(("a",), LONE),
        lambda: store.delete(("a",), "é" + LONE),
        lambda: store.get_many([(("a",), LONE)]),
        lambda: store.put_many([(("a",), "ok", 1), (("a",), LONE, 1)]),
        lambda: store.delete_many([(("a",), LONE)]),
    ):
        with pytest.raises(InvalidKeyError, match="lone surrogate"):
            call()
    for call in (
        lambda: store.put((LONE,), "k", 1),
        lambda: store.put(("a", "b" + LONE), "k", 1),
        lambda: store.get((LONE,), "k"),
        lambda: store.delete((LONE,), "k"),
        lambda: store.search((LONE,)),
        lambda: store.list_namespaces(prefix=(LONE,)),
    ):
        with pytest.raises(InvalidNamespaceError, match="lone surrogate"):
            call()
    assert _snapshot(store) == before


def test_non_ascii_keys_and_labels_round_trip(store: tieredmem.Store) -> None:
    store.put(("ünï", "漢字"), "ключ🔑", {"v": "ok"})
    got = store.get(("ünï", "漢字"), "ключ🔑")
    assert got is not None and got.value == {"v": "ok"}
    assert ("ünï", "漢字") in store.list_namespaces()


# -- filters, limits, offsets -----------------------------------------------------------
@pytest.mark.parametrize("bad", BAD_FILTERS)
def test_bad_filters_are_typed_errors(store: tieredmem.Store, bad: Any) -> None:
    with pytest.raises(InvalidFilterError) as info:
        store.search(("keep",), filter=bad)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TieredMemError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": -1},
        {"offset": -1},
        {"limit": "3"},
        {"limit": 2.5},
        {"offset": None},
        {"query": 3},
    ],
)
def test_bad_search_arguments_are_typed_errors(
    store: tieredmem.Store, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(InvalidFilterError):
        store.search(("keep",), **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": -1},
        {"offset": -2},
        {"max_depth": 0},
        {"max_depth": "1"},
        {"prefix": "keep"},
        {"suffix": 5},
        {"prefix": ("a", 1)},
    ],
)
def test_bad_listing_arguments_are_typed_errors(
    store: tieredmem.Store, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(InvalidFilterError):
        store.list_namespaces(**kwargs)


def test_good_filters_still_match(store: tieredmem.Store) -> None:
    store.put(("p",), "a", {"age": 30, "lang": "fr", "d": {"k": 1}})
    store.put(("p",), "b", {"age": 12, "lang": "en"})
    assert [i.key for i in store.search(("p",), filter={"age": {"$gte": 18}})] == ["a"]
    assert [i.key for i in store.search(("p",), filter={"d": {"k": 1}})] == ["a"]
    assert [i.key for i in store.search(("p",), filter={"d.k": {"$eq": 1}})] == ["a"]
    assert store.search(("p",), filter={"age": math.nan}) == []


# -- History, State, MemorySaver -------------------------------------------------------
def test_history_refuses_non_finite_items_and_bad_names() -> None:
    with tieredmem.MemorySaver(persistent=False) as memory:
        h = memory.history("h")
        h.append({"ok": 1})
        for item in NON_FINITE_VALUES:
            with pytest.raises(SerializationError):
                h.append(item)
            with pytest.raises(SerializationError):
                h.extend([{"ok": 2}, item])
        assert list(h) == [{"ok": 1}]
        with pytest.raises(InvalidKeyError, match="lone surrogate"):
            memory.history("h" + LONE)
        with pytest.raises(InvalidKeyError, match="lone surrogate"):
            memory.state(LONE)
        with pytest.raises(InvalidKeyError, match="lone surrogate"):
            tieredmem.History(memory.longterm, LONE)


def test_state_refuses_non_finite_values_and_surrogate_keys(tmp_path: Any) -> None:
    path = str(tmp_path / "m.db")
    with tieredmem.MemorySaver(path=path) as memory:
        doc = memory.state("s")
        doc["keep"] = 1
        doc.commit()
        with pytest.raises(InvalidKeyError, match="lone surrogate"):
            doc[LONE] = 1
        doc["bad"] = {"x": math.nan}
        with pytest.raises(SerializationError, match="NaN"):
            doc.commit()
    with tieredmem.MemorySaver(path=path) as memory:
        assert dict(memory.state("s")) == {"keep": 1}


def test_memory_saver_longterm_follows_the_store_rules() -> None:
    with tieredmem.MemorySaver(persistent=False) as memory:
        with pytest.raises(SerializationError):
            memory.longterm.put(("u",), "k", math.inf)
        with pytest.raises(InvalidTTLError):
            memory.longterm.put(("u",), "k", 1, ttl=math.nan)
        with pytest.raises(InvalidFilterError):
            memory.longterm.search(("u",), filter={1: 2})
        assert memory.longterm.search(("u",)) == []


# -- the LangGraph store -----------------------------------------------------------------
def test_tiered_store_same_rules() -> None:
    pytest.importorskip("langgraph")
    from langgraph.store.base import PutOp

    from tieredmem.langgraph import TieredStore

    with TieredStore(":memory:") as lg:
        lg.put(("u",), "keep", {"v": 1})
        with pytest.raises(SerializationError):
            lg.put(("u",), "k", {"x": math.nan})
        with pytest.raises(SerializationError):  # a batch: nothing of it is written
            lg.batch([PutOp(("u",), "a", {"v": 2}), PutOp(("u",), "b", {"v": math.inf})])
        with pytest.raises(InvalidTTLError):
            lg.put(("u",), "k", {"v": 1}, ttl=math.nan)
        with pytest.raises(InvalidTTLError):
            lg.put(("u",), "k", {"v": 1}, ttl=-1)
        with pytest.raises(InvalidKeyError):
            lg.put(("u",), LONE, {"v": 1})
        with pytest.raises(InvalidNamespaceError):
            lg.put(("u" + LONE,), "k", {"v": 1})
        with pytest.raises(InvalidFilterError):
            lg.search(("u",), filter={1: 2})
        with pytest.raises(InvalidFilterError):
            lg.search(("u",), filter={"v": {"$regex": "x"}})
        with pytest.raises(InvalidFilterError):
            lg.search(("u",), limit=-1)
        assert [i.key for i in lg.search(("u",))] == ["keep"]


def test_tiered_saver_thread_id_with_a_lone_surrogate() -> None:
    pytest.importorskip("langgraph")
    from tieredmem.langgraph import TieredSaver

    with TieredSaver(":memory:") as saver, pytest.raises(InvalidKeyError):
        saver.get_tuple({"configurable": {"thread_id": LONE}})


def test_cached_refuses_nan_arguments_instead_of_answering_for_none() -> None:
    with tieredmem.open(":memory:") as store:
        calls: list[Any] = []

        @tieredmem.cached(store)
        def double(x: Any) -> Any:
            calls.append(x)
            return None if x is None else x * 2

        assert double(None) is None
        with pytest.raises(SerializationError, match="NaN"):
            double(math.nan)  # hashed like None before: answered None from the cache
        assert double(2.0) == 4.0 and calls == [None, 2.0]


@pytest.mark.parametrize("ttl", [math.nan, math.inf, -1, 0, "1h"])
def test_retention_and_saver_ttls_follow_the_same_rules(ttl: Any) -> None:
    with pytest.raises(InvalidTTLError):
        tieredmem.Retention(ttl=ttl)  # a nan ttl never expired anything
    pytest.importorskip("langgraph")
    from tieredmem.langgraph import TieredSaver

    with pytest.raises(InvalidTTLError):
        TieredSaver(":memory:", ttl=ttl)

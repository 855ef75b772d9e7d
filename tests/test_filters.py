"""The filter language (issue #18): one semantics on every backend.

The pure-Python filter (:func:`tieredmem.filters.matches`) is the definition; every
backend narrows in SQL (SQLite's declared field indexes, PostgreSQL's ``jsonb``) and then
re-checks, so a search must return exactly what the Python filter selects.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tieredmem
from tieredmem import InvalidFilterError
from tieredmem.filters import matches, validate_filter

from .test_scale import PageCounter

# -- semantics --------------------------------------------------------------------------
DOC = {
    "kind": "fact",
    "score": 70,
    "ratio": 0.5,
    "flag": True,
    "none": None,
    "tags": ["a", "b", 3],
    "text": "hello world",
    "user": {"lang": "fr", "age": 30, "prefs": {"theme": "dark"}},
}


@pytest.mark.parametrize(
    "flt, want",
    [
        ({"kind": "fact"}, True),
        ({"kind": {"$eq": "fact"}}, True),
        ({"kind": {"$ne": "fact"}}, False),
        ({"missing": {"$ne": "x"}}, True),  # a missing field differs from everything
        ({"missing": None}, False),  # ... and equals nothing, not even None
        ({"none": None}, True),
        ({"missing": {"$exists": False}}, True),
        ({"none": {"$exists": True}}, True),
        ({"score": {"$gte": 70, "$lt": 71}}, True),
        ({"score": {"$gt": 70}}, False),
        ({"flag": {"$gte": 1}}, True),  # a bool is a number, as in Python
        ({"kind": {"$gt": "a"}}, True),  # two strings: by code point
        ({"kind": {"$gt": 1}}, False),  # a string and a number: no order, no match
        ({"missing": {"$lt": 1}}, False),
        ({"kind": {"$in": ["fact", "episode"]}}, True),
        ({"kind": {"$nin": ["fact"]}}, False),
        ({"missing": {"$nin": ["fact"]}}, True),
        ({"missing": {"$in": [None]}}, False),
        ({"tags": {"$contains": "b"}}, True),
        ({"tags": {"$contains": 3.0}}, True),
        ({"tags": {"$contains": "c"}}, False),
        ({"text": {"$contains": "lo wo"}}, True),
        ({"score": {"$contains": 7}}, False),
        ({"tags": ["a", "b", 3]}, True),  # a list: same length, item by item
        ({"tags": ["a", "b"]}, False),
        ({"user": {"lang": "fr"}}, True),  # a dict: holds these keys (InMemoryStore)
        ({"user": {"prefs": {"theme": "dark"}, "age": {"$gte": 18}}}, True),
        ({"user": {}}, True),
        ({"kind": {}}, False),
        ({"user.prefs.theme": "dark"}, True),
        ({"user.lang.x": {"$exists": False}}, True),
        ({"score": {"$not": {"$lt": 50}}}, True),
        ({"score": {"$not": 70}}, False),
        ({"$or": [{"kind": "episode"}, {"score": {"$gte": 50}}]}, True),
        ({"$or": [{"kind": "episode"}, {"score": {"$lt": 50}}]}, False),
        ({"$and": [{"kind": "fact"}, {"user.lang": "fr"}]}, True),
        ({"$not": {"kind": "fact", "score": 1}}, True),
        ({"$not": {"kind": "fact"}, "score": 70}, False),
        ({"kind": "fact", "$or": [{"tags": {"$contains": "z"}}, {"ratio": 0.5}]}, True),
    ],
)
def test_operators(flt: dict[str, Any], want: bool) -> None:
    assert matches(DOC, flt) is want


def test_non_dict_values_have_no_fields() -> None:
    assert not matches([1, 2], {"a": 1})
    assert matches("text", {"a": {"$exists": False}})
    assert matches(b"raw", {"a": {"$ne": 1}})


@pytest.mark.parametrize(
    "flt",
    [
        {"kind": "fact", "score": 70},
        {"score": {"$gt": 50}},
        {"score": {"$lte": 70}, "kind": {"$ne": "x"}},
        {"user": {"lang": "fr"}},
        {"tags": ["a", "b", 3]},
        {"kind": "other"},
    ],
)
def test_agrees_with_langgraph_inmemorystore(flt: dict[str, Any]) -> None:
    """Where LangGraph's InMemoryStore defines a filter, tieredmem agrees with it."""
    pytest.importorskip("langgraph")
    from langgraph.store.memory import InMemoryStore

    theirs = InMemoryStore()
    theirs.put(("n",), "k", DOC)
    with tieredmem.open(":memory:") as ours:
        ours.put(("n",), "k", DOC)
        assert len(ours.search(("n",), filter=flt)) == len(theirs.search(("n",), filter=flt))


@pytest.mark.parametrize(
    "flt, named",
    [
        ({"a": {"$regex": "x"}}, "'$regex'"),
        ({"$nor": [{"a": 1}]}, "'$nor'"),
        ({"$in": [1]}, "inside a field's condition"),
        ({"a": {"$or": [{"b": 1}]}}, "at the top level"),
        ({"a": {"$in": "abc"}}, "$in on field 'a' takes a list"),
        ({"a": {"$nin": 3}}, "$nin on field 'a' takes a list"),
        ({"a": {"$exists": 1}}, "$exists on field 'a' takes True or False"),
        ({"a": {"$gt": None}}, "$gt on field 'a' compares with a number or a string"),
        ({"$or": []}, "$or takes a non-empty list"),
        ({"$and": {"a": 1}}, "$and takes a non-empty list"),
        ({"$or": [1]}, "each filter of $or must be a mapping"),
        ({"$not": []}, "$not takes a non-empty filter"),
        ({"a": {"$eq": 1, "b": 2}}, "mixes operators and plain keys"),
        ({1: 2}, "field names are strings"),
        ([("a", 1)], "filter must be a mapping"),
        ({"a": {"b": {"$bad": 1}}}, "unknown filter operator '$bad' on field 'a.b'"),
    ],
)
def test_bad_filters_name_the_operator(flt: Any, named: str) -> None:
    with pytest.raises(InvalidFilterError, match=None) as info:
        validate_filter(flt)
    assert named in str(info.value)
    with tieredmem.open(":memory:") as store, pytest.raises(InvalidFilterError):
        store.search(("a",), filter=flt)


# -- every backend returns what the Python filter selects -------------------------------
KEYS = ["a", "b", "n.a", "n.b", "tags"]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([0.5, 2.0, 2**63 + 5, 2**64 - 1, -(2**63)])
    | st.sampled_from(["", "x", "y", "xy", "é"])
)


def _row(i: int) -> Any:
    """A deterministic mix: numbers, strings, bools, None, lists, nested dicts, gaps."""
    pick = [
        None,
        True,
        False,
        0,
        1,
        2,
        -3,
        0.5,
        2.0,
        "x",
        "y",
        "xy",
        "",
        "é",
        2**63 + 5,
        2**64 - 1,
        -(2**63),
    ]
    if i % 29 == 0:
        return ["not", "a", "dict"]
    value: dict[str, Any] = {
        "a": pick[i % len(pick)],
        "b": pick[(i * 7) % len(pick)],
        "n": {"a": pick[(i * 3) % len(pick)], "b": pick[(i * 5 + 1) % len(pick)]},
        "tags": [pick[(i + k) % len(pick)] for k in range(i % 3)],
    }
    if i % 5 == 0:
        del value["b"]
    if i % 7 == 0:
        value["n"] = "flat"
    if i % 11 == 0:
        value["a"] = {"a": 1}
    return value


ROWS = [_row(i) for i in range(120)]
OTHER = (("other",), "k", {"a": 1, "b": "x", "tags": ["x"]})


def _conditions() -> st.SearchStrategy[Any]:
    ordered = scalars.filter(lambda v: v is not None)
    ops = st.one_of(
        st.tuples(st.sampled_from(["$eq", "$ne"]), scalars),
        st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), ordered),
        st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(scalars, min_size=1, max_size=3)),
        st.tuples(st.just("$exists"), st.booleans()),
        st.tuples(st.just("$contains"), scalars),
    )
    return scalars | st.lists(ops, min_size=1, max_size=2).map(dict)


def _filters() -> st.SearchStrategy[dict[str, Any]]:
    leaf = st.dictionaries(st.sampled_from(KEYS), _conditions(), min_size=1, max_size=2)
    return st.recursive(
        leaf,
        lambda sub: st.one_of(
            st.builds(lambda fs: {"$or": fs}, st.lists(sub, min_size=1, max_size=3)),
            st.builds(lambda fs: {"$and": fs}, st.lists(sub, min_size=1, max_size=2)),
            st.builds(lambda f: {"$not": f}, sub),
            st.builds(lambda f, g: {**f, **g}, leaf, sub),
        ),
        max_leaves=5,
    )


@pytest.fixture(params=["sqlite", "sqlite-indexed", "postgres", "redis"])
def filled(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tieredmem.Store]:
    kind = request.param
    options: dict[str, Any] = {"maintenance_interval": 0, "hot_bytes": 1, "compress_threshold": 1}
    if kind == "postgres":
        url = request.getfixturevalue("pg_server").url()
    elif kind == "redis":
        url = request.getfixturevalue("redis_server").url(f"t{uuid.uuid4().hex[:8]}:")
    else:
        url = str(tmp_path / "f.db")
    if kind == "sqlite-indexed":
        options["index"] = KEYS
    store = tieredmem.open(url, **options)
    store.put_many(((f"g{i % 3}",), f"k{i:03d}", value) for i, value in enumerate(ROWS))
    store.put(*OTHER)
    if kind == "sqlite-indexed":
        assert store.backend.indexed_fields() == tuple(KEYS)  # type: ignore[attr-defined]
    try:
        yield store
    finally:
        store.close()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(flt=_filters(), limit=st.sampled_from([1, 4, 200]), offset=st.integers(0, 3))
def test_search_returns_what_the_python_filter_selects(
    filled: tieredmem.Store, flt: dict[str, Any], limit: int, offset: int
) -> None:
    rows = [((f"g{i % 3}",), f"k{i:03d}", v) for i, v in enumerate(ROWS)] + [OTHER]
    want = sorted((ns, key) for ns, key, v in rows if matches(v, flt))
    got = filled.search((), filter=flt, limit=limit, offset=offset)
    assert [(i.namespace, i.key) for i in got] == want[offset : offset + limit]
    one = filled.search(("g1",), filter=flt, limit=limit)
    assert [(i.namespace, i.key) for i in one] == [w for w in want if w[0] == ("g1",)][:limit]


# -- declared fields: index lookups, under sharing ---------------------------------------
@pytest.fixture
def steps() -> Iterator[PageCounter]:
    """Pages visited by the connections opened meanwhile (see tests/test_scale.py)."""
    import apsw

    counter = PageCounter()
    apsw.connection_hooks.append(counter.hook)
    try:
        yield counter
    finally:
        apsw.connection_hooks.remove(counter.hook)


def test_in_and_or_on_declared_fields_read_only_candidates(
    tmp_path: Path, steps: PageCounter
) -> None:
    import os

    path = tmp_path / "x.db"
    with tieredmem.open(path, maintenance_interval=0, hot_bytes=0, index=["n", "s"]) as store:
        store.put_many(
            (
                ("docs",),
                f"k{i:05d}",
                {
                    "n": i % 50,
                    "s": "rare" if i == 2500 else "common",
                    "blob": os.urandom(400).hex(),
                },
            )
            for i in range(3_000)
        )
        store.search(("docs",), limit=1)  # the reader connection opens (schema pages)
        cases = [
            ({"n": {"$in": [7, 8]}}, 3, ["k00007", "k00008", "k00057"]),
            ({"$or": [{"s": "rare"}, {"s": "x", "n": 49}]}, 5, ["k02500"]),  # s leads
            ({"n": {"$in": [3, 4]}, "s": "rare"}, 5, []),
            ({"n": 49, "s": "common"}, 2, ["k00049", "k00099"]),
        ]
        for flt, limit, want in cases:
            with steps.measure() as cost:
                found = store.search(("docs",), filter=flt, limit=limit)
            assert [i.key for i in found] == want, flt
            # Without the index: up to ~1,000 pages of values; with it, a few index pages
            # and the matching rows' pages.
            assert cost[0] < 30, f"{flt} visited {cost[0]} pages"


def test_a_range_on_a_declared_field_costs_the_namespace_not_the_file(
    tmp_path: Path, steps: PageCounter
) -> None:
    path = tmp_path / "r.db"
    with tieredmem.open(path, maintenance_interval=0, hot_bytes=0, index=["n"]) as store:
        store.put_many((("big",), f"k{i:05d}", {"n": i, "pad": "x" * 300}) for i in range(20_000))
        store.put_many((("small",), f"k{i}", {"n": i}) for i in range(20))
        store.search(("small",), limit=1)  # the reader connection opens (schema pages)
        with steps.measure() as cost:
            found = store.search(("small",), filter={"n": {"$gte": 15}}, limit=10)
        assert [i.value["n"] for i in found] == [15, 16, 17, 18, 19]
        assert cost[0] < 20, f"a range in a small namespace visited {cost[0]} pages"


def test_declared_fields_see_other_processes(tmp_path: Path) -> None:
    """A handle that knows a field is declared uses it without reading the file's list
    again: another process's writes are still found, and a field another handle
    declares later is used from the next search that names it."""
    import subprocess
    import sys

    path = tmp_path / "shared.db"
    with tieredmem.open(path, maintenance_interval=0, index=["kind"]) as store:
        store.put(("m",), "a", {"kind": "fact", "n": 1})
        assert [i.key for i in store.search(("m",), filter={"kind": "fact"})] == ["a"]
        code = (
            "import sys, tieredmem\n"
            "with tieredmem.open(sys.argv[1], maintenance_interval=0) as s:\n"
            "    s.put(('m',), 'b', {'kind': 'fact', 'n': 2})\n"
            "    s.put(('m',), 'a', {'kind': 'episode', 'n': 1})\n"
        )
        subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=120)
        assert [i.key for i in store.search(("m",), filter={"kind": "fact"})] == ["b"]
        assert [i.key for i in store.search(("m",), filter={"n": 2})] == ["b"]
        with tieredmem.open(path, maintenance_interval=0, index=["n"]):
            pass
        assert store.backend.indexed_fields(fresh=False) == ("kind",)  # type: ignore[attr-defined]
        assert [i.key for i in store.search(("m",), filter={"n": {"$in": [1, 2]}})] == ["a", "b"]
        assert store.backend.indexed_fields(fresh=False) == ("kind", "n")  # type: ignore[attr-defined]

"""The fast paths of Store.search: the filter needles, early stops, the FTS merge.

Each must leave results exactly as a brute-force scan with :func:`matches` gives them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tieredmem
from tieredmem.backends import sqlite as sqlite_backend
from tieredmem.codec import Codec
from tieredmem.filters import compile_filter, filter_needles, matches

from .conftest import FakeClock

# Strings that stress JSON escaping: quotes, backslashes, control characters, non-ASCII,
# and fragments of JSON syntax (a needle must never be fooled by them).
tricky_text = st.text(
    alphabet=st.sampled_from(["a", "b", '"', "\\", "\n", "\x00", "\x1f", "é", "😀", ":", ",", "}"]),
    max_size=4,
)
scalars = (
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([0.0, 1.0, 2.5]) | tricky_text
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "c"]), children, max_size=3)
    ),
    max_leaves=8,
)
items = st.dictionaries(st.sampled_from(["a", "b", "c", "n"]), values, max_size=4)
specs = (
    scalars
    | st.fixed_dictionaries({"$eq": scalars})
    | st.fixed_dictionaries({"$ne": scalars})
    | st.fixed_dictionaries({"$eq": scalars, "$ne": scalars})
    | st.fixed_dictionaries({"$gte": st.integers(-3, 3)})
    | st.dictionaries(st.sampled_from(["a", "b"]), scalars, max_size=2)  # a dict holding these
)
filters = st.dictionaries(st.sampled_from(["a", "b", "c", "n.a", "n.b"]), specs, max_size=3)
operators = st.dictionaries(
    st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]), scalars, min_size=1
)
any_filters = st.dictionaries(
    st.sampled_from(["a", "b", "n", "n.a", "n.b.c", ""]), scalars | operators | values, max_size=3
)


@given(value=items | values, flt=any_filters)
def test_compiled_filter_is_matches(value: Any, flt: dict[str, Any]) -> None:
    test = compile_filter(flt)
    assert (test is None) == (not flt)
    assert (test is None or test(value)) == matches(value, flt)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(items | values, max_size=25),
    flt=filters,
    limit=st.integers(0, 6),
    offset=st.integers(0, 4),
)
def test_filtered_search_equals_brute_force(
    rows: list[Any], flt: dict[str, Any], limit: int, offset: int
) -> None:
    # compress_threshold=1: every JSON payload is zstd-compressed, as big values are.
    with tieredmem.open(":memory:", compress_threshold=1, maintenance_interval=0) as store:
        for i, value in enumerate(rows):
            store.put(("ns", "x" if i % 3 else "y"), f"k{i:03d}", value)
        store.put(("other",), "k", {"a": "never"})
        everything = store.search(("ns",), limit=1000)
        assert len(everything) == len(rows)
        want = [(i.namespace, i.key) for i in everything if matches(i.value, flt)]
        got = store.search(("ns",), filter=flt, limit=limit, offset=offset)
        assert [(i.namespace, i.key) for i in got] == want[offset : offset + limit]
        assert all(matches(i.value, flt) for i in got)


@given(value=values, needle_source=tricky_text | st.none())
def test_needle_is_in_the_payload_of_every_match(value: Any, needle_source: Any) -> None:
    """The assumption the needles rest on: the codec writes a str (or null) inside a
    value exactly as orjson.dumps writes it alone.  Fails loudly if the codec changes."""
    codec = Codec(compress_threshold=1)
    wrapped = {"a": value, "b": needle_source}
    kind, payload = codec.unframe(codec.encode(wrapped))
    for needle in filter_needles({"b": needle_source}):
        assert needle in payload
    assert kind == 1


def test_needles_only_for_str_and_none() -> None:
    assert filter_needles(None) == ()
    assert filter_needles({"a": "x", "b": {"$eq": None}}) == (b'"x"', b"null")
    assert filter_needles({"a": 1, "b": True, "c": 1.0, "d": [1], "e": {"k": 2}}) == ()
    # A dict condition matches a dict holding its keys: its strings are needles too.
    assert filter_needles({"e": {"k": "v"}, "$and": [{"f": "w"}]}) == (b'"v"', b'"w"')
    assert filter_needles({"$or": [{"a": "x"}, {"a": "y"}], "$not": {"b": "z"}}) == ()
    assert filter_needles({"a": {"$ne": "x"}, "b": {"$gte": "x"}}) == ()
    assert filter_needles({"a": 'q"\\\n'}) == (orjson.dumps('q"\\\n'),)
    assert filter_needles({"a": "\ud800"}) == ()  # not encodable: no needle, no error

    class Loose(str):
        def __eq__(self, other: object) -> bool:
            return isinstance(other, str) and other.lower() == self.lower()

        __hash__ = str.__hash__

    assert filter_needles({"a": Loose("X")}) == ()  # str subclasses may define equality


def test_needles_never_hide_numbers_equal_across_types(tmp_path: Path) -> None:
    with tieredmem.open(str(tmp_path / "s.db"), compress_threshold=1) as store:
        store.put(("n",), "int", {"v": 1})
        store.put(("n",), "float", {"v": 1.0})
        store.put(("n",), "bool", {"v": True})
        store.put(("n",), "null", {"v": None})
        store.put(("n",), "raw", b'{"v": "x"}')
        assert {i.key for i in store.search(("n",), filter={"v": 1})} == {"int", "float", "bool"}
        assert [i.key for i in store.search(("n",), filter={"v": None})] == ["null"]
        assert [i.key for i in store.search(("n",), filter={"v": "x"})] == []
        assert {i.key for i in store.search(("n",), filter={"v": {"$ne": "x"}})} == {
            "bool",
            "float",
            "int",
            "null",
            "raw",
        }


def test_search_reads_past_expired_rows(tmp_path: Path, clock: FakeClock) -> None:
    """Without a filter the first page is small; expired rows must not cut the answer."""
    with tieredmem.open(str(tmp_path / "s.db"), clock=clock, hot_bytes=1) as store:
        for i in range(30):
            store.put(("t",), f"k{i:02d}", {"i": i}, ttl=10 if i < 15 else None)
        clock.tick(11)
        assert [i.key for i in store.search(("t",), limit=10)] == [f"k{i}" for i in range(15, 25)]
        assert [i.key for i in store.search(("t",), limit=10, offset=10)] == [
            f"k{i}" for i in range(25, 30)
        ]
        assert store.search(("t",), limit=0, offset=3) == []
        found = store.search(("t",), filter={"i": {"$gte": 0}}, limit=100)
        assert [i.value["i"] for i in found] == list(range(15, 30))


def test_text_search_decodes_only_what_it_returns(tmp_path: Path) -> None:
    with tieredmem.open(str(tmp_path / "s.db")) as store:
        for i in range(40):
            store.put(("d",), f"k{i:02d}", {"text": "cat " * (1 + i % 7), "n": i})
        full = store.search(("d",), query="cat", limit=40)
        assert len(full) == 40
        for limit, offset in ((1, 0), (5, 3), (10, 35), (3, 40)):
            got = store.search(("d",), query="cat", limit=limit, offset=offset)
            assert [(i.key, i.score) for i in got] == [
                (i.key, i.score) for i in full[offset : offset + limit]
            ]
        odd = store.search(("d",), query="cat", filter={"n": {"$gte": 20}}, limit=5)
        assert [i.key for i in odd] == [i.key for i in full if i.value["n"] >= 20][:5]


def test_fts_index_is_merged_after_a_backfill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_backend, "_MERGE_AFTER", 20)
    merges: list[int] = []
    original = sqlite_backend.SQLiteBackend._merge_fts

    def spy(self: Any, con: Any, indexed: int) -> None:
        merges.append(indexed)
        original(self, con, indexed)

    monkeypatch.setattr(sqlite_backend.SQLiteBackend, "_merge_fts", spy)
    with tieredmem.open(str(tmp_path / "s.db")) as store:
        for i in range(50):
            store.put(("d",), f"k{i:02d}", {"text": f"word{i % 5} common"})
        assert len(store.search(("d",), query="word3", limit=100)) == 10  # backfill: merged
        assert merges == [50]
        for i in range(50, 75):  # 25 more: over _MERGE_AFTER, but under half of the index
            store.put(("d",), f"k{i:02d}", {"text": f"word{i % 5} common"})
        assert len(store.search(("d",), query="word3", limit=100)) == 15
        assert len(store.search(("d",), query="common", limit=100)) == 75
        assert merges == [50, 25]  # asked, and declined inside (25 * 2 < 75)
        backend = store.backend
        assert isinstance(backend, sqlite_backend.SQLiteBackend)
        assert backend.integrity_check() == "ok"

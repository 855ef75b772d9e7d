"""Property: arbitrary Python objects, keys, namespaces, ttls and filters through the
public API either round-trip exactly or raise a ``TieredMemError``, and a call that
raised left the store unchanged (issue #15, "Input").  The store properties run on a
SQLite file and on a real Redis server.

A small number of examples runs by default; ``--stress`` (or ``TIEREDMEM_STRESS=1``) runs
many more.
"""

from __future__ import annotations

import math
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tieredmem
from tieredmem import TieredMemError
from tieredmem.names import MAX_TTL

from .conftest import FakeClock, RedisServer

INT_MIN, UINT_MAX = -(2**63), 2**64 - 1
SEP_CONTROL = {chr(c) for c in range(32)}


def _examples(stress: bool) -> settings:
    return settings(
        max_examples=1500 if stress else 60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# -- strategies --------------------------------------------------------------------------
# Each input is valid about half the time, so round trips are exercised as much as refusals.
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)  # surrogates too
words = st.text(
    st.characters(min_codepoint=32, max_codepoint=0x2FFFF, exclude_categories=("Cs",)),
    min_size=1,
    max_size=8,
)
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=INT_MIN, max_value=UINT_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=6), inner, max_size=4),
    ),
    max_leaves=12,
)
leaves = st.one_of(
    json_leaves,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
    st.binary(max_size=8),
    st.sampled_from([object(), {1, 2}, 1j, Ellipsis]),
)
any_values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(texts, inner, max_size=4),
        st.dictionaries(st.integers(0, 3), inner, min_size=1, max_size=2),
    ),
    max_leaves=12,
)
values = st.one_of(json_values, st.binary(max_size=16), any_values)
keys = st.one_of(words, words, texts, st.integers(), st.none(), st.just(""))
labels = st.one_of(texts, st.just("tieredmem"), st.integers(), st.none())
namespaces = st.one_of(
    st.lists(words, min_size=1, max_size=3).map(tuple),
    st.lists(words, min_size=1, max_size=3).map(tuple),
    st.tuples(labels),
    st.lists(labels, max_size=3).map(tuple),
    st.lists(texts, min_size=1, max_size=3),
    texts,
    st.none(),
)
ttls = st.one_of(
    st.none(),
    st.floats(min_value=1, max_value=1e9),
    st.timedeltas(min_value=timedelta(seconds=1)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=1, max_value=2 * MAX_TTL),
    st.integers(min_value=-(2**1100), max_value=2**1100),
    st.timedeltas(),
    st.sampled_from(["60", True, [1], b"1"]),
)
op_names = st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$or", "$"])
specs = st.one_of(
    values,
    st.dictionaries(op_names, values, min_size=1, max_size=2),
    st.dictionaries(st.one_of(op_names, texts), values, min_size=1, max_size=2),
)
filters = st.one_of(
    st.none(),
    st.dictionaries(st.one_of(texts, st.integers(), op_names), specs, max_size=3),
    st.sampled_from(["lang=fr", [("a", 1)], 3]),
)


# -- the oracle: what the documented rules accept ----------------------------------------
def _text(s: Any) -> bool:
    if not isinstance(s, str):
        return False
    try:
        s.encode()
    except UnicodeEncodeError:
        return False
    return True


def storable(value: Any, top: bool = True) -> bool:
    """True if the documented rules accept *value* (JSON data without NaN or infinities,
    or bytes at the top)."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return INT_MIN <= value <= UINT_MAX
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bytes):
        return top
    if isinstance(value, (list, tuple)):
        return all(storable(v, False) for v in value)
    if isinstance(value, dict):
        return all(_text(k) and storable(v, False) for k, v in value.items())
    return False


def normal(value: Any) -> Any:
    """What a read returns for a storable *value*: tuples come back as lists."""
    if isinstance(value, (list, tuple)):
        return [normal(v) for v in value]
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items()}
    return value


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types, order of keys and sign of zero."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def valid_key(key: Any) -> bool:
    return _text(key) and key != ""


def valid_namespace(ns: Any) -> bool:
    if not isinstance(ns, (tuple, list)) or not ns:
        return False
    ok = all(_text(x) and x and not (set(x) & SEP_CONTROL) for x in ns)
    return ok and ns[0] != "tieredmem"


def ttl_seconds(ttl: Any) -> float | bool | None:
    """Seconds of a valid ttl, None for no ttl, False for an invalid one."""
    if ttl is None:
        return None
    if isinstance(ttl, timedelta):
        s = ttl.total_seconds()
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        try:
            s = float(ttl)
        except OverflowError:
            return False
    else:
        return False
    return s if math.isfinite(s) and 0 < s <= MAX_TTL else False


def snapshot(store: tieredmem.Store) -> list[tuple[Any, ...]]:
    return [(i.namespace, i.key, i.value, i.expires_at) for i in store.search((), limit=10**9)]


# -- properties --------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Any:
    if request.param == "sqlite":
        url = str(tmp_path / "p.db")
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        url = server.url(f"prop{uuid.uuid4().hex[:8]}:")
    with tieredmem.open(url, clock=clock, maintenance_interval=0) as s:
        yield s


def test_put_round_trips_or_raises_typed_leaving_the_store_unchanged(
    store: tieredmem.Store, clock: FakeClock, stress: bool
) -> None:
    @_examples(stress)
    @given(ns=namespaces, key=keys, value=values, ttl=ttls)
    def check(ns: Any, key: Any, value: Any, ttl: Any) -> None:
        before = snapshot(store)
        seconds = ttl_seconds(ttl)
        ok = valid_namespace(ns) and valid_key(key) and storable(value) and seconds is not False
        try:
            store.put(ns, key, value, ttl=ttl)
        except TieredMemError:
            assert not ok, f"refused a valid put: {ns!r} {key!r} {value!r} ttl={ttl!r}"
            assert snapshot(store) == before
            return
        assert ok, f"accepted an invalid put: {ns!r} {key!r} {value!r} ttl={ttl!r}"
        item = store.get(ns, key)
        if seconds is None or seconds >= 1:  # a tiny ttl may already have expired
            assert item is not None
            assert same(item.value, normal(value)), (item.value, value)
            assert item.namespace == tuple(ns) and item.key == key
            assert item.expires_at == (None if seconds is None else clock() + seconds)
        store.delete(ns, key)

    check()


def test_valid_input_always_round_trips_exactly(
    store: tieredmem.Store, clock: FakeClock, stress: bool
) -> None:
    valid_ns = st.lists(words, min_size=1, max_size=3).map(tuple)
    valid_ttl = st.one_of(
        st.none(),
        st.floats(1, MAX_TTL),
        st.timedeltas(timedelta(seconds=1), timedelta(seconds=MAX_TTL)),
    )

    @_examples(stress)
    @given(ns=valid_ns, key=words, value=st.one_of(json_values, st.binary()), ttl=valid_ttl)
    def check(ns: Any, key: str, value: Any, ttl: Any) -> None:
        if ns[0] == "tieredmem" or (set("".join(ns)) & SEP_CONTROL):
            return
        store.put(ns, key, value, ttl=ttl)
        item = store.get(ns, key)
        assert item is not None and same(item.value, normal(value)), (value, item)
        (found,) = [i for i in store.search(ns, limit=10**6) if (i.namespace, i.key) == (ns, key)]
        assert same(found.value, normal(value))

    check()


def test_reads_with_bad_input_raise_typed_errors(store: tieredmem.Store, stress: bool) -> None:
    store.put(("p",), "a", {"age": 30, "lang": "fr", "tags": ["x"], "d": {"k": 1}})
    store.put(("p",), "b", {"age": 12.5, "lang": "en", "d": None})
    store.put(("p",), "c", [1, 2])

    @_examples(stress)
    @given(
        ns=namespaces,
        key=keys,
        flt=filters,
        limit=st.one_of(st.integers(-3, 5), st.none(), st.floats()),
        offset=st.one_of(st.integers(-3, 5), st.sampled_from(["1", None])),
        query=st.one_of(st.none(), texts, st.integers()),
    )
    def check(ns: Any, key: Any, flt: Any, limit: Any, offset: Any, query: Any) -> None:
        before = snapshot(store)
        for call in (
            lambda: store.get(ns, key),
            lambda: store.delete(ns, key) if not valid_namespace(ns) else None,
            lambda: store.search(ns if isinstance(ns, tuple) else ("p",), filter=flt),
            lambda: store.search(("p",), filter=flt, limit=limit, offset=offset, query=query),
            lambda: store.list_namespaces(prefix=ns, max_depth=limit, limit=5, offset=offset),
            lambda: store.list_namespaces(suffix=ns, limit=limit),
        ):
            try:
                got = call()
            except TieredMemError:
                continue
            if isinstance(got, list):
                for item in got:
                    assert isinstance(item, (tieredmem.Item, tuple))
        assert snapshot(store) == before

    check()


def test_history_and_state_round_trip_or_raise_typed(tmp_path: Path, stress: bool) -> None:
    path = str(tmp_path / "m.db")
    with (
        tieredmem.MemorySaver(path=path, maintenance_interval=0) as memory,
        tieredmem.MemorySaver(path=path, maintenance_interval=0) as reader,
    ):
        history = memory.history("h")
        state = memory.state("s")

        @_examples(stress)
        @given(value=values, key=texts)
        def check(value: Any, key: str) -> None:
            ok = storable(value, top=False)  # history items and state values are JSON
            n = len(history)
            try:
                history.append(value)
            except TieredMemError:
                assert not ok, value
                assert len(history) == n and len(reader.history("h")) == n
            else:
                assert ok, value
                assert same(history[-1], normal(value))
                assert same(reader.history("h")[-1], normal(value))

            committed = dict(reader.state("s"))
            try:
                state[key] = value
                state.commit()
            except TieredMemError:
                assert not (ok and _text(key)), (key, value)
                assert dict(reader.state("s")) == committed
                if key in state:  # drop the change that cannot be stored
                    del state[key]
                if key in committed:
                    state[key] = committed[key]
            else:
                assert ok and _text(key), (key, value)
                assert same(reader.state("s")[key], normal(value))

        check()

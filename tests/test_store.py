from __future__ import annotations

import os
import threading
from datetime import timedelta
from pathlib import Path

import pytest

import tieredmem
from tieredmem import (
    InvalidKeyError,
    InvalidNamespaceError,
    SerializationError,
    StoreClosedError,
    UnsupportedURLError,
    ValueTooLargeError,
)
from tieredmem.backends._schema import FORMAT_VERSION

from .conftest import FakeClock

NS = ("users", "alice")


def test_put_get_delete(store: tieredmem.Store) -> None:
    assert store.get(NS, "prefs") is None
    store.put(NS, "prefs", {"lang": "fr"})
    item = store.get(NS, "prefs")
    assert item is not None
    assert (item.namespace, item.key, item.value) == (NS, "prefs", {"lang": "fr"})
    store.delete(NS, "prefs")
    assert store.get(NS, "prefs") is None
    store.delete(NS, "never-existed")


def test_scalars_bytes_and_lists(store: tieredmem.Store) -> None:
    values = {
        "s": "text",
        "i": 42,
        "f": 1.5,
        "b": True,
        "n": None,
        "raw": b"\x00\x01",
        "l": [1, "a"],
    }
    for key, value in values.items():
        store.put(("t",), key, value)
    for key, value in values.items():
        item = store.get(("t",), key)
        assert item is not None and item.value == value, key


def test_created_at_survives_updates(store: tieredmem.Store, clock: FakeClock) -> None:
    store.put(NS, "k", 1)
    first = store.get(NS, "k")
    clock.tick(10)
    store.put(NS, "k", 2)
    second = store.get(NS, "k")
    assert first is not None and second is not None
    assert second.created_at == first.created_at
    assert (second.updated_at - first.updated_at).total_seconds() == pytest.approx(10)
    store.flush()
    third = store.get(NS, "k")
    assert third is not None and third.created_at == first.created_at


def test_returned_values_can_be_mutated(store: tieredmem.Store) -> None:
    store.put(NS, "k", {"list": [1, 2], "nested": {"a": 1}})
    item = store.get(NS, "k")
    assert item is not None
    item.value["list"].append(3)
    item.value["nested"]["a"] = 99
    again = store.get(NS, "k")
    assert again is not None and again.value == {"list": [1, 2], "nested": {"a": 1}}


def test_mutating_the_written_object_changes_nothing(store: tieredmem.Store) -> None:
    value = {"list": [1]}
    store.put(NS, "k", value)
    value["list"].append(2)
    item = store.get(NS, "k")
    assert item is not None and item.value == {"list": [1]}


@pytest.mark.parametrize(
    "namespace", [(), "users", ("",), ("a", ""), ("a", 1), ("a\x1fb",), ("tieredmem",), None, [[]]]
)
def test_bad_namespaces_raise_typed_error(store: tieredmem.Store, namespace: object) -> None:
    with pytest.raises(InvalidNamespaceError):
        store.put(namespace, "k", 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidNamespaceError):
        store.get(namespace, "k")  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["", None, 5, b"k"])
def test_bad_keys_raise_typed_error(store: tieredmem.Store, key: object) -> None:
    with pytest.raises(InvalidKeyError):
        store.put(NS, key, 1)  # type: ignore[arg-type]


def test_list_namespace_accepted(store: tieredmem.Store) -> None:
    store.put(["users", "alice"], "k", 1)  # type: ignore[arg-type]
    assert store.get(NS, "k") is not None


def test_unsupported_value_leaves_store_intact(store: tieredmem.Store) -> None:
    store.put(NS, "k", {"ok": 1})
    with pytest.raises(SerializationError, match=r"'k'.*set"):
        store.put(NS, "k", {1, 2})
    with pytest.raises(SerializationError):
        store.put_many([(NS, "a", 1), (NS, "b", object())])
    item = store.get(NS, "k")
    assert item is not None and item.value == {"ok": 1}
    assert store.get(NS, "a") is None


def test_value_too_large(tmp_path) -> None:
    with tieredmem.open(str(tmp_path / "s.db"), max_value_bytes=1000) as store:
        with pytest.raises(ValueTooLargeError):
            store.put(NS, "k", os.urandom(5000))
        assert store.get(NS, "k") is None


def test_put_many_get_many(store: tieredmem.Store) -> None:
    store.put_many([(NS, f"k{i}", i) for i in range(50)])
    items = store.get_many([(NS, f"k{i}") for i in range(55)])
    assert [i.value if i else None for i in items] == list(range(50)) + [None] * 5


def test_transaction_commits_together(store: tieredmem.Store) -> None:
    with store.transaction():
        store.put(NS, "a", 1)
        store.put(NS, "b", 2)
        item = store.get(NS, "a")  # reads see the block's own writes
        assert item is not None and item.value == 1
        store.delete(NS, "b")
        assert store.get(NS, "b") is None
    assert store.get(NS, "a") is not None and store.get(NS, "b") is None


def test_transaction_rolls_back(store: tieredmem.Store) -> None:
    store.put(NS, "a", "before")
    with pytest.raises(RuntimeError), store.transaction():
        store.put(NS, "a", "during")
        store.put(NS, "b", 2)
        raise RuntimeError("boom")
    item = store.get(NS, "a")
    assert item is not None and item.value == "before"
    assert store.get(NS, "b") is None


def test_nested_transaction_rolls_back_to_its_start(store: tieredmem.Store) -> None:
    with store.transaction():
        store.put(NS, "outer", 1)
        with pytest.raises(KeyError), store.transaction():
            store.put(NS, "inner", 2)
            raise KeyError("x")
    assert store.get(NS, "outer") is not None
    assert store.get(NS, "inner") is None


def test_ttl_with_injected_clock(store: tieredmem.Store, clock: FakeClock) -> None:
    store.put(NS, "short", 1, ttl=10)
    store.put(NS, "td", 1, ttl=timedelta(minutes=1))
    store.put(NS, "forever", 1)
    clock.tick(9)
    assert store.get(NS, "short") is not None
    clock.tick(2)
    assert store.get(NS, "short") is None
    assert store.get(NS, "td") is not None
    assert [i.key for i in store.search(NS)] == ["forever", "td"]
    clock.tick(60)
    assert store.get(NS, "td") is None
    report = store.maintain()
    assert report["expired"] == 2
    assert store.stats().cold_rows == 1


@pytest.mark.parametrize("ttl", [0, -1, "10", True])
def test_bad_ttl(store: tieredmem.Store, ttl: object) -> None:
    with pytest.raises(ValueError):
        store.put(NS, "k", 1, ttl=ttl)  # type: ignore[arg-type]


def test_search_filter(store: tieredmem.Store) -> None:
    store.put(("users", "a"), "p", {"lang": "fr", "age": 30, "meta": {"tier": "gold"}})
    store.put(("users", "b"), "p", {"lang": "en", "age": 17, "meta": {"tier": "free"}})
    store.put(("users", "c"), "p", {"lang": "fr", "age": 50})
    store.put(("other",), "p", {"lang": "fr", "age": 99})

    def keys(**kw):  # type: ignore[no-untyped-def]
        return [i.namespace[-1] for i in store.search(("users",), **kw)]

    assert keys(filter={"lang": "fr"}) == ["a", "c"]
    assert keys(filter={"age": {"$gt": 20, "$lt": 40}}) == ["a"]
    assert keys(filter={"age": {"$gte": 50}}) == ["c"]
    assert keys(filter={"age": {"$lte": 17}}) == ["b"]
    assert keys(filter={"lang": {"$ne": "fr"}}) == ["b"]
    assert keys(filter={"lang": {"$eq": "en"}}) == ["b"]
    assert keys(filter={"meta.tier": "gold"}) == ["a"]
    assert keys(filter={"age": {"$gt": "text"}}) == []
    assert keys(limit=2) == ["a", "b"]
    assert keys(limit=2, offset=2) == ["c"]
    assert len(store.search((), filter={"lang": "fr"})) == 3
    with pytest.raises(ValueError, match="unknown filter operator"):
        store.search(("users",), filter={"age": {"$regex": "x"}})


def test_search_query_ranks_best_first(store: tieredmem.Store) -> None:
    store.put(("docs",), "1", {"text": "the cat sat on the mat"})
    store.put(("docs",), "2", {"text": "cat cat cat: a story about a cat", "tags": ["cat"]})
    store.put(("docs",), "3", {"text": "dogs only"})
    store.put(("docs",), "4", "a plain string about a cat")
    hits = store.search(("docs",), query="cat")
    assert hits[0].key == "2"
    assert {h.key for h in hits} == {"1", "2", "4"}
    assert all(h.score is not None for h in hits)
    assert hits[0].score >= hits[-1].score  # type: ignore[operator]
    assert store.search(("docs",), query="cat", filter={"text": "dogs only"}) == []
    # Updates and deletes reach the index.
    store.put(("docs",), "3", {"text": "now a cat too"})
    store.delete(("docs",), "4")
    assert {h.key for h in store.search(("docs",), query="cat")} == {"1", "2", "3"}
    # Query syntax characters are words, not FTS5 operators.
    assert store.search(("docs",), query='cat" OR NOT (') != []
    assert store.search(("docs",), query="   ") == []


def test_list_namespaces(store: tieredmem.Store) -> None:
    for ns in [("a", "x", "1"), ("a", "x", "2"), ("a", "y"), ("b",), ("b", "z", "1")]:
        store.put(ns, "k", 1)
    assert store.list_namespaces() == [
        ("a", "x", "1"),
        ("a", "x", "2"),
        ("a", "y"),
        ("b",),
        ("b", "z", "1"),
    ]
    assert store.list_namespaces(prefix=("a",)) == [("a", "x", "1"), ("a", "x", "2"), ("a", "y")]
    assert store.list_namespaces(prefix=("a", "*", "2")) == [("a", "x", "2")]
    assert store.list_namespaces(suffix=("1",)) == [("a", "x", "1"), ("b", "z", "1")]
    assert store.list_namespaces(max_depth=1) == [("a",), ("b",)]
    assert store.list_namespaces(prefix=("a",), max_depth=2) == [("a", "x"), ("a", "y")]
    assert store.list_namespaces(limit=2, offset=1) == [("a", "x", "2"), ("a", "y")]
    # A read miss never creates a namespace.
    store.get(("ghost",), "k")
    store.search(("ghost2",))
    assert ("ghost",) not in store.list_namespaces()
    # A prefix that is a string prefix of a label does not match.
    assert store.list_namespaces(prefix=("b", "z")) == [("b", "z", "1")]
    assert store.list_namespaces(prefix=("bb",)) == []


def test_closed_store(tmp_path) -> None:
    store = tieredmem.open(str(tmp_path / "s.db"))
    store.put(NS, "k", 1)
    store.close()
    store.close()  # idempotent
    for call in (
        lambda: store.get(NS, "k"),
        lambda: store.put(NS, "k", 2),
        lambda: store.search(NS),
        lambda: store.stats(),
    ):
        with pytest.raises(StoreClosedError, match="closed"):
            call()
    with tieredmem.open(str(tmp_path / "s.db")) as again:
        item = again.get(NS, "k")
        assert item is not None and item.value == 1


def test_unknown_url_scheme_lists_supported() -> None:
    with pytest.raises(UnsupportedURLError, match="sqlite://"):
        tieredmem.open("nosuch://host/db")


def test_sqlite_url(tmp_path) -> None:
    path = tmp_path / "u.db"
    with tieredmem.open(f"sqlite:///{path}") as store:
        store.put(NS, "k", 1)
    assert path.exists()
    with tieredmem.open(str(path)) as store:
        assert store.get(NS, "k") is not None


def test_stats_counts_hits_misses_spills_loads(tmp_path) -> None:
    with tieredmem.open(str(tmp_path / "s.db"), hot_bytes="8KiB", maintenance_interval=0) as store:
        for i in range(100):
            store.put(NS, f"k{i}", {"payload": "x" * 100, "i": i})
        store.get(NS, "k99")
        for i in range(100):
            store.get(NS, f"k{i}")
        st = store.stats()
        assert st.hits >= 1 and st.misses >= 50 and st.loads >= 50 and st.spills > 0
        assert st.hot_bytes <= 8 * 1024 and st.hot_items < 100
        assert st.cold_rows == 100 and st.cold_bytes > 0
        assert 0 < st.hit_rate < 1
        assert st.as_dict()["hit_rate"] == st.hit_rate


def test_maintain_returns_space(tmp_path) -> None:
    with tieredmem.open(str(tmp_path / "s.db"), maintenance_interval=0) as store:
        import os

        store.put_many([(NS, f"k{i}", os.urandom(2000)) for i in range(500)])
        store.backend.checkpoint()  # type: ignore[attr-defined]
        size_full = os.path.getsize(tmp_path / "s.db")
        store.delete_many([(NS, f"k{i}") for i in range(500)])
        report = store.maintain()
        store.backend.checkpoint()  # type: ignore[attr-defined]
        assert report["vacuumed_bytes"] > 500_000
        assert os.path.getsize(tmp_path / "s.db") < size_full / 4


def test_batch_mode_flushes_on_interval_flush_and_close(tmp_path) -> None:
    path = str(tmp_path / "b.db")
    store = tieredmem.open(path, durability="batch", flush_interval=3600)
    store.put(NS, "k", 1)
    assert store.stats().pending_writes == 1
    other = tieredmem.open(path)
    assert other.get(NS, "k") is None  # not committed yet: the documented loss window
    store.flush()
    assert other.get(NS, "k") is not None
    store.put(NS, "k2", 2)
    store.close()
    assert other.get(NS, "k2") is not None
    other.close()


def test_batch_mode_background_flush(tmp_path) -> None:
    import time

    path = str(tmp_path / "b.db")
    with tieredmem.open(path, durability="batch", flush_interval=0.05) as store:
        store.put(NS, "k", 1)
        with tieredmem.open(path) as other:
            deadline = time.time() + 5
            while other.get(NS, "k") is None and time.time() < deadline:
                time.sleep(0.02)
            assert other.get(NS, "k") is not None


def test_threads_share_a_store(tmp_path) -> None:
    errors: list[BaseException] = []
    with tieredmem.open(str(tmp_path / "s.db"), hot_bytes="64KiB") as store:

        def work(n: int) -> None:
            try:
                for i in range(300):
                    store.put(("t", str(n)), f"k{i}", {"i": i, "n": n})
                    item = store.get(("t", str(n)), f"k{i // 2}")
                    assert item is not None and item.value["n"] == n
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert store.stats().cold_rows == 8 * 300


def test_contains(store: tieredmem.Store) -> None:
    store.put(NS, "k", 0)
    assert (NS, "k") in store
    assert (NS, "nope") not in store


def test_lookups_of_absent_keys_do_not_evict_real_data(tmp_path) -> None:
    with tieredmem.open(str(tmp_path / "m.db"), hot_bytes="256KiB", maintenance_interval=0) as s:
        s.put_many([(NS, f"k{i}", {"i": i, "pad": "x" * 500}) for i in range(100)])
        for i in range(100):
            s.get(NS, f"k{i}")
        hot_before = s.stats().hot_items
        for i in range(20_000):
            assert s.get(NS, f"absent-{i}") is None
        st = s.stats()
        assert st.hot_items >= hot_before  # the 100 real items are all still hot
        loads = st.loads
        for i in range(100):
            s.get(NS, f"k{i}")
        assert s.stats().loads == loads


def test_refresh_ttl_on_read(store: tieredmem.Store, clock: FakeClock) -> None:
    store.put(NS, "session", {"v": 1}, ttl=60)
    store.put(NS, "plain", {"v": 2})
    clock.tick(50)
    item = store.get(NS, "session", refresh_ttl=True)  # lives another 60 s from now
    assert item is not None
    clock.tick(50)
    assert store.get(NS, "session") is not None  # 100 s after the put
    store.search(NS, refresh_ttl=True)
    clock.tick(59)
    assert store.get(NS, "session") is not None
    clock.tick(2)
    assert store.get(NS, "session") is None
    assert store.get(NS, "plain", refresh_ttl=True) is not None


def test_metrics_hook_receives_events(tmp_path) -> None:
    events: list[dict] = []

    def hook(event: dict) -> None:
        events.append(event)
        raise RuntimeError("a broken hook must not break the store")

    path = str(tmp_path / "m.db")
    with tieredmem.open(path, hot_bytes="64KiB", durability="batch", metrics=hook) as s:
        s.put_many([(NS, f"k{i}", {"pad": "x" * 400, "i": i}) for i in range(300)])
        s.flush()
    with tieredmem.open(path, hot_bytes="16KiB", metrics=hook, maintenance_interval=0) as s:
        for i in range(300):
            assert s.get(NS, f"k{i}") is not None
        s.maintain()
    kinds = {e["event"] for e in events}
    assert {"flush", "load", "spill", "maintain"} <= kinds
    load = next(e for e in events if e["event"] == "load")
    assert load["bytes"] > 0 and load["seconds"] >= 0
    flush = next(e for e in events if e["event"] == "flush")
    assert flush["rows"] == 300


def test_text_search_is_narrowed_to_the_namespace_prefix(store: tieredmem.Store) -> None:
    for ns in [("users", "a"), ("users", "a-b"), ("users", "ab"), ("users", "a", "x"), ("--",)]:
        store.put(ns, "k", {"text": "shared word"})
    found = {i.namespace for i in store.search(("users", "a"), query="word")}
    assert found == {("users", "a"), ("users", "a", "x")}
    assert {i.namespace for i in store.search(("--",), query="word")} == {("--",)}
    assert len(store.search((), query="word")) == 5


def _message(i: int) -> dict[str, object]:
    words = ["the", "user", "asked", "the", "agent", "to", "plan", "a", "trip", "to", "lyon"]
    return {"role": "user", "n": i, "text": " ".join(words[(i + j) % 11] for j in range(80))}


def _wait_for_dictionary(store: tieredmem.Store) -> int:
    import time

    deadline = time.monotonic() + 30
    while store.codec.dictionary_id is None:
        assert time.monotonic() < deadline, "no zstd dictionary was trained"
        time.sleep(0.01)
    return store.codec.dictionary_id


@pytest.mark.parametrize("durability", ["sync", "batch"])
def test_store_trains_a_dictionary_that_every_process_reads(
    tmp_path: Path, durability: str
) -> None:
    path = str(tmp_path / "d.db")
    early = tieredmem.open(path, maintenance_interval=0)  # opened before any dictionary
    with tieredmem.open(path, durability=durability, maintenance_interval=0) as store:
        for i in range(3000):
            store.put(("chat",), f"m{i}", _message(i))
            if i % 500 == 0:
                store.flush()
        store.flush()
        dict_id = _wait_for_dictionary(store)
        for i in range(3000, 3100):
            store.put(("chat",), f"m{i}", _message(i))
        store.flush()
        frame = store.backend.get("chat", "m3050").frame  # type: ignore[union-attr]
        assert frame[0] & 0x30 == 0x20 and int.from_bytes(frame[1:5], "little") == dict_id
    # The early store learns the dictionary from the file when a frame needs it.
    assert early.get(("chat",), "m3050").value == _message(3050)  # type: ignore[union-attr]
    early.close()
    with tieredmem.open(path, maintenance_interval=0) as again:
        assert again.codec.dictionary_id == dict_id
        assert all(
            again.get(("chat",), f"m{i}").value == _message(i)  # type: ignore[union-attr]
            for i in range(0, 3100, 7)
        )


def test_format_1_file_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    import apsw

    path = str(tmp_path / "v1.db")
    with tieredmem.open(path) as store:
        store.put(("a",), "k", {"v": 1})
    con = apsw.Connection(path)
    con.execute("DROP TABLE zstd_dicts")
    con.execute("DROP TRIGGER items_count_insert; DROP TRIGGER items_count_delete")
    con.execute("DROP TABLE counts; DROP TABLE fields")  # format 3
    con.pragma("user_version", 1)
    con.pragma("wal_checkpoint", "TRUNCATE")
    con.close()
    with tieredmem.open(path) as store:
        assert store.get(("a",), "k").value == {"v": 1}  # type: ignore[union-attr]
        assert store.backend.dictionaries() == {}  # type: ignore[attr-defined]
    con = apsw.Connection(path)
    assert con.pragma("user_version") == FORMAT_VERSION
    assert next(con.execute("SELECT n FROM counts"))[0] == 1
    con.close()


@pytest.mark.parametrize("durability", ["sync", "batch"])
def test_internal_writes_that_skip_the_hot_tier(tmp_path, durability) -> None:
    with tieredmem.open(str(tmp_path / "s.db"), durability=durability, maintenance_interval=0) as s:
        ns = s.raw.internal_ns("t")
        s.raw.write([(ns, "a", b"1"), (ns, "b", b"2")], cache_puts=False)
        assert s.raw.read_values(ns, ["a", "b", "zz"], cache=False) == [b"1", b"2", None]
        s.flush()
        assert s.stats().hot_items == 0  # not cached, even after the batch commits
        assert s.raw.read_values(ns, ["a", "b"]) == [b"1", b"2"] and s.stats().hot_items == 2
        s.raw.write([(ns, "c", b"3")], cache_puts=False)
        s.raw.write(deletes=[(ns, "c"), (ns, "a")], tombstones=False)
        assert s.raw.read_values(ns, ["a", "b", "c"]) == [None, b"2", None]
        s.raw.write(ranges=[(ns, "b", "c")])
        assert s.raw.read_values(ns, ["b"]) == [None]
        with s.transaction():
            s.raw.write([(ns, "d", b"4")])
            assert s.raw.in_transaction() and s.raw.read_values(ns, ["d"]) == [b"4"]
    with tieredmem.open(str(tmp_path / "s.db")) as s:
        assert s.raw.keys(ns) == ["d"]


def test_deletes_do_not_fill_the_hot_tier_with_tombstones(tmp_path: Path) -> None:
    """Retention deletes thousands of rows; remembering each as absent must stay within the
    misses' share of the budget, so the data being read stays hot."""
    with tieredmem.open(str(tmp_path / "t.db"), hot_bytes="256KiB", maintenance_interval=0) as s:
        s.put_many([(("old",), f"o{i}", i) for i in range(3000)])
        s.put_many([(("live",), f"k{i}", {"i": i, "pad": "x" * 200}) for i in range(50)])
        for i in range(50):
            assert s.get(("live",), f"k{i}") is not None
        loads = s.stats().loads
        for i in range(3000):
            s.delete(("old",), f"o{i}")
        assert s._engine._hot.miss_bytes <= s._engine._hot.maxsize // s._engine._hot.MISS_SHARE
        for i in range(50):
            assert s.get(("live",), f"k{i}").value["i"] == i  # type: ignore[union-attr]
        assert s.stats().loads == loads  # still hot: nothing was read back from the file
        assert s.get(("old",), "o7") is None


@pytest.mark.parametrize("durability", ["sync", "batch"])
def test_write_row_is_a_plain_uncached_write(tmp_path, durability: str) -> None:
    with tieredmem.open(
        str(tmp_path / "rows.db"), durability=durability, maintenance_interval=0
    ) as store:
        ns = store.raw.internal_ns("rows")
        store.raw.write_row(ns, "a", b"one")
        store.flush()
        assert store.stats().writes == 1 and store.stats().hot_items == 0
        with store.transaction():
            store.raw.write_row(ns, "b", b"two")
        store.flush()
        assert store.raw.read_values(ns, ["a", "b", "c"], cache=False) == [b"one", b"two", None]
        assert store.stats().writes == 2
        with pytest.raises(RuntimeError), store.transaction():
            store.raw.write_row(ns, "c", b"three")
            raise RuntimeError
        assert store.raw.read_values(ns, ["c"]) == [None]
    with pytest.raises(tieredmem.StoreClosedError):
        store.raw.write_row(ns, "d", b"four")


def test_hot_reads_do_not_wait_for_the_store_lock(tmp_path: Path) -> None:
    # get and get_many of hot keys (present, absent or expired) answer while another
    # thread holds the store's lock, as a writer does while it updates the hot tier.
    clock = FakeClock()
    with tieredmem.open(str(tmp_path / "s.db"), clock=clock) as store:
        store.put_many([(("a",), f"k{i}", {"i": i}) for i in range(5)])
        store.put(("a",), "short", 1, ttl=10)
        keys = [(("a",), f"k{i}") for i in range(5)] + [(("a",), "gone"), (("a",), "short")]
        store.get_many(keys)  # the absent key's absence is now cached too
        clock.tick(11)
        answers: list[object] = []

        def read() -> None:
            answers.append([i.value if i else None for i in store.get_many(keys)])
            answers.append(store.get(("a",), "k3"))

        with store._engine._lock:
            reader = threading.Thread(target=read)
            reader.start()
            reader.join(timeout=5)
            waited = reader.is_alive()
        reader.join()
        assert not waited
        assert answers[0] == [{"i": i} for i in range(5)] + [None, None]
        assert answers[1] is not None and answers[1].value == {"i": 3}


def test_get_many_checks_coherence_once(tmp_path: Path) -> None:
    # Each coherence check is a round trip on Redis: a get_many of hot and cold keys
    # takes one, not one for its hot fast path and another for loading the rest.
    with tieredmem.open(str(tmp_path / "s.db"), hot_bytes="64KiB") as store:
        for i in range(200):
            store.put(("a",), f"k{i}", {"i": i, "pad": "x" * 500})  # early keys evicted
        backend = store.backend
        calls = []
        original = backend.foreign_change

        def counted() -> bool:
            calls.append(1)
            return original()

        backend.foreign_change = counted  # type: ignore[method-assign]
        items = store.get_many([(("a",), "k199"), (("a",), "k0"), (("a",), "k1")])
        assert [it.value["i"] for it in items if it] == [199, 0, 1]
        assert len(calls) == 1

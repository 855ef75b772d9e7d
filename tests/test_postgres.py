"""The PostgreSQL backend on a real server (tests/pg_server.py): coherence between clients
in both modes, a server killed mid-write, schema vetting, secrets, LangGraph's conformance
suite.  The backend conformance suite and the Store / TieredStore contracts run on it too
(tests/test_backend_conformance.py, the ``store`` fixtures)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import pytest

import tieredmem
from tieredmem.backends import open_backend
from tieredmem.backends._pg_schema import FORMAT_VERSION

from .pg_server import PgServer

psycopg = pytest.importorskip("psycopg")


def _sql(server: PgServer, sql: str, args: Any = None) -> list[Any]:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        cur = conn.execute(sql, args)
        return cur.fetchall() if cur.description else []


def test_two_clients_see_each_others_acknowledged_writes(pg_server: PgServer) -> None:
    url = pg_server.url()
    with tieredmem.open(url, hot_bytes="8MiB") as a, tieredmem.open(url, hot_bytes="8MiB") as b:
        a.put(("n",), "k", 0)
        assert b.get(("n",), "k").value == 0  # type: ignore[union-attr]
        for i in range(1, 30):
            writer, reader = (a, b) if i % 2 else (b, a)
            assert reader.get(("n",), "k").value == i - 1  # type: ignore[union-attr]  # hot
            writer.put(("n",), "k", i)
            assert reader.get(("n",), "k").value == i  # type: ignore[union-attr]
        b.delete(("n",), "k")
        assert a.get(("n",), "k") is None


def test_notify_mode_sees_writes_once_notified_and_within_its_bound(pg_server: PgServer) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    strict = pg_server.url(table_prefix=prefix)
    notify = pg_server.url(table_prefix=prefix, coherence="notify", notify_bound="0.5")
    with tieredmem.open(notify, hot_bytes="8MiB") as a, tieredmem.open(strict) as b:
        a.put(("n",), "k", "first")
        assert a.get(("n",), "k").value == "first"  # type: ignore[union-attr]
        b.put(("n",), "k", "second")  # notifies at commit
        deadline = time.monotonic() + 2
        while a.get(("n",), "k").value != "second":  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the notification never arrived"
            time.sleep(0.005)
        # A writer that sends no notification (plain SQL bumping the version) is seen
        # once the bound has passed: the full check runs at least that often.
        assert a.get(("n",), "k").value == "second"  # type: ignore[union-attr]
        _sql(pg_server, f'DELETE FROM "{prefix}items"')
        _sql(pg_server, f'UPDATE "{prefix}version" SET v = v + 1, vid = 7')
        time.sleep(0.6)
        assert a.get(("n",), "k") is None


def test_notify_mode_skips_the_round_trip_while_quiet(pg_server: PgServer) -> None:
    url = pg_server.url(coherence="notify", notify_bound="30")
    with tieredmem.open(url, hot_bytes="8MiB") as s:
        s.put(("n",), "k", 1)
        s.get(("n",), "k")
        calls: list[int] = []
        real = s.backend.foreign_change

        def counting() -> bool:
            calls.append(1)
            return real()

        s.backend.foreign_change = counting  # type: ignore[method-assign]
        for _ in range(100):
            assert s.get(("n",), "k").value == 1  # type: ignore[union-attr]
        assert len(calls) <= 1


def test_server_killed_mid_write_then_restarted(pg_server: PgServer, stress: bool) -> None:
    """A typed error while the server is down, then the same store works again; every
    acknowledged write is there after the crash recovery (five kills with --stress)."""
    for _ in range(5 if stress else 1):
        _kill_and_restart_under_writes(pg_server)


def _kill_and_restart_under_writes(pg_server: PgServer) -> None:
    url = pg_server.url(pool_timeout="2")
    acked: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    with tieredmem.open(url, hot_bytes=1) as s:

        def writer() -> None:
            i = 0
            while not stop.is_set():
                try:
                    with s.transaction():
                        s.put(("w",), f"{i:06d}", {"i": i, "pad": "x" * 200})
                        s.put(("w",), f"{i:06d}b", i)
                except tieredmem.TieredMemError as exc:
                    errors.append(exc)
                    time.sleep(0.05)
                else:
                    acked.append(i)
                i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            while len(acked) < 50:
                time.sleep(0.01)
            pg_server.kill()
            while not errors:
                time.sleep(0.01)
            down = len(acked)
            pg_server.start()
            deadline = time.monotonic() + 20
            while len(acked) < down + 50:
                assert time.monotonic() < deadline, errors[-1:]
                time.sleep(0.01)
        finally:
            stop.set()
            thread.join(30)
        assert all(isinstance(e, tieredmem.BackendUnavailableError) for e in errors), errors
        assert "not acknowledged" in str(errors[0])
        # Reads recover too, in the same store.
        assert s.get(("w",), f"{acked[-1]:06d}b").value == acked[-1]  # type: ignore[union-attr]
    with tieredmem.open(url) as fresh:
        stored = {i.key for i in fresh.search(("w",), limit=10**6)}
    lost = [i for i in acked if f"{i:06d}" not in stored or f"{i:06d}b" not in stored]
    assert lost == []


def test_foreign_tables_under_our_names_are_refused_untouched(pg_server: PgServer) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    _sql(pg_server, f'CREATE TABLE "{prefix}items" (id int)')
    with pytest.raises(tieredmem.NotAStoreError, match="not a tieredmem store"):
        tieredmem.open(pg_server.url(table_prefix=prefix))
    tables = _sql(
        pg_server, "SELECT tablename FROM pg_tables WHERE tablename LIKE %s", (prefix + "%",)
    )
    assert tables == [(prefix + "items",)]


def test_a_newer_schema_is_refused_untouched(pg_server: PgServer) -> None:
    url = pg_server.url()
    prefix = url.rsplit("table_prefix=", 1)[1]
    tieredmem.open(url).close()
    _sql(pg_server, f"UPDATE \"{prefix}meta\" SET value = '99' WHERE key = 'format_version'")
    with pytest.raises(tieredmem.SchemaVersionError, match="upgrade tieredmem"):
        tieredmem.open(url)
    assert _sql(
        pg_server, f'SELECT value FROM "{prefix}meta" WHERE key = %s', ("format_version",)
    ) == [("99",)]


def test_schema_parameter_and_concurrent_creators(pg_server: PgServer) -> None:
    schema = f"s{uuid.uuid4().hex[:8]}"
    url = pg_server.url(schema=schema, table_prefix="tm_")
    opened: list[Any] = []
    failures: list[BaseException] = []

    def create() -> None:
        try:
            opened.append(open_backend(url))
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    for b in opened:
        b.close()
    rows = _sql(
        pg_server, "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,)
    )
    assert rows == [("tm_dicts",), ("tm_items",), ("tm_meta",), ("tm_version",)]


def test_password_never_shown(pg_server: PgServer, caplog: pytest.LogCaptureFixture) -> None:
    secret = "S3cret-pw-" + uuid.uuid4().hex[:6]
    url = pg_server.url().replace("postgres@", f"postgres:{secret}@")
    caplog.set_level(logging.DEBUG)
    with tieredmem.open(url) as s:
        s.put(("a",), "k", 1)
        shown = [s.url, repr(s.backend), str(s.stats()), str(s.backend.stats())]
        assert ":***@" in s.url
    dead = f"postgresql://postgres:{secret}@127.0.0.1:1/postgres?pool_timeout=0.5"
    with pytest.raises(tieredmem.BackendUnavailableError) as info:
        tieredmem.open(dead)
    shown.append(str(info.value))
    shown += [r.getMessage() for r in caplog.records]
    assert not [text for text in shown if secret in text]


def test_no_prepared_statements_when_asked(pg_server: PgServer) -> None:
    """PgBouncer in transaction mode: ``?prepare_threshold=none`` prepares nothing."""
    from tieredmem.backends.postgres import PostgresBackend

    for query, expected in (("none", 0), ("0", None)):
        b = open_backend(pg_server.url(prepare_threshold=query, pool_max="2"))
        assert isinstance(b, PostgresBackend)
        try:
            b.write([])
            for _ in range(10):
                b.get("ns", "k")
            # The one public way to look at a connection of the pool: run a query on it.
            count = b.run_sql("SELECT count(*) FROM pg_prepared_statements")[0][0]
        finally:
            b.close()
        if expected is not None:
            assert count == expected
        else:
            assert count > 0


def test_text_search_is_ranked_and_uses_the_index(pg_server: PgServer) -> None:
    with tieredmem.open(pg_server.url()) as s:
        s.put(("d",), "once", {"text": "a cat sat"})
        s.put(("d",), "twice", {"text": "cat and cat"})
        s.put(("d",), "none", {"text": "a dog"})
        s.put(("e",), "other", {"text": "cat"})
        hits = s.search(("d",), query="cat")
        assert [i.key for i in hits] == ["twice", "once"]
        assert hits[0].score is not None and hits[0].score > hits[1].score  # type: ignore[operator]
        s.put(("d",), "once", {"text": "no feline"})  # re-indexed at the next search
        assert [i.key for i in s.search(("d",), query="cat")] == ["twice"]


def test_langgraph_conformance_on_postgres(pg_server: PgServer) -> None:
    pytest.importorskip("langgraph.checkpoint.conformance")
    import asyncio

    from langgraph.checkpoint.conformance import checkpointer_test, validate

    from tieredmem.langgraph import TieredSaver

    @checkpointer_test(name="TieredSaver(postgres)")
    async def factory() -> Any:
        store = tieredmem.open(pg_server.url())
        saver = TieredSaver(store)
        yield saver
        store.close()

    report = asyncio.run(validate(factory))
    failures = {k: r.failures for k, r in report.results.items() if r.passed is not True}
    assert not failures, failures
    assert report.conformance_level() == "FULL"


def test_cli_doctor_stats_inspect_on_a_postgres_url(pg_server: PgServer) -> None:
    import json

    from .test_cli import run

    secret = "Cli-pw-" + uuid.uuid4().hex[:6]
    url = pg_server.url().replace("postgres@", f"postgres:{secret}@")
    with tieredmem.MemorySaver(store=tieredmem.open(url)) as memory:
        memory.longterm.put(("users", "alice"), "prefs", {"lang": "fr"})
        memory.history("chat").extend({"i": i} for i in range(30))
    doctor = run("doctor", url, "--json")
    assert doctor.returncode == 0, doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["integrity"] == "ok" and report["format_version"] == FORMAT_VERSION
    assert report["pragma_coherence"] == "strict" and report["rows"] > 0
    stats = json.loads(run("stats", url, "--json").stdout)
    assert stats["histories"] == 1 and stats["user_namespaces"] == 1
    inspect = json.loads(run("inspect", url, "--history", "chat", "--json").stdout)
    assert inspect["last"] == {"i": 29}
    assert secret not in doctor.stdout + doctor.stderr


def test_a_store_used_in_a_forked_child(pg_server: PgServer) -> None:
    """A connection must not cross fork(): the child opens a pool of its own, and the
    parent's keeps working."""
    import multiprocessing

    url = pg_server.url()
    with tieredmem.open(url, hot_bytes="8MiB") as s:
        s.put(("f",), "parent", 1)
        assert s.get(("f",), "parent").value == 1  # type: ignore[union-attr]

        def child() -> None:
            assert s.get(("f",), "parent").value == 1  # type: ignore[union-attr]
            s.put(("f",), "child", 2)

        proc = multiprocessing.get_context("fork").Process(target=child)
        proc.start()
        proc.join(30)
        assert proc.exitcode == 0
        assert s.get(("f",), "child").value == 2  # type: ignore[union-attr]
        s.put(("f",), "parent", 3)
        assert s.get(("f",), "parent").value == 3  # type: ignore[union-attr]


VALUES: list[Any] = [
    {"kind": "a", "n": 1, "meta": {"tier": "gold"}},
    {"kind": "b", "n": 2.5, "meta": {"tier": "free"}},
    {"kind": "a", "n": True, "meta": None},
    {"kind": "a", "n": False},
    {"kind": ["a", "b"], "n": "3"},
    {"kind": None, "n": -7, "meta": {"tier": ["gold"]}},
    {"n": 0.1},
    {"kind": "c", "n": 2**60},
    ["kind", "a"],
    "a",
    7,
    None,
    b"raw bytes",
    {"kind": "nul\x00", "n": 1},
    {"kind": "a" * 400, "n": 3},  # compressed frame
]
FILTERS: list[dict[str, Any]] = [
    {"kind": "a"},
    {"kind": None},
    {"kind": {"$eq": "b"}},
    {"meta.tier": "gold"},
    {"n": {"$gte": 1}},
    {"n": {"$gt": 0.1}},
    {"n": {"$lt": 1}},
    {"n": {"$lte": 2.5, "$gt": -10}},
    {"n": {"$gte": 1}, "kind": "a"},
    {"n": {"$ne": 1}},
    {"n": 1},
    {"kind": "nul\x00"},
    {"n": {"$gt": 2**59}},
    {"kind": "a" * 400},
]


def test_filters_narrowed_in_sql_return_exactly_what_python_matches(pg_server: PgServer) -> None:
    from tieredmem.store import matches

    with tieredmem.open(pg_server.url(), hot_bytes=1) as s:
        for i, value in enumerate(VALUES):
            s.put(("v",), f"k{i:02d}", value)
        for f in FILTERS:
            expected = [f"k{i:02d}" for i, v in enumerate(VALUES) if matches(v, f)]
            assert [i.key for i in s.search(("v",), filter=f, limit=100)] == expected, f
        # The narrowing happens in SQL: a selective filter reads only its candidates.
        backend: Any = s.backend
        # (k12 holds bytes and k13 a NUL character: no jsonb, so kept for the test.)
        gold = backend.filter_scan("v", {"meta.tier": "gold"})
        assert [r.key for r in gold] == ["k00", "k12", "k13"]
        assert len(backend.filter_scan("v", {"n": {"$gte": 1}})) < len(VALUES)
        s.put(("v",), "k00", {"kind": "z"})  # a rewritten row is re-indexed before a search
        assert [i.key for i in s.search(("v",), filter={"kind": "z"})] == ["k00"]


def test_filters_narrowed_in_sql_agree_with_python_on_random_values(pg_server: PgServer) -> None:
    """Property: for random values and filters, the SQL narrowing never drops a match."""
    import os

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tieredmem.store import matches

    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(2**62), 2**62)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.sampled_from(["", "x", "y", "é"])
    )
    leaf = scalars | st.lists(scalars, max_size=2)
    values = st.dictionaries(
        st.sampled_from(["a", "b"]), leaf | st.dictionaries(st.sampled_from(["c"]), leaf)
    )
    # A range's operand is a number or a string (None is refused: InvalidFilterError).
    spec = (
        scalars
        | st.dictionaries(st.sampled_from(["$eq", "$ne"]), scalars, min_size=1)
        | st.dictionaries(
            st.sampled_from(["$gt", "$gte", "$lt", "$lte"]),
            scalars.filter(lambda v: v is not None),
            min_size=1,
        )
    )
    filters = st.dictionaries(st.sampled_from(["a", "b", "a.c"]), spec, min_size=1, max_size=2)
    examples = 200 if os.environ.get("TIEREDMEM_STRESS") else 25
    store = tieredmem.open(pg_server.url(), hot_bytes=1)

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(values, min_size=1, max_size=8), st.lists(filters, min_size=1, max_size=4))
    def check(vals: list[Any], fs: list[dict[str, Any]]) -> None:
        ns = ("p", uuid.uuid4().hex[:8])
        store.put_many([(ns, f"k{i}", v) for i, v in enumerate(vals)])
        for f in fs:
            expected = [f"k{i}" for i, v in enumerate(vals) if matches(v, f)]
            assert sorted(i.key for i in store.search(ns, filter=f, limit=100)) == sorted(expected)

    try:
        check()
    finally:
        store.close()


def test_nul_in_a_key_is_a_typed_error(pg_server: PgServer) -> None:
    with tieredmem.open(pg_server.url()) as s:
        with pytest.raises(tieredmem.InvalidKeyError, match="NUL"):
            s.put(("a",), "k\x00", 1)
        s.put(("a",), "k", "value with \x00 inside")  # values are bytes: fine
        assert s.get(("a",), "k").value == "value with \x00 inside"  # type: ignore[union-attr]
        assert [i.key for i in s.search(("a",), query="value")] == ["k"]


def _prefix(url: str) -> str:
    return url.rsplit("table_prefix=", 1)[1].split("&", 1)[0]


def test_row_count_stays_exact_through_every_kind_of_write(pg_server: PgServer) -> None:
    """stats().cold_rows is kept by the writes themselves (#16: no count(*)): exact
    through puts, overwrites, deletes, range deletes, expiry, large batches and two
    clients writing to the same rows."""
    url = pg_server.url()
    items = f'"{_prefix(url)}items"'
    now = [1000.0]

    def counted(store: tieredmem.Store) -> None:
        assert store.stats().cold_rows == _sql(pg_server, f"SELECT count(*) FROM {items}")[0][0]

    with (
        tieredmem.open(url, clock=lambda: now[0], maintenance_interval=0) as a,
        tieredmem.open(url) as b,
    ):
        a.put(("n",), "k1", 1)
        a.put(("n",), "k1", 2)  # overwrite: no new row
        b.put(("n",), "k1", 3)  # the other client overwrites it
        b.put(("n",), "k2", 1)
        counted(a)
        assert a.stats().cold_rows == 2
        a.put_many([(("m",), f"k{i}", i) for i in range(100)])  # one transaction, 100 rows
        b.put_many([(("m",), f"k{i}", -i) for i in range(50, 150)])  # half overwrites
        counted(b)
        with a.transaction():  # one row written twice and deleted in one batch
            a.put(("t",), "x", 1)
            a.put(("t",), "x", 2)
            a.put(("t",), "y", 1)
            a.delete(("t",), "y")
            a.delete(("n",), "nope")  # deleting nothing counts nothing
        a.delete(("n",), "k2")
        b.delete_many([(("m",), f"k{i}") for i in range(10)])
        counted(a)
        b.raw.write(ranges=[("m", "k2", "k4")])  # a range delete
        counted(a)
        a.put(("ttl",), "short", 1, ttl=10)
        a.put(("ttl",), "long", 1, ttl=100)
        now[0] += 50
        assert a.sweep() == 1  # expiry deletes are counted too
        counted(b)
        left = len(b.search(("m",), limit=1000))
        before = a.stats().cold_rows
        a.raw.write(ranges=[("m", "", None)])  # a whole namespace
        assert a.stats().cold_rows == before - left
        counted(a)

        # Both clients racing on the same new keys: each row is added once, whoever
        # inserts it first (the other's put overwrites), and deleted once.
        def race(store: tieredmem.Store, seed: int) -> None:
            import random

            keys = [f"r{i}" for i in range(200)]
            random.Random(seed).shuffle(keys)
            for i, key in enumerate(keys):
                store.put(("race",), key, seed)
                if i % 3 == 0:
                    store.delete(("race",), keys[i // 2])

        threads = [threading.Thread(target=race, args=(c, n)) for n, c in enumerate((a, b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        counted(a)
        counted(b)


def test_stats_reads_no_item_row(pg_server: PgServer) -> None:
    """stats() costs the same at any size (#16): it reads the kept count, never the items
    table.  Checked by a client whose role may not read the items table at all."""
    url = pg_server.url()
    prefix = _prefix(url)
    role = f"r{uuid.uuid4().hex[:8]}"
    with tieredmem.open(url) as s:
        s.put_many([(("a",), f"k{i}", i) for i in range(300)])
        s.delete(("a",), "k0")
    _sql(pg_server, f'CREATE ROLE "{role}" LOGIN')
    for table in ("meta", "version", "dicts"):
        _sql(pg_server, f'GRANT SELECT ON "{prefix}{table}" TO "{role}"')
    limited = url.replace("postgres@", f"{role}@")
    with tieredmem.open(limited, maintenance_interval=0) as s:
        assert s.stats().cold_rows == 299
        with pytest.raises(tieredmem.TieredMemError, match="permission denied"):
            s.get(("a",), "k1")  # the role really cannot read items


def test_format_1_store_is_upgraded_and_counted_once(pg_server: PgServer) -> None:
    url = pg_server.url()
    prefix = _prefix(url)
    with tieredmem.open(url) as s:
        s.put_many([(("a",), f"k{i}", i) for i in range(40)])
    # Back to format 1 as the previous release wrote it: no kept count.
    _sql(pg_server, f'ALTER TABLE "{prefix}version" DROP COLUMN n')
    _sql(pg_server, f"UPDATE \"{prefix}meta\" SET value = '1' WHERE key = 'format_version'")
    with tieredmem.open(url) as s:
        assert s.stats().cold_rows == 40
        s.put(("a",), "new", 1)
        assert s.stats().cold_rows == 41
    assert _sql(pg_server, f"SELECT value FROM \"{prefix}meta\" WHERE key = 'format_version'") == [
        ("2",)
    ]


def _our_tables(server: PgServer, schema: str, prefix: str) -> list[Any]:
    return _sql(
        server,
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema = %s AND table_name LIKE %s",
        (schema, prefix.replace("_", r"\_") + "%"),
    )


def test_cli_read_commands_never_create_a_store(pg_server: PgServer, tmp_path: Any) -> None:
    """stats, inspect, doctor and export on a database (or schema, or prefix) without a
    store: exit 2, one line, and nothing created (#14's rule for read commands)."""
    from .test_cli import run

    secret = "Ro-pw-" + uuid.uuid4().hex[:6]
    schema = f"s{uuid.uuid4().hex[:8]}"
    for url in (pg_server.url(), pg_server.url(schema=schema)):
        url = url.replace("postgres@", f"postgres:{secret}@")
        prefix = _prefix(url)
        for command in (
            ("stats", url),
            ("inspect", url),
            ("inspect", url, "--history", "chat"),
            ("doctor", url),
            ("export", url, str(tmp_path / "out.jsonl")),
        ):
            done = run(*command)
            assert done.returncode == 2, (command, done.stdout, done.stderr)
            lines = done.stderr.splitlines()
            assert len(lines) == 1 and "no tieredmem store" in lines[0], done.stderr
            assert secret not in done.stderr + done.stdout
            assert _our_tables(pg_server, "public", prefix) == []
        assert not (tmp_path / "out.jsonl").exists()
        assert (
            _sql(
                pg_server,
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                (schema,),
            )
            == []
        )


def test_readonly_open_reads_and_never_writes(pg_server: PgServer) -> None:
    url = pg_server.url()
    prefix = _prefix(url)
    with pytest.raises(tieredmem.NotAStoreError, match="no tieredmem store"):
        tieredmem.open(url, readonly=True)
    assert _our_tables(pg_server, "public", prefix) == []
    with tieredmem.open(url) as s:
        s.put(("d",), "a", {"text": "a cat", "n": 1}, ttl=0.01)
        s.put(("d",), "b", {"text": "a dog", "n": 2})
        s.search(("d",), query="cat")  # indexes what is pending
        s.put(("d",), "c", {"text": "a cow", "n": 3})  # left pending
    version = _sql(pg_server, f'SELECT v, vid, n FROM "{prefix}version"')
    time.sleep(0.02)  # "a" has expired
    with tieredmem.open(url, readonly=True) as ro:
        assert ro.get(("d",), "b").value["n"] == 2  # type: ignore[union-attr]
        assert ro.stats().cold_rows == 3
        assert [i.key for i in ro.search(("d",), filter={"n": {"$gte": 2}})] == ["b", "c"]
        assert [i.key for i in ro.search(("d",), query="dog")] == ["b"]  # the index as it is
        for write in (
            lambda: ro.put(("d",), "x", 1),
            lambda: ro.delete(("d",), "b"),
            lambda: ro.raw.write(ranges=[("d", "", None)]),
            ro.maintain,
            ro.sweep,
        ):
            with pytest.raises(tieredmem.ReadOnlyError, match="readonly"):
                write()
    assert _sql(pg_server, f'SELECT v, vid, n FROM "{prefix}version"') == version
    pending = _sql(pg_server, f'SELECT count(*) FROM "{prefix}items" WHERE tsv IS NULL')
    assert pending == [(1,)]  # "c": a read-only search indexed nothing


def test_readonly_refuses_a_store_that_needs_upgrading(pg_server: PgServer) -> None:
    url = pg_server.url()
    prefix = _prefix(url)
    tieredmem.open(url).close()
    _sql(pg_server, f'ALTER TABLE "{prefix}version" DROP COLUMN n')
    _sql(pg_server, f"UPDATE \"{prefix}meta\" SET value = '1' WHERE key = 'format_version'")
    with pytest.raises(tieredmem.SchemaVersionError, match="without readonly to upgrade"):
        tieredmem.open(url, readonly=True)
    assert _sql(pg_server, f"SELECT value FROM \"{prefix}meta\" WHERE key = 'format_version'") == [
        ("1",)
    ]

"""The Redis Cluster backend on a real cluster (3 masters, 3 replicas, Debian's
redis-server on loopback): units and hash tags, split batches, refused cross-unit
transactions, listings over every master, coherence between two clients, and a failover
with nothing acknowledged lost.  The conformance suites run on it from
tests/test_backend_conformance.py and tests/test_langgraph_conformance.py."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

import tieredmem
from tieredmem.backends.redis_cluster import unit_of

from .redis_cluster import RedisCluster, cluster_binaries


def _prefix() -> str:
    return f"c{uuid.uuid4().hex[:8]}:"


def _eventually(check: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _keys_by_master(cluster: RedisCluster, prefix: str) -> dict[int, int]:
    out = {}
    for port in cluster.masters():
        client = cluster.client(port)
        out[port] = sum(1 for _ in client.scan_iter(match=prefix + "*", count=1000))
        client.close()
    return out


def test_units_share_a_slot_and_spread_over_the_masters(redis_cluster: RedisCluster) -> None:
    prefix = _prefix()
    with tieredmem.open(redis_cluster.url(prefix)) as s:
        spaces = [("users", f"u{i:02d}") for i in range(24)]
        s.put_many([(ns, "prefs", {"i": i}) for i, ns in enumerate(spaces)])
        s.put(("users", "u00", "deep"), "k", 1)
        listed = sorted([*spaces, ("users", "u00", "deep")])
        assert s.list_namespaces(prefix=("users",)) == listed
        assert s.list_namespaces(prefix=("users",), limit=3, offset=2) == listed[2:5]
        found = s.search(("users",), filter={"i": {"$gte": 20}})
        assert [i.namespace for i in found] == spaces[20:]
        per_master = _keys_by_master(redis_cluster, prefix)
        assert sum(1 for n in per_master.values() if n) == 3, per_master
        assert unit_of("users\x1fu00\x1fdeep") == unit_of("users\x1fu00")
        s.delete(("users", "u00", "deep"), "k")
        assert ("users", "u00", "deep") not in s.list_namespaces(prefix=("users",))
        assert s.stats().cold_rows == 24


def test_a_transaction_across_units_is_refused(redis_cluster: RedisCluster) -> None:
    with tieredmem.open(redis_cluster.url(_prefix())) as s:
        with s.transaction():  # one unit: ("users", "alice") and below
            s.put(("users", "alice"), "a", 1)
            s.put(("users", "alice", "prefs"), "b", 2)
        with pytest.raises(tieredmem.CrossSlotError, match="units"), s.transaction():
            s.put(("users", "alice"), "c", 3)
            s.put(("users", "bob"), "c", 3)
        assert s.get(("users", "alice"), "c") is None
        assert s.get(("users", "bob"), "c") is None
        # Without a transaction the batch is split, each unit atomic on its own.
        s.put_many([(("users", "alice"), "d", 4), (("users", "bob"), "d", 4)])
        assert s.get(("users", "bob"), "d").value == 4  # type: ignore[union-attr]


def test_another_clients_write_is_seen(redis_cluster: RedisCluster) -> None:
    prefix = _prefix()
    strict = redis_cluster.url(prefix)
    tracking = redis_cluster.url(prefix, coherence="tracking")
    with (
        tieredmem.open(strict, hot_bytes="8MiB") as a,
        tieredmem.open(tracking, hot_bytes="8MiB") as t,
        tieredmem.open(strict) as b,
    ):
        spaces = [("n", f"x{i}") for i in range(12)]  # on every master
        for ns in spaces:
            b.put(ns, "k", "old")
            assert a.get(ns, "k").value == "old"  # type: ignore[union-attr]
            assert t.get(ns, "k").value == "old"  # type: ignore[union-attr]
        for ns in spaces:
            b.put(ns, "k", "new")
            assert a.get(ns, "k").value == "new"  # type: ignore[union-attr]  # strict: at once
            _eventually(
                lambda ns=ns: t.get(ns, "k").value == "new",  # type: ignore[union-attr,misc]
                "the tracking client never saw the write",
            )
        hits = t.stats().hits
        for _ in range(200):
            t.get(spaces[0], "k")
        assert t.stats().hits >= hits + 199  # hot while nothing is written


def test_a_hot_read_in_strict_mode_costs_one_ping_per_master(
    redis_cluster: RedisCluster,
) -> None:
    with tieredmem.open(redis_cluster.url(_prefix()), hot_bytes="8MiB") as s:
        s.put(("n", "a"), "k", 1)
        s.get(("n", "a"), "k")
        clients = [redis_cluster.client(p) for p in redis_cluster.masters()]

        def calls() -> int:
            return sum(
                sum(int(v["calls"]) for v in c.info("commandstats").values()) for c in clients
            )

        before = calls()
        for _ in range(10):
            assert s.get(("n", "a"), "k").value == 1  # type: ignore[union-attr]
        assert calls() - before == 10 * 3 + 3  # a PING per master per read, and the INFOs
        for c in clients:
            c.close()


@pytest.fixture
def own_cluster() -> Iterator[RedisCluster]:
    """A cluster of this test's own: the test kills one of its masters."""
    pytest.importorskip("redis")
    if cluster_binaries() is None:
        pytest.skip("redis-server and redis-cli are not installed")
    cluster = RedisCluster()
    try:
        yield cluster
    finally:
        cluster.remove()


def _synced(cluster: RedisCluster, port: int) -> bool:
    rep = cluster.info(port, "replication")
    return rep.get("role") == "slave" and rep.get("master_link_status") == "up"


def test_a_write_that_fails_after_its_script_leaves_its_namespace_listed(
    redis_cluster: RedisCluster,
) -> None:
    """A namespace's first write lands but then fails (here: ``WAIT 2`` with one replica
    per master times out, as a failover can make it): the item is in the cluster, so
    search and listing must find it.  Before, the namespace was registered only after a
    successful script, so it was never listed again, and every later write to it was
    invisible to search."""
    prefix = _prefix()
    failing = redis_cluster.url(prefix, wait="2", wait_timeout="50")
    with tieredmem.open(failing) as s, pytest.raises(tieredmem.BackendUnavailableError):
        s.put(("lost", "u1"), "first", {"i": 1})
    with tieredmem.open(redis_cluster.url(prefix)) as s:
        s.put(("lost", "u1"), "second", {"i": 2})  # acknowledged
        assert [it.key for it in s.search(("lost", "u1"))] == ["first", "second"]
        assert s.list_namespaces(prefix=["lost"]) == [("lost", "u1")]


def test_failover_loses_nothing_acknowledged(own_cluster: RedisCluster, stress: bool) -> None:
    """A master is killed (SIGKILL) under writes with ``wait=1``: calls fail with typed
    errors until its replica takes over and the old master rejoins as a replica, and
    every acknowledged write is there afterwards."""
    url = own_cluster.url(_prefix(), wait="1")
    acked: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    with tieredmem.open(url, hot_bytes=1) as s:

        def writer() -> None:
            i = 0
            while not stop.is_set():
                key = f"k{i:06d}"
                try:
                    s.put(("w", f"u{i % 30}"), key, {"i": i})
                except tieredmem.TieredMemError as exc:
                    errors.append(exc)
                    time.sleep(0.05)
                else:
                    acked.append(key)
                i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            _eventually(lambda: len(acked) > 50, "no writes before the kill")
            for _ in range(3 if stress else 1):  # with --stress, three masters in turn
                victim = own_cluster.masters()[0]
                replica = own_cluster.replica_of(victim)
                own_cluster.kill(victim)
                _eventually(
                    lambda r=replica: own_cluster.info(r, "replication").get("role") == "master",
                    "the replica was never promoted",
                    30,
                )
                own_cluster.start(victim)  # rejoins as the new master's replica
                own_cluster.wait_ok()
                _eventually(lambda v=victim: _synced(own_cluster, v), "no resync", 30)
                count = len(acked)
                _eventually(
                    lambda c=count: len(acked) > c + 50,  # type: ignore[misc]
                    "writes never recovered",
                    30,
                )
        finally:
            stop.set()
            thread.join(60)
        assert all(isinstance(e, tieredmem.BackendUnavailableError) for e in errors), errors
    with tieredmem.open(own_cluster.url(url.split("prefix=")[1].split("&")[0])) as fresh:
        found = {item.key for u in range(30) for item in fresh.search(("w", f"u{u}"), limit=10**6)}
    missing = set(acked) - found
    assert not missing, (
        f"{len(missing)} acknowledged writes lost: {sorted(missing)[:5]}; errors: "
        f"{[str(e)[:200] for e in errors[:5]]}"
    )


def test_a_cluster_url_is_redacted(redis_cluster: RedisCluster) -> None:
    with tieredmem.open(redis_cluster.url(_prefix())) as s:
        assert s.url.startswith("redis+cluster://127.0.0.1:")
    with pytest.raises(tieredmem.UnsupportedURLError, match="coherence"):
        tieredmem.open(redis_cluster.url(_prefix(), coherence="notify"))


def test_an_unreachable_cluster_fails_typed_without_the_password() -> None:
    pytest.importorskip("redis")
    from .conftest import _free_port

    url = f"redis+cluster://:s3cret@127.0.0.1:{_free_port()}/?prefix=x:"
    with pytest.raises(tieredmem.BackendUnavailableError) as info:
        tieredmem.open(url)
    assert "s3cret" not in str(info.value) and "***" in str(info.value)

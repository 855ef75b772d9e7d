"""Redis ``coherence=tracking``: pushed invalidations instead of a version check per read.

Real redis-server processes, no mocks: two clients, a restart with and without data, a
killed tracking connection, a flush, many keys invalidated at once, and the round trips a
hot read costs.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tieredmem

from .conftest import RedisServer


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A redis-server of our own: tests restart it, flush it and kill its clients."""
    pytest.importorskip("redis")
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


def _client(server: RedisServer) -> Any:
    import redis

    return redis.Redis(port=server.port)


def _calls(client: Any) -> int:
    """Commands the server executed so far (the previous INFO included, not this one)."""
    return sum(int(v["calls"]) for v in client.info("commandstats").values())


def _tracking(server: RedisServer, prefix: str, bound: str = "30") -> str:
    return server.url(prefix) + f"&coherence=tracking&tracking_bound={bound}"


def _eventually(check: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def _wait_connects(store: tieredmem.Store, n: int) -> None:
    tracker = store.backend._tracker  # type: ignore[attr-defined]
    _eventually(lambda: tracker.connects >= n and tracker._listening, "no tracking connection")


def test_a_hot_read_costs_no_round_trip_while_quiet(own_server: RedisServer) -> None:
    with tieredmem.open(_tracking(own_server, "q:"), hot_bytes="8MiB") as s:
        s.put(("n",), "k", {"v": 1})
        assert s.get(("n",), "k").value == {"v": 1}  # type: ignore[union-attr]
        client = _client(own_server)
        before = _calls(client)
        for _ in range(1000):
            assert s.get(("n",), "k").value == {"v": 1}  # type: ignore[union-attr]
        assert _calls(client) - before == 1  # only the first INFO
        client.close()


def test_strict_mode_still_checks_every_read(own_server: RedisServer) -> None:
    with tieredmem.open(own_server.url("st:"), hot_bytes="8MiB") as s:
        s.put(("n",), "k", 1)
        s.get(("n",), "k")
        client = _client(own_server)
        before = _calls(client)
        for _ in range(10):
            s.get(("n",), "k")
        assert _calls(client) - before == 11  # 10 version checks and the first INFO
        client.close()


def test_another_clients_write_is_seen_with_the_caches_above(own_server: RedisServer) -> None:
    url = _tracking(own_server, "two:")
    with tieredmem.open(url, hot_bytes="8MiB") as a, tieredmem.open(own_server.url("two:")) as b:
        ha = tieredmem.MemorySaver(store=a).history("chat")
        hb = tieredmem.MemorySaver(store=b).history("chat")
        a.put(("n",), "k", "first")
        ha.append("hello")
        assert a.get(("n",), "k").value == "first"  # type: ignore[union-attr]
        assert list(ha) == ["hello"]
        b.put(("n",), "k", "second")  # acknowledged: its signal is already queued to A
        hb.append("from b")
        _eventually(
            lambda: a.get(("n",), "k").value == "second",  # type: ignore[union-attr]
            "the invalidation never arrived",
        )
        assert list(ha) == ["hello", "from b"] and len(ha) == 2
        # A's own writes do not drop its own hot tier.
        a.put(("n",), "mine", 1)
        hits = a.stats().hits
        assert a.get(("n",), "mine").value == 1  # type: ignore[union-attr]
        assert a.stats().hits == hits + 1


def test_a_writer_that_sends_no_signal_is_seen_within_the_bound(own_server: RedisServer) -> None:
    with tieredmem.open(_tracking(own_server, "bd:", bound="0.3"), hot_bytes="8MiB") as a:
        a.put(("n",), "k", "v")
        assert a.get(("n",), "k").value == "v"  # type: ignore[union-attr]
        client = _client(own_server)
        # Behind tieredmem's back: the item gone and the version bumped, no signal sent.
        client.delete(b"bd:r:n\x1ek")
        client.incr("bd:ver")
        client.close()
        time.sleep(0.4)
        assert a.get(("n",), "k") is None


def test_many_keys_invalidated_at_once(own_server: RedisServer) -> None:
    url = _tracking(own_server, "many:")
    keys = [f"k{i:05d}" for i in range(5000)]
    with tieredmem.open(url, hot_bytes="64MiB") as a, tieredmem.open(own_server.url("many:")) as b:
        a.put_many([(("n",), k, 0) for k in keys])
        assert all(i is not None and i.value == 0 for i in a.get_many([(("n",), k) for k in keys]))
        b.put_many([(("n",), k, 1) for k in keys])
        _eventually(
            lambda: a.get(("n",), keys[-1]).value == 1,  # type: ignore[union-attr]
            "the invalidation never arrived",
        )
        assert all(i is not None and i.value == 1 for i in a.get_many([(("n",), k) for k in keys]))


def test_restart_without_data_drops_the_hot_tier(own_server: RedisServer) -> None:
    with tieredmem.open(_tracking(own_server, "rs:"), hot_bytes="8MiB") as a:
        a.put(("n",), "k", "v")
        assert a.get(("n",), "k").value == "v"  # type: ignore[union-attr]
        own_server.stop()
        own_server.start()  # no persistence: empty
        assert a.get(("n",), "k") is None
        _wait_connects(a, 2)
        a.put(("n",), "k", "again")
        assert a.get(("n",), "k").value == "again"  # type: ignore[union-attr]


def test_restart_with_data_drops_the_hot_tier(own_server: RedisServer) -> None:
    with tieredmem.open(_tracking(own_server, "rd:"), hot_bytes="8MiB") as a:
        a.put(("n",), "k", "v")
        assert a.get(("n",), "k").value == "v"  # type: ignore[union-attr]
        client = _client(own_server)
        client.save()  # the restart reloads this snapshot: same data, same (ver, vid)
        client.close()
        own_server.stop()
        own_server.start()
        misses = a.stats().misses
        _wait_connects(a, 2)
        assert a.get(("n",), "k").value == "v"  # type: ignore[union-attr]
        assert a.stats().misses == misses + 1  # read again from Redis, not from memory
        hits = a.stats().hits
        assert a.get(("n",), "k").value == "v"  # type: ignore[union-attr]
        assert a.stats().hits == hits + 1  # and hot again


def test_a_killed_tracking_connection_drops_the_hot_tier(own_server: RedisServer) -> None:
    url = _tracking(own_server, "kill:")
    with tieredmem.open(url, hot_bytes="8MiB") as a, tieredmem.open(own_server.url("kill:")) as b:
        a.put(("n",), "k", "v")
        assert a.get(("n",), "k").value == "v"  # type: ignore[union-attr]
        _wait_connects(a, 1)
        client = _client(own_server)
        assert client.execute_command("CLIENT", "KILL", "TYPE", "pubsub") == 1
        b.put(("n",), "k", "while it was down")
        assert a.get(("n",), "k").value == "while it was down"  # type: ignore[union-attr]
        _wait_connects(a, 2)
        misses = a.stats().misses
        assert a.get(("n",), "k").value == "while it was down"  # type: ignore[union-attr]
        assert a.stats().misses == misses + 1  # the reconnect dropped the hot tier
        b.put(("n",), "k", "after")  # and signals flow again
        _eventually(
            lambda: a.get(("n",), "k").value == "after",  # type: ignore[union-attr]
            "no invalidation after the reconnect",
        )
        client.close()


def test_a_flush_is_seen(own_server: RedisServer) -> None:
    with tieredmem.open(_tracking(own_server, "fl:"), hot_bytes="8MiB") as a:
        a.put(("n",), "k", "v")
        assert a.get(("n",), "k").value == "v"  # type: ignore[union-attr]
        client = _client(own_server)
        client.flushall()
        client.close()
        _eventually(lambda: a.get(("n",), "k") is None, "the flush was never seen")


def test_bad_tracking_parameters_are_refused(redis_server: RedisServer) -> None:
    with pytest.raises(tieredmem.UnsupportedURLError, match="coherence"):
        tieredmem.open(redis_server.url("bad:") + "&coherence=notify")
    with pytest.raises(tieredmem.UnsupportedURLError, match="tracking_bound"):
        tieredmem.open(redis_server.url("bad:") + "&coherence=tracking&tracking_bound=0")


def _child_writes(store: tieredmem.Store) -> None:
    assert store.get(("n",), "k").value == "parent"  # type: ignore[union-attr]
    store.put(("n",), "k", "child")
    store.flush()


def test_a_forked_child_is_a_writer_of_its_own(own_server: RedisServer) -> None:
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    with tieredmem.open(_tracking(own_server, "fork:"), hot_bytes="8MiB") as s:
        s.put(("n",), "k", "parent")
        assert s.get(("n",), "k").value == "parent"  # type: ignore[union-attr]
        child = multiprocessing.get_context("fork").Process(target=_child_writes, args=(s,))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        _eventually(
            lambda: s.get(("n",), "k").value == "child",  # type: ignore[union-attr]
            "the child's write was taken for the parent's own",
        )


def test_a_transaction_takes_the_pushed_proof(own_server: RedisServer) -> None:
    url = _tracking(own_server, "tx:")
    with tieredmem.open(url, hot_bytes="8MiB") as a, tieredmem.open(own_server.url("tx:")) as b:
        a.put(("n",), "k", 1)
        assert a.get(("n",), "k").value == 1  # type: ignore[union-attr]
        client = _client(own_server)
        before = _calls(client)
        with a.transaction():
            assert a.get(("n",), "k").value == 1  # type: ignore[union-attr]
        assert _calls(client) - before == 1  # no version check, nothing written
        b.put(("n",), "k", 2)
        _eventually(lambda: not a.backend.unchanged(), "the invalidation never arrived")  # type: ignore[attr-defined]
        with a.transaction():  # signalled: the block checks and reads the new value
            value = a.get(("n",), "k").value  # type: ignore[union-attr]
            a.put(("n",), "k", value + 1)
        assert b.get(("n",), "k").value == 3  # type: ignore[union-attr]
        client.close()


def test_a_cluster_node_is_refused_clearly(tmp_path: Any) -> None:
    """A real cluster-enabled redis-server (no slots needed to be recognised)."""
    pytest.importorskip("redis")
    import subprocess

    from .conftest import _free_port

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
            "--cluster-enabled",
            "yes",
            "--cluster-port",  # the bus (port + 10000 by default, maybe past 65535)
            str(_free_port()),
            "--requirepass",
            "s3cret",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port, password="s3cret")
        _eventually(lambda: _pings(client), "the cluster node never answered")
        client.close()
        with pytest.raises(tieredmem.UnsupportedURLError, match="Redis Cluster") as info:
            tieredmem.open(f"redis://:s3cret@127.0.0.1:{port}/0")
        assert "s3cret" not in str(info.value)
    finally:
        proc.terminate()
        proc.wait(10)


def _pings(client: Any) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False

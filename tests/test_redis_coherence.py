"""Redis coherence: ``(ver, vid)`` must not repeat across a rollback of the server's data.

A restart from an RDB snapshot that lost its tail (or a failover to a lagging replica) brings
``ver`` back to an older value; other clients' writes can then climb it back to the value a
reader last saw.  The pair must still differ, or the reader keeps serving values that are
no longer current.  Real redis-server processes, no mocks.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

import tieredmem
from tieredmem.backends import Put
from tieredmem.backends.redis import RedisBackend

from .conftest import RedisServer

PREFIX = "roll:"


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A redis-server of our own: the test restarts it from a snapshot."""
    pytest.importorskip("redis")
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


def _save(server: RedisServer) -> None:
    import redis

    client = redis.Redis(port=server.port)
    client.save()  # dump.rdb in the server's --dir: what it reloads on start
    client.close()


def _ver(server: RedisServer) -> int:
    import redis

    client = redis.Redis(port=server.port)
    raw = client.get(PREFIX + "ver")
    client.close()
    return int(raw or 0)


def test_rollback_then_catch_up_is_a_foreign_change(own_server: RedisServer) -> None:
    url = own_server.url(PREFIX)
    kw = {"hot_bytes": "32MiB", "maintenance_interval": 0}
    with tieredmem.open(url, **kw) as a, tieredmem.open(url, **kw) as b:  # type: ignore[arg-type]
        b.put(("n",), "other", 0)
        a.put(("n",), "k", "v1")
        _save(own_server)  # the snapshot: k == "v1"
        saved = _ver(own_server)
        a.put(("n",), "k", "v2")  # the tail the restart will lose
        a.put(("n",), "j", "lost")
        assert a.get(("n",), "k").value == "v2"  # type: ignore[union-attr]  # hot
        seen = _ver(own_server)
        assert seen == saved + 2

        own_server.stop()
        own_server.start()  # reloads dump.rdb: k == "v1", ver == saved, same vid as then
        assert _ver(own_server) == saved

        b.put(("n",), "k", "v3")  # others write until ver is back where A saw it
        b.put(("n",), "other", 1)
        assert _ver(own_server) == seen

        assert a.get(("n",), "k").value == "v3"  # type: ignore[union-attr]
        assert a.get(("n",), "j") is None


def test_backend_own_writes_are_not_foreign(redis_server: RedisServer) -> None:
    url = redis_server.url("own:")
    a, b = RedisBackend(url), RedisBackend(url)
    try:
        assert a.foreign_change() is False
        a.write([Put("n", "k", b"\x02a", 1.0)])
        a.write([Put("n", "k", b"\x02b", 2.0)])
        assert a.foreign_change() is False  # only our batches since we looked
        b.write([Put("n", "k", b"\x02c", 3.0)])
        assert a.foreign_change() is True
        assert a.foreign_change() is False
        b.write([Put("n", "x", b"\x02d", 4.0)])
        a.write([Put("n", "k", b"\x02e", 5.0)])  # ours follows another's: still a change
        assert a.foreign_change() is True
        assert b.foreign_change() is True
    finally:
        a.close()
        b.close()

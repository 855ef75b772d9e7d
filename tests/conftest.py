"""Shared fixtures: real apsw files in tmp dirs, an injectable clock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tieredmem


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--stress", action="store_true", help="run long stress variants")


@pytest.fixture
def stress(request: pytest.FixtureRequest) -> bool:
    """True when the long stress variants were asked for (--stress or TIEREDMEM_STRESS=1)."""
    return bool(request.config.getoption("--stress") or os.environ.get("TIEREDMEM_STRESS"))


class FakeClock:
    """A clock tests move by hand (cachetools' Timer().tick() idea)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "store.db")


# A tiny hot tier makes every operation spill; a large one keeps everything hot.
@pytest.fixture(
    params=["memory", "file-tiny-hot", "file-large-hot", "file-batch", "postgres-tiny-hot"]
)
def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[tieredmem.Store]:
    kind = request.param
    url = ":memory:" if kind == "memory" else str(tmp_path / "s.db")
    if kind.startswith("postgres"):
        url = request.getfixturevalue("pg_server").url()
    s = tieredmem.open(
        url,
        hot_bytes=1 if kind.endswith("tiny-hot") else "32MiB",
        durability="batch" if kind == "file-batch" else "sync",
        maintenance_interval=0,
        clock=clock,
    )
    yield s
    s.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A real redis-server on a free loopback port, started for the test session."""

    def __init__(self, password: str | None = None) -> None:
        import shutil
        import subprocess
        import tempfile
        import time

        binary = shutil.which("redis-server")
        if binary is None:
            if os.environ.get("CI"):
                raise RuntimeError("redis-server is missing in CI: .ci/apt-packages installs it")
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="tieredmem-redis-")
        self.args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.dir,
        ]
        self.password = password
        if password is not None:
            self.args += ["--requirepass", password]
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()
        self._time = time

    def start(self) -> None:
        import subprocess
        import time

        import redis

        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, password=self.password)
        deadline = time.time() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def url(self, prefix: str) -> str:
        auth = f":{self.password}@" if self.password is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0?prefix={prefix}"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    pytest.importorskip("redis")
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """A real Redis Cluster (3 masters, 3 replicas) for the session (tests/redis_cluster.py);
    tests that kill nodes start their own."""
    pytest.importorskip("redis")
    from .redis_cluster import RedisCluster, cluster_binaries

    if cluster_binaries() is None:
        if os.environ.get("CI"):
            raise RuntimeError("redis-server/redis-cli are missing in CI: .ci/apt-packages")
        pytest.skip("redis-server and redis-cli are not installed (apt-get install redis-server)")
    cluster = RedisCluster()
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A private PostgreSQL server for the session (see tests/pg_server.py)."""
    pytest.importorskip("psycopg")
    from .pg_server import MISSING, PgServer, find_binaries

    bindir = find_binaries()
    if bindir is None:
        if os.environ.get("CI"):
            raise RuntimeError(MISSING)
        pytest.skip(MISSING)
    server = PgServer(bindir)
    try:
        yield server
    finally:
        server.remove()

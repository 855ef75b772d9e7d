"""Shared fixtures: real apsw files in tmp dirs, an injectable clock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

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
@pytest.fixture(params=["memory", "file-tiny-hot", "file-large-hot", "file-batch"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[tieredmem.Store]:
    kind = request.param
    url = ":memory:" if kind == "memory" else str(tmp_path / "s.db")
    s = tieredmem.open(
        url,
        hot_bytes=1 if kind == "file-tiny-hot" else "32MiB",
        durability="batch" if kind == "file-batch" else "sync",
        maintenance_interval=0,
        clock=clock,
    )
    yield s
    s.close()

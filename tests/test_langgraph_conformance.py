"""LangGraph's own conformance suite against TieredSaver, file-backed and in memory."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator

import pytest

pytest.importorskip("langgraph.checkpoint.conformance")

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from tieredmem.langgraph import TieredSaver


@checkpointer_test(name="TieredSaver(file)")
async def file_saver() -> AsyncIterator[TieredSaver]:
    with tempfile.TemporaryDirectory() as d:
        saver = TieredSaver(f"{d}/conformance.db")
        yield saver
        saver.close()


@checkpointer_test(name="TieredSaver(:memory:)")
async def memory_saver() -> AsyncIterator[TieredSaver]:
    saver = TieredSaver(":memory:")
    yield saver
    saver.close()


@checkpointer_test(name="TieredSaver(tiny hot tier)")
async def spilling_saver() -> AsyncIterator[TieredSaver]:
    with tempfile.TemporaryDirectory() as d:
        saver = TieredSaver(f"{d}/spill.db", hot_bytes=1)
        yield saver
        saver.close()


@pytest.mark.parametrize("factory", [file_saver, memory_saver, spilling_saver])
def test_conformance_full(factory) -> None:  # type: ignore[no-untyped-def]
    report = asyncio.run(validate(factory))
    failures = {k: r.failures for k, r in report.results.items() if r.passed is not True}
    assert not failures, failures
    assert {k for k, r in report.results.items() if r.detected} == {
        c.value for c in ALL_CAPABILITIES
    }
    assert report.conformance_level() == "FULL"
    assert sum(r.tests_passed for r in report.results.values()) >= 81


@pytest.mark.parametrize("coherence", ["strict", "tracking"])
def test_conformance_full_on_redis_cluster(redis_cluster, coherence) -> None:  # type: ignore[no-untyped-def]
    """The same suite on a real Redis Cluster (3 masters, 3 replicas)."""
    import uuid

    import tieredmem

    @checkpointer_test(name=f"TieredSaver(redis cluster, {coherence})")
    async def factory() -> AsyncIterator[TieredSaver]:
        url = redis_cluster.url(f"lg{uuid.uuid4().hex[:8]}:", coherence=coherence)
        store = tieredmem.open(url)
        saver = TieredSaver(store)
        yield saver
        store.close()

    report = asyncio.run(validate(factory))
    failures = {k: r.failures for k, r in report.results.items() if r.passed is not True}
    assert not failures, failures
    assert report.conformance_level() == "FULL"

"""TieredStore's vector index in the SQLite file (sqlite-vec) and hybrid ranking."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import apsw
import numpy as np
import pytest

pytest.importorskip("sqlite_vec")
pytest.importorskip("langgraph")

from langgraph.store.base import PutOp

from tests._vector_embed import DIMS, CountingEmbedder, index_of
from tieredmem import VectorIndexError
from tieredmem.langgraph import TieredStore
from tieredmem.langgraph._hybrid import HybridRanking

ROOT = Path(__file__).resolve().parent.parent


def vec_rows(path: Path) -> tuple[int, int]:
    """(vec_docs rows, vec_index rows) of a store file, read with apsw."""
    import sqlite_vec

    con = apsw.Connection(str(path))
    con.enable_load_extension(True)
    con.load_extension(sqlite_vec.loadable_path())
    docs = con.execute("SELECT count(*) FROM vec_docs").fetchall()[0][0]
    index = con.execute("SELECT count(*) FROM vec_index").fetchall()[0][0]
    con.close()
    return docs, index


def test_vectors_live_in_the_file_and_search_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    embed = CountingEmbedder()
    with TieredStore(str(path), index=index_of(embed), search_mode="vector") as s:
        assert type(s._vectors).__name__ == "IndexedVectors"
        s.put(("docs",), "pets", {"text": "cat dog fish"})
        s.put(("docs",), "travel", {"text": "car train plane"})
        s.put(("docs", "deep"), "food", {"text": "pizza pasta"})
        s.put(("other",), "pets", {"text": "cat dog fish"})
        hits = s.search(("docs",), query="cat", limit=3)
        assert hits[0].key == "pets"
        assert all(h.namespace[0] == "docs" for h in hits)
        q = np.asarray(embed(["cat"])[0])
        v = np.asarray(embed(["cat dog fish"])[0])
        expected = float(q @ v / np.linalg.norm(q) / np.linalg.norm(v))
        assert hits[0].score == pytest.approx(expected, abs=1e-5)
        assert [h.key for h in s.search(("docs", "deep"), query="pizza")] == ["food"]
    assert vec_rows(path) == (4, 4)
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_unchanged_texts_are_not_embedded_again(tmp_path: Path) -> None:
    embed = CountingEmbedder()
    index = index_of(embed, ["title", "body"])
    with TieredStore(str(tmp_path / "v.db"), index=index) as s:
        s.put(("n",), "a", {"title": "red apple", "body": "sweet fruit", "n": 1})
        assert len(embed.texts) == 2
        s.put(("n",), "a", {"title": "red apple", "body": "sweet fruit", "n": 2})
        assert len(embed.texts) == 2  # no text changed
        s.put(("n",), "a", {"title": "red apple", "body": "sour fruit", "n": 3})
        assert embed.texts[2:] == ["sour fruit"]
        s.put(("n",), "a", {"title": "red apple", "body": "sour fruit"}, index=["title"])
        assert len(embed.texts) == 3  # title kept, body vector dropped
        hits = s.search(("n",), query="sour fruit", limit=1)
        assert hits and hits[0].key == "a"
    # Another handle on the file knows what was embedded.
    embed2 = CountingEmbedder()
    with TieredStore(str(tmp_path / "v.db"), index=index_of(embed2, ["title", "body"])) as s:
        s.put(("n",), "a", {"title": "red apple", "body": "sour fruit"}, index=["title"])
        assert embed2.texts == []


def test_delete_ttl_and_index_false_remove_vectors(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    now = [1000.0]
    embed = CountingEmbedder()
    s = TieredStore(str(path), index=index_of(embed), search_mode="vector", clock=lambda: now[0])
    s.put(("d",), "gone", {"text": "alpha beta"})
    s.put(("d",), "ttl", {"text": "alpha gamma"}, ttl=1)  # minutes
    s.put(("d",), "plain", {"text": "alpha delta"})
    s.put(("d",), "keep", {"text": "alpha epsilon"})
    assert vec_rows(path) == (4, 4)
    s.delete(("d",), "gone")
    s.put(("d",), "plain", {"text": "alpha delta"}, index=False)
    now[0] += 120
    assert {h.key for h in s.search(("d",), query="alpha")} == {"keep"}
    s.store.sweep()
    s.store.maintain()
    assert vec_rows(path) == (1, 1)
    s.close()


SHARE = """
import sys, numpy as np
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
from tests._vector_embed import CountingEmbedder, index_of
from tieredmem.langgraph import TieredStore
s = TieredStore({path!r}, index=index_of(CountingEmbedder()), search_mode="vector")
{body}
s.close()
"""


def run_other_process(path: Path, body: str, env: dict[str, str] | None = None) -> str:
    code = SHARE.format(
        root=str(ROOT), tests=str(ROOT / "tests"), path=str(path), body=textwrap.dedent(body)
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_writes_of_another_process_are_seen_by_the_next_search(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    s = TieredStore(str(path), index=index_of(CountingEmbedder()), search_mode="vector")
    s.put(("d",), "mine", {"text": "orange lemon"})
    assert [h.key for h in s.search(("d",), query="kiwi mango")] == ["mine"]
    run_other_process(path, 's.put(("d",), "theirs", {"text": "kiwi mango"})')
    assert s.search(("d",), query="kiwi mango")[0].key == "theirs"
    run_other_process(path, 's.delete(("d",), "theirs"); s.delete(("d",), "mine")')
    assert s.search(("d",), query="kiwi mango") == []
    run_other_process(path, 's.put(("d",), "mine", {"text": "kiwi mango"})')
    hits = s.search(("d",), query="kiwi mango")
    assert [h.key for h in hits] == ["mine"] and hits[0].value == {"text": "kiwi mango"}
    s.close()


def test_dims_mismatch_is_a_typed_error(tmp_path: Path) -> None:
    path = str(tmp_path / "v.db")
    TieredStore(path, index=index_of(CountingEmbedder())).close()
    with pytest.raises(VectorIndexError, match="dims=64"):
        TieredStore(path, index={"dims": 32, "embed": CountingEmbedder(), "fields": ["text"]})
    with pytest.raises(VectorIndexError, match="quantization"):
        TieredStore(path, index=index_of(CountingEmbedder()), quantization="int8")

    def bad(texts: list[str]) -> list[list[float]]:
        return [[0.0] * 3 for _ in texts]

    index = {"dims": DIMS, "embed": bad, "fields": ["text"]}
    with TieredStore(path, index=index) as s, pytest.raises(VectorIndexError, match="dims"):
        s.put(("d",), "k", {"text": "x"})


NO_SQLITE_VEC = """
import sys
sys.modules["sqlite_vec"] = None  # as if not installed
"""


def test_without_sqlite_vec_a_file_with_an_index_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    TieredStore(str(path), index=index_of(CountingEmbedder())).close()
    code = NO_SQLITE_VEC + SHARE.format(
        root=str(ROOT), tests=str(ROOT / "tests"), path=str(path), body=""
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert "VectorIndexError" in out.stderr and "pip install" in out.stderr


def test_vectors_stored_without_sqlite_vec_are_imported(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    code = NO_SQLITE_VEC + SHARE.format(
        root=str(ROOT),
        tests=str(ROOT / "tests"),
        path=str(path),
        body='s.put(("d",), "old", {"text": "plum pear"})\n'
        'assert type(s._vectors).__name__ == "ScannedVectors"',
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with TieredStore(str(path), index=index_of(CountingEmbedder()), search_mode="vector") as s:
        assert [h.key for h in s.search(("d",), query="plum pear")] == ["old"]
        assert s.store.raw.namespaces_under(s.store.raw.internal_ns("vec")) == []
    assert vec_rows(path) == (1, 1)


@pytest.mark.parametrize(
    ("quantization", "floor"), [("none", 1.0), ("int8", 0.97), ("binary", 0.95)]
)
def test_quantized_search_keeps_recall(tmp_path: Path, quantization: str, floor: float) -> None:
    """recall@10 against exact cosine over the same (clustered) vectors: exact for
    ``none``, at least the figures docs/guides/vectors.md states for int8 and binary
    (with the default oversample, 8)."""
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((20, DIMS)).astype(np.float32)
    n = 2000
    data = centers[rng.integers(0, 20, n)] + 0.6 * rng.standard_normal((n, DIMS)).astype(np.float32)
    table = {f"t{i}": data[i] for i in range(n)}

    def embed(texts: list[str]) -> list[list[float]]:
        return [table[t].tolist() if t in table else [0.0] * DIMS for t in texts]

    queries = rng.standard_normal((20, DIMS)).astype(np.float32) + centers[:20]
    with TieredStore(
        str(tmp_path / "q.db"),
        index={"dims": DIMS, "embed": embed, "fields": ["t"]},
        search_mode="vector",
        quantization=quantization,
    ) as s:
        s.batch([PutOp(("q", f"ns{i % 3}"), f"k{i}", {"t": f"t{i}"}) for i in range(n)])
        normed = data / np.linalg.norm(data, axis=1, keepdims=True)
        recalls = []
        for j, q in enumerate(queries):
            table[f"query{j}"] = q
            exact = {f"k{i}" for i in np.argsort(-(normed @ (q / np.linalg.norm(q))))[:10]}
            got = {h.key for h in s.search(("q",), query=f"query{j}", limit=10)}
            recalls.append(len(exact & got) / 10)
    assert float(np.mean(recalls)) >= floor, recalls


def test_search_modes_and_scores(tmp_path: Path) -> None:
    embed = CountingEmbedder()
    path = str(tmp_path / "v.db")
    with TieredStore(path, index=index_of(embed)) as s:
        assert s.search_mode == "hybrid"
        s.put(("d",), "a", {"text": "solar panel battery"})
        s.put(("d",), "b", {"text": "wind turbine battery"})
        s.put(("d",), "c", {"text": "coal plant"})
        hybrid = s.search(("d",), query="battery", limit=3)
        assert {h.key for h in hybrid[:2]} == {"a", "b"}
        # fused reciprocal rank scores: at most (1 + 1) / (60 + 1)
        assert all(0 < h.score <= 2 / 61 + 1e-9 for h in hybrid)
    with TieredStore(path, index=index_of(embed), search_mode="text") as s:
        text = s.search(("d",), query="battery", limit=3)
        assert {h.key for h in text} == {"a", "b"}  # full-text: only items with the word
    with TieredStore(path, index=index_of(embed), search_mode="vector") as s:
        vec = s.search(("d",), query="battery", limit=3)
        assert len(vec) == 3 and all(-1 <= h.score <= 1 for h in vec)
    with pytest.raises(ValueError, match="search_mode"):
        TieredStore(path, index=index_of(embed), search_mode="fuzzy")


def test_recency_boost_orders_equal_matches(tmp_path: Path) -> None:
    now = [1000.0]
    ranking = HybridRanking(recency_half_life=60.0, recency_weight=1.0)
    s = TieredStore(
        str(tmp_path / "v.db"),
        index=index_of(CountingEmbedder()),
        hybrid=ranking,
        clock=lambda: now[0],
    )
    s.put(("d",), "old", {"text": "same words here"})
    now[0] += 3600
    s.put(("d",), "new", {"text": "same words here"})
    hits = s.search(("d",), query="same words here", limit=2)
    assert [h.key for h in hits] == ["new", "old"]
    assert hits[0].score > hits[1].score
    s.close()
    with pytest.raises(ValueError, match="recency_half_life"):
        HybridRanking(recency_half_life=0)


def test_a_delete_without_sqlite_vec_leaves_nothing_to_find(tmp_path: Path) -> None:
    """A connection without sqlite-vec deletes an item: the triggers drop its vec_docs
    row at once; the search skips the index row left behind and still fills the page;
    maintain() purges it."""
    path = tmp_path / "v.db"
    s = TieredStore(str(path), index=index_of(CountingEmbedder()), search_mode="vector")
    for i in range(12):
        s.put(("d",), f"k{i}", {"text": f"plum pear w{i}"})
    code = NO_SQLITE_VEC + (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "import tieredmem\n"
        f"with tieredmem.open({str(path)!r}) as store:\n"
        "    store.delete(('d',), 'k3')\n"
        "assert 'sqlite_vec' not in sys.modules or sys.modules['sqlite_vec'] is None\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert vec_rows(path) == (11, 12)
    hits = s.search(("d",), query="plum pear w3", limit=10)
    assert len(hits) == 10 and "k3" not in {h.key for h in hits}
    s.store.maintain()
    assert vec_rows(path) == (11, 11)
    s.close()


@pytest.mark.parametrize("backend", ["redis", "redis-cluster", "postgres"])
def test_backends_without_an_index_search_exactly_and_fuse(
    request: pytest.FixtureRequest, backend: str
) -> None:
    """Redis and PostgreSQL keep the exact numpy search (no index in the backend); the
    hybrid mode fuses it with PostgreSQL's full-text search, and is the vector search on
    Redis, one server or a cluster (which have none)."""
    if backend == "redis":
        url = request.getfixturevalue("redis_server").url(prefix="vec-hybrid")
    elif backend == "redis-cluster":
        url = request.getfixturevalue("redis_cluster").url(f"vec-hybrid-{uuid.uuid4().hex}:")
    else:
        url = request.getfixturevalue("pg_server").url()
    with TieredStore(url, index=index_of(CountingEmbedder())) as s:
        assert type(s._vectors).__name__ == "ScannedVectors"
        s.put(("hy", backend), "a", {"text": "solar panel battery"})
        s.put(("hy", backend), "b", {"text": "coal plant"})
        hybrid = s.search(("hy", backend), query="solar battery", limit=2)
        assert hybrid[0].key == "a"
        if backend == "postgres":  # fused: first in both rankings
            assert hybrid[0].score == pytest.approx(2 / 61)
        else:  # no full-text search on Redis: the vector ranking (cosine similarity)
            assert 0 < hybrid[0].score <= 1
        s.search_mode = "vector"
        assert s.search(("hy", backend), query="solar battery", limit=1)[0].key == "a"
        s.delete(("hy", backend), "a")
        s.delete(("hy", backend), "b")

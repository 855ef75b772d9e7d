"""Vector and hybrid search: ``TieredStore`` against ``InMemoryStore`` and ``SqliteStore``.

The vector scenarios of ``benchmarks/store.py`` (its workload: the same values, users and
namespaces, built by its ``Workload``), with the same ``index`` config for every store:
``{"dims": --dims, "embed": <deterministic embedder>, "fields": ["text"]}``.  The
embedder is a seeded random projection of word hashes: each vocabulary word gets a fixed
Gaussian vector, a text is the normalized sum of its words' vectors, so texts sharing
words are near.  Every configuration runs in a fresh process (peak RSS is its own):

1. ``build``: every item put with ``batch()`` in batches of 1,000 PutOps (embedding
   included); items per second.
2. ``vector_user`` / ``vector_all``: ``--searches`` vector searches (``limit=10``) of a
   user's namespace ``("users", uN)`` and of everything (``("users",)``; a tenth as many),
   the query 6 words of a random item's text; p50/p99 in microseconds, searches per
   second, and ``recall@10`` against exact cosine search (numpy over the same
   embeddings, computed outside the timed region).
3. ``hybrid_user``: TieredStore only, ``search_mode="hybrid"`` on the same queries.
4. ``retrieval``: a synthetic set with known answers, in a store of its own:
   ``--memories`` short memories (12 words drawn from 500 of the vocabulary's words)
   under 100 namespaces ``("mem", uN)``; every word has a synonym (a word no memory
   contains, embedded as the word's vector plus as much noise: cosine ~0.7).  Three
   kinds of queries of a random target memory, ``--retrieval`` each: ``keyword`` (3 of
   its words), ``paraphrase`` (synonyms of 3 of its words) and ``mixed`` (2 words, 2
   synonyms), searched over every namespace (``("mem",)``, ``limit=10``); the fraction
   whose target is in the top 10, for TieredStore's ``search_mode="text"`` (FTS5 BM25),
   ``"vector"`` and ``"hybrid"``.
5. ``peak_rss_mb`` and ``disk_bytes`` (the store's directory after close).

Run from the repository root::

    python benchmarks/store_vectors.py --items 100000
    python benchmarks/store_vectors.py --quick          # 5,000 items (CI smoke run)

Results go to ``benchmarks/results/store_vectors.json`` (``--quick``: outside the tree).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import dir_bytes, peak_rss_mb, results_path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from store import Workload  # noqa: E402

CONFIGS = ("tieredstore", "langgraph-inmemorystore", "langgraph-sqlitestore", "retrieval")
#: Words of a memory in the retrieval set, drawn from the vocabulary's first MEMORY_VOCAB.
MEMORY_WORDS = 12
MEMORY_VOCAB = 500
BATCH = 1000


class Embedder:
    """Seeded random projections of words (and of their synonyms, near them)."""

    def __init__(self, vocab: list[str], dims: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.words = rng.standard_normal((len(vocab), dims)).astype(np.float32)
        synonyms = self.words + rng.standard_normal(self.words.shape).astype(np.float32)
        self.index = {w: i for i, w in enumerate(vocab)}
        self.index.update({f"{w}x": len(vocab) + i for i, w in enumerate(vocab)})
        self.table = np.concatenate([self.words, synonyms])
        self.dims = dims
        self.calls = 0

    def vectors(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dims), np.float32)
        for i, text in enumerate(texts):
            ids = [self.index[w] for w in text.split() if w in self.index]
            if ids:
                out[i] = self.table[ids].sum(0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms

    def __call__(self, texts: list[str]) -> list[list[float]]:
        self.calls += len(texts)
        return self.vectors(texts).tolist()


def sqlite_module() -> Any:
    """The stdlib's sqlite3, or pysqlite3 (the bench extra) where the stdlib's cannot load
    extensions (SqliteStore loads sqlite-vec for its index)."""
    import sqlite3

    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3
    import pysqlite3.dbapi2  # type: ignore[import-not-found]

    return pysqlite3.dbapi2


def make_store(name: str, root: Path, embed: Embedder, opts: argparse.Namespace) -> Any:
    index: Any = {"dims": opts.dims, "embed": embed, "fields": ["text"]}
    if name == "tieredstore":
        from tieredmem.langgraph import TieredStore

        return TieredStore(
            str(root / "tiered.db"),
            index=index,
            search_mode="vector",
            quantization=opts.quantization,
            hot_bytes="16MiB",
        )
    if name == "langgraph-inmemorystore":
        from langgraph.store.memory import InMemoryStore

        return InMemoryStore(index=index)
    from langgraph.store.sqlite import SqliteStore

    conn = sqlite_module().connect(
        str(root / "lg.db"), check_same_thread=False, isolation_level=None
    )
    # SqliteStore names the embedded fields ``text_fields`` (``fields`` is ignored there,
    # and it would embed each whole value): the same fields as the other two.
    store = SqliteStore(conn, index={**index, "text_fields": index["fields"]})
    store.setup()
    return store


def timed(fn: Any, args: list[Any]) -> tuple[list[Any], list[float]]:
    out, times = [], []
    for a in args:
        t = time.perf_counter_ns()
        out.append(fn(a))
        times.append((time.perf_counter_ns() - t) / 1000)
    return out, times


def stats(times: list[float]) -> dict[str, float]:
    arr = np.asarray(times)
    return {
        "ops_per_s": len(arr) / (arr.sum() / 1e6),
        "p50_us": float(np.percentile(arr, 50)),
        "p99_us": float(np.percentile(arr, 99)),
    }


class Truth:
    """Exact top-10 of each query over the items seen so far (streamed: no vectors kept)."""

    def __init__(self, queries: np.ndarray, scopes: np.ndarray, users: int) -> None:
        self.q, self.scopes, self.users = queries, scopes, users
        n = len(queries)
        self.best = {s: np.full((n, 10), -np.inf, np.float32) for s in ("user", "all")}
        self.ids = {s: np.zeros((n, 10), np.int64) for s in ("user", "all")}

    def add(self, start: int, vectors: np.ndarray) -> None:
        sims = self.q @ vectors.T  # queries x chunk
        ids = np.arange(start, start + len(vectors))
        same = (ids % self.users)[None, :] == self.scopes[:, None]
        for scope, sim in (("all", sims), ("user", np.where(same, sims, -np.inf))):
            both = np.concatenate([self.best[scope], sim], axis=1)
            every = np.concatenate([self.ids[scope], np.broadcast_to(ids, sim.shape)], axis=1)
            top = np.argsort(-both, axis=1)[:, :10]
            self.best[scope] = np.take_along_axis(both, top, axis=1)
            self.ids[scope] = np.take_along_axis(every, top, axis=1)

    def keys(self, scope: str, j: int) -> set[str]:
        return {f"m{i}" for i in self.ids[scope][j]}


def cache_dir() -> Path:
    """Where large TieredStore builds are kept between runs (as benchmarks/scale.py)."""
    env = os.environ.get("TIEREDMEM_SCALE_CACHE")
    path = Path(env) if env else Path(tempfile.gettempdir()) / "tieredmem-scale-cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def worker(name: str, opts: argparse.Namespace) -> dict[str, Any]:
    if name == "retrieval":
        return retrieval(opts)
    from langgraph.store.base import PutOp

    work = Workload(opts)
    embed = Embedder(work.vocab, opts.dims, opts.seed)
    rng = random.Random(opts.seed + 7)
    picks = [rng.randrange(work.n) for _ in range(opts.searches)]
    queries = [" ".join(rng.sample(work.value(i, record=False)["text"].split(), 6)) for i in picks]
    qvec = embed.vectors(queries)
    scopes = np.asarray([i % work.users for i in picks])
    tag = f"{work.n}-{work.users}-{opts.dims}-{opts.seed}-{opts.searches}-{opts.quantization}"
    cached = name == "tieredstore" and work.n >= opts.cache_from
    if cached:
        root = cache_dir() / f"store_vectors-{tag}"
        root.mkdir(exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(dir=opts.dir))
    truth_file = root / "truth.npz"
    out: dict[str, Any] = {"config": name, "items": work.n}
    truth = Truth(qvec, scopes, work.users)
    reuse = cached and truth_file.exists()
    store = make_store(name, root, embed, opts)
    if reuse:
        saved = np.load(truth_file)
        truth.ids = {"user": saved["user"], "all": saved["all"]}
        out["build"] = "cached"
    else:
        spent = 0.0
        for start in range(0, work.n, BATCH):
            values = [work.value(i, record=False) for i in range(start, min(work.n, start + BATCH))]
            ops = [PutOp(work.namespaces[v["id"] % work.users], f"m{v['id']}", v) for v in values]
            t = time.perf_counter()
            store.batch(ops)
            spent += time.perf_counter() - t
            truth.add(start, embed.vectors([v["text"] for v in values]))
        out["build_items_per_s"] = work.n / spent
        if cached:
            np.savez(truth_file, user=truth.ids["user"], all=truth.ids["all"])
    # vector searches: a user's namespace, then everything
    for label, scope, count in (
        ("vector_user", "user", opts.searches),
        ("vector_all", "all", max(5, opts.searches // 10)),
    ):
        args = [
            (("users", f"u{scopes[j]}") if scope == "user" else ("users",), queries[j])
            for j in range(count)
        ]
        got, times = timed(lambda a: store.search(a[0], query=a[1], limit=10), args)
        recall = [len({h.key for h in g} & truth.keys(scope, j)) / 10 for j, g in enumerate(got)]
        out[label] = {**stats(times), "recall_at_10": float(np.mean(recall)), "searches": count}
    if name == "tieredstore" and not cached:  # the full-text index of 1M items: not here
        args = [(("users", f"u{scopes[j]}"), queries[j]) for j in range(len(picks))]
        store.search_mode = "hybrid"
        t = time.perf_counter()
        store.search(args[0][0], query=args[0][1])  # builds the full-text index
        out["fts_build_s"] = time.perf_counter() - t
        _, times = timed(lambda a: store.search(a[0], query=a[1], limit=10), args)
        out["hybrid_user"] = stats(times)
    out["peak_rss_mb"] = peak_rss_mb()
    if hasattr(store, "close"):
        store.close()
    if hasattr(store, "conn"):
        store.conn.close()
    out["disk_bytes"] = dir_bytes(root) - (truth_file.stat().st_size if cached else 0)
    if not cached:
        shutil.rmtree(root, ignore_errors=True)
    return out


def retrieval(opts: argparse.Namespace) -> dict[str, Any]:
    """Recall of known answers per TieredStore search_mode on short memories."""
    from langgraph.store.base import PutOp

    from tieredmem.langgraph import TieredStore

    rng = random.Random(opts.seed + 11)
    work = Workload(opts)
    embed = Embedder(work.vocab, opts.dims, opts.seed)
    root = Path(tempfile.mkdtemp(dir=opts.dir))
    store = TieredStore(
        str(root / "memories.db"),
        index={"dims": opts.dims, "embed": embed, "fields": ["text"]},
    )
    n, users = opts.memories, 100
    words = work.vocab[:MEMORY_VOCAB]
    texts = [" ".join(rng.choices(words, k=MEMORY_WORDS)) for _ in range(n)]
    for start in range(0, n, BATCH):
        store.batch(
            [
                PutOp(("mem", f"u{i % users}"), f"m{i}", {"text": texts[i]})
                for i in range(start, min(n, start + BATCH))
            ]
        )
    kinds = {"keyword": (3, 0), "paraphrase": (0, 3), "mixed": (2, 2)}
    asks = []
    for kind, (same, synonyms) in kinds.items():
        for _ in range(opts.retrieval):
            i = rng.randrange(n)
            words = rng.sample(texts[i].split(), same + synonyms)
            asks.append((kind, i, " ".join(words[:same] + [w + "x" for w in words[same:]])))
    out: dict[str, Any] = {"config": "retrieval", "memories": n, "queries_per_kind": opts.retrieval}
    for mode in ("text", "vector", "hybrid"):
        store.search_mode = mode
        found = dict.fromkeys(kinds, 0)
        for kind, i, q in asks:
            hits = store.search(("mem",), query=q, limit=10)
            found[kind] += f"m{i}" in {h.key for h in hits}
        out[mode] = {kind: found[kind] / opts.retrieval for kind in kinds}
        out[mode]["all"] = sum(found.values()) / len(asks)
    store.close()
    shutil.rmtree(root, ignore_errors=True)
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--dims", type=int, default=128)
    p.add_argument("--searches", type=int, default=200)
    p.add_argument("--retrieval", type=int, default=100, help="queries per kind")
    p.add_argument("--memories", type=int, default=20_000, help="retrieval set size")
    p.add_argument(
        "--cache-from",
        type=int,
        default=500_000,
        help="TieredStore builds of this many items or more are kept in "
        "$TIEREDMEM_SCALE_CACHE (default <tmp>/tieredmem-scale-cache) and reused",
    )
    p.add_argument("--quantization", default="none", choices=("none", "int8", "binary"))
    p.add_argument("--only", default=",".join(CONFIGS))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--quick", action="store_true", help="5,000 items, 50 searches")
    p.add_argument("--dir", default=None)
    p.add_argument("--name", default="", help="results file: store_vectors_NAME.json")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.quick:
        opts.items, opts.searches, opts.users = 5000, 50, 100
        opts.retrieval, opts.memories = 30, 2000
    # Workload's other phases are not run here.
    opts.ops = 0
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    if opts.worker:
        print(json.dumps(worker(opts.worker, opts)))
        return 0
    results = []
    for name in opts.only.split(","):
        args = list(argv if argv is not None else sys.argv[1:])
        proc = subprocess.run(
            [sys.executable, __file__, *args, "--worker", name],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        if proc.returncode != 0:
            print(f"{name} failed:\n{proc.stderr}", file=sys.stderr)
            return 1
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    command = "python benchmarks/store_vectors.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    path = results_path("store_vectors" + (f"_{opts.name}" if opts.name else ""), opts.quick)
    Path(path).write_text(json.dumps({"command": command, "results": results}, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

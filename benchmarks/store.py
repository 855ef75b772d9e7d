"""LangGraph store benchmark: ``TieredStore`` against ``InMemoryStore`` and ``SqliteStore``.

What it measures
----------------
Every configuration runs in a fresh process (this script re-runs itself with a hidden
``--worker NAME``, which prints one JSON line), so imports, caches and peak RSS never leak
between them:

``tieredstore``              ``tieredmem.langgraph.TieredStore(path, hot_bytes="16MiB")``
                             (``--hot-bytes``), its defaults otherwise (``durability="sync"``)
``langgraph-inmemorystore``  ``langgraph.store.memory.InMemoryStore()``: memory only
``langgraph-sqlitestore``    ``langgraph.store.sqlite.SqliteStore`` on
                             ``sqlite3.connect(path, check_same_thread=False,
                             isolation_level=None)`` (what ``SqliteStore.from_conn_string``
                             does) after ``setup()``, as a user would write it: SQLite's
                             defaults (rollback journal, ``synchronous=FULL``), one
                             transaction per call

Workload: ``--items`` values of ~1 KB (about 870 bytes of JSON), item *i* under namespace
``("users", f"u{i % users}", "memories")`` with key ``f"m{i}"`` and value
``{"id": i, "user": "u…", "kind": one of 5 kinds, "score": 0..99, "text": …}``, where
``text`` is ~800 characters of words drawn uniformly from a seeded vocabulary of 2,000
made-up words (so a given word is in ~5% of the values).  Values are generated
deterministically from ``--seed``, outside the timed region.  Phases, each op timed
with ``perf_counter_ns`` (ops/s = ops / summed op time; p50/p99 in microseconds):

1. ``put``: every item once (``store.put(namespace, key, value)``).
2. ``get``: ``--ops`` gets of uniformly random items (``store.get(namespace, key)``).
   With 100,000 items (~90 MB of values) TieredStore's 16 MiB hot tier holds about an
   eighth of them, so most gets read SQLite; its hot-tier hit rate is reported.
3. ``search_filter``: ``--searches`` calls of ``store.search(("users", uN),
   filter={"kind": K, "score": {"$gte": 50}}, limit=10)`` for a random user and kind.
   ``search_filter_in``: the same with ``{"kind": {"$in": [K, K2]}, ...}`` (LangGraph's
   stores, which have no ``$in``, run one search per kind and keep the first 10).  Then
   TieredStore declares ``kind`` and ``score`` (``declare_index``, timed as
   ``filter_declare_s``) and both run again as ``search_filter_decl`` and
   ``search_filter_in_decl`` (the LangGraph stores, without such a declaration, simply
   run them again).
4. ``search_query``: ``--searches`` calls of ``store.search(("users", uN), query=W,
   limit=10)`` for a random user and vocabulary word.  Without an ``index`` TieredStore
   answers ``query=`` with a full-text (SQLite FTS5) search; the first query builds the
   full-text index, which is timed separately (``fts_build_s``) before the steady-state
   queries.  Neither LangGraph store searches text without an index (``query`` is
   ignored: they return the namespace's first items), so their ``search_query`` figures
   are marked "no text search" and are not like for like.
5. ``peak_rss_mb``: peak RSS of the worker from the OS (``_common.peak_rss_mb``);
   ``base_rss_mb`` is the same right after the imports and the (empty) store, so
   ``delta_rss_mb`` (peak - base) is what the data and the operations cost.
   ``rss_after_put_mb`` is the current RSS after the put phase.
6. ``disk_bytes``: the size of the configuration's directory after close.

Every answer is checked (the right item for a get; the right number of results, each
in the user's namespace and matching the filter or containing the word, for a search);
wrong answers are counted in ``errors`` and printed.

How to run
----------
From the repository root (the script finds ``tieredmem`` next to it)::

    python benchmarks/store.py                 # 100,000 items, every configuration
    python benchmarks/store.py --quick         # 10,000 items, 10,000 gets (smoke run)
    python benchmarks/store.py --only tieredstore,langgraph-sqlitestore --repeat 3
    python benchmarks/store.py --vectors       # then the vector scenarios (store_vectors.py)

It prints a table, the ratios and the targets (PASS/FAIL; they are defined at 100,000 items,
so other sizes are informative only) and the command that reproduces the run, and writes
everything with machine info, package versions and the git commit to
``benchmarks/results/store.json`` (``--quick``: ``store_quick.json`` outside the source
tree, in ``$TIEREDMEM_BENCH_RESULTS`` or ``<tmp>/tieredmem-bench``, so a smoke run changes
no tracked file).  All files live in a temporary directory (``--dir``) that is removed at
the end.  The exit status is 1 only if a configuration failed to run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import operator
import os
import platform
import random
import shlex
import shutil
import string
import sys
import tempfile
import time
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import (
    cpu_and_memory,
    dir_bytes,
    git_state,
    metric,
    peak_rss_mb,
    phase_result,
    plan,
    ratio,
    require,
    results_path,
    with_hit_rate,
    worker_args,
    zeros,
)
from _common import median as _median
from _common import rss_mb as rss_now_mb
from _common import run_worker as _run_worker

if TYPE_CHECKING:
    from langgraph.store.base import BaseStore

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TIERED = "tieredstore"
INMEMORY = "langgraph-inmemorystore"
SQLITE = "langgraph-sqlitestore"
CONFIGS = (TIERED, INMEMORY, SQLITE)
PHASES = ("put", "get", "search_filter", "search_query")
PACKAGES = (
    "tieredmem",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "apsw",
    "orjson",
    "zstandard",
    "cachetools",
)
TARGET_ITEMS = 100_000  # the size the issue's targets are stated for

KINDS = ("fact", "preference", "episode", "instruction", "summary")
VOCAB_SIZE = 2000
TEXT_WORDS = 110  # words of 3-10 letters plus a space: ~800 characters
SEARCH_LIMIT = 10
MIN_SCORE = 50
KEY = "m%d"

Value = dict[str, Any]


# -- workload ---------------------------------------------------------------------------
#: What this benchmark needs beyond tieredmem (``tieredmem bench`` checks it first).
REQUIRES: dict[str, list[str]] = {"modules": ["langgraph", "langgraph.store.sqlite"]}


def vocabulary(seed: int) -> list[str]:
    """``VOCAB_SIZE`` distinct made-up lowercase words (never one of ``KINDS``)."""
    rng = random.Random(seed)
    seen = set(KINDS)
    words: list[str] = []
    while len(words) < VOCAB_SIZE:
        word = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 10)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


class Workload:
    """The items, the random picks of every phase, and the answers the searches expect.

    Everything but the values themselves is built up front (before the worker measures
    its base RSS); values are generated one at a time during the put phase.
    """

    def __init__(self, opts: argparse.Namespace) -> None:
        self.n: int = opts.items
        self.users: int = opts.users
        self.seed: int = opts.seed
        self.vocab = vocabulary(opts.seed)
        self.namespaces = [("users", f"u{u}", "memories") for u in range(self.users)]
        self.prefixes = [("users", f"u{u}") for u in range(self.users)]
        rng = random.Random(opts.seed + 1)
        self.gets = array("l", (rng.randrange(self.n) for _ in range(opts.ops)))
        s = opts.searches
        self.filter_users = array("l", (rng.randrange(self.users) for _ in range(s)))
        self.filter_kinds = array("l", (rng.randrange(len(KINDS)) for _ in range(s)))
        self.query_users = array("l", (rng.randrange(self.users) for _ in range(s)))
        self.query_words = array("l", (rng.randrange(VOCAB_SIZE) for _ in range(s)))
        self.first_query = (rng.randrange(self.users), rng.randrange(VOCAB_SIZE))
        # Filled in by value(): matching items per (user, kind), and per planned query.
        self.filter_counts = array("l", bytes(8 * self.users * len(KINDS)))
        self.query_counts = array("l", bytes(8 * s))
        self.planned: dict[int, list[tuple[int, int]]] = {}
        for q in range(s):
            self.planned.setdefault(self.query_users[q], []).append((q, self.query_words[q]))

    def value(self, i: int, record: bool = True) -> Value:
        """The deterministic value of item *i*; *record* counts it into the expected
        answers (do so once per item)."""
        rng = random.Random(self.seed * 1_000_003 + i)
        u = i % self.users
        kind = rng.randrange(len(KINDS))
        score = rng.randrange(100)
        words = rng.choices(range(VOCAB_SIZE), k=TEXT_WORDS)
        if record and score >= MIN_SCORE:
            self.filter_counts[u * len(KINDS) + kind] += 1
        planned = self.planned.get(u) if record else None
        if planned:
            present = set(words)
            for q, w in planned:
                if w in present:
                    self.query_counts[q] += 1
        vocab = self.vocab
        return {
            "id": i,
            "user": f"u{u}",
            "kind": KINDS[kind],
            "score": score,
            "text": " ".join([vocab[w] for w in words]),
        }

    def user_items(self, u: int) -> int:
        """How many items user *u* has."""
        return self.n // self.users + (1 if u < self.n % self.users else 0)


# -- adapters: one per configuration ----------------------------------------------------
class Adapter:
    """A store under test (a LangGraph ``BaseStore``), plus hooks for the report."""

    #: Does ``search(query=...)`` search text (rather than ignore the query)?
    text_search = False
    on_disk = True
    store: BaseStore

    def __init__(self, root: Path, opts: argparse.Namespace) -> None:
        self.root = root
        self.opts = opts

    def counters(self) -> tuple[int, int] | None:
        """(hot hits, hot misses) so far, for stores with a hot tier."""
        return None

    def info(self) -> dict[str, Any]:
        """Anything worth recording before close."""
        return {}

    def close(self) -> None:
        """Release the store."""


class Tiered(Adapter):
    text_search = True

    def __init__(self, root: Path, opts: argparse.Namespace) -> None:
        super().__init__(root, opts)
        from tieredmem.langgraph import TieredStore

        self.tiered = TieredStore(str(root / "store.db"), hot_bytes=opts.hot_bytes)
        self.store = self.tiered

    def counters(self) -> tuple[int, int]:
        stats = self.tiered.store.stats()
        return stats.hits, stats.misses

    def info(self) -> dict[str, Any]:
        return {"stats": self.tiered.store.stats().as_dict()}

    def close(self) -> None:
        self.tiered.close()


class InMemory(Adapter):
    on_disk = False

    def __init__(self, root: Path, opts: argparse.Namespace) -> None:
        super().__init__(root, opts)
        from langgraph.store.memory import InMemoryStore

        self.store = InMemoryStore()


class Sqlite(Adapter):
    def __init__(self, root: Path, opts: argparse.Namespace) -> None:
        super().__init__(root, opts)
        import sqlite3

        from langgraph.store.sqlite import SqliteStore

        # What SqliteStore.from_conn_string does, without holding its context manager.
        self.conn = sqlite3.connect(
            str(root / "store.sqlite"), check_same_thread=False, isolation_level=None
        )
        sqlite_store = SqliteStore(self.conn)
        sqlite_store.setup()
        self.store = sqlite_store

    def info(self) -> dict[str, Any]:
        pragma = self.conn.execute
        return {
            "journal_mode": pragma("PRAGMA journal_mode").fetchone()[0],
            "synchronous": pragma("PRAGMA synchronous").fetchone()[0],
        }

    def close(self) -> None:
        self.conn.close()


def make_adapter(name: str, root: Path, opts: argparse.Namespace) -> Adapter:
    if name == TIERED:
        return Tiered(root, opts)
    if name == INMEMORY:
        return InMemory(root, opts)
    if name == SQLITE:
        return Sqlite(root, opts)
    raise ValueError(f"unknown configuration {name!r}")


# -- phases -----------------------------------------------------------------------------
def run_put(store: BaseStore, work: Workload) -> dict[str, Any]:
    n = work.n
    lat = zeros(n)
    put, namespaces, users = store.put, work.namespaces, work.users
    for i in range(n):
        ns, key, value = namespaces[i % users], KEY % i, work.value(i)
        t0 = time.perf_counter_ns()
        put(ns, key, value)
        lat[i] = time.perf_counter_ns() - t0
    return phase_result(lat, sum(lat))


def run_get(store: BaseStore, work: Workload) -> dict[str, Any]:
    """Get each item of ``work.gets``; it must come back with its own id."""
    picks = work.gets
    n = len(picks)
    lat = zeros(n)
    errors = 0
    get, namespaces, users = store.get, work.namespaces, work.users
    for i in range(n):
        j = picks[i]
        ns, key = namespaces[j % users], KEY % j
        t0 = time.perf_counter_ns()
        item = get(ns, key)
        lat[i] = time.perf_counter_ns() - t0
        if item is None or item.key != key or item.value["id"] != j:
            errors += 1
    return phase_result(lat, sum(lat), errors)


def run_search_filter(store: BaseStore, work: Workload) -> dict[str, Any]:
    """Filtered searches: each result must match; as many results as there are matches."""
    n = len(work.filter_users)
    lat = zeros(n)
    errors = 0
    search = store.search
    for i in range(n):
        u, k = work.filter_users[i], work.filter_kinds[i]
        prefix, kind = work.prefixes[u], KINDS[k]
        flt = {"kind": kind, "score": {"$gte": MIN_SCORE}}
        t0 = time.perf_counter_ns()
        found = search(prefix, filter=flt, limit=SEARCH_LIMIT)
        lat[i] = time.perf_counter_ns() - t0
        want = min(SEARCH_LIMIT, work.filter_counts[u * len(KINDS) + k])
        if len(found) != want or not all(
            it.namespace == work.namespaces[u]
            and it.value["kind"] == kind
            and it.value["score"] >= MIN_SCORE
            for it in found
        ):
            errors += 1
    return phase_result(lat, sum(lat), errors)


def run_search_filter_in(store: BaseStore, work: Workload, native: bool) -> dict[str, Any]:
    """Filtered searches with the new operators: ``{"kind": {"$in": [K, K2]}, "score":
    {"$gte": 50}}`` for a random user and two kinds; results as for ``search_filter``.
    A store without ``$in`` (*native* false: LangGraph's) runs what its users would
    write instead, one search per kind, and keeps the first ``SEARCH_LIMIT`` by key."""
    n = len(work.filter_users)
    lat = zeros(n)
    errors = 0
    search = store.search
    kinds = len(KINDS)
    for i in range(n):
        u, k = work.filter_users[i], work.filter_kinds[i]
        k2 = (k + 1 + i % (kinds - 1)) % kinds
        prefix, pair = work.prefixes[u], (KINDS[k], KINDS[k2])
        t0 = time.perf_counter_ns()
        if native:
            flt = {"kind": {"$in": list(pair)}, "score": {"$gte": MIN_SCORE}}
            found = search(prefix, filter=flt, limit=SEARCH_LIMIT)
        else:
            found = []
            for kind in pair:
                flt = {"kind": kind, "score": {"$gte": MIN_SCORE}}
                found += search(prefix, filter=flt, limit=SEARCH_LIMIT)
            found = sorted(found, key=lambda it: (it.namespace, it.key))[:SEARCH_LIMIT]
        lat[i] = time.perf_counter_ns() - t0
        counts = work.filter_counts
        want = min(SEARCH_LIMIT, counts[u * kinds + k] + counts[u * kinds + k2])
        if len(found) != want or not all(
            it.namespace == work.namespaces[u]
            and it.value["kind"] in pair
            and it.value["score"] >= MIN_SCORE
            for it in found
        ):
            errors += 1
    return phase_result(lat, sum(lat), errors)


#: The filtered-search phases: as given, then after TieredStore declares ``kind`` and
#: ``score`` as filter fields (the LangGraph stores have no such declaration: they run
#: the same searches again).
FILTER_PHASES = ("search_filter", "search_filter_in", "search_filter_decl", "search_filter_in_decl")
FILTER_FIELDS = ["kind", "score"]


def run_filter_phases(adapter: Adapter, work: Workload, phases: dict[str, Any]) -> dict[str, Any]:
    """Run :data:`FILTER_PHASES` into *phases*; return what to record (the time
    TieredStore takes to declare and index the filter fields of every stored item)."""
    store = adapter.store
    tiered = isinstance(adapter, Tiered)
    phases["search_filter"] = run_search_filter(store, work)
    phases["search_filter_in"] = run_search_filter_in(store, work, tiered)
    declare_s = None
    if tiered:
        t0 = time.perf_counter()
        adapter.tiered.store.declare_index(FILTER_FIELDS)
        declare_s = round(time.perf_counter() - t0, 3)
    phases["search_filter_decl"] = run_search_filter(store, work)
    phases["search_filter_in_decl"] = run_search_filter_in(store, work, tiered)
    return {"filter_declare_s": declare_s}


def filter_table(summary: dict[str, Any]) -> str:
    """ops/s of the filtered-search phases (``decl``: after TieredStore declared the
    filter fields; the others have no declaration)."""
    head = ["config", *(p.replace("search_", "") + "/s" for p in FILTER_PHASES)]
    rows = [
        [config, *(fmt(metric(summary, config, p)) for p in FILTER_PHASES)]
        for config in CONFIGS
        if config in summary and "error" not in summary[config]
    ]
    return table(head, rows)


def filter_targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue #18: filtered search at least 2x SqliteStore's rate and at least
    InMemoryStore's, with and without declared filter fields."""
    out = []
    for phase in FILTER_PHASES:
        for other, label, least in (
            (SQLITE, "2x SqliteStore", 2.0),
            (INMEMORY, "InMemoryStore", 1.0),
        ):
            mine, theirs = metric(summary, TIERED, phase), metric(summary, other, phase)
            value = ratio(mine, theirs)
            out.append(
                {
                    "target": f"{phase}: TieredStore >= {label}",
                    "value": value,
                    "rule": f"ratio >= {least:g}",
                    "pass": None if value is None else value >= least,
                    "detail": f"{fmt(mine)} vs {fmt(theirs)} ops/s",
                }
            )
    return out


def run_search_query(store: BaseStore, work: Workload, text_search: bool) -> dict[str, Any]:
    """Text searches.  A store that searches text must return items containing the word
    (as many as there are, up to the limit); one that ignores ``query`` must return the
    user's items, up to the limit."""
    n = len(work.query_users)
    lat = zeros(n)
    errors = 0
    search = store.search
    for i in range(n):
        u = work.query_users[i]
        prefix, word = work.prefixes[u], work.vocab[work.query_words[i]]
        t0 = time.perf_counter_ns()
        found = search(prefix, query=word, limit=SEARCH_LIMIT)
        lat[i] = time.perf_counter_ns() - t0
        if text_search:
            want = min(SEARCH_LIMIT, work.query_counts[i])
            ok = all(word in it.value["text"].split() for it in found)
        else:
            want = min(SEARCH_LIMIT, work.user_items(u))
            ok = True
        if len(found) != want or not ok or any(it.namespace != work.namespaces[u] for it in found):
            errors += 1
    return phase_result(lat, sum(lat), errors)


def worker(name: str, opts: argparse.Namespace) -> None:
    root = Path(opts.dir)
    work = Workload(opts)
    adapter = make_adapter(name, root, opts)
    store = adapter.store
    base = peak_rss_mb()  # after imports and the empty store: what Δ RSS is measured from

    phases: dict[str, Any] = {"put": run_put(store, work)}
    rss_after_put = rss_now_mb()
    phases["get"] = with_hit_rate(adapter, lambda: run_get(store, work))
    filter_info = run_filter_phases(adapter, work, phases)
    # The first text query (untimed in the phase): TieredStore builds its FTS index here.
    u, w = work.first_query
    t0 = time.perf_counter_ns()
    store.search(work.prefixes[u], query=work.vocab[w], limit=SEARCH_LIMIT)
    first_query_s = (time.perf_counter_ns() - t0) / 1e9
    phases["search_query"] = run_search_query(store, work, adapter.text_search)
    peak_before_close = peak_rss_mb()
    info = adapter.info()
    adapter.close()
    result = {
        "config": name,
        "items": work.n,
        "users": work.users,
        "ops": len(work.gets),
        "searches": len(work.query_users),
        "value_bytes": len(json.dumps(work.value(0, record=False), separators=(",", ":"))),
        "text_search": adapter.text_search,
        "phases": phases,
        "first_query_s": round(first_query_s, 4),
        "fts_build_s": round(first_query_s, 4) if adapter.text_search else None,
        "disk_bytes": dir_bytes(root) if adapter.on_disk else None,
        "base_rss_mb": round(base, 1),
        "rss_after_put_mb": round(rss_after_put, 1),
        "peak_rss_mb": round(peak_before_close, 1),
        "delta_rss_mb": round(peak_before_close - base, 1),
        "info": info,
        **filter_info,
    }
    print(json.dumps(result), flush=True)


# -- parent: run workers, summarize, report ---------------------------------------------
WORKER_OPTIONS = ("items", "users", "ops", "searches", "hot_bytes", "seed")


def run_worker(name: str, opts: argparse.Namespace, base: Path, rep: int) -> dict[str, Any]:
    return _run_worker(__file__, name, worker_args(opts, WORKER_OPTIONS), base, rep)


def median(values: Sequence[float | None]) -> float | None:
    return _median(values, 4)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every number over the repeats of one configuration."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[-1]["error"] if runs else "no run"}
    out: dict[str, Any] = {"repeats": len(ok), "text_search": ok[0]["text_search"]}
    for key, val in ok[0].items():
        if isinstance(val, (int, float)) and not isinstance(val, bool):
            out[key] = median([r.get(key) for r in ok])
    for key in ("fts_build_s", "disk_bytes"):
        out[key] = median([r.get(key) for r in ok])
    out["phases"] = {
        phase: {
            field: median([r["phases"][phase].get(field) for r in ok])
            for field in fields
            if field in ("ops_per_s", "p50_us", "p99_us", "errors", "hot_hit_rate")
        }
        for phase, fields in ok[0]["phases"].items()
    }
    return out


def ratios(summary: dict[str, Any]) -> dict[str, float | None]:
    """TieredStore over each LangGraph store: ops/s per phase (> 1: TieredStore is
    faster), then peak and Δ RSS (< 1: TieredStore uses less)."""
    out: dict[str, float | None] = {}
    for other, label in ((INMEMORY, "InMemoryStore"), (SQLITE, "SqliteStore")):
        for phase in PHASES:
            out[f"{phase} ops/s: TieredStore / {label}"] = ratio(
                metric(summary, TIERED, phase), metric(summary, other, phase)
            )
        for field, what in (("peak_rss_mb", "peak RSS"), ("delta_rss_mb", "Δ RSS")):
            out[f"{what}: TieredStore / {label}"] = ratio(
                summary.get(TIERED, {}).get(field), summary.get(other, {}).get(field)
            )
    return out


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets: TieredStore over another store, each ratio with its verdict
    (``None``: a configuration is missing or failed)."""
    out: list[dict[str, Any]] = []
    compare = {">=": operator.ge, ">": operator.gt, "<": operator.lt}

    def value_of(config: str, what: str) -> Any:
        """ops/s of a phase, or a top-level number such as ``peak_rss_mb``."""
        return metric(summary, config, what) if what in PHASES else summary[config].get(what)

    def target(label: str, what: str, other: str, rule: str, limit: float) -> None:
        mine = value_of(TIERED, what) if TIERED in summary else None
        theirs = value_of(other, what) if other in summary else None
        value = ratio(mine, theirs)
        unit, spec = ("ops/s", ",.0f") if what in PHASES else ("MB", ".1f")
        out.append(
            {
                "target": label,
                "value": value,
                "rule": f"ratio {rule} {limit:g}",
                "pass": None if value is None else compare[rule](value, limit),
                "detail": f"{fmt(mine, spec)} vs {fmt(theirs, spec)} {unit}",
            }
        )

    target("get: TieredStore ops/s >= InMemoryStore ops/s / 2", "get", INMEMORY, ">=", 0.5)
    target("peak RSS: TieredStore < InMemoryStore / 10", "peak_rss_mb", INMEMORY, "<", 0.1)
    target(
        "Δ RSS (peak - after imports): TieredStore < InMemoryStore / 10",
        "delta_rss_mb",
        INMEMORY,
        "<",
        0.1,
    )
    for phase in PHASES:
        note = ""
        if phase == "search_query" and not summary.get(SQLITE, {}).get("text_search"):
            note = " (SqliteStore ignores query=)"
        target(f"{phase}: TieredStore faster than SqliteStore{note}", phase, SQLITE, ">", 1)
    return out


def fmt(x: Any, spec: str = ",.0f") -> str:
    return "-" if x is None else format(x, spec)


def table(head: Sequence[str], rows: list[list[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    rows = [list(head), *rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def throughput_table(summary: dict[str, Any]) -> str:
    head = (
        "config",
        "put/s",
        "get/s",
        "filter/s",
        "query/s",
        "fts build s",
        "peak RSS MB",
        "Δ RSS MB",
        "disk MB",
    )
    rows: list[list[str]] = []
    for config in CONFIGS:
        s = summary.get(config)
        if s is None:
            continue
        if "error" in s:
            rows.append([config, "FAILED", *[""] * (len(head) - 2)])
            continue
        disk = s.get("disk_bytes")
        query = fmt(metric(summary, config, "search_query"))
        rows.append(
            [
                config,
                fmt(metric(summary, config, "put")),
                fmt(metric(summary, config, "get")),
                fmt(metric(summary, config, "search_filter")),
                query if s.get("text_search") else query + " *",
                fmt(s.get("fts_build_s"), ".2f"),
                fmt(s.get("peak_rss_mb"), ".1f"),
                fmt(s.get("delta_rss_mb"), ".1f"),
                fmt(disk / 1e6 if disk is not None else None, ".1f"),
            ]
        )
    return table(head, rows)


def latency_table(summary: dict[str, Any]) -> str:
    head = ["config"] + [f"{p} {q}" for p in PHASES for q in ("p50", "p99")]
    rows: list[list[str]] = []
    for config in CONFIGS:
        s = summary.get(config)
        if s is None or "error" in s:
            continue
        rows.append(
            [config]
            + [
                fmt(metric(summary, config, p, f"{q}_us"), ",.1f")
                for p in PHASES
                for q in ("p50", "p99")
            ]
        )
    return table(head, rows)


def machine() -> dict[str, Any]:
    import sqlite3

    versions: dict[str, str | None] = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        import apsw

        versions["sqlite (apsw, tieredmem)"] = apsw.sqlite_lib_version()
    except ImportError:
        pass
    versions["sqlite (sqlite3, SqliteStore)"] = sqlite3.sqlite_version
    info: dict[str, Any] = {
        "git": git_state(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    info.update(cpu_and_memory())
    return info


def report(opts: argparse.Namespace, results: dict[str, list[dict[str, Any]]]) -> int:
    summary = {name: summarize(runs) for name, runs in results.items()}
    failed = [name for name, s in summary.items() if "error" in s]
    rats = ratios(summary)
    goals = targets(summary) + filter_targets(summary)
    command = shlex.join(["python", "benchmarks/store.py", *sys.argv[1:]])

    print()
    print(
        f"{opts.items:,} items of ~1 KB under {opts.users:,} users, {opts.ops:,} gets, "
        f"{opts.searches:,} searches a search phase (limit {SEARCH_LIMIT}), TieredStore "
        f"hot_bytes={opts.hot_bytes}, repeat={opts.repeat}"
        + (" (medians)" if opts.repeat > 1 else "")
    )
    print(
        "ops/s per phase; peak RSS of the process; Δ RSS = peak minus RSS after the imports "
        "and the empty store"
    )
    print()
    print(throughput_table(summary))
    if any(not s.get("text_search", True) for s in summary.values()):
        print(
            "* no text search: without an index LangGraph's stores ignore query= and return "
            "the namespace's first items (not like for like)"
        )
    print("\nfiltered search, ops/s (decl: TieredStore declared filter_index=['kind', 'score'])")
    print(filter_table(summary))
    declare_s = summary.get(TIERED, {}).get("filter_declare_s")
    if declare_s is not None:
        print(
            f"{TIERED} declare_index({FILTER_FIELDS}) over {opts.items:,} items: {declare_s:.2f} s"
        )
    print("\nlatency per op, microseconds")
    print(latency_table(summary))
    if TIERED in summary and "phases" in summary[TIERED]:
        rate = fmt(metric(summary, TIERED, "get", "hot_hit_rate"), ".0%")
        print(f"\n{TIERED} hot-tier hit rate during the get phase: {rate}")
        build = summary[TIERED].get("fts_build_s")
        if build is not None:
            print(
                f"{TIERED} first text query (builds the full-text index of {opts.items:,} "
                f"items): {build:.2f} s"
            )
    errors = {
        config: {p: v["errors"] for p, v in s.get("phases", {}).items() if v.get("errors")}
        for config, s in summary.items()
    }
    errors = {k: v for k, v in errors.items() if v}
    if errors:
        print(f"\nWRONG RESULTS (answers that failed the check): {errors}")
    if any(v is not None for v in rats.values()):
        print("\nratios (ops/s: > 1 means TieredStore is faster; RSS: < 1 means smaller):")
        width = max(len(k) for k in rats)
        for name, val in rats.items():
            print(f"  {name.ljust(width)}  {fmt(val, '.3f')}")
    informative = opts.items != TARGET_ITEMS
    print(
        "\ntargets"
        + (f" (stated for {TARGET_ITEMS:,} items: informative only here)" if informative else "")
    )
    for t in goals:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[t["pass"]]
        print(f"  [{verdict}] {t['target']}: {fmt(t['value'], '.3f')} ({t['rule']}; {t['detail']})")
    for name in failed:
        print(f"\n{name} FAILED:\n{summary[name]['error']}")

    out = Path(opts.out) if opts.out else results_path("store", opts.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "store",
        "command": command,
        "options": {k: getattr(opts, k) for k in (*WORKER_OPTIONS, "repeat", "quick", "only")},
        "constants": {
            "kinds": list(KINDS),
            "vocab_size": VOCAB_SIZE,
            "text_words": TEXT_WORDS,
            "search_limit": SEARCH_LIMIT,
            "min_score": MIN_SCORE,
            "target_items": TARGET_ITEMS,
        },
        "machine": machine(),
        "summary": summary,
        "ratios": rats,
        "targets": goals,
        "targets_informative_only": informative,
        "runs": results,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nresults: {out}")
    print(f"reproduce: {command}")
    return 1 if failed else 0


def configs_of(only: str | None) -> list[str]:
    if not only:
        return list(CONFIGS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; choose from {', '.join(CONFIGS)}")
    return [n for n in CONFIGS if n in names]


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="TieredStore against LangGraph's InMemoryStore and SqliteStore; "
        "each configuration in a fresh process.",
    )
    p.add_argument("--items", type=int, help="items put (default 100000; 10000 with --quick)")
    p.add_argument("--ops", type=int, help="gets in the get phase (default 100000; 10000 --quick)")
    p.add_argument(
        "--searches", type=int, default=1000, help="searches per search phase (default 1000)"
    )
    p.add_argument("--users", type=int, default=1000, help="user namespaces (default 1000)")
    p.add_argument("--hot-bytes", default="16MiB", help="TieredStore hot tier (default 16MiB)")
    p.add_argument("--seed", type=int, default=42, help="workload seed (default 42)")
    p.add_argument("--quick", action="store_true", help="small smoke run (CI)")
    p.add_argument("--only", help="comma-separated configurations: " + ", ".join(CONFIGS))
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per configuration; > 1 reports medians (default 1)",
    )
    p.add_argument("--dir", help="directory for the files (default: a new temporary one)")
    p.add_argument("--out", help="JSON output (default benchmarks/results/store.json)")
    p.add_argument(
        "--vectors",
        action="store_true",
        help="then the vector and hybrid search scenarios on the same items "
        "(benchmarks/store_vectors.py)",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.items is None:
        opts.items = 10_000 if opts.quick else 100_000
    if opts.ops is None:
        opts.ops = 10_000 if opts.quick else 100_000
    if min(opts.items, opts.ops, opts.searches, opts.users, opts.repeat) < 1:
        p.error("--items, --ops, --searches, --users and --repeat must be >= 1")
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse(argv)
    if opts.worker:
        worker(opts.worker, opts)
        return 0
    require("benchmarks/store.py", REQUIRES)
    configs = configs_of(opts.only)
    base = Path(tempfile.mkdtemp(prefix="tieredmem-store-", dir=opts.dir))
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    try:
        for step, (rep, name) in enumerate(plan(configs, opts.repeat), 1):
            print(
                f"[{step}/{len(configs) * opts.repeat}] {name} ...",
                end=" ",
                file=sys.stderr,
                flush=True,
            )
            t0 = time.perf_counter()
            result = run_worker(name, opts, base, rep)
            status = "FAILED" if "error" in result else "ok"
            print(f"{status} ({time.perf_counter() - t0:.1f}s)", file=sys.stderr, flush=True)
            results[name].append(result)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    status = report(opts, results)
    if opts.vectors:
        import store_vectors

        same = ["--items", str(opts.items), "--users", str(opts.users), "--seed", str(opts.seed)]
        status = max(status, store_vectors.main([*same, *(["--quick"] if opts.quick else [])]))
    return status


if __name__ == "__main__":
    sys.exit(main())

"""Key-value benchmark: tieredmem against diskcache, sqlitedict, cachetools and raw APSW.

What it measures
----------------
Every configuration runs in a fresh process (this script re-runs itself with a hidden
``--worker NAME``), so imports, caches and peak RSS never leak between them:

``tieredmem-sync``    ``tieredmem.open(path, durability="sync")``
``tieredmem-batch``   ``tieredmem.open(path, durability="batch")`` (set ends with ``flush()``)
``tieredmem-relaxed`` ``tieredmem.open(path, coherence_interval=1.0)``: sync writes, and the
                      check for other processes' writes at most once a second instead of
                      once a read (what strict coherence costs a hot read)
``tieredmem-tinylfu`` ``tieredmem.open(path, hot_policy="tinylfu")``: sync, W-TinyLFU
                      admission instead of the default LRU (what the policy costs a get)
``tieredmem-baseline`` ``tieredmem-sync`` run with the tieredmem of ``--baseline DIR`` (a
                      checkout of another version, e.g. ``git worktree add DIR main``):
                      before/after figures from one run, repeats interleaved; only with
                      ``--baseline``
``diskcache``         ``diskcache.Cache(dir)`` with its defaults (pickle, WAL)
``sqlitedict``        ``SqliteDict(file, autocommit=True)`` with its defaults (pickle, DELETE
                      journal, one commit per set), as a user would write it
``cachetools-lru``    ``cachetools.LRUCache(maxsize=keys)``: memory only, the ceiling
``raw-apsw``          one WAL table ``kv(k TEXT PRIMARY KEY, v BLOB)`` of orjson bytes,
                      ``synchronous=NORMAL``, autocommit ``INSERT OR REPLACE``, point
                      ``SELECT`` (decoded with orjson); also ``set_batched`` (1000 rows a
                      transaction, into a separate file)

Values are ~1 KB JSON-like dicts (id, user, tags, score, ~800 characters of English-like
words from a small vocabulary), generated deterministically from a seed, outside the
timed region.  Keys are ``key-%08d``.  Phases, each op timed with ``perf_counter_ns``
(ops/s = ops / summed op time; p50/p99 in microseconds):

1. ``set``: every key once.
2. ``get_hot``: ``--ops`` uniform random gets over a subset of ``--hot-keys`` keys that
   were read once beforehand (the subset fits tieredmem's hot tier).
3. ``get_cold``: ``--ops`` uniform random gets over all keys; tieredmem runs with
   ``--hot-bytes`` (16MiB) while the data is larger, so most reads miss the hot tier.
4. ``get_miss``: ``--ops`` gets of keys that do not exist.
5. ``get_hot_4threads``: ``--threads`` threads, ``--ops / threads`` hot gets each, at
   once; ops/s over the wall time.
6. ``disk_bytes``: the size of the configuration's directory after close (db, -wal, -shm;
   tieredmem folds its WAL on close).
7. ``peak_rss_mb``: peak RSS of the worker process from the OS (``_common.peak_rss_mb``).

A separate ``tieredmem-rss`` worker writes ``--rss-mb`` MiB of fresh values through a
store with ``hot_bytes="16MiB"``, reads them back in random order and reports its peak
RSS (the target: under 100 MB while 100 MB of values pass through).

How to run
----------
From the repository root (the script finds ``tieredmem`` next to it)::

    python benchmarks/kv.py                       # 100,000 keys, every configuration
    python benchmarks/kv.py --quick               # 10,000 keys, fewer ops (CI smoke run)
    python benchmarks/kv.py --only tieredmem-sync,diskcache --repeat 3

It prints a table, the ratios the targets talk about, and the command that reproduces the
run, and writes everything with machine info to ``benchmarks/results/kv.json`` (``--quick``:
``kv_quick.json`` outside the source tree, in ``$TIEREDMEM_BENCH_RESULTS`` or
``<tmp>/tieredmem-bench``, so a smoke run changes no tracked file). All files live in a
temporary directory (``--dir``) that is removed at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import random
import shlex
import shutil
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import (
    dir_bytes,
    git_state,
    median,
    metric,
    phase_result,
    plan,
    ratio,
    require,
    results_path,
    with_hit_rate,
    worker_args,
    zeros,
)
from _common import peak_rss_mb as rss_mb
from _common import run_worker as _run_worker

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONFIGS = (
    "tieredmem-sync",
    "tieredmem-batch",
    "tieredmem-relaxed",
    "tieredmem-tinylfu",
    "tieredmem-baseline",
    "diskcache",
    "sqlitedict",
    "cachetools-lru",
    "raw-apsw",
    "tieredmem-rss",
)
KV_CONFIGS = CONFIGS[:-1]
GET_PHASES = ("get_hot", "get_cold", "get_miss", "get_hot_4threads")
PACKAGES = ("tieredmem", "apsw", "cachetools", "orjson", "zstandard", "diskcache", "sqlitedict")
NS = ("bench",)
KEY = "key-%08d"
MISS_KEY = "missing-%08d"
RSS_KEY = "rss-%08d"

_VOCAB_TEXT = (
    "the memory agent model user said that this would be a good time to remember what "
    "happened before we asked about project plan meeting notes city weather travel book "
    "store order price code test build deploy server error fix review issue branch merge "
    "question answer summary context window token prompt reply friend family dinner music "
    "movie garden coffee morning evening week month year because however although while "
    "after before during under over between about around into through small large quick "
    "slow early late new old first last next other same different important simple clear "
    "open close read write send keep find call help show start stop try need want like "
    "know think feel make take give look come go see get put run tell work seem leave"
)
VOCAB = _VOCAB_TEXT.split()
_TAGS_TEXT = (
    "work home travel food music code health money family sport news books "
    "ideas todo done urgent later personal shared archive draft"
)
TAGS = _TAGS_TEXT.split()

Value = dict[str, Any]
Getter = Callable[[str], Any]


# -- workload ---------------------------------------------------------------------------
#: What this benchmark needs beyond tieredmem (``tieredmem bench`` checks it first).
REQUIRES: dict[str, list[str]] = {"modules": ["diskcache", "sqlitedict"]}


def make_value(i: int, salt: int = 1) -> Value:
    """The deterministic ~1 KB value number *i* (another *salt* gives other values)."""
    rng = random.Random(salt * 1_000_003 + i)
    return {
        "id": i,
        "user": f"user-{rng.randrange(1000):04d}",
        "tags": rng.sample(TAGS, 3),
        "score": round(rng.random(), 4),
        "created": 1_700_000_000 + i,
        "text": " ".join(rng.choices(VOCAB, k=140)),
    }


# -- adapters: one per configuration ----------------------------------------------------
class Adapter:
    """A store under test: ``set``/``get`` of one key, plus hooks for the phases."""

    def __init__(self, root: Path, opts: argparse.Namespace) -> None:
        self.root = root
        self.opts = opts

    def set(self, key: str, value: Value) -> None:
        raise NotImplementedError

    def get(self, key: str) -> Any:
        """The value under *key*, or ``None``."""
        raise NotImplementedError

    def finish_set(self) -> None:
        """Called (and timed) after the last set."""

    def thread_getter(self) -> tuple[Getter, Callable[[], None]]:
        """A getter for one reader thread, and what to call when the thread is done."""
        return self.get, lambda: None

    def counters(self) -> tuple[int, int] | None:
        """(hot hits, hot misses) so far, for stores with a hot tier."""
        return None

    def info(self) -> dict[str, Any]:
        """Anything worth recording before close."""
        return {}

    def close(self) -> None:
        raise NotImplementedError

    @property
    def on_disk(self) -> bool:
        return True


class TieredMem(Adapter):
    def __init__(
        self,
        root: Path,
        opts: argparse.Namespace,
        durability: str,
        coherence_interval: float = 0.0,
        hot_policy: str | None = None,
    ) -> None:
        super().__init__(root, opts)
        import tieredmem

        self.store = tieredmem.open(
            str(root / "store.db"),
            **({"hot_policy": hot_policy} if hot_policy else {}),
            hot_bytes=opts.hot_bytes,
            durability=durability,
            flush_interval=1.0,
            maintenance_interval=0,
            coherence_interval=coherence_interval,
        )

    def set(self, key: str, value: Value) -> None:
        self.store.put(NS, key, value)

    def get(self, key: str) -> Any:
        item = self.store.get(NS, key)
        return None if item is None else item.value

    def finish_set(self) -> None:
        self.store.flush()

    def counters(self) -> tuple[int, int]:
        stats = self.store.stats()
        return stats.hits, stats.misses

    def info(self) -> dict[str, Any]:
        return {"stats": self.store.stats().as_dict()}

    def close(self) -> None:
        self.store.close()


class DiskCache(Adapter):
    def __init__(self, root: Path, opts: argparse.Namespace) -> None:
        super().__init__(root, opts)
        import diskcache

        self.cache = diskcache.Cache(str(root / "cache"))

    def set(self, key: str, value: Value) -> None:
        self.cache.set(key, value)

    def get(self, key: str) -> Any:
        return self.cache.get(key)

    def close(self) -> None:
        self.cache.close()


class SqliteDictAdapter(Adapter):
    def __init__(self, root: Path, opts: argparse.Namespace) -> None:
        super().__init__(root, opts)
        from sqlitedict import SqliteDict

        self.db = SqliteDict(str(root / "dict.sqlite"), autocommit=True)

    def set(self, key: str, value: Value) -> None:
        self.db[key] = value

    def get(self, key: str) -> Any:
        return self.db.get(key)

    def close(self) -> None:
        self.db.close()


class CachetoolsLRU(Adapter):
    def __init__(self, root: Path, opts: argparse.Namespace) -> None:
        super().__init__(root, opts)
        from cachetools import LRUCache

        self.cache: LRUCache[str, Value] = LRUCache(maxsize=opts.keys)
        self.lock = threading.Lock()

    def set(self, key: str, value: Value) -> None:
        self.cache[key] = value

    def get(self, key: str) -> Any:
        return self.cache.get(key)

    def thread_getter(self) -> tuple[Getter, Callable[[], None]]:
        # An LRU reorders on every read, so threads must share a lock (as cachetools says).
        cache, lock = self.cache, self.lock

        def get(key: str) -> Any:
            with lock:
                return cache.get(key)

        return get, lambda: None

    def close(self) -> None:
        self.cache.clear()

    @property
    def on_disk(self) -> bool:
        return False


class RawAPSW(Adapter):
    INSERT = "INSERT OR REPLACE INTO kv(k, v) VALUES (?, ?)"
    SELECT = "SELECT v FROM kv WHERE k = ?"

    def __init__(self, root: Path, opts: argparse.Namespace) -> None:
        super().__init__(root, opts)
        import apsw
        import orjson

        self.apsw = apsw
        self.dumps = orjson.dumps
        self.loads = orjson.loads
        self.path = root / "kv.db"
        self.con = self.connect(self.path)

    def connect(self, path: Path) -> Any:
        con = self.apsw.Connection(str(path))
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("CREATE TABLE IF NOT EXISTS kv(k TEXT PRIMARY KEY, v BLOB)")
        return con

    def set(self, key: str, value: Value) -> None:
        self.con.execute(self.INSERT, (key, self.dumps(value)))

    def get(self, key: str) -> Any:
        for (v,) in self.con.execute(self.SELECT, (key,)):
            return self.loads(v)
        return None

    def thread_getter(self) -> tuple[Getter, Callable[[], None]]:
        con = self.connect(self.path)  # one connection per thread, as apsw advises
        select, loads = self.SELECT, self.loads

        def get(key: str) -> Any:
            for (v,) in con.execute(select, (key,)):
                return loads(v)
            return None

        return get, con.close

    def set_batched(self, n: int, batch: int = 1000) -> dict[str, Any]:
        """INSERT every key, ``batch`` rows a transaction, into a separate file."""
        path = self.root / "batched.db"
        con = self.connect(path)
        insert, dumps = self.INSERT, self.dumps
        lat = zeros(n)
        for i in range(n):
            key, value = KEY % i, make_value(i)
            t0 = time.perf_counter_ns()
            if i % batch == 0:
                con.execute("BEGIN")
            con.execute(insert, (key, dumps(value)))
            if i % batch == batch - 1 or i == n - 1:
                con.execute("COMMIT")
            lat[i] = time.perf_counter_ns() - t0
        con.close()
        for p in self.root.glob("batched.db*"):
            p.unlink()
        return phase_result(lat, sum(lat))

    def close(self) -> None:
        self.con.close()


def make_adapter(name: str, root: Path, opts: argparse.Namespace) -> Adapter:
    if name == "tieredmem-sync":
        return TieredMem(root, opts, "sync")
    if name == "tieredmem-batch":
        return TieredMem(root, opts, "batch")
    if name == "tieredmem-relaxed":
        return TieredMem(root, opts, "sync", coherence_interval=1.0)
    if name == "tieredmem-baseline":
        return TieredMem(root, opts, "sync")  # worker() put the baseline first on sys.path
    if name == "tieredmem-tinylfu":
        return TieredMem(root, opts, "sync", hot_policy="tinylfu")
    if name == "diskcache":
        return DiskCache(root, opts)
    if name == "sqlitedict":
        return SqliteDictAdapter(root, opts)
    if name == "cachetools-lru":
        return CachetoolsLRU(root, opts)
    if name == "raw-apsw":
        return RawAPSW(root, opts)
    raise ValueError(f"unknown configuration {name!r}")


# -- phases -----------------------------------------------------------------------------
def run_set(store: Adapter, n: int) -> dict[str, Any]:
    lat = zeros(n)
    put = store.set
    for i in range(n):
        key, value = KEY % i, make_value(i)
        t0 = time.perf_counter_ns()
        put(key, value)
        lat[i] = time.perf_counter_ns() - t0
    t0 = time.perf_counter_ns()
    store.finish_set()
    finish = time.perf_counter_ns() - t0
    out = phase_result(lat, sum(lat) + finish)
    out["finish_us"] = round(finish / 1000, 1)
    return out


def run_gets(get: Getter, indices: Sequence[int], key_fmt: str, hit: bool) -> dict[str, Any]:
    """Get ``key_fmt % j`` for each j; a hit must return value j, a miss ``None``."""
    n = len(indices)
    lat = zeros(n)
    errors = 0
    for i in range(n):
        j = indices[i]
        key = key_fmt % j
        t0 = time.perf_counter_ns()
        v = get(key)
        lat[i] = time.perf_counter_ns() - t0
        if (v is None or v["id"] != j) if hit else v is not None:
            errors += 1
    return phase_result(lat, sum(lat), errors)


def run_threads(
    store: Adapter, subset: Sequence[int], threads: int, ops: int, seed: int
) -> dict[str, Any]:
    """*threads* threads, each doing ``ops // threads`` random hot gets, started at once."""
    per = ops // threads
    lats = [zeros(per) for _ in range(threads)]
    errors = [0] * threads
    ready = threading.Barrier(threads + 1)
    done = threading.Barrier(threads + 1)

    def work(t: int) -> None:
        get, cleanup = store.thread_getter()
        try:
            for j in subset:  # warm this thread's connection / cache (untimed)
                get(KEY % j)
            rng = random.Random(seed * 7919 + t)
            picks = [subset[rng.randrange(len(subset))] for _ in range(per)]
            lat = lats[t]
            ready.wait()
            for i in range(per):
                j = picks[i]
                key = KEY % j
                t0 = time.perf_counter_ns()
                v = get(key)
                lat[i] = time.perf_counter_ns() - t0
                if v is None or v["id"] != j:
                    errors[t] += 1
            done.wait()
        except BaseException:
            ready.abort()  # let the main thread see the failure instead of waiting
            done.abort()
            raise
        finally:
            cleanup()

    pool = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(threads)]
    for th in pool:
        th.start()
    ready.wait()
    t0 = time.perf_counter_ns()
    done.wait()
    wall = time.perf_counter_ns() - t0
    for th in pool:
        th.join()
    merged = array("q")
    for lat in lats:
        merged.extend(lat)
    out = phase_result(merged, wall, sum(errors))
    out["threads"] = threads
    return out


def worker_kv(name: str, opts: argparse.Namespace) -> dict[str, Any]:
    root = Path(opts.dir)
    n, ops, seed = opts.keys, opts.ops, opts.seed
    store = make_adapter(name, root, opts)
    base = rss_mb()
    rng = random.Random(seed)
    subset = rng.sample(range(n), min(opts.hot_keys, n))
    hot = array("l", (subset[rng.randrange(len(subset))] for _ in range(ops)))
    cold = array("l", (rng.randrange(n) for _ in range(ops)))
    miss = array("l", range(ops))

    phases: dict[str, Any] = {"set": run_set(store, n)}
    if isinstance(store, RawAPSW):
        phases["set_batched"] = store.set_batched(n)
    for j in subset:  # read the hot subset once, untimed
        store.get(KEY % j)
    phases["get_hot"] = with_hit_rate(store, lambda: run_gets(store.get, hot, KEY, True))
    phases["get_cold"] = with_hit_rate(store, lambda: run_gets(store.get, cold, KEY, True))
    phases["get_miss"] = with_hit_rate(store, lambda: run_gets(store.get, miss, MISS_KEY, False))
    for j in subset:  # the cold and miss phases pushed the subset out of any hot tier
        store.get(KEY % j)
    phases["get_hot_4threads"] = with_hit_rate(
        store, lambda: run_threads(store, subset, opts.threads, ops, seed)
    )
    info = store.info()
    store.close()
    return {
        "config": name,
        "keys": n,
        "ops": ops,
        "hot_keys": len(subset),
        "value_bytes": len(json.dumps(make_value(0), separators=(",", ":"))),
        "phases": phases,
        "disk_bytes": dir_bytes(root) if store.on_disk else None,
        "base_rss_mb": round(base, 1),
        "peak_rss_mb": round(rss_mb(), 1),
        "info": info,
    }


def worker_rss(opts: argparse.Namespace) -> dict[str, Any]:
    """Write ``--rss-mb`` MiB of fresh values through a 16MiB hot tier, read them back."""
    import orjson

    import tieredmem

    base = rss_mb()
    target = int(opts.rss_mb * 1024 * 1024)
    store = tieredmem.open(
        str(Path(opts.dir) / "rss.db"), hot_bytes="16MiB", maintenance_interval=0
    )
    written = n = 0
    write_ns = 0
    while written < target:
        value = make_value(n, salt=2)
        written += len(orjson.dumps(value))
        t0 = time.perf_counter_ns()
        store.put(NS, RSS_KEY % n, value)
        write_ns += time.perf_counter_ns() - t0
        n += 1
    rng = random.Random(opts.seed + 1)
    errors = 0
    read_ns = 0
    for _ in range(n):
        j = rng.randrange(n)
        t0 = time.perf_counter_ns()
        item = store.get(NS, RSS_KEY % j)
        read_ns += time.perf_counter_ns() - t0
        if item is None or item.value["id"] != j:
            errors += 1
    stats = store.stats().as_dict()
    store.close()
    peak = rss_mb()
    return {
        "config": "tieredmem-rss",
        "values": n,
        "value_mb": round(written / 1024 / 1024, 1),
        "write_ops_per_s": round(n / (write_ns / 1e9), 1),
        "read_ops_per_s": round(n / (read_ns / 1e9), 1),
        "errors": errors,
        "disk_bytes": dir_bytes(Path(opts.dir)),
        "base_rss_mb": round(base, 1),
        "peak_rss_mb": round(peak, 1),
        "target_rss_mb": 100,
        "meets_target": peak < 100,
        "info": {"stats": stats},
    }


def worker(name: str, opts: argparse.Namespace) -> None:
    if name == "tieredmem-baseline":
        sys.path.insert(0, str(Path(opts.baseline).resolve()))
    result = worker_rss(opts) if name == "tieredmem-rss" else worker_kv(name, opts)
    module = sys.modules.get("tieredmem")
    if module is not None and module.__file__:
        result["tieredmem_from"] = str(Path(module.__file__).resolve().parent.parent)
    print(json.dumps(result), flush=True)


# -- parent: run workers, summarize, report ---------------------------------------------
WORKER_OPTIONS = ("keys", "ops", "hot_keys", "hot_bytes", "threads", "rss_mb", "seed")


def run_worker(name: str, opts: argparse.Namespace, base: Path, rep: int) -> dict[str, Any]:
    names = WORKER_OPTIONS + (("baseline",) if opts.baseline else ())
    return _run_worker(__file__, name, worker_args(opts, names), base, rep)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every number over the repeats of one configuration."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[-1]["error"] if runs else "no run"}
    out: dict[str, Any] = {"repeats": len(ok)}
    for key, val in ok[0].items():
        if isinstance(val, (int, float)) and not isinstance(val, bool):
            out[key] = median([r.get(key) for r in ok])
    out["disk_bytes"] = median([r.get("disk_bytes") for r in ok])
    if "phases" in ok[0]:
        out["phases"] = {
            phase: {
                field: median([r["phases"][phase].get(field) for r in ok])
                for field in fields
                if field in ("ops_per_s", "p50_us", "p99_us", "errors", "hot_hit_rate")
            }
            for phase, fields in ok[0]["phases"].items()
        }
    if "meets_target" in ok[0]:
        out["meets_target"] = all(r["meets_target"] for r in ok)
    return out


#: (label, phase, numerator config, denominator config); "get" means tieredmem-sync's gets.
RATIOS = (
    ("hot get: tieredmem / diskcache", "get_hot", "tieredmem-sync", "diskcache"),
    ("hot get: tieredmem / raw apsw SELECT", "get_hot", "tieredmem-sync", "raw-apsw"),
    ("hot get: coherence_interval=1 / strict", "get_hot", "tieredmem-relaxed", "tieredmem-sync"),
    ("cold get: tieredmem / diskcache", "get_cold", "tieredmem-sync", "diskcache"),
    ("cold get: tieredmem / raw apsw SELECT", "get_cold", "tieredmem-sync", "raw-apsw"),
    ("sync set: tieredmem / diskcache", "set", "tieredmem-sync", "diskcache"),
    ("sync set: tieredmem / raw apsw autocommit INSERT", "set", "tieredmem-sync", "raw-apsw"),
    ("batch set: tieredmem / diskcache", "set", "tieredmem-batch", "diskcache"),
    ("4-thread hot get: tieredmem / diskcache", "get_hot_4threads", "tieredmem-sync", "diskcache"),
    ("disk size: tieredmem / diskcache", "disk_bytes", "tieredmem-sync", "diskcache"),
    ("hot get: this tieredmem / baseline", "get_hot", "tieredmem-sync", "tieredmem-baseline"),
    ("cold get: this tieredmem / baseline", "get_cold", "tieredmem-sync", "tieredmem-baseline"),
    ("miss get: this tieredmem / baseline", "get_miss", "tieredmem-sync", "tieredmem-baseline"),
    ("sync set: this tieredmem / baseline", "set", "tieredmem-sync", "tieredmem-baseline"),
    ("hot get: tinylfu / lru", "get_hot", "tieredmem-tinylfu", "tieredmem-sync"),
    ("cold get: tinylfu / lru", "get_cold", "tieredmem-tinylfu", "tieredmem-sync"),
    ("peak RSS: tinylfu / lru", "peak_rss_mb", "tieredmem-tinylfu", "tieredmem-sync"),
)

#: Issue #20's targets: (ratio label, lowest or highest it may be, "min" or "max").
TARGETS = (
    ("cold get: tieredmem / diskcache", 1.0, "min"),
    ("cold get: tieredmem / raw apsw SELECT", 0.7, "min"),
    ("hot get: tieredmem / diskcache", 3.0, "min"),
    ("hot get: tieredmem / raw apsw SELECT", 2.5, "min"),
    ("sync set: tieredmem / diskcache", 2.0, "min"),
    ("batch set: tieredmem / diskcache", 5.0, "min"),
    ("disk size: tieredmem / diskcache", 0.34, "max"),
    ("hot get: tinylfu / lru", 0.9, "min"),
    ("peak RSS: tinylfu / lru", 1.1, "max"),
)


def verdicts(rats: dict[str, float | None]) -> list[tuple[str, str, str]]:
    """(PASS, FAIL or SKIP, target, measured) for each of :data:`TARGETS`."""
    out = []
    for label, bound, kind in TARGETS:
        val = rats.get(label)
        want = f"{label} {'>=' if kind == 'min' else '<='} {bound:g}"
        if val is None:
            out.append(("SKIP", want, "not measured in this run"))
            continue
        ok = val >= bound if kind == "min" else val <= bound
        out.append(("PASS" if ok else "FAIL", want, f"{val:.2f}"))
    return out


def ratios(summary: dict[str, Any]) -> dict[str, float | None]:
    out = {}
    for label, phase, num, den in RATIOS:
        if phase in ("disk_bytes", "peak_rss_mb"):
            a, b = summary.get(num, {}).get(phase), summary.get(den, {}).get(phase)
        else:
            a, b = metric(summary, num, phase), metric(summary, den, phase)
        out[label] = ratio(a, b)
    return out


def fmt(x: Any, spec: str = ",.0f") -> str:
    return "-" if x is None else format(x, spec)


def table(summary: dict[str, Any]) -> str:
    head = (
        "config",
        "set/s",
        "get_hot/s",
        "get_cold/s",
        "get_miss/s",
        "4thr hot/s",
        "hot p50",
        "hot p99",
        "set p50",
        "set p99",
        "disk MB",
        "RSS MB",
    )
    rows = [list(head)]
    for config in KV_CONFIGS:
        s = summary.get(config)
        if s is None:
            continue
        if "error" in s:
            rows.append([config, "FAILED", *[""] * (len(head) - 2)])
            continue
        disk = s.get("disk_bytes")
        rows.append(
            [
                config,
                fmt(metric(summary, config, "set")),
                fmt(metric(summary, config, "get_hot")),
                fmt(metric(summary, config, "get_cold")),
                fmt(metric(summary, config, "get_miss")),
                fmt(metric(summary, config, "get_hot_4threads")),
                fmt(metric(summary, config, "get_hot", "p50_us"), ".1f"),
                fmt(metric(summary, config, "get_hot", "p99_us"), ".1f"),
                fmt(metric(summary, config, "set", "p50_us"), ".1f"),
                fmt(metric(summary, config, "set", "p99_us"), ".1f"),
                fmt(disk / 1e6 if disk is not None else None, ".1f"),
                fmt(s.get("peak_rss_mb"), ".1f"),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        import apsw

        versions["sqlite"] = apsw.sqlite_lib_version()
    except ImportError:
        pass
    return {
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


def report(opts: argparse.Namespace, results: dict[str, list[dict[str, Any]]]) -> int:
    summary = {name: summarize(runs) for name, runs in results.items()}
    failed = [name for name, s in summary.items() if "error" in s]
    rats = ratios(summary)
    command = shlex.join(["python", "benchmarks/kv.py", *sys.argv[1:]])

    print()
    print(
        f"{opts.keys:,} keys of ~1 KB, {opts.ops:,} ops a get phase, {opts.hot_keys:,} hot keys, "
        f"tieredmem hot_bytes={opts.hot_bytes}, repeat={opts.repeat}"
        + (" (medians)" if opts.repeat > 1 else "")
    )
    print("ops/s per phase; p50/p99 in microseconds; disk after close; peak RSS of the process")
    print()
    print(table(summary))
    apsw_batched = metric(summary, "raw-apsw", "set_batched")
    if apsw_batched is not None:
        print(f"\nraw-apsw set_batched (1000 rows a transaction): {apsw_batched:,.0f}/s")
    for config in ("tieredmem-sync", "tieredmem-batch", "tieredmem-tinylfu", "tieredmem-baseline"):
        if config in summary and "phases" in summary[config]:
            rates = ", ".join(
                f"{phase} {fmt(metric(summary, config, phase, 'hot_hit_rate'), '.0%')}"
                for phase in GET_PHASES
            )
            print(f"{config} hot-tier hit rate: {rates}")
    errors = {
        config: {p: v["errors"] for p, v in s.get("phases", {}).items() if v.get("errors")}
        for config, s in summary.items()
    }
    errors = {k: v for k, v in errors.items() if v}
    if errors:
        print(f"\nWRONG RESULTS (gets that returned the wrong value): {errors}")
    rss = summary.get("tieredmem-rss")
    if rss is not None:
        print()
        if "error" in rss:
            print("tieredmem-rss: FAILED")
        else:
            verdict = "meets" if rss.get("meets_target") else "MISSES"
            print(
                f"tieredmem-rss: {rss['value_mb']:.0f} MiB of values ({rss['values']:,.0f}) "
                f"through hot_bytes=16MiB: peak RSS {rss['peak_rss_mb']:.1f} MB "
                f"(interpreter + imports {rss['base_rss_mb']:.1f} MB), {verdict} the < 100 MB "
                f"target; write {rss['write_ops_per_s']:,.0f}/s, "
                f"read {rss['read_ops_per_s']:,.0f}/s"
                + (f", {rss['errors']:.0f} WRONG reads" if rss.get("errors") else "")
            )
    if any(v is not None for v in rats.values()):
        print("\nratios (throughput: > 1 means tieredmem is faster; disk: < 1 means smaller):")
        width = max(len(k) for k in rats)
        for name, val in rats.items():
            print(f"  {name.ljust(width)}  {fmt(val, '.2f')}")
    checks = verdicts(rats)
    print("\ntargets (issue #20):")
    for status, want, got in checks:
        print(f"  {status}  {want}: {got}")
    for name in failed:
        print(f"\n{name} FAILED:\n{summary[name]['error']}")

    out = Path(opts.out) if opts.out else results_path("kv", opts.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "kv",
        "command": command,
        "options": {
            k: getattr(opts, k)
            for k in (
                "keys",
                "ops",
                "hot_keys",
                "hot_bytes",
                "threads",
                "rss_mb",
                "seed",
                "repeat",
                "quick",
                "only",
                "baseline",
            )
        },
        "machine": machine(),
        "summary": summary,
        "ratios": rats,
        "targets": [{"status": st, "target": w, "measured": g} for st, w, g in checks],
        "runs": results,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nresults: {out}")
    print(f"reproduce: {command}")
    return 1 if failed or errors else 0


def configs_of(only: str | None, baseline: str | None = None) -> list[str]:
    if not only:
        return [c for c in CONFIGS if baseline or c != "tieredmem-baseline"]
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; choose from {', '.join(CONFIGS)}")
    return [n for n in CONFIGS if n in names]


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="tieredmem key-value benchmark against diskcache, sqlitedict, "
        "cachetools and raw APSW; each configuration in a fresh process.",
    )
    p.add_argument("--keys", type=int, help="keys written (default 100000; 10000 with --quick)")
    p.add_argument("--ops", type=int, help="gets per get phase (default 100000; 10000 --quick)")
    p.add_argument(
        "--hot-keys", type=int, help="size of the hot subset (default 10000, at most keys/10)"
    )
    p.add_argument(
        "--hot-bytes",
        help="tieredmem hot tier budget (default 16MiB; 2MiB with "
        "--quick, so the cold phase still misses it)",
    )
    p.add_argument("--threads", type=int, default=4, help="reader threads (default 4)")
    p.add_argument(
        "--rss-mb",
        type=float,
        help="MiB of values tieredmem-rss writes (default 100; 32 with --quick)",
    )
    p.add_argument("--seed", type=int, default=42, help="workload seed (default 42)")
    p.add_argument("--quick", action="store_true", help="small smoke run (CI)")
    p.add_argument("--only", help="comma-separated configurations: " + ", ".join(CONFIGS))
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per configuration; > 1 reports medians (default 1)",
    )
    p.add_argument(
        "--baseline",
        help="a checkout of another tieredmem version: adds tieredmem-baseline (its sync "
        "store) to the run, for before/after ratios",
    )
    p.add_argument("--dir", help="directory for the files (default: a new temporary one)")
    p.add_argument("--out", help="JSON output (default benchmarks/results/kv.json)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    quick = opts.quick
    if opts.keys is None:
        opts.keys = 10_000 if quick else 100_000
    if opts.ops is None:
        opts.ops = 10_000 if quick else 100_000
    if opts.hot_keys is None:
        opts.hot_keys = min(10_000, max(1, opts.keys // 10))
    if opts.hot_bytes is None:
        opts.hot_bytes = "2MiB" if quick else "16MiB"
    if opts.rss_mb is None:
        opts.rss_mb = 32 if quick else 100
    if min(opts.keys, opts.ops, opts.hot_keys, opts.threads, opts.repeat) < 1:
        p.error("--keys, --ops, --hot-keys, --threads and --repeat must be >= 1")
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse(argv)
    if opts.worker:
        worker(opts.worker, opts)
        return 0
    require("benchmarks/kv.py", REQUIRES)
    configs = configs_of(opts.only, opts.baseline)
    if "tieredmem-baseline" in configs and not opts.baseline:
        raise SystemExit("tieredmem-baseline needs --baseline DIR (a checkout of tieredmem)")
    base = Path(tempfile.mkdtemp(prefix="tieredmem-kv-", dir=opts.dir))
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
    return report(opts, results)


if __name__ == "__main__":
    sys.exit(main())

"""Hit-rate benchmark (issue #20): what the hot tier keeps, against other policies.

Access traces are replayed against caches of three budgets (as a share of the trace's
distinct keys); each access is a read: a hit, or a miss that inserts the key.  Policies:

``tieredmem-tinylfu``  tieredmem's hot tier with ``hot_policy="tinylfu"`` (W-TinyLFU)
``tieredmem-lru``      tieredmem's hot tier with ``hot_policy="lru"``
``cachetools-lru``     ``cachetools.LRUCache``
``cachetools-lfu``     ``cachetools.LFUCache``
``theine``             ``theine.Cache`` (W-TinyLFU in Rust, the PyPI package)
``belady``             Belady's optimal policy, computed offline (evict the key whose next
                       use is furthest away): no real cache does better

Every entry has the same size, so a budget of ``C`` entries is ``C`` entries for the
entry-counted caches and ``C`` times the entry's charge in bytes for tieredmem's tiers
(which then pay for their sketch from the same bytes).  Traces (seeded):

``zipf-0.7`` ``zipf-1.0`` ``zipf-1.2``  keys drawn from a Zipf law of that exponent
``scan``          a hot set (uniform, ``length / 100`` keys) read alone, then during a scan
                  (each hot read among three keys read once), in turns
``langgraph``     many conversation threads, each read in bursts of steps: a step reads
                  the thread's checkpoint (a new key each step, read at the next step
                  too) and its channel values; threads are picked by a Zipf law of 1.0

No PyPI package available offline ships a public cache trace (``libcachesim`` downloads
its traces at run time), so there is none here.

Also reported: ops/s of each policy's replay (Python calls per access; ``belady`` is
offline and has none); tieredmem's hot-get cost under each policy (``Store.get`` with 99
reads in 100 hitting the hot tier, so the cost a hit defers to the next miss counts;
interleaved repeats, median), the figure the issue bounds at 10% over LRU's; and end to
end, ``Store.get`` replaying Zipf traces on a SQLite file (and ``--server`` URLs), where
what the policy saves in misses meets what its bookkeeping costs.

How to run::

    PYTHONPATH=. python benchmarks/hit_rate.py            # 200,000 accesses a trace
    PYTHONPATH=. python benchmarks/hit_rate.py --quick    # 20,000 (CI smoke run)

Writes ``benchmarks/results/hit_rate.json`` and ``hit_rate.png`` (hit rate against budget,
one panel per trace); ``--quick`` writes outside the source tree.
"""

from __future__ import annotations

import argparse
import heapq
import json
import platform
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import git_state, require, results_path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REQUIRES: dict[str, list[str]] = {"modules": ["theine", "matplotlib", "numpy"]}
POLICIES = (
    "tieredmem-tinylfu",
    "tieredmem-lru",
    "cachetools-lru",
    "cachetools-lfu",
    "theine",
    "belady",
)
#: Budgets as shares of the trace's distinct keys.
BUDGETS = (0.01, 0.05, 0.2)
VALUE = b"v" * 200


# -- traces ---------------------------------------------------------------------------
def zipf_trace(n_keys: int, length: int, s: float, seed: int) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_keys + 1) ** s
    ranks = rng.choice(n_keys, size=length, p=weights / weights.sum())
    names = rng.permutation(n_keys)  # popularity unrelated to the key's name
    return [f"z{names[r]}" for r in ranks]


def scan_trace(n_hot: int, length: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    scanned = 0
    while len(out) < length:
        out += [f"h{rng.randrange(n_hot)}" for _ in range(4 * n_hot)]  # the hot set alone
        for _ in range(4 * n_hot):  # a scan: each hot read among three keys read once
            out.append(f"h{rng.randrange(n_hot)}")
            out += [f"s{scanned}", f"s{scanned + 1}", f"s{scanned + 2}"]
            scanned += 3
    return out[:length]


def langgraph_trace(n_threads: int, length: int, seed: int) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_threads + 1)
    picks = iter(rng.choice(n_threads, size=length, p=weights / weights.sum()))
    steps = [0] * n_threads
    out: list[str] = []
    while len(out) < length:
        t = int(next(picks))
        for _ in range(int(rng.integers(2, 9))):  # a burst: one run of the graph
            step = steps[t]
            out.append(f"t{t}:ckpt:{step}")  # the checkpoint the step starts from
            out += [f"t{t}:ch:{c}" for c in ("messages", "state", "tools")]
            steps[t] = step + 1
    return out[:length]


def traces(length: int, seed: int) -> dict[str, list[str]]:
    n = max(1000, length // 4)
    return {
        "zipf-0.7": zipf_trace(n, length, 0.7, seed),
        "zipf-1.0": zipf_trace(n, length, 1.0, seed + 1),
        "zipf-1.2": zipf_trace(n, length, 1.2, seed + 2),
        "scan": scan_trace(max(50, length // 100), length, seed + 3),
        "langgraph": langgraph_trace(max(100, length // 100), length, seed + 4),
    }


# -- policies ---------------------------------------------------------------------------
Replay = Callable[[Sequence[str], int], int]


def tieredmem_replay(policy: str) -> Replay:
    def replay(trace: Sequence[str], capacity: int) -> int:
        from tieredmem.hot import Entry, HotTier, new_tier

        charge = HotTier.charge("k" * 8, len(VALUE))
        tier = new_tier(capacity * charge, policy)
        lookup = tier.lookup
        assert lookup is not None
        offer = tier.offer
        hits = 0
        for key in trace:
            if lookup(key) is not None:
                hits += 1
            else:
                offer(key, Entry(2, None, VALUE, 0.0, 0.0, None, charge))
        assert tier.currsize <= tier.maxsize
        return hits

    return replay


def cachetools_replay(kind: str) -> Replay:
    def replay(trace: Sequence[str], capacity: int) -> int:
        import cachetools

        cache: Any = (cachetools.LRUCache if kind == "lru" else cachetools.LFUCache)(capacity)
        get = cache.get
        hits = 0
        for key in trace:
            if get(key) is not None:
                hits += 1
            else:
                cache[key] = VALUE
        return hits

    return replay


def theine_replay(trace: Sequence[str], capacity: int) -> int:
    import theine

    cache = theine.Cache(capacity)
    get, put = cache.get, cache.set
    hits = 0
    for key in trace:
        if get(key)[1]:
            hits += 1
        else:
            put(key, VALUE)
    cache.close()
    return hits


def belady_hits(trace: Sequence[str], capacity: int) -> int:
    """Belady's MIN: on a miss with a full cache, evict the key used furthest ahead."""
    never = len(trace)
    next_use = [never] * len(trace)
    seen: dict[str, int] = {}
    for i in range(len(trace) - 1, -1, -1):
        next_use[i] = seen.get(trace[i], never)
        seen[trace[i]] = i
    cached: dict[str, int] = {}  # key -> its next use
    heap: list[tuple[int, str]] = []  # (-next use, key), stale entries skipped
    hits = 0
    for i, key in enumerate(trace):
        nxt = next_use[i]
        if key in cached:
            hits += 1
        elif len(cached) >= capacity:
            if nxt == never:
                continue  # never used again: bypassing it is optimal
            while True:
                far, victim = heapq.heappop(heap)
                if cached.get(victim) == -far:
                    del cached[victim]
                    break
        cached[key] = nxt
        heapq.heappush(heap, (-nxt, key))
    return hits


REPLAYS: dict[str, Replay] = {
    "tieredmem-tinylfu": tieredmem_replay("tinylfu"),
    "tieredmem-lru": tieredmem_replay("lru"),
    "cachetools-lru": cachetools_replay("lru"),
    "cachetools-lfu": cachetools_replay("lfu"),
    "theine": theine_replay,
    "belady": belady_hits,
}


# -- hot-get cost -------------------------------------------------------------------------
def hot_get_us(policy: str, gets: int) -> float:
    """Microseconds per ``Store.get`` on an in-memory store whose reads hit the hot tier
    99 times in 100 (the hundredth reads a key that does not exist): the mean includes
    what a hit defers (W-TinyLFU counts it in the sketch at the next miss)."""
    import tieredmem

    with tieredmem.open(":memory:", hot_policy=policy, maintenance_interval=0) as store:
        ns = ("bench",)
        for i in range(1000):
            store.put(ns, f"k{i}", {"i": i, "text": "x" * 800})
        keys = [f"k{i % 1000}" if i % 100 else f"absent-{i}" for i in range(gets)]
        for key in keys[:1000]:
            store.get(ns, key)
        get = store.get
        t0 = time.perf_counter()
        for key in keys:
            get(ns, key)
        return (time.perf_counter() - t0) / gets * 1e6


# -- end to end: Store.get over a Zipf trace, the cold tier behind the misses ------------
def end_to_end(url: str, policy: str, trace: Sequence[str]) -> dict[str, float]:
    """Microseconds per ``Store.get`` replaying *trace* on the store at *url* (filled
    by :func:`fill`, opened afresh: an empty hot tier of 5% of the keys' charge), and
    the hot tier's hit rate."""
    import tieredmem
    from tieredmem.hot import HotTier

    keys = len(set(trace))
    budget = int(0.05 * keys * HotTier.charge("e2e\x1ez00000", 930))
    with tieredmem.open(url, hot_bytes=budget, hot_policy=policy, maintenance_interval=0) as s:
        get, ns = s.get, ("e2e",)
        t0 = time.perf_counter()
        for key in trace:
            get(ns, key)
        us = (time.perf_counter() - t0) / len(trace) * 1e6
        stats = s.stats()
    return {"us_per_get": round(us, 2), "hit_rate": round(stats.hits / len(trace), 4)}


def fill(url: str, trace: Sequence[str]) -> None:
    import tieredmem

    with tieredmem.open(url, maintenance_interval=0) as store:
        store.put_many([(("e2e",), key, {"key": key, "text": "x" * 900}) for key in set(trace)])


# -- run, report, plot --------------------------------------------------------------------
def run(opts: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, trace in traces(opts.length, opts.seed).items():
        distinct = len(set(trace))
        caps = [max(10, int(distinct * b)) for b in BUDGETS]
        rows: dict[str, Any] = {}
        for policy in POLICIES:
            rates, speeds = [], []
            for cap in caps:
                t0 = time.perf_counter()
                hits = REPLAYS[policy](trace, cap)
                elapsed = time.perf_counter() - t0
                rates.append(round(hits / len(trace), 4))
                speeds.append(None if policy == "belady" else round(len(trace) / elapsed))
            rows[policy] = {"hit_rate": rates, "ops_per_s": speeds}
        results[name] = {"distinct": distinct, "capacities": caps, "policies": rows}
        print(f"  {name}: done", file=sys.stderr, flush=True)
    return results


def check(results: dict[str, Any], hot: dict[str, float]) -> list[tuple[str, bool, str]]:
    out = []

    def rate(trace: str, policy: str) -> list[float]:
        r: list[float] = results[trace]["policies"][policy]["hit_rate"]
        return r

    for trace in results:
        ours, lru = rate(trace, "tieredmem-tinylfu"), rate(trace, "cachetools-lru")
        worst = min(a - b for a, b in zip(ours, lru))
        out.append(
            (
                f"{trace}: >= LRU's hit rate at every budget",
                worst >= -0.005,
                f"worst {100 * worst:+.1f} points",
            )
        )
    ours, lru = rate("scan", "tieredmem-tinylfu"), rate("scan", "cachetools-lru")
    best = max(a - b for a, b in zip(ours, lru))
    bound = max(a - b for a, b in zip(rate("scan", "belady"), lru))
    out.append(
        (
            "scan: >= +10 points over LRU",
            best >= 0.10,
            f"best {100 * best:+.1f} points (Belady's optimum: {100 * bound:+.1f})",
        )
    )
    for trace in ("zipf-0.7", "zipf-1.0", "zipf-1.2"):
        ours, theirs = rate(trace, "tieredmem-tinylfu"), rate(trace, "theine")
        worst = min(a - b for a, b in zip(ours, theirs))
        out.append(
            (
                f"{trace}: within 5 points of theine",
                worst >= -0.05,
                f"worst {100 * worst:+.1f} points",
            )
        )
    slower = hot["tinylfu"] / hot["lru"] - 1
    out.append(
        (
            "hot get within 10% of LRU's",
            slower <= 0.10,
            f"tinylfu {hot['tinylfu']:.2f} us, lru {hot['lru']:.2f} us ({100 * slower:+.0f}%)",
        )
    )
    return out


def plot(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    cols = 3
    rows = -(-len(names) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(12, 4 * rows), sharey=True, squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax, name in zip(axes, names):
        res = results[name]
        xs = [100 * b for b in BUDGETS]
        for policy in POLICIES:
            style = "--" if policy in ("belady", "theine") else "-"
            width = 2.5 if policy.startswith("tieredmem") else 1.2
            ys = [100 * r for r in res["policies"][policy]["hit_rate"]]
            ax.plot(xs, ys, style, marker="o", linewidth=width, label=policy)
        ax.set_xscale("log")
        ax.set_title(name)
        ax.set_xlabel("budget (% of distinct keys)")
        ax.grid(True, alpha=0.3)
    for row in grid:
        row[0].set_ylabel("hit rate (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[len(names) :]:
        ax.axis("off")
    axes[-1].legend(handles, labels, loc="center")
    fig.suptitle("hot-tier hit rate against budget (benchmarks/hit_rate.py)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def end_to_end_runs(opts: argparse.Namespace) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`end_to_end` of both policies on a SQLite file (and each ``--server``) for
    Zipf traces of 0.7 and 1.0, repeats interleaved, medians."""
    import tempfile

    length = opts.length // 4
    out: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for s in (0.7, 1.0):
            trace = zipf_trace(max(1000, length // 3), length, s, opts.seed + 10)
            urls = {f"sqlite zipf-{s}": str(Path(tmp) / f"e2e-{s}.db")}
            urls.update({f"{u.split(':')[0]} zipf-{s}": u for u in opts.server})
            for where, url in urls.items():
                fill(url, trace)
                runs: dict[str, list[dict[str, float]]] = {"tinylfu": [], "lru": []}
                for _ in range(opts.repeat):
                    for policy in runs:
                        runs[policy].append(end_to_end(url, policy, trace))
                out[where] = {
                    pol: {
                        "us_per_get": statistics.median(r["us_per_get"] for r in rs),
                        "hit_rate": rs[0]["hit_rate"],
                    }
                    for pol, rs in runs.items()
                }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--length", type=int, help="accesses a trace (200000; 20000 --quick)")
    p.add_argument("--repeat", type=int, default=5, help="hot-get timing repeats (5)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="small smoke run (CI)")
    p.add_argument("--out", help="JSON output (default benchmarks/results/hit_rate.json)")
    p.add_argument(
        "--server",
        action="append",
        default=[],
        help="also replay end to end on this store URL (redis://..., postgresql://...; "
        "its database is filled with the trace's keys); repeatable",
    )
    opts = p.parse_args(argv)
    require("benchmarks/hit_rate.py", REQUIRES)
    if opts.length is None:
        opts.length = 20_000 if opts.quick else 200_000
    results = run(opts)
    gets = 20_000 if opts.quick else 200_000
    samples: dict[str, list[float]] = {"tinylfu": [], "lru": []}
    for _ in range(opts.repeat):  # interleaved: drift on a shared machine hits both alike
        for policy in samples:
            samples[policy].append(hot_get_us(policy, gets))
    hot = {k: statistics.median(v) for k, v in samples.items()}
    e2e = end_to_end_runs(opts)

    print(
        f"\n{opts.length:,} accesses a trace; hit rate (%) at budgets of "
        f"{', '.join(f'{100 * b:g}%' for b in BUDGETS)} of the distinct keys; replay ops/s"
    )
    for name, res in results.items():
        print(f"\n{name} ({res['distinct']:,} distinct keys; capacities {res['capacities']})")
        for policy, row in res["policies"].items():
            rates = "  ".join(f"{100 * r:5.1f}" for r in row["hit_rate"])
            speed = row["ops_per_s"][1]
            print(f"  {policy:18} {rates}   " + (f"{speed:>10,}/s" if speed else ""))
    print(
        f"\nStore.get, 99% hot: tinylfu {hot['tinylfu']:.2f} us, lru {hot['lru']:.2f} us "
        f"(median of {opts.repeat} interleaved runs of {gets:,})"
    )
    print(
        "\nend to end, Store.get over a Zipf trace (hot tier: 5% of the keys; median of "
        f"{opts.repeat} interleaved runs):"
    )
    for where, by_policy in e2e.items():
        cells = ", ".join(
            f"{pol} {r['us_per_get']:.2f} us/get (hit rate {100 * r['hit_rate']:.1f}%)"
            for pol, r in by_policy.items()
        )
        print(f"  {where}: {cells}")
    verdicts = check(results, hot)
    print()
    for label, ok, detail in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {label}: {detail}")
    command = shlex.join(["python", "benchmarks/hit_rate.py", *(argv or sys.argv[1:])])
    out = Path(opts.out) if opts.out else results_path("hit_rate", opts.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "hit_rate",
        "command": command,
        "options": {"length": opts.length, "seed": opts.seed, "repeat": opts.repeat},
        "machine": {"git": git_state(), "python": platform.python_version()},
        "budgets": BUDGETS,
        "traces": results,
        "hot_get_us": hot,
        "end_to_end": e2e,
        "targets": [{"target": t, "pass": ok, "measured": d} for t, ok, d in verdicts],
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    plot(results, out.with_suffix(".png"))
    print(f"\nresults: {out} and {out.with_suffix('.png').name}\nreproduce: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scale benchmark (issue #16): what each call costs on a small file and on a large one.

Stores of three sizes (items of ~1 KB; see ``benchmarks/_scale_build.py`` for the shape:
1,000 items per namespace, a history of 1,000 messages per 10,000 items and a LangGraph
thread of 20 turns per 5,000 items) are built once and cached outside the repository
(``$TIEREDMEM_SCALE_CACHE``, default ``/work/scale-cache`` or ``~/.cache/tieredmem-scale``).
Before the first measurement each file is opened once by this tieredmem (which upgrades a
file of an older format, counting its items once), the field ``user.lang`` is declared
indexed (``store.declare_index(["user.lang"])``: every item is read once) and its
checkpoints are listed once (which builds the saver's id index of a file written before it
existed); each is timed and reported as ``upgrade``.  From then on every write to the
file also keeps the index of ``user.lang`` (the put figures include it).

Every call below is measured in a fresh process (this script re-runs itself with
``--worker``); repeats are interleaved over sizes and calls, and the median is reported:

``open``            ``tieredmem.open(path)``
``stats``           the first ``store.stats()`` of the process
``memory_saver``    ``tieredmem.MemorySaver(path=path)``
``saver_open``      ``TieredSaver(path)``
``get_state``       the first ``graph.get_state(config)`` of the process (one thread)
``list_none``       ``list(saver.list(None, limit=10))``
``list_thread``     ``list(saver.list(config, limit=10))``
``search_filter``   ``store.search(("docs", <ns>), filter={"n": 5}, limit=10)``, median of
                    20 namespaces picked at random (``n`` is not indexed)
``search_indexed``  ``store.search(("docs", <ns>), filter={"user.lang": "fr"}, limit=10)``
                    on a store opened with ``index=["user.lang"]``, likewise
``maintain``        ``store.maintain()`` on a file whose statistics were dropped (a file's
                    first maintenance)
``doctor``          ``tieredmem doctor FILE --json`` as a subprocess (``quick_check``)
``put_p99``         p99 (and p50) of 2,000 sync ``store.put`` of new random keys (~1 KB)
``saver_rss``       peak RSS after ``get_state`` of every thread of the file (20 at 100,000
                    items, 2,000 at 10,000,000): the memory a saver holds per thread seen
``saver_rss_16mib`` the same with ``TieredSaver(path, hot_bytes="16MiB")``

Run from the repository root::

    PYTHONPATH=. python benchmarks/scale.py                  # 100k, 1M, 10M items
    PYTHONPATH=. python benchmarks/scale.py --quick          # 2k, 10k, 20k items (CI)
    PYTHONPATH=. python benchmarks/scale.py --sizes 100000,1000000,3000000

The first run builds the files (10,000,000 items: ~8.5 GB, several minutes).  Results go to
``benchmarks/results/scale.json`` and ``scale.png`` (``scale_quick.*`` with ``--quick``):
SMALL is the smallest size, LARGE the largest, ratio LARGE / SMALL.  Figures are with the
files in the OS page cache (the machine's memory holds the largest file).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    ROOT,
    cpu_and_memory,
    git_state,
    median,
    peak_rss_mb,
    percentile,
    results_path,
)
from _scale_build import build, shape  # noqa: E402

CALLS = (
    "open",
    "stats",
    "memory_saver",
    "saver_open",
    "get_state",
    "list_none",
    "list_thread",
    "search_filter",
    "search_indexed",
    "maintain",
    "doctor",
    "put_p99",
    "saver_rss",
    "saver_rss_16mib",
)
#: Targets of issue #16 (LARGE / SMALL, or an absolute bound in seconds).
TARGETS: dict[str, tuple[str, float]] = {
    "stats": ("seconds", 0.010),
    "search_filter": ("ratio", 3.0),
    "search_indexed": ("ratio", 1.5),
    "put_p99": ("ratio", 2.0),
}
UNITS = {"put_p99": "ms", "saver_rss": "MB", "saver_rss_16mib": "MB"}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


# -- workers (one call each, in a fresh process) ------------------------------------------
def worker(call: str, path: str, items: int) -> dict[str, Any]:
    import tieredmem

    sh = shape(items)
    rng = random.Random()
    out: dict[str, Any] = {"call": call, "items": items}
    if call == "open":
        seconds, store = _timed(lambda: tieredmem.open(path, maintenance_interval=0))
        store.close()
        out["ms"] = _ms(seconds)
    elif call == "stats":
        with tieredmem.open(path, maintenance_interval=0) as store:
            seconds, stats = _timed(store.stats)
            out["ms"] = _ms(seconds)
            out["cold_rows"] = stats.cold_rows
    elif call == "memory_saver":
        seconds, memory = _timed(lambda: tieredmem.MemorySaver(path=path, maintenance_interval=0))
        memory.close()
        out["ms"] = _ms(seconds)
    elif call in (
        "saver_open",
        "get_state",
        "list_none",
        "list_thread",
        "saver_rss",
        "saver_rss_16mib",
    ):
        from _scale_build import _graph

        from tieredmem.langgraph import TieredSaver

        hot = "16MiB" if call == "saver_rss_16mib" else "64MiB"
        seconds, saver = _timed(lambda: TieredSaver(path, maintenance_interval=0, hot_bytes=hot))
        thread = rng.randrange(sh["threads"])
        config = {"configurable": {"thread_id": f"t{thread:05d}"}}
        try:
            if call == "saver_open":
                out["ms"] = _ms(seconds)
            elif call == "get_state":
                graph = _graph(saver)
                seconds, state = _timed(lambda: graph.get_state(config))
                out["ms"] = _ms(seconds)
                out["messages"] = len(state.values["messages"])
            elif call == "list_none":
                seconds, found = _timed(lambda: list(saver.list(None, limit=10)))
                out["ms"] = _ms(seconds)
                out["found"] = len(found)
            elif call == "list_thread":
                seconds, found = _timed(lambda: list(saver.list(config, limit=10)))
                out["ms"] = _ms(seconds)
                out["found"] = len(found)
            else:
                graph = _graph(saver)
                started = time.perf_counter()
                for t in range(sh["threads"]):
                    graph.get_state({"configurable": {"thread_id": f"t{t:05d}"}})
                out["seconds"] = round(time.perf_counter() - started, 2)
                out["MB"] = round(peak_rss_mb(), 1)
                out["threads"] = sh["threads"]
        finally:
            saver.close()
    elif call in ("search_filter", "search_indexed"):
        indexed = call == "search_indexed"
        options: dict[str, Any] = {"index": ["user.lang"]} if indexed else {}
        query: dict[str, Any] = {"user.lang": "fr"} if indexed else {"n": 5}
        with tieredmem.open(path, maintenance_interval=0, **options) as store:
            times = []
            for _ in range(20):
                ns = ("docs", f"ns{rng.randrange(sh['namespaces']):05d}")
                seconds, found = _timed(lambda ns=ns: store.search(ns, filter=query, limit=10))
                assert len(found) == 10, len(found)
                times.append(seconds)
            out["ms"] = _ms(median(times, 9) or 0.0)
    elif call == "maintain":
        import apsw

        con = apsw.Connection(path)  # a file never maintained: no statistics yet
        con.execute("DROP TABLE IF EXISTS sqlite_stat1; DROP TABLE IF EXISTS sqlite_stat4")
        con.close()
        with tieredmem.open(path, maintenance_interval=0) as store:
            seconds, _ = _timed(store.maintain)
            out["ms"] = _ms(seconds)
    elif call == "doctor":
        cmd = [sys.executable, "-m", "tieredmem.cli", "doctor", path, "--json"]
        seconds, proc = _timed(
            lambda: subprocess.run(cmd, capture_output=True, text=True, check=False)
        )
        out["ms"] = _ms(seconds)
        out["exit"] = proc.returncode
        out["integrity"] = json.loads(proc.stdout)["integrity"] if proc.stdout else None
    elif call == "put_p99":
        with tieredmem.open(path, maintenance_interval=0) as store:
            lat = []
            for _ in range(2000):
                ns = ("docs", f"ns{rng.randrange(sh['namespaces']):05d}")
                value = {"n": -1, "text": rng.randbytes(330).hex()}
                key = uuid.uuid4().hex
                seconds, _ = _timed(lambda ns=ns, key=key, value=value: store.put(ns, key, value))
                lat.append(seconds)
            out["ms"] = _ms(percentile(lat, 0.99))
            out["p50_ms"] = _ms(percentile(lat, 0.50))
    else:
        raise SystemExit(f"unknown call {call}")
    return out


# -- driver ---------------------------------------------------------------------------------
def prepare(path: Path) -> dict[str, Any]:
    """Open once with this tieredmem (format upgrade) and list once (saver id index)."""
    import tieredmem
    from tieredmem.langgraph import TieredSaver

    seconds_open, store = _timed(lambda: tieredmem.open(path, maintenance_interval=0))
    seconds_index, _ = _timed(lambda: store.declare_index(["user.lang"]))
    store.close()
    with TieredSaver(path, maintenance_interval=0) as saver:
        seconds_list, _ = _timed(lambda: next(iter(saver.list(None, limit=1)), None))
    return {
        "open_s": round(seconds_open, 2),
        "declare_index_s": round(seconds_index, 2),
        "first_list_s": round(seconds_list, 2),
    }


def run_call(call: str, path: Path, items: int) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, __file__, "--worker", call, "--path", str(path), "--items", str(items)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"call": call, "items": items, "error": proc.stderr.strip()[-1500:]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def value_of(result: dict[str, Any]) -> float | None:
    for field in ("ms", "MB"):
        if field in result:
            return float(result[field])
    return None


def plot(summary: dict[str, dict[int, Any]], sizes: dict[int, int], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    colors = plt.get_cmap("tab20").colors
    for i, (call, by_size) in enumerate(summary.items()):
        if call.startswith("saver_rss"):
            continue
        xs = [sizes[n] / 1e9 for n in sorted(by_size) if by_size[n] is not None]
        ys = [by_size[n] for n in sorted(by_size) if by_size[n] is not None]
        if xs:
            style = "--" if i % 2 else "-"
            ax.plot(xs, ys, style, marker="o", color=colors[i % len(colors)], label=call)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("file size (GB)")
    ax.set_ylabel("time per call (ms, median)")
    ax.set_title("tieredmem: time per call against file size (benchmarks/scale.py)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    parser.add_argument("--sizes", help="comma-separated item counts (three for the plot)")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--only", help="comma-separated calls")
    parser.add_argument(
        "--replot", action="store_true", help="redraw the plot from the saved JSON only"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        print(json.dumps(worker(opts.worker, opts.path, opts.items)))
        return 0
    if opts.replot:
        saved_path = results_path("scale", opts.quick)
        saved = json.loads(saved_path.read_text())
        summary_of = {
            call: {int(n): v for n, v in by.items()} for call, by in saved["summary"].items()
        }
        sizes_of = {int(n): info["bytes"] for n, info in saved["sizes"].items()}
        plot(summary_of, sizes_of, saved_path.with_suffix(".png"))
        return 0
    if opts.sizes:
        counts = [int(s) for s in opts.sizes.split(",")]
    else:
        counts = [2_000, 10_000, 20_000] if opts.quick else [100_000, 1_000_000, 10_000_000]
    repeat = opts.repeat or (1 if opts.quick else 3)
    calls = opts.only.split(",") if opts.only else list(CALLS)
    paths: dict[int, Path] = {}
    upgrade: dict[int, Any] = {}
    for n in counts:
        seconds, paths[n] = _timed(lambda n=n: build(n))
        upgrade[n] = prepare(paths[n])
        print(f"{n:>11,} items: {paths[n]} (ready in {seconds:.1f}s; {upgrade[n]})", flush=True)
    sizes = {n: paths[n].stat().st_size for n in counts}
    runs: list[dict[str, Any]] = []
    for rep in range(repeat):
        for call in calls:
            for n in counts:
                result = run_call(call, paths[n], n)
                result["rep"] = rep
                runs.append(result)
                if "error" in result:
                    print(f"  {call} @ {n:,}: ERROR {result['error']}", flush=True)
    summary: dict[str, dict[int, Any]] = {}
    extra: dict[str, dict[int, Any]] = {}
    for call in calls:
        summary[call] = {}
        extra[call] = {}
        for n in counts:
            mine = [r for r in runs if r["call"] == call and r["items"] == n and "error" not in r]
            summary[call][n] = median([value_of(r) for r in mine], 3)
            if call == "put_p99":
                extra[call][n] = median([r.get("p50_ms") for r in mine], 3)
    small, large = counts[0], counts[-1]
    print(
        f"\n{'call':<16}{'SMALL':>12}{'LARGE':>12}{'ratio':>8}  "
        f"(SMALL {small:,} items {sizes[small] / 1e9:.2f} GB, "
        f"LARGE {large:,} items {sizes[large] / 1e9:.2f} GB)"
    )
    verdicts: dict[str, str] = {}
    for call in calls:
        a, b = summary[call][small], summary[call][large]
        r = round(b / a, 2) if a and b else None
        unit = UNITS.get(call, "ms")
        verdict = ""
        if call in TARGETS:
            kind, bound = TARGETS[call]
            ok = (
                (b is not None and b / 1000 < bound)
                if kind == "seconds"
                else (r is not None and r <= bound)
            )
            verdict = f"{'PASS' if ok else 'FAIL'} ({'<' if kind == 'seconds' else '<='} "
            verdict += f"{bound * 1000:g} ms)" if kind == "seconds" else f"{bound:g}x)"
            verdicts[call] = verdict
        print(f"{call:<16}{a!s:>10}{unit:>2}{b!s:>10}{unit:>2}{r!s:>8}  {verdict}")
    print(f"\n| call | SMALL ({small:,} items, {sizes[small] / 1e9:.2f} GB) | ", end="")
    if len(counts) == 3:
        mid = counts[1]
        print(f"{mid:,} items ({sizes[mid] / 1e9:.2f} GB) | ", end="")
    print(f"LARGE ({large:,} items, {sizes[large] / 1e9:.2f} GB) | ratio | target |")
    print("|---|---:|" + ("---:|" if len(counts) == 3 else "") + "---:|---:|---|")
    for call in calls:
        unit = UNITS.get(call, "ms")
        cells = [
            f"{summary[call][n]} {unit}" if summary[call][n] is not None else "-" for n in counts
        ]
        if len(counts) != 3:
            cells = [cells[0], cells[-1]]
        a, b = summary[call][small], summary[call][large]
        r = f"{b / a:.2f}x" if a and b else "-"
        print(f"| `{call}` | " + " | ".join(cells) + f" | {r} | {verdicts.get(call, '')} |")
    out = results_path("scale", opts.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "PYTHONPATH=. python benchmarks/scale.py " + " ".join(sys.argv[1:])
    out.write_text(
        json.dumps(
            {
                "command": command.strip(),
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "machine": {"platform": platform.platform(), **cpu_and_memory()},
                "git": git_state(),
                "sizes": {str(n): {"items": n, "bytes": sizes[n], **shape(n)} for n in counts},
                "upgrade": {str(n): upgrade[n] for n in counts},
                "repeat": repeat,
                "summary": {c: {str(n): v for n, v in s.items()} for c, s in summary.items()},
                "put_p50_ms": {str(n): v for n, v in extra.get("put_p99", {}).items()},
                "verdicts": verdicts,
                "runs": runs,
            },
            indent=1,
        )
    )
    plot(summary, sizes, out.with_suffix(".png"))
    print(f"\nresults: {out} and {out.with_suffix('.png').name}")
    return 1 if any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())

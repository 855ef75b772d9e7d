"""Helpers the benchmark scripts share (not a benchmark: ``tieredmem bench`` skips it)."""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
from array import array
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


def dir_bytes(path: Path) -> int:
    """Total size of the files under *path*."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def zeros(n: int) -> array[int]:
    return array("q", bytes(8 * n))


def phase_result(lat: Sequence[int], total_ns: int, errors: int = 0) -> dict[str, Any]:
    """ops/s over *total_ns*, and p50/p99 of the per-op latencies *lat* (ns)."""
    n = len(lat)
    ordered = sorted(lat)

    def pct(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))] / 1000, 2) if n else 0.0

    return {
        "n": n,
        "seconds": round(total_ns / 1e9, 4),
        "ops_per_s": round(n / (total_ns / 1e9), 1) if total_ns else 0.0,
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "errors": errors,
    }


def with_hit_rate(store: Any, phase: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run *phase*, adding the hot tier's hit rate during it when the store has one."""
    before = store.counters()
    out = phase()
    after = store.counters()
    if before is not None and after is not None:
        hits, misses = after[0] - before[0], after[1] - before[1]
        out["hot_hit_rate"] = round(hits / (hits + misses), 4) if hits + misses else None
    return out


def metric(summary: dict[str, Any], config: str, phase: str, field: str = "ops_per_s") -> Any:
    return summary.get(config, {}).get("phases", {}).get(phase, {}).get(field)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def plan(configs: list[str], repeat: int) -> Iterator[tuple[int, str]]:
    """Repeats interleaved (a, b, c, a, b, c) so drift in the machine hits all alike."""
    for rep in range(repeat):
        for name in configs:
            yield rep, name


def rss_mb() -> float:
    """Current resident set size in MB (``/proc/self/statm``; peak RSS where absent)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / MiB
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB, from the OS.

    On Linux, ``VmHWM`` of ``/proc/self/status``: ``ru_maxrss`` of a process started by
    another also counts the RSS its parent had when it spawned it (measured: a child of a
    200 MB process reports 211 MB, VmHWM 10.9 MB), so a small worker would report its
    driver's size.  Elsewhere ``getrusage``'s ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MiB if sys.platform == "darwin" else peak / 1024


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of unsorted *values*."""
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q * len(ordered))))
    return ordered[rank - 1]


def git_state() -> dict[str, Any] | None:
    """The commit of the repository, and whether ``tieredmem/`` differs from it."""

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
        )
        return out.stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "HEAD"),
            "tieredmem_modified": bool(git("status", "--porcelain", "--", "tieredmem")),
        }
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def cpu_and_memory() -> dict[str, Any]:
    """CPU model and total memory, from /proc where it exists."""
    info: dict[str, Any] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    info["mem_total_mb"] = int(line.split()[1]) // 1024
                    break
    except OSError:
        pass
    return info


def run_worker(
    script: str, name: str, options: Sequence[str], base: Path, rep: int
) -> dict[str, Any]:
    """Run *script* ``--worker NAME`` with *options* (command-line words, see
    :func:`worker_args`) in a fresh process, in a scratch directory under *base* that is
    removed after; return the JSON dict it printed last, or ``{"config", "error"}``."""
    root = base / f"{name}-{rep}"
    root.mkdir()
    cmd = [sys.executable, str(Path(script).resolve()), "--worker", name, "--dir", str(root)]
    cmd += list(options)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"config": name, "error": f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    if proc.stderr.strip():
        result["stderr"] = proc.stderr.strip()[-2000:]
    return result


def worker_args(opts: Any, names: Sequence[str]) -> list[str]:
    """The options *names* of *opts* (an argparse namespace) as command-line words."""
    return [a for k in names for a in (f"--{k.replace('_', '-')}", str(getattr(opts, k)))]


def median(values: Sequence[float | None], digits: int = 2) -> float | None:
    """Median of the values that are not None (an int when all are ints and it is whole)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    mid = statistics.median(vals)
    if all(isinstance(v, int) for v in vals) and mid == int(mid):
        return int(mid)
    return round(mid, digits)


# -- where results go, and what a benchmark needs ---------------------------------------
def results_path(name: str, quick: bool) -> Path:
    """Where a run writes its JSON: ``benchmarks/results/<name>.json`` for a full run; a
    ``--quick`` smoke run writes ``<name>_quick.json`` outside the source tree (in
    ``$TIEREDMEM_BENCH_RESULTS``, default ``<tmp>/tieredmem-bench``), so it never changes
    a tracked file."""
    if not quick:
        return ROOT / "benchmarks" / "results" / f"{name}.json"
    import tempfile

    where = os.environ.get("TIEREDMEM_BENCH_RESULTS") or os.path.join(
        tempfile.gettempdir(), "tieredmem-bench"
    )
    return Path(where) / f"{name}_quick.json"


def missing(requires: dict[str, Sequence[str]]) -> list[str]:
    """What of *requires* (``{"modules": [...], "programs": [...]}``) is not installed,
    found without importing or starting anything."""
    import importlib.util

    out = []
    for module in requires.get("modules", ()):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # its parent package is missing
            found = False
        if not found:
            out.append(f"Python module {module}")
    out += [f"program {p}" for p in requires.get("programs", ()) if shutil.which(p) is None]
    return out


def require(script: str, requires: dict[str, Sequence[str]]) -> None:
    """Exit with one line naming what is missing, before the benchmark starts anything."""
    lacking = missing(requires)
    if lacking:
        sys.exit(
            f"{script} needs {', '.join(lacking)}: python -m pip install -e '.[bench]'"
            + (
                " and apt-get install redis-server"
                if any("redis-server" in m for m in lacking)
                else ""
            )
        )

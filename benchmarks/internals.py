"""Mechanisms behind the other benchmarks' figures, each measured in a fresh process.

Run ``python benchmarks/internals.py`` (``--quick`` for a smoke run); JSON goes to
``benchmarks/results/internals.json``.  Configurations:

- ``import``: peak RSS of a bare interpreter and of one that imports tieredmem (each
  with nothing else loaded).
- ``wal-frames``: WAL frames (pages) a commit writes, on real tieredmem files with the
  checkpoint pushed out of the way: a History's sync appends (tail slots updated in
  place), sync puts of sequential new keys, and, on tieredmem's own schema through raw
  apsw, the tail layout before slots (a row inserted per append, 50 rows range-deleted a
  seal).  ``checkpoints per 30k`` = frames / the 4 MiB default checkpoint threshold.
- ``returning``: an UPSERT of an existing row with and without ``RETURNING created_at``.
- ``convoy``: framing a batch of ~0.9 KB values with a trained dictionary, one
  ``Codec.frame`` call per value or one ``Codec.frames`` call, alone and in a thread
  beside a thread running Python (the batch committer's situation); and unframing
  (decompressing) one, which every cold read of such a value pays.
- ``checksum``: what frame checksums cost (bit rot detection, #15), per value of 64 B to
  256 KiB of JSON text: framing and unframing an uncompressed frame with its CRC-32 and
  without (the frame format before checksums), and compressing and unframing a zstd frame
  with zstd's content checksum and without, at the codec's level 3.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import ROOT, cpu_and_memory, git_state, median, require, results_path, run_worker

CONFIGS = ("import-bare", "import-tieredmem", "wal-frames", "returning", "convoy", "checksum")
PAGE = 4096
FRAME = PAGE + 24


#: What this benchmark needs beyond tieredmem (``tieredmem bench`` checks it first).
REQUIRES: dict[str, list[str]] = {"modules": []}


def _words(seed: int) -> list[str]:
    rng = random.Random(seed)
    vocab = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(2000)]
    return [" ".join(rng.choices(vocab, k=80)) for _ in range(1024)]


def _wal_frames(path: str) -> int:
    wal = path + "-wal"
    return (os.path.getsize(wal) - 32) // FRAME if os.path.exists(wal) else 0


def worker_wal_frames(opts: argparse.Namespace) -> dict[str, Any]:
    import apsw

    import tieredmem
    from tieredmem.backends._schema import MIGRATIONS

    n, texts = opts.appends, _words(1)
    out: dict[str, Any] = {}

    def measure(name: str, run: Any) -> None:
        path = os.path.join(opts.dir, f"{name}.db")
        store = tieredmem.open(path, wal_bytes="1GiB", maintenance_interval=0)
        before = _wal_frames(path)
        run(store)
        frames = _wal_frames(path) - before
        store.close()
        out[name] = {"appends": n, "frames_per_append": round(frames / n, 3)}

    def history(store: Any) -> None:
        memory = tieredmem.MemorySaver(max_history=100, store=store)
        h = memory.history("chat")
        for i in range(n):
            h.append({"role": "user", "content": texts[i % 1024], "turn": i})

    def puts(store: Any) -> None:
        for i in range(n):
            store.put(("kv",), f"key-{i:08d}", {"content": texts[i % 1024], "i": i})

    measure("history-appends (slots)", history)
    measure("store puts, sequential new keys", puts)

    # The tail layout before slots, on tieredmem's schema: one inserted row an append, a
    # chunk row and a range delete of the 50 sealed rows every 50th.
    path = os.path.join(opts.dir, "legacy.db")
    con = apsw.Connection(path)
    con.pragma("auto_vacuum", "incremental")
    con.pragma("journal_mode", "wal")
    con.pragma("synchronous", "normal")
    con.pragma("wal_autocheckpoint", 0)
    for script in MIGRATIONS:
        con.execute(script)
    ns, sql = "tieredmem\x1fhistory\x1fchat", "INSERT INTO items VALUES (?, ?, ?, ?, ?, NULL, NULL)"
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for i in range(n):
        con.execute(sql, (ns, f"t{i:012d}", texts[i % 1024].encode(), 1.0, 1.0))
        if i % 50 == 49:
            with con:
                con.execute(sql, (ns, f"c{i - 49:012d}.000050", os.urandom(12_000), 1.0, 1.0))
                con.execute(
                    "DELETE FROM items WHERE ns = ? AND key >= ? AND key < ?",
                    (ns, f"t{i - 49:012d}", f"t{i + 1:012d}"),
                )
    out["history-appends (before slots: insert + seal delete)"] = {
        "appends": n,
        "frames_per_append": round(_wal_frames(path) / n, 3),
    }
    con.close()
    threshold = (4 << 20) // FRAME
    for row in out.values():
        row["checkpoints_per_30k"] = round(row["frames_per_append"] * 30_000 / threshold, 1)
    return out


def worker_returning(opts: argparse.Namespace) -> dict[str, Any]:
    import apsw

    from tieredmem.backends._schema import MIGRATIONS
    from tieredmem.backends.sqlite import _UPSERT, _UPSERT_SET

    con = apsw.Connection(os.path.join(opts.dir, "r.db"))
    con.pragma("journal_mode", "wal")
    con.pragma("synchronous", "normal")
    con.pragma("wal_autocheckpoint", 0)
    for script in MIGRATIONS:
        con.execute(script)
    values = [os.urandom(275).hex().encode() for _ in range(50)]
    for i in range(50):
        con.execute(_UPSERT_SET, ("h", f"s{i:06d}", values[i], 1.0, None, 1.0, None))
    out: dict[str, Any] = {}
    for name, sql in (("with RETURNING", _UPSERT), ("without", _UPSERT_SET)):
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            for i in range(opts.updates):
                args = ("h", f"s{i % 50:06d}", values[(i * 7) % 50], 2.0, None, 2.0, None)
                for _row in con.execute(sql, args):
                    pass
            runs.append((time.perf_counter() - t0) / opts.updates * 1e6)
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        out[name] = {"us_per_upsert": median(runs)}
    return out


def worker_convoy(opts: argparse.Namespace) -> dict[str, Any]:
    from tieredmem.codec import Codec

    texts = _words(2)
    codec = Codec()
    payloads = [codec.payload({"i": i, "text": texts[i % 1024]}) for i in range(opts.values)]
    for codec_id, payload in payloads[:2000]:
        codec.frame(codec_id, payload)  # sampled for the dictionary
        if codec.wants_dictionary():
            break
    data = codec.train()
    assert data is not None, "no dictionary trained"
    codec.add_dictionary(1, data)

    def one_by_one() -> None:
        for codec_id, payload in payloads:
            codec.frame(codec_id, payload)

    def batch() -> None:
        codec.frames(payloads)

    def beside_python(work: Any) -> float:
        """Seconds *work* takes in a thread while this thread runs Python until it ends."""
        done = threading.Event()
        took: list[float] = []

        def run() -> None:
            t0 = time.perf_counter()
            work()
            took.append(time.perf_counter() - t0)
            done.set()

        thread = threading.Thread(target=run)
        thread.start()
        x = 0
        while not done.is_set():
            for i in range(1000):
                x += i
        thread.join()
        return took[0]

    out: dict[str, Any] = {}
    frames = codec.frames(payloads)
    unframe = codec.unframe
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        for frame in frames:
            unframe(frame)
        runs.append((time.perf_counter() - t0) / len(frames) * 1e6)
    # What a cold read pays on top of SQLite's for the disk target: decompression.
    out["unframe() per value"] = {"values": len(frames), "us_per_value_alone": median(runs)}
    for name, work in (("frame() per value", one_by_one), ("frames() per batch", batch)):
        alone, beside = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            work()
            alone.append(time.perf_counter() - t0)
            beside.append(beside_python(work))
        out[name] = {
            "values": len(payloads),
            "us_per_value_alone": median([s / len(payloads) * 1e6 for s in alone]),
            "us_per_value_beside_python": median([s / len(payloads) * 1e6 for s in beside]),
        }
    return out


def worker_checksum(opts: argparse.Namespace) -> dict[str, Any]:
    import orjson
    import zstandard

    from tieredmem.codec import CHECKED, JSON, ZSTD, Codec

    codec = Codec(dictionary=False)
    text = " ".join(_words(3))

    def per_value(work: Any, n: int) -> float | None:
        runs = []
        for _ in range(7):  # short runs on a shared machine: the median of more of them
            t0 = time.perf_counter()
            for _ in range(n):
                work()
            runs.append((time.perf_counter() - t0) / n * 1e6)
        return median(runs, 3)

    with_sum = zstandard.ZstdCompressor(level=3, write_checksum=True)
    without = zstandard.ZstdCompressor(level=3)
    out: dict[str, Any] = {}
    for size in (64, 1024, 16 * 1024, 256 * 1024):
        payload = orjson.dumps(text[: size - 2])
        n = max(20, opts.values * 256 // max(size, 256))
        plain_new, plain_old = Codec.plain(JSON, payload), bytes((JSON,)) + payload
        zstd_new = bytes((JSON | ZSTD | CHECKED,)) + with_sum.compress(payload)
        zstd_old = bytes((JSON | ZSTD,)) + without.compress(payload)
        assert codec.unframe(zstd_new)[1] == codec.unframe(zstd_old)[1] == payload
        row = {
            "values": n,
            "plain frame, crc32": per_value(lambda p=payload: Codec.plain(JSON, p), n),
            "plain frame, none": per_value(lambda p=payload: bytes((JSON,)) + p, n),
            "plain unframe, crc32": per_value(lambda f=plain_new: codec.unframe(f), n),
            "plain unframe, none": per_value(lambda f=plain_old: codec.unframe(f), n),
            "zstd compress, checksum": per_value(lambda p=payload: with_sum.compress(p), n),
            "zstd compress, none": per_value(lambda p=payload: without.compress(p), n),
            "zstd unframe, checksum": per_value(lambda f=zstd_new: codec.unframe(f), n),
            "zstd unframe, none": per_value(lambda f=zstd_old: codec.unframe(f), n),
        }
        out[f"{size} B"] = row
    return out


def import_rss(module: str | None) -> dict[str, Any]:
    """Peak RSS of a fresh interpreter that imports *module* (None: nothing) and no
    benchmark helpers."""
    # VmHWM as in _common.peak_rss_mb, inline: importing the helpers would cost RSS.
    code = (f"import {module}\n" if module else "") + (
        "try:\n"
        "    print(next(int(l.split()[1]) / 1024 for l in open('/proc/self/status')"
        " if l.startswith('VmHWM:')))\n"
        "except OSError:\n"
        "    import resource\n"
        "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-2000:]}
    return {"peak_rss_mb": round(float(proc.stdout.strip()), 1)}


def worker(opts: argparse.Namespace) -> None:
    run = {
        "wal-frames": worker_wal_frames,
        "returning": worker_returning,
        "convoy": worker_convoy,
        "checksum": worker_checksum,
    }[opts.worker]
    print(json.dumps(run(opts)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller runs (CI smoke test)")
    p.add_argument("--appends", type=int, default=20_000)
    p.add_argument("--updates", type=int, default=20_000)
    p.add_argument("--values", type=int, default=20_000)
    p.add_argument("--out", help="JSON output (default benchmarks/results/internals.json)")
    p.add_argument("--only", help="comma-separated configurations to run (default: all)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    opts = p.parse_args()
    if opts.quick:
        opts.appends, opts.updates, opts.values = 2_000, 2_000, 3_000
    if opts.worker:
        worker(opts)
        return
    require("benchmarks/internals.py", REQUIRES)
    sizes = ["--appends", str(opts.appends), "--updates", str(opts.updates)]
    sizes += ["--values", str(opts.values)]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in opts.only.split(",") if opts.only else CONFIGS:
            if name not in CONFIGS:
                raise SystemExit(f"unknown configuration {name!r}; choose from {CONFIGS}")
            print(f"running {name} ...", flush=True)
            if name.startswith("import-"):
                results[name] = import_rss(None if name == "import-bare" else "tieredmem")
            else:
                results[name] = run_worker(__file__, name, sizes, Path(tmp), 0)
    failed = [n for n, r in results.items() if "error" in r]

    if "import-bare" in results or "import-tieredmem" in results:
        print("\nimport: peak RSS MB")
    for name in ("import-bare", "import-tieredmem"):
        if name in results:
            print(f"  {name:<18} {results[name].get('peak_rss_mb')}")
    if "wal-frames" in results:
        print("\nWAL frames (4 KiB pages) a commit")
    for name, row in results.get("wal-frames", {}).items():
        if isinstance(row, dict):
            print(
                f"  {name:<55} {row['frames_per_append']:>6}  "
                f"(~{row['checkpoints_per_30k']} checkpoints per 30,000 at 4 MiB)"
            )
    if "returning" in results:
        print("\nUPSERT of an existing row, us (median of 3)")
    for name, row in results.get("returning", {}).items():
        if isinstance(row, dict):
            print(f"  {name:<18} {row['us_per_upsert']}")
    if "convoy" in results:
        print("\nframing ~0.9 KB values with a dictionary, us a value (median of 3)")
    for name, row in results.get("convoy", {}).items():
        if isinstance(row, dict):
            beside = row.get("us_per_value_beside_python")
            print(
                f"  {name:<20} alone {row['us_per_value_alone']:>7}"
                + (f"   beside a thread running Python {beside:>8}" if beside else "")
            )

    if "checksum" in results:
        print("\nframe checksums, us a value (median of 7): with / without")
    for name, row in results.get("checksum", {}).items():
        if isinstance(row, dict):
            cells = []
            for op in ("plain frame", "plain unframe", "zstd compress", "zstd unframe"):
                new = row[f"{op}, crc32" if op.startswith("plain") else f"{op}, checksum"]
                cells.append(f"{op} {new}/{row[f'{op}, none']}")
            print(f"  {name:>9}  " + "   ".join(cells))

    cmd = "python benchmarks/internals.py" + (" --quick" if opts.quick else "")
    cmd += f" --only {opts.only}" if opts.only else ""
    name = "internals" + (f"_{opts.only.replace(',', '_')}" if opts.only else "")
    out = Path(opts.out) if opts.out else results_path(name, opts.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "internals",
        "command": cmd,
        "options": {"appends": opts.appends, "updates": opts.updates, "values": opts.values},
        "machine": {
            "git": git_state(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            **cpu_and_memory(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "results": results,
    }
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"\nresults: {out}\nreproduce: {cmd}")
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}: {[results[n]['error'] for n in failed]}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

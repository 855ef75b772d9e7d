"""A long-running agent whose memory stays bounded: RSS and file size are printed as it goes.

Retention keeps the last 2,000 messages of each session on disk (plus pinned ones);
the hot tier holds 8 MiB; everything else is on disk and read back when needed.

    python examples/long_running_agent.py
"""

from __future__ import annotations

import os
import random
import resource

import tieredmem


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    steps = 20_000 if os.environ.get("TIEREDMEM_EXAMPLE_QUICK") else 200_000
    rng = random.Random(7)
    retention = tieredmem.Retention(max_items=2_000, keep=lambda m: m.get("pinned", False))
    with tieredmem.MemorySaver(
        max_history=50,
        path="long_running_agent.db",
        hot_bytes="8MiB",
        retention=retention,
        durability="batch",
        maintenance_interval=0,
    ) as memory:
        sessions = [memory.history(f"session-{i}") for i in range(5)]
        for step in range(1, steps + 1):
            h = sessions[step % len(sessions)]
            h.append({"step": step, "text": "word " * rng.randint(20, 120), "pinned": step == 1})
            if step % 10 == 0:
                h.recent(20)
            if step % 100 == 0:
                with memory.task("summarize") as scratch:
                    scratch["buffer"] = bytearray(256 * 1024)
            if step % (steps // 10) == 0:
                memory.maintain()
                stats = memory.stats()
                size = sum(
                    os.path.getsize(f)
                    for f in ("long_running_agent.db", "long_running_agent.db-wal")
                    if os.path.exists(f)
                )
                print(
                    f"step {step:>7}: rss {rss_mb():6.1f} MB, "
                    f"hot {stats['hot_bytes'] / 2**20:4.1f} MiB, "
                    f"file {size / 2**20:5.1f} MiB, kept {sum(len(s) for s in sessions)} messages"
                )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS {peak:.1f} MB; first pinned message kept: {sessions[1][0]['pinned']}")


if __name__ == "__main__":
    main()

"""Quickstart: a store that survives restarts and keeps its memory bounded.

Run it twice: the second run finds what the first one wrote.

    python examples/quickstart.py [path]
"""

from __future__ import annotations

import sys

import tieredmem


def main(path: str = "quickstart.db") -> None:
    # A 1 MiB hot tier in front of one SQLite file; everything else stays on disk.
    with tieredmem.open(path, hot_bytes="1MiB") as store:
        runs = store.get(("app",), "runs")
        count = (runs.value if runs else 0) + 1
        store.put(("app",), "runs", count)
        print(f"run #{count} on {store.url}")

        # Namespaced items with filters and full-text search.
        store.put(("users", "alice"), "prefs", {"lang": "fr", "theme": "dark"})
        store.put(("users", "bob"), "prefs", {"lang": "en", "theme": "light"})
        store.put(("notes", "alice"), "n1", {"text": "Alice prefers French cheese"})
        store.put(("notes", "alice"), "n2", {"text": "Alice is allergic to peanuts"})
        fr = store.search(("users",), filter={"lang": "fr"})
        print("French speakers:", [item.namespace[-1] for item in fr])
        hits = store.search(("notes",), query="cheese")
        print("notes about cheese:", [item.value["text"] for item in hits])

        # Expiring items and atomic groups.
        store.put(("sessions",), "token", "abc123", ttl=3600)
        with store.transaction():
            store.put(("accounts",), "alice", {"balance": 90})
            store.put(("accounts",), "bob", {"balance": 110})

        # Far more data than the hot tier holds: it spills to the file.
        store.put_many(
            (("log",), f"event-{i:05d}", {"i": i, "msg": "x" * 200}) for i in range(5000)
        )
        item = store.get(("log",), "event-00042")
        assert item is not None
        print("read back a cold item:", item.value["i"])

        # Recently used items answer from memory, without touching the file.
        for _ in range(100):
            store.get(("users", "alice"), "prefs")

        st = store.stats()
        print(
            f"hot: {st.hot_items} items, {st.hot_bytes / 1024:.0f} KiB of "
            f"{st.hot_budget / 1024:.0f} KiB; cold: {st.cold_rows} rows, "
            f"{st.cold_bytes / 1024:.0f} KiB on disk; hit rate {st.hit_rate:.0%}"
        )


if __name__ == "__main__":
    main(*sys.argv[1:])

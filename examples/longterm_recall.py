"""Long-term memory across runs: the second run recalls what the first one learned.

python examples/longterm_recall.py   # first run: learns
python examples/longterm_recall.py   # second run: recalls
"""

from __future__ import annotations

import tieredmem

USER = ("user", "alice")


def main() -> None:
    with tieredmem.MemorySaver(path="longterm_recall.db") as memory:
        facts = memory.longterm
        prefs = facts.get(USER, "preferences")
        if prefs is None:
            print("first run: nothing known about alice yet; learning...")
            facts.put(USER, "preferences", {"language": "French", "tone": "formal"})
            facts.put(USER, "fact-1", {"text": "Alice is allergic to peanuts"})
            facts.put(USER, "fact-2", {"text": "Alice works on a sailing boat"})
        else:
            print(f"recalled preferences from an earlier run: {prefs.value}")
            print(f"known since {prefs.created_at:%Y-%m-%d %H:%M:%S} UTC")
            for item in facts.search(USER, query="boat"):
                print(f"search 'boat' -> {item.value['text']}")
        runs = memory.state("runs")
        runs["count"] = runs.get("count", 0) + 1
        runs.commit()
        print(f"this is run #{runs['count']}")


if __name__ == "__main__":
    main()

"""A small chat agent whose memory is a MemorySaver (no network, no model).

The agent keeps the conversation in a History (only recent turns in memory, all of it
on disk), its working state in a State, and a task's scratch data in a task block.

    python examples/chat_agent.py
"""

from __future__ import annotations

import os

import tieredmem


class EchoAgent:
    """Answers by recalling earlier turns: enough to show memory, no model needed."""

    def __init__(self, memory: tieredmem.MemorySaver, session: str) -> None:
        self.memory = memory
        self.history = memory.history(session)
        self.state = memory.state(session)

    def reply(self, text: str) -> str:
        self.history.append({"role": "user", "content": text})
        context = self.history.recent(6)  # what a model would see
        with self.memory.task("compose") as scratch:  # temporary, never written
            scratch["context_chars"] = sum(len(m["content"]) for m in context)
            answer = (
                f"turn {len(self.history) // 2 + 1}: you said {text!r}; "
                f"I remember {len(self.history)} messages"
            )
        self.history.append({"role": "assistant", "content": answer})
        self.state["turns"] = self.state.get("turns", 0) + 1
        self.state["last_topic"] = text.split()[0].lower()
        self.state.commit()  # writes only the keys that changed
        return answer


def main() -> None:
    turns = 20 if os.environ.get("TIEREDMEM_EXAMPLE_QUICK") else 200
    with tieredmem.MemorySaver(max_history=100, persistent=True, path="chat_agent.db") as memory:
        agent = EchoAgent(memory, session="demo")
        for i in range(turns):
            answer = agent.reply(f"message number {i} about topic {i % 7}")
        print(answer)
        print(f"first message ever: {agent.history[0]['content']!r}")
        print(f"state: {dict(agent.state)}")
        stats = memory.stats()
        print(
            f"history: {len(agent.history)} messages; "
            f"hot tier {stats['hot_bytes'] / 1024:.0f} KiB; "
            f"file {stats['cold_bytes'] / 1024:.0f} KiB"
        )


if __name__ == "__main__":
    main()

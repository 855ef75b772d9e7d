"""A LangGraph graph that remembers user preferences across threads and across runs.

The graph's checkpoints (per thread) go to a TieredSaver and the user's preferences
(shared by every thread) to a TieredStore, both in one file.  No network, no model: the
"assistant" answers with what it remembers.

    python examples/longterm_langgraph.py   # first run learns, second run recalls
"""

from __future__ import annotations

import uuid

try:
    from langgraph.config import get_config
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.store.base import BaseStore
except ModuleNotFoundError as exc:
    raise SystemExit(
        f"this example needs LangGraph ({exc}); install the extra: "
        "python -m pip install 'tieredmem[langgraph]'  (from a checkout: -e '.[langgraph]')"
    ) from None

import tieredmem
from tieredmem.langgraph import TieredSaver, TieredStore


def assistant(state: MessagesState, *, store: BaseStore) -> dict[str, list[tuple[str, str]]]:
    user = get_config()["configurable"]["user_id"]
    text = state["messages"][-1].content
    if text.lower().startswith("i like "):
        liked = text[len("i like ") :]
        store.put(("users", user, "preferences"), liked, {"likes": liked})
        return {"messages": [("ai", f"Noted: you like {liked}.")]}
    prefs = store.search(("users", user, "preferences"), limit=20)
    if not prefs:
        return {"messages": [("ai", "I don't know your taste yet.")]}
    liked = ", ".join(sorted(p.value["likes"] for p in prefs))
    return {"messages": [("ai", f"You like {liked}.")]}


def main(path: str = "longterm_langgraph.db") -> None:
    with tieredmem.MemorySaver(path=path) as memory:  # one file, one hot tier for both
        builder = StateGraph(MessagesState)
        builder.add_node("assistant", assistant)
        builder.add_edge(START, "assistant")
        graph = builder.compile(checkpointer=TieredSaver(memory), store=TieredStore(memory))

        def say(thread: str, text: str) -> str:
            config = {"configurable": {"thread_id": thread, "user_id": "alice"}}
            return graph.invoke({"messages": [("user", text)]}, config)["messages"][-1].content

        first_thread = f"thread-{uuid.uuid4().hex[:8]}"
        print(f"[{first_thread}] what do I like? ->", say(first_thread, "What do I like?"))
        print(f"[{first_thread}] I like green tea ->", say(first_thread, "I like green tea"))
        other = f"thread-{uuid.uuid4().hex[:8]}"  # a different conversation, same user
        print(f"[{other}] what do I like? ->", say(other, "What do I like?"))
        threads = {first_thread, other}
        print(f"threads this run: {len(threads)}; file: {memory.path}")


if __name__ == "__main__":
    main()

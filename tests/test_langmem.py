"""LangMem on TieredStore (issue #18): its store-backed tools and memory manager, with a
deterministic local embedder and fake chat models (no network), on a real file.

Skipped where ``langmem`` is not installed (the ``langmem`` extra; the test extra has it).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langmem")

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langmem import (
    create_manage_memory_tool,
    create_memory_store_manager,
    create_search_memory_tool,
)
from pydantic import Field

from tieredmem.langgraph import TieredStore

DIMS = 64


def embed(texts: list[str]) -> list[list[float]]:
    """Bag of words hashed into DIMS buckets: texts sharing words are close."""
    out = []
    for text in texts:
        vector = [0.0] * DIMS
        for word in re.findall(r"\w+", text.lower()):
            vector[
                int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest()) % DIMS
            ] += 1
        out.append(vector)
    return out


class ToolCallingFake(GenericFakeChatModel):
    """Replies with the given messages in turn, whatever tools are bound; records what
    it was sent."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingFake:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def _call(name: str, args: dict[str, Any]) -> AIMessage:
    return AIMessage(
        content="",
        tool_calls=[{"name": name, "args": args, "id": f"c{len(str(args))}", "type": "tool_call"}],
    )


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with TieredStore(
        tmp_path / "memory.db", index={"dims": DIMS, "embed": embed, "fields": ["content"]}
    ) as s:
        yield s


def test_manage_and_search_tools(store: TieredStore, tmp_path: Path) -> None:
    manage = create_manage_memory_tool(namespace=("memories", "alice"), store=store)
    search = create_search_memory_tool(namespace=("memories", "alice"), store=store)
    manage.invoke({"content": "Alice prefers dark mode in every editor"})
    created = manage.invoke({"content": "Alice lives in Lyon, France"})
    key = created.split()[-1]
    hits = json.loads(search.invoke({"query": "where does Alice live", "limit": 1}))
    assert [h["value"]["content"] for h in hits] == ["Alice lives in Lyon, France"]
    assert hits[0]["score"] > 0
    manage.invoke({"content": "Alice lives in Paris now", "action": "update", "id": key})
    hits = json.loads(search.invoke({"query": "where does Alice live", "limit": 1}))
    assert hits[0]["key"] == key and hits[0]["value"]["content"] == "Alice lives in Paris now"
    # The filter of the search tool is tieredmem's (new operators included).
    flt = {"content": {"$contains": "dark"}}
    hits = json.loads(search.invoke({"query": "editor", "filter": flt}))
    assert [h["value"]["content"] for h in hits] == ["Alice prefers dark mode in every editor"]
    manage.invoke({"action": "delete", "id": key})
    assert [i.value["content"] for i in store.search(("memories", "alice"))] == [
        "Alice prefers dark mode in every editor"
    ]
    # Another process sees the memories (the file is the memory).
    code = textwrap.dedent(
        f"""
        from tieredmem.langgraph import TieredStore
        with TieredStore({str(store.store.url).removeprefix("sqlite:///")!r}) as s:
            print([i.value["content"] for i in s.search(("memories", "alice"))])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "['Alice prefers dark mode in every editor']"


def test_tools_async(store: TieredStore) -> None:
    manage = create_manage_memory_tool(namespace=("memories", "{langgraph_user_id}"), store=store)
    search = create_search_memory_tool(namespace=("memories", "{langgraph_user_id}"), store=store)

    async def main() -> list[Any]:
        config: Any = {"configurable": {"langgraph_user_id": "bob"}}
        await manage.ainvoke({"content": "Bob is allergic to peanuts"}, config=config)
        return json.loads(await search.ainvoke({"query": "peanuts allergy"}, config=config))

    hits = asyncio.run(main())
    assert [h["namespace"] for h in hits] == [["memories", "bob"]]


def test_memory_store_manager(store: TieredStore) -> None:
    model = ToolCallingFake(
        messages=iter(
            [
                _call("Memory", {"content": "Alice's cat is called Miso"}),
                _call("Memory", {"content": "Alice's dog is called Rex"}),
            ]
        )
    )
    manager = create_memory_store_manager(
        model, namespace=("facts", "{langgraph_user_id}"), store=store
    )
    config = {"configurable": {"langgraph_user_id": "alice"}}
    manager.invoke(
        {"messages": [{"role": "user", "content": "My cat is called Miso"}]}, config=config
    )
    stored = store.search(("facts", "alice"))
    assert [i.value for i in stored] == [
        {"kind": "Memory", "content": {"content": "Alice's cat is called Miso"}}
    ]
    # The second conversation: the manager finds the first memory (a vector search on
    # TieredStore) and shows it to the model before it extracts the new one.
    manager.invoke(
        {"messages": [{"role": "user", "content": "And my cat plays with my dog Rex"}]},
        config=config,
    )
    shown = " ".join(str(m.content) for m in model.seen[-1])
    assert "Miso" in shown
    contents = sorted(i.value["content"]["content"] for i in store.search(("facts", "alice")))
    assert contents == ["Alice's cat is called Miso", "Alice's dog is called Rex"]

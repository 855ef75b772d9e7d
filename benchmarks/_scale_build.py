"""Builds the stores benchmarks/scale.py measures (not a benchmark: the runner skips ``_*``).

One file per size *N* (items of ~1 KB): ``N // 1,000`` namespaces ``("docs", "nsNNNNN")``
of 1,000 items each (``{"n": j % 10, "user": {"lang": ...}, "text": <880 chars>}``),
``max(2, N // 10,000)`` histories of 1,000 messages (``MemorySaver`` on the same store) and
``max(4, N // 5,000)`` LangGraph threads of 20 turns (``TieredSaver`` on the same store, a
one-node ``MessagesState`` graph).  At 10,000,000 items: 10,000 namespaces, 1,000 histories
and 2,000 threads, the shape of issue #16.

Files are cached under ``$TIEREDMEM_SCALE_CACHE`` (default ``/work/scale-cache`` on a
machine with ``/work``, else ``~/.cache/tieredmem-scale``): a file is built into
``<name>.building`` and renamed when complete, with a JSON description beside it, so an
interrupted build never passes for a finished one.
"""

from __future__ import annotations

import base64
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

ITEMS_PER_NS = 1000
HISTORY_LEN = 1000
TURNS = 20
LANGS = ("en", "fr", "de", "es", "ja")
SHAPE_VERSION = 2


def cache_dir() -> Path:
    env = os.environ.get("TIEREDMEM_SCALE_CACHE")
    if env:
        path = Path(env)
    elif Path("/work").is_dir():
        path = Path("/work/scale-cache")
    else:
        path = Path.home() / ".cache" / "tieredmem-scale"
    path.mkdir(parents=True, exist_ok=True)
    return path


def shape(items: int) -> dict[str, int]:
    return {
        "items": items,
        "namespaces": max(1, items // ITEMS_PER_NS),
        "histories": max(2, items // 10_000),
        "threads": max(4, items // 5_000),
        "version": SHAPE_VERSION,
    }


def store_path(items: int) -> Path:
    return cache_dir() / f"scale-{items}.db"


def built(items: int) -> bool:
    meta = store_path(items).with_suffix(".json")
    if not store_path(items).exists() or not meta.exists():
        return False
    return bool(json.loads(meta.read_text()).get("shape") == shape(items))


def _value(rng: random.Random, j: int) -> dict[str, Any]:
    return {
        "n": j % 10,
        "user": {"lang": LANGS[j % len(LANGS)]},
        "text": base64.b64encode(rng.randbytes(660)).decode(),
    }


def _graph(checkpointer: Any) -> Any:
    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    def node(state: Any) -> dict[str, Any]:
        return {"messages": [AIMessage("reply " * 80)]}

    builder = StateGraph(MessagesState)
    builder.add_node("chat", node)
    builder.add_edge(START, "chat")
    builder.add_edge("chat", END)
    return builder.compile(checkpointer=checkpointer)


def build(items: int, *, log: Any = sys.stderr) -> Path:
    """Build (or reuse) the store of *items* items; return its path."""
    import tieredmem
    from tieredmem.langgraph import TieredSaver

    final = store_path(items)
    if built(items):
        return final
    tmp = final.with_suffix(".building")
    for suffix in ("", "-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    sh = shape(items)
    rng = random.Random(items)
    started = time.time()
    store = tieredmem.open(tmp, hot_bytes="8MiB", maintenance_interval=1e9, wal_bytes="64MiB")
    try:
        for i in range(sh["namespaces"]):
            ns = ("docs", f"ns{i:05d}")
            per = min(ITEMS_PER_NS, items - i * ITEMS_PER_NS)
            store.put_many([(ns, f"k{j:04d}", _value(rng, j)) for j in range(per)])
            if i % 100 == 99:
                done = (i + 1) * ITEMS_PER_NS
                rate = done / (time.time() - started)
                print(
                    f"[build {items}] {done:,} items, {rate:,.0f}/s, "
                    f"eta items {(items - done) / rate:,.0f}s",
                    file=log,
                    flush=True,
                )
        memory = tieredmem.MemorySaver(store=store, max_history=100)
        for h in range(sh["histories"]):
            memory.history(f"h{h:04d}").extend(
                {"role": "user" if k % 2 else "assistant", "content": f"message {k} " * 20}
                for k in range(HISTORY_LEN)
            )
        print(f"[build {items}] histories done at {time.time() - started:,.0f}s", file=log)
        from langchain_core.messages import HumanMessage

        saver = TieredSaver(store)
        graph = _graph(saver)
        for t in range(sh["threads"]):
            config = {"configurable": {"thread_id": f"t{t:05d}"}}
            for turn in range(TURNS):
                graph.invoke({"messages": [HumanMessage(f"question {turn} " * 5)]}, config)
        print(f"[build {items}] threads done at {time.time() - started:,.0f}s", file=log)
        store.flush()
    finally:
        store.close()
    # Back to the default WAL bound, and the WAL folded in, before the file is used.
    store = tieredmem.open(tmp, maintenance_interval=1e9)
    store.backend.checkpoint("TRUNCATE")  # type: ignore[attr-defined]
    store.close()
    for suffix in ("-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    tmp.rename(final)
    final.with_suffix(".json").write_text(
        json.dumps(
            {
                "shape": sh,
                "bytes": final.stat().st_size,
                "build_seconds": round(time.time() - started, 1),
            }
        )
    )
    print(f"[build {items}] done in {time.time() - started:,.0f}s", file=log)
    return final


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        build(int(arg))

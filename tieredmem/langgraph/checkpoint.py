"""TieredSaver: a LangGraph checkpointer whose storage grows linearly with a conversation.

``SqliteSaver`` stores every channel value in full at every step, so a thread's file grows
with the square of its length.  TieredSaver stores a channel value only when its version
changes, and a list value that extends the list it had at the previous step (``messages``
under ``add_messages``) is appended to a chunked append-only log (the
:class:`~tieredmem.History` machinery) shared by all its versions: a version records
"this log, this length", an append writes only the new items, and a read loads only the
chunks it needs.  Any other change (a removal, a replacement) starts a new log.

Rows, all in one :class:`tieredmem.Store` (and so in its hot tier), under the internal
namespace ``("tieredmem", "lg", thread_id, "~" + checkpoint_ns)``:

- ``latest``: the newest checkpoint id;
- ``c<id>``: checkpoint (without values), metadata and parent id;
- ``v<channel>\\x1f<version>``: the channel's value at that version, or a log reference;
- ``w<id>``: every pending write of that checkpoint.

Logs live below, in ``(..., "log", <log id>)``.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, cast

import ormsgpack
from cachetools import LRUCache
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from ..backends import SEP
from ..history import History
from ..memory import MemorySaver
from ..store import ColdReadError, Store
from ._common import config as config_for
from ._common import resolve_store

__all__ = ["TieredSaver"]

log = logging.getLogger(__name__)

_V = "v"
_LATEST = "latest"
_ITEM_BYTES = 2048  # estimated memory of one decoded message (a ~500 B text)
_MSGPACK = b"msgpack\x00"  # a log item's prefix: the serializer's type tag, NUL
_TOUCHED = "touched"
_PAGE = 64


def _pack(obj: Any) -> bytes:
    return ormsgpack.packb(obj)


def _unpack(data: bytes) -> Any:
    return ormsgpack.unpackb(data)


def _held_items(entry: tuple[str, int, list[Any]]) -> int:
    return 1 + entry[1]


def _vkey(channel: str, version: Any) -> str:
    return f"{_V}{channel}{SEP}{version}"


def _label(thread_id: Any) -> str:
    label = str(thread_id)
    if not label or any(ord(ch) < 32 for ch in label):
        raise ValueError(
            f"thread_id {thread_id!r} must be a non-empty string without control characters"
        )
    return label


class TieredSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer over a :class:`tieredmem.Store` (sync and async).

    :param conn: a path, ``":memory:"``, a store URL, a :class:`tieredmem.Store` or a
        :class:`tieredmem.MemorySaver` (then the saver shares its file and hot tier).
    :param hot_bytes: hot-tier budget when the saver opens the store itself.  The saver
        also keeps the decoded list values (``messages``) of recently used threads'
        newest checkpoints, up to an estimated quarter of the store's budget (2 KiB per
        item), so that ``get_state`` on a hot thread decodes no message.  Those message
        objects are shared with the graph that wrote them, as a running graph shares
        them between its steps: treat state values as immutable (LangGraph's rule).
    :param max_checkpoints: keep at most this many checkpoints per thread and namespace
        (older ones are pruned; what a kept checkpoint needs to be read back is kept).
    :param ttl: seconds; threads idle longer than this are deleted by maintenance.
    :param serde: LangGraph serializer (``JsonPlusSerializer`` by default; no pickle).
    :param wal_bytes: when the saver opens the file itself: bound of SQLite's write-ahead
        log (1 MiB: a graph commits a few rows per step, so checkpointing the log more
        often than a plain store's 4 MiB costs nothing measurable and keeps files small).
    """

    def __init__(
        self,
        conn: str | Store | MemorySaver = ":memory:",
        *,
        hot_bytes: int | str = "64MiB",
        max_checkpoints: int | None = None,
        ttl: float | None = None,
        serde: SerializerProtocol | None = None,
        chunk_items: int = 64,
        durability: str = "sync",
        maintenance_interval: float = 60.0,
        wal_bytes: int | str = "1MiB",
        clock: Any = time.time,
    ) -> None:
        super().__init__(serde=serde)
        # Only LangGraph's own serializer is known to decode "msgpack" with one plain
        # msgpack call, so that an array of items' encodings decodes to the items.
        self._batch_decode = type(self.serde) is JsonPlusSerializer
        self.store, self._owns = resolve_store(
            conn,
            hot_bytes=hot_bytes,
            durability=durability,
            maintenance_interval=maintenance_interval,
            wal_bytes=wal_bytes,
            clock=clock,
        )
        if max_checkpoints is not None and max_checkpoints < 1:
            raise ValueError("max_checkpoints must be >= 1")
        self.max_checkpoints = max_checkpoints
        self.ttl = ttl
        self.chunk_items = chunk_items
        self._lock = threading.RLock()  # writes of this saver (held during disk I/O)
        self._cache_lock = threading.Lock()  # the in-memory LRUs below (never during I/O)
        self._logs: LRUCache[tuple[str, str], History] = LRUCache(maxsize=256)
        # The list last written or read per (thread, ns, channel): the next put sees in
        # O(1) memory accesses whether its value extends it (same item objects, longer
        # list), and the newest checkpoint of a hot thread is read without decoding its
        # log again.  Bounded by items held, at an estimated _ITEM_BYTES each, to a
        # quarter of the hot-tier budget.
        self._last_lists: LRUCache[tuple[str, str, str], tuple[str, int, list[Any]]] = LRUCache(
            maxsize=max(_PAGE, self.store.stats().hot_budget // 4 // _ITEM_BYTES),
            getsizeof=_held_items,
        )
        self._counts: dict[tuple[str, str], int] = {}
        self._touched: dict[str, float] = {}
        self.store.add_maintenance_hook(self._maintenance_hook)

    # -- construction ---------------------------------------------------------------
    @classmethod
    def from_conn_string(cls, conn_string: str, **kwargs: Any) -> TieredSaver:
        """LangGraph's idiom, sync or async: ``with TieredSaver.from_conn_string(path) as s:``
        or ``async with TieredSaver.from_conn_string(path) as s:`` (closed on exit)."""
        return cls(conn_string, **kwargs)

    def close(self) -> None:
        """Close the store if this saver opened it; idempotent."""
        if self._owns:
            self.store.close()

    def __enter__(self) -> TieredSaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> TieredSaver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ----------------------------------------------------------------------
    def _ns(self, thread: str, checkpoint_ns: str) -> str:
        return self.store.internal_ns("lg", thread, "~" + checkpoint_ns)

    def _thread_ns(self, thread: str) -> str:
        return self.store.internal_ns("lg", thread)

    def _log(self, thread: str, checkpoint_ns: str, log_id: str) -> History:
        key = (self._ns(thread, checkpoint_ns), log_id)
        with self._cache_lock:
            h = self._logs.get(key)
        if h is None:
            # Opened outside the lock: opening reads the log's index from the store.
            fresh = History(
                self.store,
                f"log-{log_id}",
                ns=self.store.internal_ns("lg", thread, "~" + checkpoint_ns, "log", log_id),
                chunk_items=self.chunk_items,
                chunk_bytes=256 * 1024,
                dumps=self._dump_item,
                loads=self._load_item,
                loads_many=self._load_items,
            )
            with self._cache_lock:
                h = self._logs.setdefault(key, fresh)
        return h

    def _remember(self, key: tuple[str, str, str], entry: tuple[str, int, list[Any]]) -> None:
        with self._cache_lock:
            if _held_items(entry) <= self._last_lists.maxsize:
                self._last_lists[key] = entry
            else:  # too long to hold: forget the older list of this key too
                self._last_lists.pop(key, None)

    def _remembered(self, key: tuple[str, str, str]) -> tuple[str, int, list[Any]] | None:
        with self._cache_lock:
            return self._last_lists.get(key)

    def _dump_item(self, item: Any) -> bytes:
        typ, data = self.serde.dumps_typed(item)
        return typ.encode() + b"\x00" + data

    def _load_item(self, payload: bytes) -> Any:
        typ, _, data = payload.partition(b"\x00")
        return self.serde.loads_typed((typ.decode(), data))

    def _load_items(self, payloads: Sequence[bytes]) -> list[Any]:
        """Decode many log items; with LangGraph's default serializer, in one msgpack call
        (one array of the items' own encodings) instead of one call per message."""
        if self._batch_decode and all(p.startswith(_MSGPACK) for p in payloads):
            n = len(payloads)
            head = (
                bytes((0x90 | n,))
                if n < 16
                else b"\xdc" + n.to_bytes(2, "big")
                if n < 0x10000
                else b"\xdd" + n.to_bytes(4, "big")
            )
            skip = len(_MSGPACK)
            data = b"".join([head, *(p[skip:] for p in payloads)])
            return cast(list[Any], self.serde.loads_typed(("msgpack", data)))
        return [self._load_item(p) for p in payloads]

    def _get(self, ns: str, key: str) -> Any:
        item = self.store.read(ns, key)
        return None if item is None else _unpack(item.value)

    def _touch(self, thread: str) -> None:
        if self.ttl is not None:
            self._touched[thread] = self.store.clock()

    # -- values -----------------------------------------------------------------------
    def _value_ref(
        self, thread: str, cns: str, channel: str, value: Any, parent_ref: Any
    ) -> dict[str, Any]:
        """How to store *value*: appended to a log when it extends the previous list."""
        if type(value) is not list or not value:
            typ, data = self.serde.dumps_typed(value)
            return {"t": typ, "d": data}
        key = (thread, cns, channel)
        prev = self._remembered(key)
        log_id: str | None = None
        start = 0
        if prev is not None:
            plog, plen, plist = prev
            if len(value) >= plen and all(map(operator.is_, value[:plen], plist[:plen])):
                log_id, start = plog, plen
        if log_id is None and isinstance(parent_ref, dict) and "log" in parent_ref:
            # A new process (or an evicted cache entry): compare with the stored prefix once.
            plog, plen = parent_ref["log"], parent_ref["n"]
            if len(value) >= plen and self._log(thread, cns, plog)[:plen] == value[:plen]:
                log_id, start = plog, plen
        if log_id is not None:
            h = self._log(thread, cns, log_id)
            if len(h) != start:  # another branch (a fork) already extended it: new log
                log_id = None
        if log_id is None:
            log_id, start = uuid.uuid4().hex[:16], 0
        h = self._log(thread, cns, log_id)
        if len(value) > start:
            h.extend(value[start:])
        self._remember(key, (log_id, len(value), value))
        return {"log": log_id, "n": len(value)}

    def _load_values(
        self, thread: str, cns: str, versions: ChannelVersions, remember: bool = False
    ) -> dict[str, Any]:
        ns = self._ns(thread, cns)
        keys = [(k, _vkey(k, v)) for k, v in versions.items()]
        items = self.store.read_many([(ns, vk) for _, vk in keys]) if keys else []
        out: dict[str, Any] = {}
        for (channel, _), item in zip(keys, items):
            if item is None:
                continue
            ref = _unpack(item.value)
            if "log" in ref:
                cached = self._remembered((thread, cns, channel))
                if cached is not None and cached[0] == ref["log"] and cached[1] == ref["n"]:
                    # The list this process last wrote or read for this very version: its
                    # items are immutable messages, so a shallow copy is the value, and the
                    # log need not be decoded again (O(1) per turn, not O(conversation)).
                    out[channel] = list(cached[2])
                    continue
                value = self._log(thread, cns, ref["log"])[: ref["n"]]
                out[channel] = value
                if remember:
                    # The graph continues from these very objects: the next put can see
                    # by identity that its list extends this one.
                    self._remember((thread, cns, channel), (ref["log"], ref["n"], value))
            else:
                out[channel] = self.serde.loads_typed((ref["t"], ref["d"]))
        return out

    def _writes(self, ns: str, checkpoint_id: str) -> list[tuple[str, str, Any]]:
        rows = self._get(ns, "w" + checkpoint_id) or []
        rows.sort(key=lambda w: (w[3], w[0], w[1]))  # writes_sort_key: path, task, idx
        return [(w[0], w[2], self.serde.loads_typed((w[4], w[5]))) for w in rows]

    def _tuple(
        self,
        thread: str,
        cns: str,
        checkpoint_id: str,
        row: Any,
        config: RunnableConfig | None,
        remember: bool = False,
    ) -> CheckpointTuple:
        ns = self._ns(thread, cns)
        checkpoint = cast(Checkpoint, self.serde.loads_typed((row["ct"], row["cd"])))
        metadata = cast(CheckpointMetadata, self.serde.loads_typed((row["mt"], row["md"])))
        checkpoint["channel_values"] = self._load_values(
            thread, cns, checkpoint["channel_versions"], remember
        )
        parent = row["p"]
        return CheckpointTuple(
            config=config or config_for(thread, cns, checkpoint_id),
            checkpoint=checkpoint,
            metadata=metadata,
            parent_config=(config_for(thread, cns, parent) if parent else None),
            pending_writes=self._writes(ns, checkpoint_id),
        )

    # -- the interface ----------------------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by ``config`` (or the thread's newest), or ``None``."""
        with self.store.snapshot():  # one coherence check for all the rows it reads
            return self._get_tuple(config)

    def _get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        thread = _label(conf["thread_id"])
        cns = conf.get("checkpoint_ns", "")
        ns = self._ns(thread, cns)
        checkpoint_id = get_checkpoint_id(config)
        given = config if checkpoint_id else None
        latest = self._get(ns, _LATEST)
        if not checkpoint_id:
            checkpoint_id = latest
            if checkpoint_id is None:
                return None
        row = self._get(ns, "c" + checkpoint_id)
        if row is None:
            return None
        self._touch(thread)
        return self._tuple(thread, cns, checkpoint_id, row, given, checkpoint_id == latest)

    def _namespaces(self, thread: str | None) -> list[tuple[str, str]]:
        """``(thread, checkpoint_ns)`` pairs that hold checkpoints."""
        root = self._thread_ns(thread) if thread is not None else self.store.internal_ns("lg")
        out = []
        for joined in self.store.namespaces_under(root):
            labels = joined.split(SEP)
            if len(labels) == 4 and labels[3].startswith("~"):
                out.append((labels[2], labels[3][1:]))
        return out

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first.  Reads a page at a time and holds no lock while the
        caller iterates; each page costs three batched reads, not one per checkpoint."""
        conf = (config or {}).get("configurable", {})
        thread = _label(conf["thread_id"]) if conf.get("thread_id") is not None else None
        cns = conf.get("checkpoint_ns")
        only_id = conf.get("checkpoint_id")
        before_id = get_checkpoint_id(before) if before else None
        spaces = self._namespaces(thread)
        if cns is not None:
            spaces = [s for s in spaces if s[1] == cns]
        ids: list[tuple[str, str, str]] = []
        for t, n in spaces:
            for key in self.store.keys(self._ns(t, n), "c", "d"):
                cid = key[1:]
                if only_id and cid != only_id:
                    continue
                if before_id and cid >= before_id:
                    continue
                ids.append((cid, t, n))
        ids.sort(reverse=True)
        remaining = limit
        for start in range(0, len(ids), _PAGE):
            page = ids[start : start + _PAGE]
            rows = self.store.read_many([(self._ns(t, n), "c" + cid) for cid, t, n in page])
            for (cid, t, n), item in zip(page, rows):
                if item is None:
                    continue
                row = _unpack(item.value)
                if filter:
                    metadata = self.serde.loads_typed((row["mt"], row["md"]))
                    if not all(metadata.get(k) == v for k, v in filter.items()):
                        continue
                yield self._tuple(t, n, cid, row, None)
                if remaining is not None:
                    remaining -= 1
                    if remaining <= 0:
                        return

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint; only channels in *new_versions* get a new value row."""
        conf = config["configurable"]
        thread = _label(conf["thread_id"])
        cns = conf.get("checkpoint_ns", "")
        parent = conf.get("checkpoint_id")
        ns = self._ns(thread, cns)
        cp: dict[str, Any] = dict(checkpoint)
        values = cp.pop("channel_values", {})
        parent_versions: dict[str, Any] = {}
        puts: list[tuple[str, str, Any]] = []
        # One coherence check for the reads below (a round trip each on Redis).
        with self._lock, self.store.snapshot():
            for channel, version in new_versions.items():
                if channel not in values:
                    continue
                parent_ref = None
                if (
                    type(values[channel]) is list
                    and self._remembered((thread, cns, channel)) is None
                ):
                    if not parent_versions and parent:
                        prow = self._get(ns, "c" + parent)
                        if prow is not None:
                            pcp = self.serde.loads_typed((prow["ct"], prow["cd"]))
                            parent_versions = dict(pcp["channel_versions"])
                    pv = parent_versions.get(channel)
                    if pv is not None:
                        parent_ref = self._get(ns, _vkey(channel, pv))
                ref = self._value_ref(thread, cns, channel, values[channel], parent_ref)
                puts.append((ns, _vkey(channel, version), _pack(ref)))
            ct, cd = self.serde.dumps_typed(cp)
            mt, md = self.serde.dumps_typed(get_checkpoint_metadata(config, metadata))
            row = {"p": parent, "ct": ct, "cd": cd, "mt": mt, "md": md}
            puts.append((ns, "c" + checkpoint["id"], _pack(row)))
            latest = self._get(ns, _LATEST)
            if latest is None or checkpoint["id"] >= latest:
                puts.append((ns, _LATEST, _pack(checkpoint["id"])))
            if self.ttl is not None:
                now = self.store.clock()
                self._touched[thread] = now
                puts.append((self._thread_ns(thread), _TOUCHED, _pack(now)))
            self.store.write(puts)
            # Read now, in the writer, the rows the next get_tuple of this checkpoint will
            # ask for but that may not exist (its pending writes; versions of channels
            # without a value): their absence is then cached, and reading the checkpoint
            # back touches no disk.
            written = {key for _, key, _ in puts}
            self.store.read_many(
                [(ns, "w" + checkpoint["id"])]
                + [
                    (ns, key)
                    for key in (_vkey(c, v) for c, v in checkpoint["channel_versions"].items())
                    if key not in written
                ]
            )
            self._after_put(thread, cns)
        return {
            "configurable": {
                "thread_id": thread,
                "checkpoint_ns": cns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes; a regular write stored before is kept (idempotent),
        special ones (errors, interrupts) are replaced."""
        conf = config["configurable"]
        thread = _label(conf["thread_id"])
        cns = conf.get("checkpoint_ns", "")
        ns = self._ns(thread, cns)
        key = "w" + conf["checkpoint_id"]
        with self._lock:
            rows = self._get(ns, key) or []
            index = {(w[0], w[1]): i for i, w in enumerate(rows)}
            changed = False
            for idx, (channel, value) in enumerate(writes):
                widx = WRITES_IDX_MAP.get(channel, idx)
                at = index.get((task_id, widx))
                if at is not None and widx >= 0:
                    continue
                typ, data = self.serde.dumps_typed(value)
                row = [task_id, widx, channel, task_path, typ, data]
                if at is None:
                    index[(task_id, widx)] = len(rows)
                    rows.append(row)
                else:
                    rows[at] = row
                changed = True
            if changed:
                self.store.write([(ns, key, _pack(rows))])

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, write and log of a thread (no error if unknown)."""
        thread = _label(thread_id)
        root = self._thread_ns(thread)
        with self._lock:
            spaces = self.store.namespaces_under(root)
            if spaces:
                self.store.write(ranges=[(ns, "", None) for ns in spaces])
            self._forget(thread)

    def _forget(self, thread: str) -> None:
        prefix = self._thread_ns(thread) + SEP
        with self._cache_lock:
            for key in [k for k in self._last_lists if k[0] == thread]:
                del self._last_lists[key]
            for lkey in [k for k in self._logs if k[0].startswith(prefix)]:
                del self._logs[lkey]
        for ckey in [k for k in self._counts if k[0] == thread]:
            del self._counts[ckey]
        self._touched.pop(thread, None)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) made by these runs, in every thread."""
        wanted = set(run_ids)
        if not wanted:
            return
        for thread, cns in self._namespaces(None):
            ns = self._ns(thread, cns)
            doomed = []
            for key in self.store.keys(ns, "c", "d"):
                row = self._get(ns, key)
                if row is None:
                    continue
                metadata = self.serde.loads_typed((row["mt"], row["md"]))
                if metadata.get("run_id") in wanted:
                    doomed.append(key[1:])
            if doomed:
                self._delete_checkpoints(thread, cns, doomed)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, write and log of a thread to another thread id."""
        src, dst = _label(source_thread_id), _label(target_thread_id)
        src_root, dst_root = self._thread_ns(src), self._thread_ns(dst)
        with self._lock:
            for ns in self.store.namespaces_under(src_root):
                target = dst_root + ns[len(src_root) :]
                puts = [(target, item.key, item.value) for item in self.store.rows(ns)]
                for i in range(0, len(puts), 500):
                    self.store.write(puts[i : i + 500])

    def prune(
        self,
        thread_ids: Sequence[str],
        *,
        strategy: str = "keep_latest",
        keep_last: int | None = None,
    ) -> None:
        """``"keep_latest"`` keeps the newest checkpoint of each namespace (or the newest
        *keep_last*) with what it needs to be read back; ``"delete"`` removes everything."""
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r}; use 'keep_latest' or 'delete'")
        for thread_id in thread_ids:
            thread = _label(thread_id)
            if strategy == "delete":
                self.delete_thread(thread)
                continue
            for t, cns in self._namespaces(thread):
                self._keep_last(t, cns, keep_last or 1)

    def _keep_last(self, thread: str, cns: str, n: int) -> int:
        ns = self._ns(thread, cns)
        ids = [k[1:] for k in self.store.keys(ns, "c", "d")]
        self._counts[(thread, cns)] = len(ids)
        if len(ids) <= n:
            return 0
        keep = set(ids[-n:])
        # Keep the ancestors a kept checkpoint needs: channels it versions whose value is
        # not stored at that version (DeltaChannel) are rebuilt from ancestors' writes.
        for cid in list(keep):
            row = self._get(ns, "c" + cid)
            if row is None:
                continue
            cp = self.serde.loads_typed((row["ct"], row["cd"]))
            need = {
                k
                for k, v in cp["channel_versions"].items()
                if self.store.read(ns, _vkey(k, v)) is None
            }
            cursor = row["p"]
            while need and cursor:
                keep.add(cursor)
                prow = self._get(ns, "c" + cursor)
                if prow is None:
                    break
                pcp = self.serde.loads_typed((prow["ct"], prow["cd"]))
                for k in list(need):
                    pv = pcp["channel_versions"].get(k)
                    if pv is not None and self.store.read(ns, _vkey(k, pv)) is not None:
                        need.discard(k)
                cursor = prow["p"]
        doomed = [cid for cid in ids if cid not in keep]
        self._delete_checkpoints(thread, cns, doomed)
        return len(doomed)

    def _delete_checkpoints(self, thread: str, cns: str, ids: Sequence[str]) -> None:
        """Delete checkpoints, then value rows and logs no remaining checkpoint uses."""
        ns = self._ns(thread, cns)
        with self._lock:
            deletes = [(ns, "c" + cid) for cid in ids] + [(ns, "w" + cid) for cid in ids]
            for i in range(0, len(deletes), 500):
                self.store.write(deletes=deletes[i : i + 500])
            remaining = [k[1:] for k in self.store.keys(ns, "c", "d")]
            used: set[str] = set()
            logs: set[str] = set()
            for cid in remaining:
                row = self._get(ns, "c" + cid)
                if row is None:
                    continue
                cp = self.serde.loads_typed((row["ct"], row["cd"]))
                for k, v in cp["channel_versions"].items():
                    used.add(_vkey(k, v))
            stale = []
            for vk in self.store.keys(ns, _V, chr(ord(_V) + 1)):
                if vk in used:
                    ref = self._get(ns, vk)
                    if isinstance(ref, dict) and "log" in ref:
                        logs.add(ref["log"])
                else:
                    stale.append((ns, vk))
            for i in range(0, len(stale), 500):
                self.store.write(deletes=stale[i : i + 500])
            latest = self._get(ns, _LATEST)
            if latest is not None and latest not in remaining:
                if remaining:
                    self.store.write([(ns, _LATEST, _pack(max(remaining)))])
                else:
                    self.store.write(deletes=[(ns, _LATEST)])
            log_root = self.store.internal_ns("lg", thread, "~" + cns, "log")
            dead = [
                lns
                for lns in self.store.namespaces_under(log_root)
                if lns.rsplit(SEP, 1)[-1] not in logs and lns != log_root
            ]
            if dead:
                self.store.write(ranges=[(lns, "", None) for lns in dead])
                with self._cache_lock:
                    for lns in dead:
                        self._logs.pop((ns, lns.rsplit(SEP, 1)[-1]), None)
                    for key in [k for k in self._last_lists if k[:2] == (thread, cns)]:
                        if self._last_lists[key][0] not in logs:
                            del self._last_lists[key]
            self._counts[(thread, cns)] = len(remaining)

    def get_next_version(self, current: str | int | None, channel: None) -> str:
        """``"<n>.<random>"`` like InMemorySaver's and SqliteSaver's, with ``n`` zero-padded
        to 10 digits instead of 32 for new threads (versions are stored many times per
        checkpoint).  A thread whose versions came from another saver keeps their width,
        so versions of one thread always compare as strings the way they do as numbers."""
        width = 10
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            head = current.split(".")[0]
            current_v = int(head)
            width = max(width, len(head))
        return f"{current_v + 1:0{width}d}.{random.random():.16f}"[: width + 12]

    # -- retention ----------------------------------------------------------------------
    def _after_put(self, thread: str, cns: str) -> None:
        if self.max_checkpoints is None:
            return
        key = (thread, cns)
        count = self._counts.get(key)
        if count is None:
            count = len(self.store.keys(self._ns(thread, cns), "c", "d"))
        else:
            count += 1
        self._counts[key] = count
        # Prune in steps, not at every put: a quarter of slack amortizes the scan.
        if count > self.max_checkpoints + max(1, self.max_checkpoints // 4):
            self._keep_last(thread, cns, self.max_checkpoints)

    def _maintenance_hook(self) -> dict[str, Any]:
        pruned = 0
        expired = 0
        if self.max_checkpoints is not None:
            for thread, cns in self._namespaces(None):
                pruned += self._keep_last(thread, cns, self.max_checkpoints)
        if self.ttl is not None:
            now = self.store.clock()
            if self._touched:
                self.store.write(
                    [(self._thread_ns(t), _TOUCHED, _pack(ts)) for t, ts in self._touched.items()]
                )
            threads = {t for t, _ in self._namespaces(None)}
            for thread in threads:
                touched = self._get(self._thread_ns(thread), _TOUCHED)
                if touched is not None and touched < now - self.ttl:
                    self.delete_thread(thread)
                    expired += 1
        return {"checkpoints_pruned": pruned, "threads_expired": expired}

    def maintain(self) -> dict[str, Any]:
        """Apply retention, expire, compact and vacuum now (a thread also does it)."""
        return self.store.maintain()

    def stats(self) -> dict[str, Any]:
        """The store's stats plus the threads and logs this saver knows, and the items of
        decoded list values it holds (``held_list_items``, at most ``held_list_items_max``)."""
        out = self.store.stats().as_dict()
        out["threads"] = len({t for t, _ in self._namespaces(None)})
        out["open_logs"] = len(self._logs)
        with self._cache_lock:
            out["held_list_items"] = self._last_lists.currsize
            out["held_list_items_max"] = self._last_lists.maxsize
        return out

    # -- migration ----------------------------------------------------------------------
    def import_from(
        self, source: BaseCheckpointSaver[Any], *, thread_ids: Sequence[str] | None = None
    ) -> int:
        """Copy every checkpoint (with its pending writes) from another saver.

        Streams one checkpoint at a time; checkpoints already here are skipped, so an
        interrupted import can simply be run again.  Returns the number imported.
        """
        count = 0
        configs: list[RunnableConfig | None] = (
            [{"configurable": {"thread_id": t}} for t in thread_ids] if thread_ids else [None]
        )
        for config in configs:
            for tup in source.list(config):
                conf = tup.config["configurable"]
                thread = _label(conf["thread_id"])
                cns = conf.get("checkpoint_ns", "")
                cid = tup.checkpoint["id"]
                if self.store.read(self._ns(thread, cns), "c" + cid) is not None:
                    continue
                parent = (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")
                put_config: RunnableConfig = config_for(thread, cns, parent)
                versions = dict(tup.checkpoint["channel_versions"])
                self.put(put_config, tup.checkpoint, tup.metadata, versions)
                by_task: dict[str, list[tuple[str, Any]]] = {}
                for task_id, channel, value in tup.pending_writes or []:
                    by_task.setdefault(task_id, []).append((channel, value))
                target: RunnableConfig = config_for(thread, cns, cid)
                for task_id, task_writes in by_task.items():
                    self.put_writes(target, task_writes, task_id)
                count += 1
        return count

    # -- async twins: the same work in a worker thread, so the event loop never blocks --
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        # A hot thread is answered right here from memory; anything that would touch the
        # disk (or wait for a writer) is retried in a worker thread instead.
        try:
            with self.store.memory_only():
                return self.get_tuple(config)
        except ColdReadError:
            return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        iterator = self.list(config, filter=filter, before=before, limit=limit)
        done = object()
        while True:
            item = await asyncio.to_thread(next, iterator, done)
            if item is done:
                return
            yield cast(CheckpointTuple, item)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(
        self,
        thread_ids: Sequence[str],
        *,
        strategy: str = "keep_latest",
        keep_last: int | None = None,
    ) -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy, keep_last=keep_last)

    async def aimport_from(self, source: BaseCheckpointSaver[Any]) -> int:
        """Async twin of :meth:`import_from` (the source's sync API is used)."""
        return await asyncio.to_thread(self.import_from, source)

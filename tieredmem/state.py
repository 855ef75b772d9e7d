"""State: a dict-like working state whose commits write only what changed.

Layout, under the internal namespace ``("tieredmem", "state", name)``:

- ``d{stamp}``: one *delta row* per commit, ``{"set": {...}, "del": [...]}``;
- ``b{stamp}``: a *base*, a full snapshot written by a compaction: ``{"seq": n, "data":
  {...}, "at": {stamp: [keys]}, "del": {stamp: [keys]}}``, the stamp of the commit that
  last set each key, and the keys deleted recently with the stamp of their deletion.

A *stamp* is ``{seq:012d}.{token}``: ``seq`` is one more than the highest the committer had
loaded, ``token`` its clock in nanoseconds and random bits.  So no two commits write the
same row, and stamps order commits: a commit made after seeing another sorts after it; of
two made at the same moment (neither saw the other), the later clock sorts last.

The state is the merge of its rows: each key takes the value, or the deletion, with the
highest stamp.  The merge does not depend on the order rows are read nor on which rows a
base folded in, so committers need no lock: two processes committing at once both keep
their rows, and for a key both set, every reader sees the same winner (the commit made
from the newer view, else the later by the clock; nothing else of either commit is lost).

A commit compares each key's encoding with the one last committed (so in-place mutation
of a nested value is seen too) and writes one delta row with the keys set or deleted.
When the chain passes ``max_chain`` rows or its bytes pass those of the base, the commit
writes a new base instead and deletes the rows it folded in (by key: a row another
process committed meanwhile stays, and the next load merges it), in the same write, so a
load replays a bounded number of rows.  A base keeps a deletion while it is recent (made
within the last ``_TOMBSTONE_COMMITS`` commits or ``_TOMBSTONE_SECONDS`` seconds), so that
an older value in a row or base written at the same moment cannot bring the key back;
after that the deletion is forgotten (a commit from a view older still that set the key,
reaching the store only then, sets it again: its write wins).

Files written before stamps (``base`` and ``d{seq:012d}`` rows) are read as they are; the
first compaction rewrites them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, MutableMapping
from typing import Any

import orjson

from .codec import dumps_json
from .errors import InvalidKeyError, SerializationError
from .names import check_name, is_text
from .shared import AlreadyOpen, SharedObjects
from .store import Store

__all__ = ["State"]

#: A base keeps a deletion made within the last this many commits...
_TOMBSTONE_COMMITS = 64
#: ...or within this many seconds (by the committers' clocks).
_TOMBSTONE_SECONDS = 60.0
#: Key of a base in the layout before stamps.
_OLD_BASE = "base"
_DELETED: Any = object()


def _stamp(seq: int) -> str:
    return f"{seq:012d}.{time.time_ns():016x}{os.urandom(3).hex()}"


def _stamp_seq(stamp: str) -> int:
    return int(stamp[:12])


def _recent(stamp: str, seq: int, now: float) -> bool:
    """True if the commit *stamp* is among the last commits before *seq* or recent."""
    if _stamp_seq(stamp) > seq - _TOMBSTONE_COMMITS:
        return True
    clock = stamp[13:29]
    return len(clock) == 16 and int(clock, 16) / 1e9 > now - _TOMBSTONE_SECONDS


def _by_stamp(stamps: dict[str, str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for key, stamp in stamps.items():
        grouped.setdefault(stamp, []).append(key)
    return grouped


class State(MutableMapping[str, Any]):
    """A working state (get one from :meth:`MemorySaver.state`); call :meth:`commit`.

    Keys are strings; values JSON-compatible.  Uncommitted changes live only in this
    object: :meth:`rollback` discards them, reopening restores the last commit.

    Commits by other handles, processes or hosts are seen at this object's next read or
    commit (it reloads when the store's :meth:`~tieredmem.Store.generation` moves); the
    uncommitted changes made here are kept on top of them.

    There is at most one live State per (store, name) in a process, shared by every user
    of the store (:meth:`shared`; :meth:`MemorySaver.state` uses it): its uncommitted
    changes are theirs too, and a commit by any of them commits them.  The constructor
    builds it when none is open and raises :class:`~tieredmem.SharingError`
    when one is.
    """

    def __init__(
        self, store: Store, name: str, *, max_chain: int = 32, min_base_bytes: int = 4096
    ) -> None:
        self.name = check_name("state", name)
        self._store = store
        self._ns = store.raw.internal_ns("state", name)
        if open_states.get(store, self._ns) is not None:
            raise self._already_open()
        self.max_chain = max_chain
        self.min_base_bytes = min_base_bytes
        self._lock = threading.RLock()
        self.bytes_written = 0
        self.commits = 0
        self.bases_written = 0
        self._data: dict[str, Any] = {}
        self._committed: dict[str, bytes] = {}
        self._load()
        if open_states.add(store, self._ns, self) is not self:
            raise self._already_open()  # another thread opened it meanwhile

    def _already_open(self) -> AlreadyOpen:
        return AlreadyOpen(
            f"state {self.name!r} is already open on this store: use "
            "State.shared(store, name) (or MemorySaver.state) to get that object; a "
            "second one would not see its commits"
        )

    @classmethod
    def shared(
        cls, store: Store, name: str, *, max_chain: int = 32, min_base_bytes: int = 4096
    ) -> State:
        """The State *name* of *store*: the live one if a user of the store has it open,
        else a new one.  The first creator's *max_chain* and *min_base_bytes* win (they
        only decide when a commit compacts)."""
        check_name("state", name)
        key = store.raw.internal_ns("state", name)
        return open_states.open(
            store, key, lambda: cls(store, name, max_chain=max_chain, min_base_bytes=min_base_bytes)
        )

    def _load(self, keep_changes: bool = False) -> None:
        """(Re)read the state from its rows; with *keep_changes*, the uncommitted changes
        made here are applied again on top."""
        with self._lock:
            pending = self._pending() if keep_changes else ({}, [])
            raw = self._store.raw
            # The generation before the reads: a commit by another process during them
            # moves it again, and the next use reloads once more.
            generation = raw.generation()
            best: dict[str, tuple[str, Any]] = {}  # key -> (stamp, value or _DELETED)

            def merge(key: str, stamp: str, value: Any) -> None:
                held = best.get(key)
                if held is None or stamp > held[0]:
                    best[key] = (stamp, value)

            seq = 0
            old_seq = -1
            keys: list[str] = []
            bases: list[int] = []  # bytes of each base
            deltas: list[int] = []  # bytes of each delta row
            # Key order: bases ("b0…", then "base") before delta rows ("d…").
            for row in raw.rows(self._ns):
                key, value = row.key, row.value
                keys.append(key)
                if key[0] == "b":
                    seq = max(seq, value["seq"])
                    if key == _OLD_BASE:
                        old_seq = value["seq"]
                        stamps = dict.fromkeys(value["data"], f"{old_seq:012d}")
                    else:
                        stamps = {k: s for s, ks in value["at"].items() for k in ks}
                        for stamp, ks in value["del"].items():
                            for k in ks:
                                merge(k, stamp, _DELETED)
                    for k, v in value["data"].items():
                        merge(k, stamps[k], v)
                    bases.append(len(orjson.dumps(value)))
                elif key[0] == "d":
                    stamp = key[1:]
                    if "." not in stamp and int(stamp) <= old_seq:
                        continue  # before stamps: already in the base
                    seq = max(seq, _stamp_seq(stamp))
                    for k, v in value["set"].items():
                        merge(k, stamp, v)
                    for k in value["del"]:
                        merge(k, stamp, _DELETED)
                    deltas.append(len(orjson.dumps(value)))
            data = {k: v for k, (_, v) in best.items() if v is not _DELETED}
            self._data = data
            self._committed = {k: orjson.dumps(v) for k, v in data.items()}
            self._stamps = {k: s for k, (s, v) in best.items() if v is not _DELETED}
            self._tombstones = {k: s for k, (s, v) in best.items() if v is _DELETED}
            self._rows = keys
            self._seq = seq
            # Bases beyond the largest (compactions made at the same moment) count as
            # chain, so that a compaction soon folds them into one.
            self._base_bytes = max(bases, default=0)
            self._chain = len(deltas) + max(len(bases) - 1, 0)
            self._chain_bytes = sum(deltas) + sum(bases) - self._base_bytes
            self._generation = generation
            changed, deleted = pending
            data.update(changed)
            for key in deleted:
                data.pop(key, None)

    def _sync(self) -> None:
        """Reload if another handle, process or host wrote to the store since this object
        read it (its generation moved), keeping the uncommitted changes made here."""
        if self._store.raw.generation() != self._generation:
            self._load(keep_changes=True)

    def _pending(self) -> tuple[dict[str, Any], list[str]]:
        """The uncommitted changes, as values (an unencodable value counts as changed)."""
        changed: dict[str, Any] = {}
        for key, value in self._data.items():
            old = self._committed.get(key)
            if old is not None:
                try:
                    if dumps_json(value) == old:
                        continue
                except SerializationError:
                    pass
            changed[key] = value
        return changed, [k for k in self._committed if k not in self._data]

    # -- mapping ------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        with self._lock:
            self._sync()
            return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"state keys are strings, not {type(key).__name__}")
        if not is_text(key):
            raise InvalidKeyError(
                f"state key {key!r} contains a lone surrogate, which cannot be stored; "
                "decode the bytes it came from properly or use their hex"
            )
        with self._lock:
            self._data[key] = value

    def __delitem__(self, key: str) -> None:
        with self._lock:
            self._sync()
            del self._data[key]

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            self._sync()
            return iter(list(self._data))

    def __len__(self) -> int:
        with self._lock:
            self._sync()
            return len(self._data)

    def __repr__(self) -> str:
        return f"<State {self.name!r} keys={len(self._data)} seq={self._seq}>"

    # -- commits ------------------------------------------------------------------------
    def changes(self) -> tuple[dict[str, bytes], list[str]]:
        """``(set, deleted)`` since the last commit, as encoded values and keys.

        :raises SerializationError: a value cannot be encoded (nothing is written).
        """
        with self._lock:
            changed = {}
            for key, value in self._data.items():
                payload = dumps_json(value, key=f"{self.name}.{key}")
                if self._committed.get(key) != payload:
                    changed[key] = payload
            deleted = [k for k in self._committed if k not in self._data]
            return changed, deleted

    def commit(self) -> int:
        """Write the changes since the last commit as one delta row (or a new base).

        Commits by others are loaded first, so only the keys changed here are written.
        If another process commits at the same moment, both commits are kept; for a key
        both changed, the commit with the later stamp wins, the same for every reader.

        Returns the bytes written (0 when nothing changed).
        """
        with self._lock:
            self._sync()
            changed, deleted = self.changes()
            if not changed and not deleted:
                return 0
            seq = self._seq + 1
            stamp = _stamp(seq)
            delta = {"set": {k: orjson.Fragment(v) for k, v in changed.items()}, "del": deleted}
            delta_bytes = len(orjson.dumps(delta))
            committed = dict(self._committed)
            stamps = dict(self._stamps)
            tombstones = dict(self._tombstones)
            committed.update(changed)
            for key in changed:
                stamps[key] = stamp
                tombstones.pop(key, None)
            for key in deleted:
                committed.pop(key, None)
                stamps.pop(key, None)
                tombstones[key] = stamp
            ns = self._ns
            compact = self._chain + 1 > self.max_chain or self._chain_bytes + delta_bytes > max(
                self._base_bytes, self.min_base_bytes
            )
            if compact:
                now = time.time()
                tombstones = {k: s for k, s in tombstones.items() if _recent(s, seq, now)}
                base = {
                    "seq": seq,
                    "data": {k: orjson.Fragment(v) for k, v in committed.items()},
                    "at": _by_stamp(stamps),
                    "del": _by_stamp(tombstones),
                }
                written = len(orjson.dumps(base))
                row = "b" + stamp
                # Only the rows folded in go: one committed meanwhile by another stays.
                self._store.raw.write([(ns, row, base)], deletes=[(ns, key) for key in self._rows])
                self._rows = [row]
                self._chain, self._chain_bytes, self._base_bytes = 0, 0, written
                self.bases_written += 1
                self._store.raw.emit("compaction", kind="state", name=self.name, bytes=written)
            else:
                written = delta_bytes
                row = "d" + stamp
                self._store.raw.write([(ns, row, delta)])
                self._rows.append(row)
                self._chain += 1
                self._chain_bytes += delta_bytes
            self._seq = seq
            self._committed = committed
            self._stamps = stamps
            self._tombstones = tombstones
            self.bytes_written += written
            self.commits += 1
            return written

    def rollback(self) -> None:
        """Discard uncommitted changes: reload the last commit (others' included)."""
        self._load()

    def stored_rows(self) -> dict[str, int]:
        """How the state lies in the store now: ``delta_rows`` and ``base_rows`` (for
        ``tieredmem inspect``; reads the row keys, not their values)."""
        keys = self._store.raw.keys(self._ns)
        return {
            "delta_rows": sum(k.startswith("d") for k in keys),
            "base_rows": sum(k.startswith("b") or k == "base" for k in keys),
        }

    def stats(self) -> dict[str, Any]:
        """Keys, commits, chain length and bytes written by this state object."""
        with self._lock:
            return {
                "name": self.name,
                "keys": len(self._data),
                "commits": self.commits,
                "chain": self._chain,
                "bases_written": self.bases_written,
                "bytes_written": self.bytes_written,
            }


#: Every live State, by store and joined namespace (see :meth:`State.shared`).
open_states: SharedObjects[State] = SharedObjects()

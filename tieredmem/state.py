"""State: a dict-like working state whose commits write only what changed.

Layout, under the internal namespace ``("tieredmem", "state", name)``:

- ``base``: a full snapshot ``{"seq": n, "data": {...}}``;
- ``d{seq:012d}``: one *delta row* per commit after the base, ``{"set": {...}, "del": [...]}``.

A commit compares each key's encoding with the one last committed (so in-place mutation
of a nested value is seen too) and writes one delta row with the keys set or deleted.
When the chain passes ``max_chain`` rows or its bytes pass those of the base, the commit
writes a new base instead and deletes the chain, in the same transaction, so a load
replays a bounded number of rows.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, MutableMapping
from typing import Any

import orjson

from .codec import dumps_json
from .history import check_name
from .store import Store

__all__ = ["State"]


def _delta_key(seq: int) -> str:
    return f"d{seq:012d}"


class State(MutableMapping[str, Any]):
    """A working state (get one from :meth:`MemorySaver.state`); call :meth:`commit`.

    Keys are strings; values JSON-compatible.  Uncommitted changes live only in this
    object: :meth:`rollback` discards them, reopening restores the last commit.
    """

    def __init__(
        self, store: Store, name: str, *, max_chain: int = 32, min_base_bytes: int = 4096
    ) -> None:
        self.name = check_name("state", name)
        self._store = store
        self._ns = store.raw.internal_ns("state", name)
        self.max_chain = max_chain
        self.min_base_bytes = min_base_bytes
        self._lock = threading.RLock()
        self.bytes_written = 0
        self.commits = 0
        self.bases_written = 0
        self._load()

    def _load(self) -> None:
        with self._lock:
            base = self._store.raw.read(self._ns, "base")
            data: dict[str, Any] = dict(base.value["data"]) if base else {}
            seq = base.value["seq"] if base else 0
            base_bytes = len(orjson.dumps(base.value)) if base else 0
            chain = 0
            chain_bytes = 0
            for row in self._store.raw.rows(self._ns, _delta_key(seq + 1), "e"):
                delta = row.value
                data.update(delta["set"])
                for key in delta["del"]:
                    data.pop(key, None)
                seq = int(row.key[1:])
                chain += 1
                chain_bytes += len(orjson.dumps(delta))
            self._data = data
            self._committed = {k: orjson.dumps(v) for k, v in data.items()}
            self._seq = seq
            self._chain = chain
            self._chain_bytes = chain_bytes
            self._base_bytes = base_bytes

    # -- mapping ------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"state keys are strings, not {type(key).__name__}")
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
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

        Returns the bytes written (0 when nothing changed).
        """
        with self._lock:
            changed, deleted = self.changes()
            if not changed and not deleted:
                return 0
            seq = self._seq + 1
            delta = {"set": {k: orjson.Fragment(v) for k, v in changed.items()}, "del": deleted}
            delta_bytes = len(orjson.dumps(delta))
            committed = dict(self._committed)
            committed.update(changed)
            for key in deleted:
                committed.pop(key, None)
            ns = self._ns
            compact = self._chain + 1 > self.max_chain or self._chain_bytes + delta_bytes > max(
                self._base_bytes, self.min_base_bytes
            )
            if compact:
                base = {"seq": seq, "data": {k: orjson.Fragment(v) for k, v in committed.items()}}
                written = len(orjson.dumps(base))
                self._store.raw.write(
                    [(ns, "base", base)], ranges=[(ns, _delta_key(0), _delta_key(seq + 1))]
                )
                self._chain, self._chain_bytes, self._base_bytes = 0, 0, written
                self.bases_written += 1
                self._store.raw.emit("compaction", kind="state", name=self.name, bytes=written)
            else:
                written = delta_bytes
                self._store.raw.write([(ns, _delta_key(seq), delta)])
                self._chain += 1
                self._chain_bytes += delta_bytes
            self._seq = seq
            self._committed = committed
            self.bytes_written += written
            self.commits += 1
            return written

    def rollback(self) -> None:
        """Discard uncommitted changes: reload the last commit."""
        self._load()

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

"""The write buffer of ``durability="batch"``: writes wait here, newest per key, until a
flush commits them in one transaction.

A :class:`WriteBuffer` has no lock of its own: the store calls it with its lock held.
While a batch commits it stays readable (:meth:`WriteBuffer.get` looks in the batch being
committed too), so a read never misses a write that was acknowledged but not yet
committed.  A failed commit puts the batch back (:meth:`WriteBuffer.restore`), so nothing
acknowledged is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .backends import Put
from .codec import Codec
from .hot import Entry

__all__ = ["Batch", "WriteBuffer", "backend_ops"]

#: ``hot key -> (op, entry the op leaves behind)``
Batch = dict[str, tuple[Any, Entry]]


class WriteBuffer:
    """Buffered writes, newest per hot key, and the batch being committed."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.pending: Batch = {}
        self.pending_bytes = 0
        self.flushing: Batch = {}
        # Buffered writes that must not enter the hot tier when they commit
        # (``write(cache_puts=False)`` / ``tombstones=False``).
        self.uncached: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.pending or self.flushing)

    def get(self, hk: str) -> Entry | None:
        """The entry of the newest buffered write of *hk* (pending or committing)."""
        found = self.pending.get(hk) or self.flushing.get(hk)
        return None if found is None else found[1]

    def add(self, hk: str, op: Any, entry: Entry, keep: bool) -> None:
        """Buffer *op*; *keep*: its entry enters the hot tier when it commits."""
        old = self.pending.get(hk)
        if old is not None:
            self.pending_bytes -= old[1].size
        self.pending[hk] = (op, entry)
        self.pending_bytes += entry.size
        if keep:
            self.uncached.discard(hk)
        else:
            self.uncached.add(hk)

    def take(self) -> Batch:
        """Move what is pending into the batch being committed, and return it."""
        batch, self.pending, self.pending_bytes = self.pending, {}, 0
        self.flushing = batch
        return batch

    def restore(self, batch: Batch) -> None:
        """A commit of *batch* failed: make it pending again (newer writes win)."""
        batch.update(self.pending)
        self.pending = batch
        self.pending_bytes = sum(e.size for _, e in batch.values())
        self.flushing = {}

    def settled(self, batch: Batch) -> list[tuple[str, Entry, bool]]:
        """*batch* committed: ``(hot key, entry, keep)`` for the hot tier's update.

        A key written again meanwhile is left out (its newer write is still pending)."""
        out = []
        for hk, (_, entry) in batch.items():
            if hk in self.pending:
                continue
            keep = hk not in self.uncached
            self.uncached.discard(hk)
            out.append((hk, entry, keep))
        self.flushing = {}
        return out

    def clear(self) -> None:
        """Forget everything buffered (a forked child: the parent commits it)."""
        self.pending, self.pending_bytes, self.flushing = {}, 0, {}
        self.uncached = set()


def backend_ops(ops: Iterable[tuple[Any, Entry]], codec: Codec) -> list[Any]:
    """Backend ops of buffered writes: each Put compressed if it waited for the commit,
    and carrying the created_at it settled on."""
    ops = list(ops)
    waiting = [(e.codec, op.frame) for op, e in ops if type(op) is Put and op.deferred]
    frames = iter(codec.frames(waiting) if waiting else ())  # none on the sync path
    out = []
    new = tuple.__new__  # Put(...) without namedtuple's Python-level __new__/_replace
    for op, entry in ops:
        if type(op) is Put:
            ns, key, payload, now, expires, created, deferred, ttl = op
            if created is None:
                created = entry.created
            if deferred:
                payload = next(frames)
            if deferred or created is not op.created:
                op = new(Put, (ns, key, payload, now, expires, created, False, ttl))
        out.append(op)
    return out

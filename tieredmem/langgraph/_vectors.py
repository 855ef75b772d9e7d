"""TieredStore's embeddings: what to embed, where the vectors live, how they are searched.

Two places, one interface (:class:`Vectors`):

- :class:`IndexedVectors`: the backend keeps the index (SQLite with sqlite-vec: see
  :mod:`tieredmem.backends._sqlite_vec`), written in the transaction of the items and
  searched there, never loaded whole into Python.  Each embedded text is stored with a
  digest of its field path and text, so a put whose text did not change embeds nothing.
- :class:`ScannedVectors`: every other case (Redis, PostgreSQL, SQLite without
  sqlite-vec): float32 vectors stored as items under ``("tieredmem", "vec", *namespace)``
  and searched exactly with numpy over every vector under the prefix.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Sequence
from itertools import islice
from typing import Any, cast

import orjson
from langgraph.store.base import PutOp
from langgraph.store.base.embed import get_text_at_path, tokenize_path

from ..backends import SEP, VectorBackend, VectorEntry
from ..errors import VectorIndexError
from ..store import Store

__all__ = ["IndexedVectors", "ScannedVectors", "Vectors", "numpy"]

Address = tuple[tuple[str, ...], str]
#: ``(joined namespace, key, cosine similarity)`` best first, and whether more may exist.
Nearest = tuple[list[tuple[str, str, float]], bool]


def numpy() -> Any:
    try:
        return importlib.import_module("numpy")
    except ImportError:
        raise VectorIndexError(
            "vector search needs numpy: pip install 'tieredmem[vector]'"
        ) from None


def digest(path: str, text: str) -> bytes:
    """What identifies an embedded text: its field path and the text."""
    return hashlib.blake2b(f"{path}\0{text}".encode(), digest_size=16).digest()


class Vectors:
    """Embeds items' texts per LangGraph's ``IndexConfig`` and keeps their vectors."""

    def __init__(self, store: Store, config: dict[str, Any], embeddings: Any) -> None:
        self.store = store
        self.dims = int(config["dims"])
        self.embeddings = embeddings
        fields = config.get("fields") or ["$"]
        self._fields = [(p, p if p == "$" else tokenize_path(p)) for p in fields]
        self.np = numpy()

    def texts(self, op: PutOp) -> list[tuple[str, str]]:
        """``(path, text)`` of what *op* embeds (none for a delete or ``index=False``)."""
        if op.index is False or op.value is None:
            return []
        if op.index is None:
            paths = self._fields
        else:
            paths = [(ix, ix if ix == "$" else tokenize_path(ix)) for ix in op.index]
        out: list[tuple[str, str]] = []
        for path, field in paths:
            if field == "$":
                out.append((path, orjson.dumps(op.value).decode()))
            else:
                out.extend((path, t) for t in get_text_at_path(op.value, field))
        return [(p, t) for p, t in out if t]

    def embed(self, texts: Sequence[str]) -> list[bytes]:
        """float32 bytes of each text's embedding (one ``embed_documents`` call)."""
        if not texts:
            return []
        vectors = self.np.asarray(self.embeddings.embed_documents(list(texts)), dtype="float32")
        if vectors.ndim != 2 or vectors.shape != (len(texts), self.dims):
            raise VectorIndexError(
                f"the embedding function returned vectors of shape {vectors.shape} for "
                f"{len(texts)} texts; index dims is {self.dims}: make them agree"
            )
        return [row.tobytes() for row in vectors]

    def query(self, text: str) -> bytes:
        """float32 bytes of the query's embedding."""
        vector = self.np.asarray(self.embeddings.embed_query(text), dtype="float32")
        if vector.shape != (self.dims,):
            raise VectorIndexError(
                f"the embedding function returned a query vector of shape {vector.shape}; "
                f"index dims is {self.dims}: make them agree"
            )
        return cast(bytes, vector.tobytes())

    def prepare(self, puts: Sequence[PutOp]) -> Any:
        """Work done before the write transaction (embedding calls): its result goes to
        :meth:`write`."""
        raise NotImplementedError

    def write(self, puts: Sequence[PutOp], prepared: Any, ttls: dict[Address, Any]) -> None:
        """Store the vectors of *puts*, inside the caller's ``store.transaction()``."""
        raise NotImplementedError

    def nearest(self, prefix: tuple[str, ...], query: bytes, limit: int) -> Nearest:
        """The *limit* items under *prefix* nearest to *query*."""
        raise NotImplementedError


class IndexedVectors(Vectors):
    """Vectors in the backend's own index (:class:`~tieredmem.backends.VectorBackend`)."""

    def __init__(
        self,
        store: Store,
        config: dict[str, Any],
        embeddings: Any,
        backend: VectorBackend,
    ) -> None:
        super().__init__(store, config, embeddings)
        self.backend = backend

    def _plan(
        self, puts: Sequence[PutOp], have: dict[tuple[str, str], frozenset[bytes]]
    ) -> list[tuple[str, str, list[tuple[bytes, str]], frozenset[bytes]]]:
        """Per put: ``(ns, key, [(digest, text) to embed], digests to keep)``."""
        plan = []
        for op in puts:
            ns = SEP.join(op.namespace)
            wanted = {digest(p, t): t for p, t in self.texts(op)}
            old = have.get((ns, op.key), frozenset())
            keep = frozenset(d for d in wanted if d in old)
            plan.append((ns, op.key, [(d, t) for d, t in wanted.items() if d not in old], keep))
        return plan

    def prepare(self, puts: Sequence[PutOp]) -> dict[bytes, bytes]:
        have = self.backend.vector_digests([(SEP.join(op.namespace), op.key) for op in puts])
        todo = {d: t for _, _, add, _ in self._plan(puts, have) for d, t in add}
        return dict(zip(todo, self.embed(list(todo.values()))))

    def write(
        self, puts: Sequence[PutOp], prepared: dict[bytes, bytes], ttls: dict[Address, Any]
    ) -> None:
        # Again under the write lock: another handle may have changed the items since.
        have = self.backend.vector_digests([(SEP.join(op.namespace), op.key) for op in puts])
        plan = self._plan(puts, have)
        missing = {d: t for _, _, add, _ in plan for d, t in add if d not in prepared}
        if missing:  # rare: removed by another handle since prepare()
            prepared = {**prepared, **dict(zip(missing, self.embed(list(missing.values()))))}
        self.backend.vector_write(
            [
                VectorEntry(ns, key, keep, [(d, prepared[d]) for d, _ in add])
                for ns, key, add, keep in plan
            ]
        )

    def nearest(self, prefix: tuple[str, ...], query: bytes, limit: int) -> Nearest:
        return self.backend.vector_search(SEP.join(prefix), query, limit)

    def import_scanned(self) -> int:
        """Move vectors a handle without the index stored as items (:class:`ScannedVectors`)
        into the index; return how many items had some."""
        raw = self.store.raw
        root = raw.internal_ns("vec")
        cut = len(root) + 1
        size = 4 * self.dims
        moved = 0
        while True:
            rows = list(islice(raw.iter_rows(root), 500))
            if not rows:
                return moved
            with self.store.transaction():
                entries = []
                for row in rows:
                    ns = SEP.join(row.namespace)[cut:]
                    blob = bytes(row.value)
                    parts = [blob[i : i + size] for i in range(0, len(blob), size)]
                    # An unknown text: the next put of the item embeds it again.
                    entries.append(VectorEntry(ns, row.key, frozenset(), [(b"", p) for p in parts]))
                self.backend.vector_write(entries)
                raw.write(deletes=[(SEP.join(row.namespace), row.key) for row in rows])
            moved += len(rows)


class ScannedVectors(Vectors):
    """Vectors stored as items, searched exactly with numpy (no index in the backend).

    Every put embeds its texts again (the stored rows keep no digest)."""

    def _vec_ns(self, namespace: Sequence[str]) -> str:
        return self.store.raw.internal_ns("vec", *namespace)

    def prepare(self, puts: Sequence[PutOp]) -> dict[Address, bytes]:
        todo = [(op, [t for _, t in self.texts(op)]) for op in puts]
        flat = [t for _, texts in todo for t in texts]
        vectors = self.embed(flat)
        out: dict[Address, bytes] = {}
        at = 0
        for op, texts in todo:
            if texts:
                out[(tuple(op.namespace), op.key)] = b"".join(vectors[at : at + len(texts)])
                at += len(texts)
        return out

    def write(
        self, puts: Sequence[PutOp], prepared: dict[Address, bytes], ttls: dict[Address, Any]
    ) -> None:
        raw = self.store.raw
        for op in puts:
            address = (tuple(op.namespace), op.key)
            blob = prepared.get(address)
            vec_ns = self._vec_ns(op.namespace)
            if blob is not None:
                raw.write([(vec_ns, op.key, blob)], ttl=ttls.get(address))
            else:
                raw.write(deletes=[(vec_ns, op.key)])

    def nearest(self, prefix: tuple[str, ...], query: bytes, limit: int) -> Nearest:
        np = self.np
        q = np.frombuffer(query, dtype=np.float32)
        q = q / (np.linalg.norm(q) or 1.0)
        raw = self.store.raw
        root = raw.internal_ns("vec")
        cut = len(root) + 1
        best: dict[tuple[str, str], float] = {}
        for row in raw.iter_rows(self._vec_ns(prefix) if prefix else root):
            matrix = np.frombuffer(row.value, dtype=np.float32).reshape(-1, self.dims)
            norms = np.linalg.norm(matrix, axis=1)
            norms[norms == 0] = 1.0
            best[(SEP.join(row.namespace)[cut:], row.key)] = float(np.max(matrix @ q / norms))
        ranked = sorted(best.items(), key=lambda kv: kv[1], reverse=True)
        return [(ns, key, score) for (ns, key), score in ranked[:limit]], len(ranked) > limit

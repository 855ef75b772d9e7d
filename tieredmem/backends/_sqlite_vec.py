"""The vector index of a SQLite store file: sqlite-vec's ``vec0`` virtual table.

Layout (created the first time a vector index is configured on the file):

- ``vec_index``: a ``vec0`` table, one row per embedded text, the joined namespace as
  its partition key (a search in one namespace reads only that namespace's vectors) and
  cosine distance declared; the column is ``float[dims]`` (exact), ``int8[dims]`` or
  ``bit[dims]`` (quantized) as the file's ``vector_quantization`` says.
- ``vec_docs``: the same rows' ``(ns, key)`` item, the digest of the text embedded (so an
  unchanged text is never embedded again) and, when quantized, the exact float32 vector
  that rescoring reads.
- ``vec_dead``: ids whose ``vec_docs`` row is gone and whose ``vec_index`` row is still to
  delete.  Two triggers on plain tables keep this (``items`` -> ``vec_docs`` ->
  ``vec_dead``), so a delete, an expiry or a retention sweep by any connection, one
  without sqlite-vec loaded included, removes the item's vectors in its own transaction;
  the next write or search of a connection with sqlite-vec deletes the ``vec_index`` rows
  (:meth:`VectorIndex.purge`), and a search never returns an id without a ``vec_docs``
  row.

:class:`~tieredmem.backends.sqlite.SQLiteBackend` owns the connections and transactions;
this class owns the SQL.  Every method taking *con* runs on the caller's connection,
inside the caller's transaction where it writes.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Sequence
from typing import Any, cast

import apsw

from ..errors import VectorIndexError
from . import VectorEntry

log = logging.getLogger(__name__)

__all__ = ["QUANTIZATIONS", "VectorIndex", "file_spec", "load_extension"]

#: ``none``: float32 in the index (exact); ``int8``: a byte a dimension, each vector
#: scaled by its largest component (cosine ignores the scale); ``binary``: a bit a
#: dimension (Hamming distance).  Quantized candidates are rescored with exact cosine.
QUANTIZATIONS = ("none", "int8", "binary")
#: sqlite-vec's largest k in one KNN query.
MAX_K = 4096
#: Namespaces under a prefix searched one partition each (more: one query over all).
_PER_PARTITION = 32
#: Vectors a partition chunk holds: small, so a namespace of a few items wastes little.
CHUNK_SIZE = 64

_INSTALL = "pip install 'tieredmem[vector]' (it installs sqlite-vec)"


@functools.lru_cache(maxsize=1)
def _sqlite_vec() -> Any:
    """The sqlite_vec module, or ``None`` if it is not installed (looked up once)."""
    try:
        return importlib.import_module("sqlite_vec")
    except ImportError:
        return None


def load_extension(con: apsw.Connection) -> bool:
    """Load sqlite-vec into *con*; ``False`` if it is not installed (or this SQLite
    cannot load extensions)."""
    module = _sqlite_vec()
    if module is None:
        return False
    try:
        con.enable_load_extension(True)
        try:
            con.load_extension(module.loadable_path())
        finally:
            con.enable_load_extension(False)
    except (apsw.Error, AttributeError):
        return False
    return True


def _numpy() -> Any:
    try:
        return importlib.import_module("numpy")
    except ImportError:
        raise VectorIndexError(f"a vector index needs numpy: {_INSTALL}") from None


def _meta(con: apsw.Connection, name: str) -> str | None:
    for (value,) in con.execute("SELECT value FROM meta WHERE key = ?", (name,)):
        return str(value)
    return None


def file_spec(con: apsw.Connection) -> tuple[int, str] | None:
    """``(dims, quantization)`` of the file's vector index, ``None`` if it has none."""
    dims = _meta(con, "vector_dims")
    if dims is None:
        return None
    return int(dims), _meta(con, "vector_quantization") or "none"


def _index_partitions(con: apsw.Connection) -> None:
    """Index vec0's chunk table by partition.

    sqlite-vec 0.1.9 finds a partition's chunks by scanning every chunk of the table, so
    without it a search in one namespace costs in proportion to the whole index (see
    docs/guides/vectors.md).  The column is sqlite-vec's own (``partition00``): a release
    that names it otherwise only loses the speed-up.
    """
    try:
        con.execute(
            "CREATE INDEX IF NOT EXISTS vec_index_chunks_partition "
            "ON vec_index_chunks (partition00, chunk_id)"
        )
    except apsw.SQLError:
        log.info("sqlite-vec's chunk table has no partition00 column: not indexed")


class VectorIndex:
    """The vector index of one file, of *dims* dimensions and a :data:`QUANTIZATIONS`."""

    def __init__(self, dims: int, quantization: str = "none", oversample: int = 8) -> None:
        if isinstance(dims, bool) or not isinstance(dims, int) or dims <= 0:
            raise VectorIndexError(f"index dims must be a positive integer, not {dims!r}")
        if quantization not in QUANTIZATIONS:
            raise VectorIndexError(
                f"quantization must be one of {', '.join(QUANTIZATIONS)}, not {quantization!r}"
            )
        if quantization == "binary" and dims % 8:
            raise VectorIndexError(f"binary quantization needs dims divisible by 8, not {dims}")
        if isinstance(oversample, bool) or not isinstance(oversample, int) or oversample < 1:
            raise VectorIndexError(f"oversample must be an integer >= 1, not {oversample!r}")
        self.dims = dims
        self.quantization = quantization
        self.oversample = oversample if quantization != "none" else 1
        self._np = _numpy()
        self._as = {"none": "?", "int8": "vec_int8(?)", "binary": "vec_bit(?)"}[quantization]

    # -- the file's tables -------------------------------------------------------------
    def check(self, spec: tuple[int, str]) -> None:
        """Refuse a file whose index (*spec*: :func:`file_spec`) is not this one."""
        if spec != (self.dims, self.quantization):
            raise VectorIndexError(
                f"this file's vector index has dims={spec[0]} and quantization="
                f"{spec[1]!r}, not dims={self.dims}, quantization={self.quantization!r}: "
                "configure the index as the file has it, or use another file"
            )

    def create(self, con: apsw.Connection) -> bool:
        """Create the tables (or check the file's index matches); ``True`` if created."""
        spec = file_spec(con)
        if spec is not None:
            self.check(spec)
            _index_partitions(con)
            return False
        column = {"none": "float", "int8": "int8", "binary": "bit"}[self.quantization]
        metric = "" if self.quantization == "binary" else " distance_metric=cosine"
        con.execute(
            "CREATE VIRTUAL TABLE vec_index USING vec0(ns text partition key, "
            f"emb {column}[{self.dims}]{metric}, chunk_size={CHUNK_SIZE})"
        )
        con.execute(
            "CREATE TABLE IF NOT EXISTS vec_docs (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "ns TEXT NOT NULL, "
            "key TEXT NOT NULL, digest BLOB NOT NULL, vector BLOB)"
        )
        con.execute("CREATE INDEX IF NOT EXISTS vec_docs_item ON vec_docs (ns, key)")
        con.execute("CREATE TABLE IF NOT EXISTS vec_dead (id INTEGER PRIMARY KEY)")
        con.execute(
            "CREATE TRIGGER IF NOT EXISTS vec_items_delete AFTER DELETE ON items BEGIN "
            "DELETE FROM vec_docs WHERE ns = old.ns AND key = old.key; END"
        )
        con.execute(
            "CREATE TRIGGER IF NOT EXISTS vec_docs_delete AFTER DELETE ON vec_docs BEGIN "
            "INSERT OR IGNORE INTO vec_dead (id) VALUES (old.id); END"
        )
        con.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [("vector_dims", str(self.dims)), ("vector_quantization", self.quantization)],
        )
        _index_partitions(con)
        return True

    # -- writes ------------------------------------------------------------------------
    def digests(
        self, con: apsw.Connection, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], frozenset[bytes]]:
        """The digests of the texts embedded for each of *keys* (absent: none)."""
        out: dict[tuple[str, str], frozenset[bytes]] = {}
        for ns, key in keys:
            found = frozenset(
                bytes(d)
                for (d,) in con.execute(
                    "SELECT digest FROM vec_docs WHERE ns = ? AND key = ?", (ns, key)
                )
            )
            if found:
                out[(ns, key)] = found
        return out

    def write(self, con: apsw.Connection, entries: Sequence[VectorEntry]) -> None:
        """Bring each entry's item to its new vectors (in the caller's transaction)."""
        np = self._np
        for ns, key, keep, _ in entries:
            for doc_id, digest in list(
                con.execute("SELECT id, digest FROM vec_docs WHERE ns = ? AND key = ?", (ns, key))
            ):
                if bytes(digest) not in keep:
                    con.execute("DELETE FROM vec_docs WHERE id = ?", (doc_id,))
        self.purge(con)
        for ns, key, _, add in entries:
            for digest, blob in add:
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.shape != (self.dims,):
                    raise VectorIndexError(
                        f"an embedding of {vector.size} dimensions for key {key!r}; the "
                        f"index has dims={self.dims}: make the embedding function and "
                        "dims agree"
                    )
                exact = blob if self.quantization != "none" else None
                ((doc_id,),) = con.execute(
                    "INSERT INTO vec_docs (ns, key, digest, vector) VALUES (?, ?, ?, ?) "
                    "RETURNING id",
                    (ns, key, digest, exact),
                ).fetchall()
                con.execute(
                    f"INSERT INTO vec_index (rowid, ns, emb) VALUES (?, ?, {self._as})",
                    (doc_id, ns, self._encode(vector)),
                )

    def purge(self, con: apsw.Connection) -> int:
        """Delete the ``vec_index`` rows of deleted items; return how many."""
        dead = [i for (i,) in con.execute("SELECT id FROM vec_dead LIMIT 10000")]
        for doc_id in dead:
            con.execute("DELETE FROM vec_index WHERE rowid = ?", (doc_id,))
        if dead:
            con.execute("DELETE FROM vec_dead WHERE id <= ?", (max(dead),))
        return len(dead)

    def _encode(self, vector: Any) -> bytes:
        np = self._np
        if self.quantization == "none":
            return cast(bytes, vector.astype(np.float32).tobytes())
        if self.quantization == "binary":
            return cast(bytes, np.packbits(vector > 0).tobytes())
        top = float(np.abs(vector).max()) or 1.0
        return cast(bytes, np.round(vector * (127.0 / top)).astype(np.int8).tobytes())

    # -- search ------------------------------------------------------------------------
    def search(
        self,
        con: apsw.Connection,
        bounds: tuple[str, str],
        query: bytes,
        limit: int,
    ) -> tuple[list[tuple[str, str, float]], bool]:
        """The *limit* items under the namespaces in ``[lo, hi)`` nearest to *query*
        (float32 bytes), best first, as ``(ns, key, cosine similarity)`` (an item with
        several vectors counts its best), and whether more may exist."""
        np = self._np
        q = np.frombuffer(query, dtype=np.float32)
        if q.shape != (self.dims,):
            raise VectorIndexError(
                f"a query embedding of {q.size} dimensions; the index has dims={self.dims}: "
                "make the embedding function and dims agree"
            )
        norm = float(np.linalg.norm(q)) or 1.0
        q = (q / norm).astype(np.float32)
        lo, hi = bounds
        names = [
            ns
            for (ns,) in con.execute(
                "SELECT DISTINCT ns FROM vec_docs WHERE ns >= ? AND ns < ? LIMIT ?",
                (lo, hi, _PER_PARTITION + 1),
            )
        ]
        if not names:
            return [], False
        k = min(MAX_K, max(limit, 10))
        while True:
            best, full = self._nearest(con, names, bounds, q, k)
            if len(best) >= limit or not full or k >= MAX_K:
                return best[:limit], full
            k = min(MAX_K, k * 4)

    def _nearest(
        self,
        con: apsw.Connection,
        names: list[str],
        bounds: tuple[str, str],
        q: Any,
        k: int,
    ) -> tuple[list[tuple[str, str, float]], bool]:
        """One round: the best items among the *k* nearest vectors (times the oversample
        when quantized), and whether a partition returned all it was asked for."""
        ask = min(MAX_K, k * self.oversample)
        encoded = self._encode(q)
        # A LEFT JOIN: the KNN runs first; a row whose vec_docs row is gone (deleted,
        # not purged yet) comes back with NULLs and still counts towards "full".
        sql = (
            "SELECT v.distance, d.ns, d.key, d.vector FROM vec_index v "
            "LEFT JOIN vec_docs d ON d.id = v.rowid "
            f"WHERE v.emb MATCH {self._as} AND v.k = ?"
        )
        rows: list[tuple[float, str | None, str | None, bytes | None]] = []
        full = False
        if len(names) <= _PER_PARTITION:
            for ns in names:
                got = con.execute(sql + " AND v.ns = ?", (encoded, ask, ns)).fetchall()
                full = full or len(got) >= ask
                rows += cast(list[tuple[float, str | None, str | None, bytes | None]], got)
        else:
            got = con.execute(sql, (encoded, ask)).fetchall()
            full = len(got) >= ask
            rows = cast(list[tuple[float, str | None, str | None, bytes | None]], got)
        lo, hi = bounds
        live = [r for r in rows if r[1] is not None and lo <= r[1] < hi]
        scored: list[tuple[float, str, str]] = []
        if self.quantization == "none":
            scored = [(1.0 - float(d), cast(str, ns), cast(str, key)) for d, ns, key, _ in live]
        elif live:  # rescore with the exact vectors
            np = self._np
            matrix = np.frombuffer(
                b"".join(cast(bytes, r[3]) for r in live), dtype=np.float32
            ).reshape(-1, self.dims)
            norms = np.linalg.norm(matrix, axis=1)
            norms[norms == 0] = 1.0
            sims = (matrix @ q) / norms
            scored = [(float(x), cast(str, r[1]), cast(str, r[2])) for x, r in zip(sims, live)]
        scored.sort(key=lambda t: t[0], reverse=True)
        best: dict[tuple[str, str], float] = {}
        for score, ns, key in scored[: max(k, 1)]:
            if (ns, key) not in best:
                best[(ns, key)] = score
        return [(ns, key, s) for (ns, key), s in best.items()], full

"""The PostgreSQL backend: the cold tier on a PostgreSQL server, through psycopg 3.

``tieredmem.open("postgresql://user:pw@host:5432/db")`` (or ``postgres://``), extra
``tieredmem[postgres]``.  URL parameters of ours (the rest go to libpq):

- ``schema`` (default ``public``) and ``table_prefix`` (default ``tieredmem_``): several
  applications share one database, each with its own tables;
- ``coherence``: ``strict`` (default) or ``notify`` (see below);
- ``notify_bound``: seconds, the notify mode's staleness bound (default 1);
- ``prepare_threshold``: ``none`` for PgBouncer in transaction mode (no server-side
  prepared statements), or psycopg's threshold (default 5);
- ``pool_max`` (default 8) connections; ``pool_timeout`` (default 30) seconds a call waits
  for a connection (when the server is down: then the call raises).

Every write batch is one transaction.  It also bumps the one row of ``<prefix>version``
(a counter and a random id), adds to that row's count of items the rows the batch added
and removed (so :meth:`PostgresBackend.stats` never reads the items table), and sends
``pg_notify``; all commit with the batch.  ``readonly=True`` opens an existing store
without creating, migrating or writing anything.

Coherence (``strict``): before a read trusts the hot tier, one round trip reads the
version row; it moved (beyond this client's own batches) means another client committed,
and the hot tier is dropped.  The version row is updated in the same transaction as the
data, so a reader that sees the old version reads no row of the new batch from the hot
tier, and a reader that sees the new one drops what it held.  A write acknowledged by one
client is therefore seen by every other client's next read.  ``notify`` skips that round
trip while a LISTEN connection reports nothing new (see
:mod:`tieredmem.backends._pg_notify` for its guarantee).

Full-text search uses a ``tsvector`` column with a GIN index, ranked by ``ts_rank``;
documents are computed lazily (a search or :meth:`PostgresBackend.maintain` indexes what is
pending), so a write never pays for them.  Passwords never appear in ``url``, errors,
logs or :meth:`PostgresBackend.stats`.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..codec import JSON, Codec
from ..errors import ReadOnlyError, TieredMemError
from . import Delete, DeleteRange, Op, Put, Row, Touch, redact_url
from ._pg_notify import Listener
from ._pg_pool import Connections
from ._pg_schema import (
    FORMAT_VERSION,
    PENDING,
    TABLES,
    existing_tables,
    identifier,
    migrate,
    vet_readonly,
)
from ._pg_search import filter_sql, tsquery
from .sqlite import prefix_bounds

__all__ = ["PostgresBackend"]

log = logging.getLogger(__name__)

_TOP = "\U0010ffff"
#: URL parameters of ours (the others go to libpq).
_OURS = (
    "schema",
    "table_prefix",
    "coherence",
    "notify_bound",
    "prepare_threshold",
    "pool_max",
    "pool_timeout",
)
_COLS = "ns, key, value, created_at, updated_at, expires_at, ttl"
#: Most ops of a write batch sent as one statement (larger ones: one per op).
_ONE_STATEMENT = 32
#: Rows of full-text documents computed per transaction.
_INDEX_BATCH = 500


class PostgresBackend:
    """Cold tier on PostgreSQL.  See the module documentation for the URL parameters.

    :param str url: ``postgresql://[user[:password]@]host[:port]/db[?params]``.
    :param text_of: returns the text to full-text index for a stored frame (or ``None``).
    :param prepare_threshold: overrides the URL's (``None``: no prepared statements).
    :param bool readonly: open an existing store for reading only: nothing is created,
        migrated or written (no schema, table or row), writes raise
        :class:`~tieredmem.errors.ReadOnlyError`, and searches read the full-text and
        ``jsonb`` documents as they are (rows written since the last read-write search
        are found by filters, not yet by ``query=``).
    """

    #: Every call is a network round trip (the store keeps them off event loops).
    remote = True

    def __init__(
        self,
        url: str,
        *,
        text_of: Callable[[bytes], str | None] | None = None,
        prepare_threshold: int | str | None = "url",
        readonly: bool = False,
        **_: Any,
    ) -> None:
        try:
            import psycopg
            import psycopg_pool
        except ImportError:
            raise TieredMemError(
                "the PostgreSQL backend needs psycopg 3 and psycopg_pool: "
                "pip install 'tieredmem[postgres]'"
            ) from None
        del psycopg, psycopg_pool  # imported here only to fail early with a clear message
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        ours = {k: query.pop(k) for k in _OURS if k in query}
        self.url = redact_url(url)
        self.schema = identifier(ours.get("schema", "public"), "schema")
        self.prefix = identifier(ours.get("table_prefix", "tieredmem_"), "table_prefix")
        mode = ours.get("coherence", "strict")
        if mode not in ("strict", "notify"):
            raise ValueError(f"coherence must be 'strict' or 'notify', not {mode!r}")
        self.coherence = mode
        self.readonly = readonly
        if prepare_threshold == "url":
            raw = ours.get("prepare_threshold", "5")
            prepare_threshold = None if raw.lower() in ("none", "") else int(raw)
        self._text_of = text_of
        self._unframe: Callable[[bytes], tuple[int, bytes]] | None = None
        s, p = f'"{self.schema}"', self.prefix
        self._items = f'{s}."{p}items"'
        self._meta = f'{s}."{p}meta"'
        self._dicts = f'{s}."{p}dicts"'
        self._version = f'{s}."{p}version"'
        self._channel = f"{self.schema}.{p}changes"  # one channel per store and database
        self._upsert = (
            f"INSERT INTO {self._items} AS t "
            "(ns, key, value, created_at, updated_at, expires_at, ttl) "
            "VALUES (%s, %s, %s, coalesce(%s::float8, %s), %s, %s, %s) "
            "ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, "
            "created_at = coalesce(%s::float8, t.created_at), updated_at = excluded.updated_at, "
            "expires_at = excluded.expires_at, ttl = excluded.ttl, tsv = NULL, doc = NULL "
            # xmax is 0 on a row version this statement inserted (not on one it updated):
            # whether the put added a row, for the kept count.
            "RETURNING created_at, xmax = 0 AS added"
        )
        self._client_id = secrets.token_hex(8)
        #: Bumps the version row to a new random vid (keeping the previous one), adds
        #: the batch's change in the number of items ({delta}) to the kept count and
        #: notifies listeners; returns (v, pvid, notified).  In a write's transaction.
        self._bump_sql = (
            f"UPDATE {self._version} SET v = v + 1, pvid = vid, vid = %s, n = n + ({{delta}}) "
            "WHERE id = 1 RETURNING v, pvid, pg_notify(%s, %s)"
        )
        self._seen: tuple[int, int] | None = None
        self._seen_lock = threading.Lock()
        self._listener: Listener | None = None
        self._db = Connections(
            urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), "")),
            {"autocommit": True, "prepare_threshold": prepare_threshold},
            url=self.url,
            password=parts.password or "",
            pool_max=max(2, int(ours.get("pool_max", "8"))),
            pool_timeout=float(ours.get("pool_timeout", "30")),
            what=f"{self.schema}.{self.prefix}*",
            after_fork=self._after_fork,
        )
        self._run = self._db.run
        try:
            self._run(self._setup)
            self.foreign_change()
            if mode == "notify":
                bound = float(ours.get("notify_bound", "1"))
                self._listener = Listener(
                    self._db.connect, self._channel, self._client_id, bound=bound
                )
        except BaseException:
            self.close()
            raise

    def _after_fork(self) -> None:
        if self._listener is not None:  # its thread did not survive the fork
            self._listener = Listener(
                self._db.connect, self._channel, self._client_id, bound=self._listener.bound
            )

    # -- schema ----------------------------------------------------------------------
    def _setup(self, conn: Any) -> None:
        where = f"PostgreSQL at {self.url}"
        if self.readonly:
            vet_readonly(conn, self.schema, self.prefix, where)
            return
        applied = migrate(conn, self.schema, self.prefix, where)
        for number in applied:
            log.info("%s: applied migration %d", self.url, number)

    # -- reads -------------------------------------------------------------------------
    def get(self, ns: str, key: str) -> Row | None:
        sql = (
            f"SELECT value, created_at, updated_at, expires_at, ttl FROM {self._items} "
            "WHERE ns = %s AND key = %s"
        )

        def run(conn: Any) -> Row | None:
            found = conn.execute(sql, (ns, key), binary=True).fetchone()
            return None if found is None else Row(ns, key, *found)

        return self._run(run)

    def get_many(self, keys: Sequence[tuple[str, str]]) -> list[Row | None]:
        if not keys:
            return []
        sql = (
            f"SELECT k.i, {', '.join('t.' + c for c in _COLS.split(', '))} "
            "FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS k(ns, key, i) "
            f'JOIN {self._items} t ON t.ns = k.ns COLLATE "C" AND t.key = k.key COLLATE "C"'
        )
        out: list[Row | None] = [None] * len(keys)

        def run(conn: Any) -> list[Row | None]:
            rows = conn.execute(sql, ([k[0] for k in keys], [k[1] for k in keys]), binary=True)
            for i, *cols in rows:
                out[i - 1] = Row(*cols)
            return out

        return self._run(run)

    def range(
        self,
        ns: str,
        start: str | None = None,
        stop: str | None = None,
        *,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Row]:
        sql = (
            f"SELECT {_COLS} FROM {self._items} WHERE ns = %s AND key >= %s AND key < %s "
            f"ORDER BY key{' DESC' if reverse else ''}"
        )
        args: tuple[Any, ...] = (ns, start or "", _TOP if stop is None else stop)
        if limit is not None:
            sql += " LIMIT %s"
            args += (limit,)
        return self._run(lambda conn: [Row(*r) for r in conn.execute(sql, args, binary=True)])

    def keys(self, ns: str, start: str = "", stop: str | None = None) -> list[str]:
        sql = f"SELECT key FROM {self._items} WHERE ns = %s AND key >= %s AND key < %s ORDER BY key"
        args = (ns, start, _TOP if stop is None else stop)
        return self._run(lambda conn: [r[0] for r in conn.execute(sql, args)])

    def _ranges(self, ns_prefix: str, skip_prefix: str | None) -> list[tuple[str, str]]:
        """The namespace ranges under *ns_prefix* minus those under *skip_prefix*, so a
        skipped subtree (internal rows, most of a store) is never walked."""
        lo, hi = prefix_bounds(ns_prefix)
        if not skip_prefix:
            return [(lo, hi)]
        s_lo, s_hi = prefix_bounds(skip_prefix)
        return [(a, b) for a, b in ((lo, min(hi, s_lo)), (max(lo, s_hi), hi)) if a < b]

    def scan(
        self,
        ns_prefix: str,
        *,
        after: tuple[str, str] | None = None,
        limit: int = 1000,
        skip_prefix: str | None = None,
    ) -> list[Row]:
        return self._scan(ns_prefix, "", [], after, limit, skip_prefix)

    def _scan(
        self,
        ns_prefix: str,
        narrow: str,
        narrow_args: list[Any],
        after: tuple[str, str] | None,
        limit: int,
        skip_prefix: str | None,
    ) -> list[Row]:
        """The rows under *ns_prefix* (less *skip_prefix*) after *after*, in (ns, key)
        order, at most *limit*; *narrow* (with its *narrow_args*) an extra condition."""
        parts: list[str] = []
        args: list[Any] = []
        for lo, hi in self._ranges(ns_prefix, skip_prefix):
            where = "ns >= %s AND ns < %s" + (f" AND {narrow}" if narrow else "")
            args += [lo, hi, *narrow_args]
            if after is not None:
                where += " AND (ns, key) > (%s, %s)"
                args += list(after)
            parts.append(
                f"(SELECT {_COLS} FROM {self._items} WHERE {where} ORDER BY ns, key LIMIT %s)"
            )
            args.append(limit)
        if not parts:
            return []
        sql = f"SELECT * FROM ({' UNION ALL '.join(parts)}) u ORDER BY ns, key LIMIT %s"
        args.append(limit)
        return self._run(lambda conn: [Row(*r) for r in conn.execute(sql, args, binary=True)])

    def filter_scan(
        self,
        ns_prefix: str,
        filter: Mapping[str, Any],
        *,
        after: tuple[str, str] | None = None,
        limit: int = 1000,
        skip_prefix: str | None = None,
    ) -> list[Row]:
        """:meth:`scan`, narrowed in SQL by *filter* on the ``jsonb`` values: a superset of
        the rows that match (the caller still tests each), never fewer.

        Exact matches on strings and ``None`` become ``doc @> ...`` (the GIN index), and
        ``$gt $gte $lt $lte`` on numbers a numeric comparison where the field holds a
        number; rows whose value has no ``jsonb`` (not JSON, not indexed yet) are kept.
        """
        if self._unframe is None:
            return self.scan(ns_prefix, after=after, limit=limit, skip_prefix=skip_prefix)
        if not self.readonly:
            self.index_pending()
        conds, cargs = filter_sql(filter)
        if not conds:
            return self.scan(ns_prefix, after=after, limit=limit, skip_prefix=skip_prefix)
        narrow = f"(doc IS NULL OR ({' AND '.join(conds)}))"
        return self._scan(ns_prefix, narrow, list(cargs), after, limit, skip_prefix)

    def namespaces(
        self,
        ns_prefix: str,
        *,
        after: str | None = None,
        limit: int = 1000,
        skip_prefix: str | None = None,
    ) -> list[str]:
        # A skip-scan (a recursive query: one index seek per distinct namespace), in each
        # range left once the skipped subtree is cut out.
        out: list[str] = []
        for lo, hi in self._ranges(ns_prefix, skip_prefix):
            if after is not None and after >= hi:
                continue
            first_op, start = (">", after) if after is not None and after >= lo else (">=", lo)
            sql = (
                "WITH RECURSIVE t(ns) AS ("
                f" SELECT (SELECT ns FROM {self._items} WHERE ns {first_op} %(start)s"
                "  AND ns < %(hi)s ORDER BY ns LIMIT 1)"
                " UNION ALL"
                f" SELECT (SELECT i.ns FROM {self._items} i WHERE i.ns > t.ns"
                "  AND i.ns < %(hi)s ORDER BY i.ns LIMIT 1) FROM t WHERE t.ns IS NOT NULL"
                ") SELECT ns FROM t WHERE ns IS NOT NULL LIMIT %(limit)s"
            )
            args = {"start": start, "hi": hi, "limit": limit - len(out)}

            def run(conn: Any, q: str = sql, a: dict[str, Any] = args) -> list[str]:
                return [r[0] for r in conn.execute(q, a)]

            out += self._run(run)
            if len(out) >= limit:
                break
        return out[:limit]

    def text_search(
        self, ns_prefix: str, query: str, *, limit: int, skip_prefix: str | None = None
    ) -> list[tuple[Row, float]]:
        if not self.readonly:
            self.index_pending()
        # The query comes as FTS5 syntax from tieredmem.filters.fts_query: quoted words
        # joined by OR.  Each word becomes a lexeme of PostgreSQL's 'simple' configuration
        # (no stemming, like the SQLite backend's unicode61 tokenizer).
        words = [w.replace('""', '"') for w in re.findall(r'"((?:[^"]|"")*)"', query)]
        words = [w for w in words if w.strip()]
        if not words:
            return []
        parts: list[str] = []
        args: list[Any] = []
        for lo, hi in self._ranges(ns_prefix, skip_prefix):
            parts.append(
                f"SELECT {_COLS}, ts_rank(tsv, q) AS score FROM {self._items}, "
                "to_tsquery('simple', %s) q WHERE tsv @@ q AND ns >= %s AND ns < %s"
            )
            args += [tsquery(words), lo, hi]
        if not parts:
            return []
        sql = " UNION ALL ".join(parts) + " ORDER BY score DESC, ns, key LIMIT %s"
        args.append(limit)
        rows = self._run(lambda conn: conn.execute(sql, args, binary=True).fetchall())
        return [(Row(*r[:7]), float(r[7])) for r in rows]

    def attach_codec(self, codec: Codec) -> None:
        """Called by the store: *codec* unframes values, so JSON values are also kept as
        ``jsonb`` (computed with the full-text documents) and filters narrow in SQL."""
        self._unframe = codec.unframe

    def _doc(self, frame: bytes) -> str | None:
        """The ``jsonb`` text of a JSON frame (``None``: not JSON, or not storable)."""
        unframe = self._unframe
        if unframe is None:
            return None
        try:
            kind, payload = unframe(frame)
        except TieredMemError:
            return None
        if kind != JSON or b"\\u0000" in payload:  # jsonb refuses NUL characters
            return None
        return payload.decode("utf-8", "replace")

    def index_pending(self) -> int:
        """Compute the full-text documents (and ``jsonb`` values) of rows written since
        the last search; return how many.  Safe beside other clients: a row changed
        meanwhile is left pending."""
        self._refuse_write()
        text_of = self._text_of
        done = 0
        select = (
            f"SELECT ns, key, value, xmin::text FROM {self._items} WHERE {PENDING} "
            "ORDER BY ns, key LIMIT %s"
        )
        update = (
            f"UPDATE {self._items} SET tsv = to_tsvector('simple', %s), doc = %s::jsonb "
            f"WHERE ns = %s AND key = %s AND xmin::text = %s AND {PENDING}"
        )
        while True:
            rows = self._run(
                lambda conn: conn.execute(select, (_INDEX_BATCH,), binary=True).fetchall()
            )
            if not rows:
                return done
            docs = []
            for ns, key, frame, xmin in rows:
                text = text_of(bytes(frame)) if text_of is not None else None
                doc = self._doc(bytes(frame))
                docs.append(((text or "").replace("\x00", " "), doc, ns, key, xmin))

            def store(conn: Any, docs: list[tuple[Any, ...]] = docs) -> int:
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(update, docs)
                    return int(cur.rowcount)

            changed = self._run(store)
            done += len(rows)
            if changed == 0 and len(rows) == _INDEX_BATCH:
                time.sleep(0.01)  # every row changed under us: another client is writing
            if len(rows) < _INDEX_BATCH:
                return done

    # -- writes ------------------------------------------------------------------------
    def _refuse_write(self) -> None:
        if self.readonly:
            raise ReadOnlyError(
                f"{self.url} was opened with readonly=True; open it without readonly to write"
            )

    def write(self, ops: Sequence[Op]) -> list[float]:
        self._refuse_write()
        vid = secrets.randbits(63)
        bump_args = (vid, self._channel, self._client_id)

        def one(conn: Any) -> tuple[list[float], tuple[int, int, int]]:
            # A batch of distinct rows (a put, a checkpoint's rows) is one statement,
            # its own transaction: each op a data-modifying WITH query, all run once.
            # The bump reads what each op did (rows added, rows deleted) for the kept
            # count, so it runs after them: rows first, the version row last, as in many().
            parts: list[str] = []
            args: list[Any] = []
            puts: list[str] = []
            delta: list[str] = []
            for i, op in enumerate(ops):
                sql, op_args = self._statement(op)
                if isinstance(op, Put):
                    puts.append(f"(SELECT created_at FROM o{i})")
                    delta.append(f"+ (SELECT count(*) FROM o{i} WHERE added)")
                elif isinstance(op, Delete | DeleteRange):
                    sql += " RETURNING 1"
                    delta.append(f"- (SELECT count(*) FROM o{i})")
                parts.append(f"o{i} AS ({sql})")
                args += op_args
            parts.append(f"b AS ({self._bump_sql.format(delta=' '.join(['0', *delta]))})")
            args += bump_args
            columns = "".join(", " + p for p in puts)
            found = conn.execute(
                f"WITH {', '.join(parts)} SELECT b.v, b.pvid{columns} FROM b", args
            ).fetchone()
            return [float(c) for c in found[2:]], (found[0], found[1], 0)

        def many(conn: Any) -> tuple[list[float], tuple[int, int, int]]:
            created = []
            delta = 0
            with conn.transaction():
                for op in ops:
                    cur = conn.execute(*self._statement(op))
                    if isinstance(op, Put):
                        at, added = cur.fetchone()
                        created.append(float(at))
                        delta += bool(added)
                    elif isinstance(op, Delete | DeleteRange):
                        delta -= max(cur.rowcount, 0)
                # Last, so the row lock that serializes writers is held only until COMMIT.
                bump = self._bump_sql.format(delta="%s")
                bumped = conn.execute(bump, (bump_args[0], delta, *bump_args[1:])).fetchone()
            return created, bumped

        # Two ops on one row cannot share a statement (they would see the same snapshot).
        rows = {(op.ns, op.key) for op in ops if not isinstance(op, DeleteRange)}
        single = len(rows) == len(ops) <= _ONE_STATEMENT
        created, (v, pvid, _) = self._run(one if single else many)
        with self._seen_lock:
            if (int(v) - 1, int(pvid)) == self._seen:
                self._seen = (int(v), vid)  # only our batch since we last looked
        return created

    def _statement(self, op: Op) -> tuple[str, tuple[Any, ...]]:
        """The SQL and arguments of one write operation."""
        items = self._items
        if isinstance(op, Put):
            args = (op.ns, op.key, op.frame, op.created, op.now, op.now, op.expires_at, op.ttl)
            return self._upsert, (*args, op.created)
        if isinstance(op, Delete):
            return f"DELETE FROM {items} WHERE ns = %s AND key = %s", (op.ns, op.key)
        if isinstance(op, Touch):
            return (
                f"UPDATE {items} SET expires_at = %s + ttl "
                "WHERE ns = %s AND key = %s AND ttl IS NOT NULL",
                (op.now, op.ns, op.key),
            )
        return (
            f"DELETE FROM {items} WHERE ns = %s AND key >= %s AND key < %s",
            (op.ns, op.start, _TOP if op.stop is None else op.stop),
        )

    def expire(self, now: float, *, limit: int = 10_000) -> list[tuple[str, str]]:
        self._refuse_write()
        sql = (
            f"DELETE FROM {self._items} WHERE (ns, key) IN (SELECT ns, key FROM {self._items} "
            "WHERE expires_at IS NOT NULL AND expires_at <= %s ORDER BY expires_at LIMIT %s "
            "FOR UPDATE SKIP LOCKED) RETURNING ns, key"
        )

        def run(conn: Any) -> list[tuple[str, str]]:
            with conn.transaction():
                keys = [(ns, key) for ns, key in conn.execute(sql, (now, limit))]
                if keys:
                    # Not taken as seen: a sweep drops this client's hot tier too.
                    conn.execute(
                        self._bump_sql.format(delta="%s"),
                        (secrets.randbits(63), -len(keys), self._channel, self._client_id),
                    )
                return keys

        return self._run(run)

    # -- zstd dictionaries -------------------------------------------------------------
    def dictionaries(self) -> dict[int, bytes]:
        sql = f"SELECT id, data FROM {self._dicts}"
        return self._run(lambda conn: {int(i): bytes(d) for i, d in conn.execute(sql)})

    def dictionary(self, dict_id: int) -> bytes | None:
        sql = f"SELECT data FROM {self._dicts} WHERE id = %s"
        found = self._run(lambda conn: conn.execute(sql, (dict_id,), binary=True).fetchone())
        return None if found is None else bytes(found[0])

    def add_dictionary(self, data: bytes) -> int:
        self._refuse_write()
        sql = f"INSERT INTO {self._dicts} (data, created_at) VALUES (%s, %s) RETURNING id"
        found = self._run(lambda conn: conn.execute(sql, (data, time.time())).fetchone())
        return int(found[0])

    # -- coherence, maintenance, stats -------------------------------------------------
    def unchanged(self) -> bool:
        """Notify mode: True while the LISTEN connection reports nothing new (see
        :mod:`tieredmem.backends._pg_notify`); strict mode: always ``False`` ("ask")."""
        listener = self._listener
        return listener is not None and listener.quiet()

    def foreign_change(self) -> bool:
        """One round trip: has the version row moved since we last looked (beyond our
        own batches)?"""
        if self._db.closed:
            return False
        listener = self._listener
        if listener is not None:
            listener.before_check()
        sql = f"SELECT v, vid FROM {self._version} WHERE id = 1"
        v, vid = self._run(lambda conn: conn.execute(sql).fetchone())
        if listener is not None:
            listener.after_check()
        ver = (int(v), int(vid))
        with self._seen_lock:
            changed = self._seen is not None and ver != self._seen
            self._seen = ver
        return changed

    def maintain(self) -> dict[str, Any]:
        """Index pending full-text documents (PostgreSQL's autovacuum does the rest)."""
        return {"indexed": self.index_pending()}

    def settings(self) -> dict[str, Any]:
        """What an operator checks: server version, schema, table prefix, coherence mode,
        format version (as ``user_version``, the SQLite backend's name)."""

        def run(conn: Any) -> dict[str, Any]:
            meta = dict(conn.execute(f"SELECT key, value FROM {self._meta}").fetchall())
            server = conn.execute("SHOW server_version").fetchone()[0]
            return {
                "server_version": server,
                "schema": self.schema,
                "table_prefix": self.prefix,
                "coherence": self.coherence,
                "user_version": int(meta.get("format_version", "0")),
            }

        return self._run(run)

    def integrity_check(
        self, *, full: bool = False, progress: Callable[[], None] | None = None
    ) -> str:
        """``"ok"`` when every table of the store is there and the format is ours (the
        server checks its own pages: *full* and *progress*, meaningful on SQLite files,
        change nothing here)."""

        def run(conn: Any) -> str:
            found = existing_tables(conn, self.schema, self.prefix)
            missing = [self.prefix + t for t in TABLES if self.prefix + t not in found]
            return "ok" if not missing else "missing tables: " + ", ".join(missing)

        return self._run(run)

    def stats(self) -> dict[str, Any]:
        """Sizes from the catalog and the count of items kept by the writes: the same
        cost at any size (no statement reads the items table)."""

        def run(conn: Any) -> tuple[int, int]:
            size = conn.execute(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = ANY(%s) "
                "AND c.relkind = 'r'",
                (self.schema, [self.prefix + t for t in TABLES]),
            ).fetchone()[0]
            # Kept by every write batch (format 2): one row, whatever the table's size.
            rows = conn.execute(f"SELECT n FROM {self._version} WHERE id = 1").fetchone()[0]
            return int(size or 0), int(rows)

        size, rows = self._run(run)
        return {
            "cold_bytes": size,
            "cold_free_bytes": 0,
            "wal_bytes": 0,
            "cold_rows": rows,
            "format_version": FORMAT_VERSION,
        }

    def run_sql(self, sql: str, args: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one SQL statement on a connection of the pool (with its settings, such as
        ``prepare_threshold``) and return its rows; for tools and diagnostics."""

        def run(conn: Any) -> list[tuple[Any, ...]]:
            cur = conn.execute(sql, args)
            return list(cur.fetchall()) if cur.description else []

        return self._run(run, retry=False)  # not re-run: it may have done something

    def __repr__(self) -> str:
        return f"PostgresBackend({self.url!r}, schema={self.schema!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._db.close()

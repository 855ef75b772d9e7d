"""Declared field indexes of a SQLite store file (``tieredmem.open(..., index=[...])``).

The values of the declared fields of every user item live in the ``fields`` table, one
row per item and field, kept by each write (:meth:`FieldIndex.put`) and cleaned by a
trigger on delete.  Declaring a field stores it in ``meta`` and moves the schema version,
so every connection, in any process, sees the declaration at its next write; the items
stored before are indexed in batches (:meth:`FieldIndex.backfill`), and only then is the
field *ready* for searches.  :class:`~tieredmem.backends.sqlite.SQLiteBackend` owns the
connections and transactions; this class owns the SQL and what it knows of the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, cast

import apsw
import orjson

from ..names import INTERNAL_ROOT
from . import SEP
from ._schema import FIELDS_TRIGGER, FIELDS_VALUE_INDEX

__all__ = ["FieldIndex", "FieldsOf", "internal"]

#: ``fields_of(frame, fields)``: the ``(field, value)`` pairs of a stored frame.
FieldsOf = Callable[[bytes, Sequence[str]], Iterable[tuple[str, Any]]]

_DELETE_FIELDS = "DELETE FROM fields WHERE ns = ? AND key = ?"
_INSERT_FIELD = "INSERT OR REPLACE INTO fields (field, ns, value, key) VALUES (?, ?, ?, ?)"
_OPS = frozenset(("=", ">", ">=", "<", "<="))
#: Rows read per transaction when a newly declared field index indexes existing items.
BACKFILL_ROWS = 5000
#: Moves the schema version without changing anything (how other connections see that
#: the declared fields changed): a no-op table created and dropped.
_BUMP_SCHEMA = "CREATE TABLE IF NOT EXISTS index_changed (x); DROP TABLE index_changed"
_INTERNAL_PREFIX = INTERNAL_ROOT + SEP


def internal(ns: str) -> bool:
    """Whether *ns* is under the reserved root (rows of histories, states, savers)."""
    return ns == INTERNAL_ROOT or ns.startswith(_INTERNAL_PREFIX)


class FieldIndex:
    """What one backend knows of the file's declared fields, and the SQL that keeps and
    reads them.  Every method taking *con* runs on the caller's connection, inside the
    caller's transaction where it writes."""

    def __init__(self, fields_of: FieldsOf | None) -> None:
        self.fields_of = fields_of
        # The file's declared fields, as of schema version _schema (declaring one creates
        # a trigger, so every connection sees a declaration by the schema moving).
        self._fields: tuple[str, ...] = ()
        self.ready: tuple[str, ...] = ()  # those whose earlier items are indexed too
        self._schema = -1

    def declared(self, con: apsw.Connection) -> tuple[str, ...]:
        """The declared fields, which every write keeps (re-read when the schema moved:
        another connection may have declared one); :attr:`ready` is refreshed too."""
        ((version,),) = con.execute("PRAGMA schema_version").fetchall()
        if version != self._schema:
            found: dict[str, tuple[str, ...]] = {"index": (), "index_ready": ()}
            for key, value in con.execute(
                "SELECT key, value FROM meta WHERE key IN ('index', 'index_ready')"
            ):
                found[str(key)] = tuple(orjson.loads(cast(str, value)))
            self._fields, self.ready = found["index"], found["index_ready"]
            self._schema = int(cast(int, version))
        return self._fields

    def kept(self, con: apsw.Connection) -> tuple[str, ...]:
        """The fields a write on *con* must keep (none without ``fields_of``)."""
        return self.declared(con) if self.fields_of is not None else ()

    def put(self, con: apsw.Connection, ns: str, key: str, frame: bytes) -> None:
        """Replace the field rows of one written item (a user item: see :func:`internal`)."""
        assert self.fields_of is not None
        con.execute(_DELETE_FIELDS, (ns, key))
        for field, value in self.fields_of(frame, self._fields):
            con.execute(_INSERT_FIELD, (field, ns, value, key))

    def declare(self, con: apsw.Connection, fields: Sequence[str]) -> None:
        """In the caller's write transaction: add *fields* to the declared ones."""
        known = self.declared(con)
        new = [f for f in fields if f not in known]
        con.execute(FIELDS_VALUE_INDEX)
        if new:
            con.execute(FIELDS_TRIGGER)
            self._set_meta(con, "index", [*known, *new])

    def mark_ready(self, con: apsw.Connection, fields: Sequence[str]) -> None:
        """In the caller's write transaction: *fields* are indexed for every item."""
        self.declared(con)
        self._set_meta(
            con, "index_ready", [*self.ready, *(f for f in fields if f not in self.ready)]
        )

    def backfill(
        self, con: apsw.Connection, fields: Sequence[str], after: tuple[str, str]
    ) -> tuple[str, str] | None:
        """In the caller's write transaction: index *fields* of up to
        :data:`BACKFILL_ROWS` items stored after *after*; where to go on, or ``None``."""
        assert self.fields_of is not None
        rows = con.execute(
            "SELECT ns, key, value FROM items WHERE (ns, key) > (?, ?) "
            f"ORDER BY ns, key LIMIT {BACKFILL_ROWS}",
            after,
        ).fetchall()
        for ns, key, frame in rows:
            if not internal(str(ns)):
                for field, value in self.fields_of(cast(bytes, frame), fields):
                    con.execute(_INSERT_FIELD, (field, ns, value, key))
        if len(rows) < BACKFILL_ROWS:
            return None
        return str(rows[-1][0]), str(rows[-1][1])

    @staticmethod
    def scan_sql(
        bounds: tuple[str, str],
        plan: Any,
        after: tuple[str, str] | None,
        limit: int,
        skip: tuple[str, str] | None,
    ) -> tuple[str, list[Any]]:
        """The query of the items under *bounds* (``[lo, hi)`` of joined namespaces, less
        *skip*) whose indexed fields satisfy *plan* (a
        :data:`~tieredmem.fieldindex.FieldPlan`), in (ns, key) order, at most *limit*.

        Each part of the plan reads the index in (ns, key) order, so SQLite merges them
        and stops at *limit*: an equality seeks ``(field, value, ns)``, a range walks the
        field's rows under *bounds*, an ``or`` merges its parts (``UNION``), an ``and``
        reads one part (an equality first) and checks the others item by item.
        """
        where: list[str] = ["{t}ns >= ?", "{t}ns < ?"]
        scope: list[Any] = list(bounds)
        if after is not None:
            where.append("({t}ns, {t}key) > (?, ?)")
            scope += list(after)
        if skip is not None:
            where.append("NOT ({t}ns >= ? AND {t}ns < ?)")
            scope += list(skip)
        args: list[Any] = []
        inner = _select(plan, _Scope(" AND ".join(where), scope), args)
        # CROSS JOIN: SQLite keeps this order (the index's candidates, then their other
        # fields, then the items), so only the items that pass are read.
        sql = (
            "SELECT i.ns, i.key, i.value, i.created_at, i.updated_at, i.expires_at, i.ttl "
            f"FROM ({inner}) s CROSS JOIN items i ON i.ns = s.ns AND i.key = s.key "
            f"ORDER BY s.ns, s.key LIMIT {int(limit)}"
        )
        return sql, args

    @staticmethod
    def _set_meta(con: apsw.Connection, key: str, fields: Sequence[str]) -> None:
        """Store a list of fields, and let every connection know (the schema moves)."""
        con.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            (key, orjson.dumps(list(fields)).decode()),
        )
        con.execute(_BUMP_SCHEMA)


def _test(cond: tuple[str, str, Any], column: str, args: list[Any]) -> str:
    """SQL for one index condition on *column*.  A range keeps to the operand's type
    (numbers sort before text, text before blobs), as the filter does."""
    _, op, value = cond
    if op not in _OPS:
        raise ValueError(f"unknown field condition {cond!r}")
    args.append(value)
    if op == "=":
        return f"{column} = ?"
    if isinstance(value, str):
        return f"{column} {op} ? AND {column} >= '' AND {column} < x''"
    return f"{column} {op} ? AND {column} < ''"


def _is_condition(plan: Any) -> bool:
    return len(plan) == 3


class _Scope(NamedTuple):
    """The namespaces searched: SQL with ``{t}`` for a table alias's prefix, arguments."""

    sql: str
    args: list[Any]

    def on(self, alias: str, args: list[Any]) -> str:
        args += self.args
        return self.sql.format(t=f"{alias}." if alias else "")


def _select(plan: Any, scope: _Scope, args: list[Any]) -> str:
    """``SELECT ns, key`` of the items satisfying *plan* within *scope*, in (ns, key)
    order; appends the arguments to *args*, in the order of the SQL text."""
    if _is_condition(plan):
        # An equality seeks (field, value, ns) in the value index; a range cannot use it
        # in (ns, key) order ("+value"), so it walks the field's rows under the scope.
        args.append(plan[0])
        test = _test(plan, "value" if plan[1] == "=" else "+value", args)
        return f"SELECT ns, key FROM fields WHERE field = ? AND {test} AND {scope.on('', args)}"
    kind, parts = plan
    if kind == "or":
        arms = [f"SELECT ns, key FROM ({_select(p, scope, args)})" for p in parts]
        return " UNION ".join(arms)
    # "and": read the first equality (else the first part); join each other condition
    # (one seek of the item's row of that field), check the rest ("or"s) item by item.
    lead = next((p for p in parts if _is_condition(p) and p[1] == "="), parts[0])
    rest = [p for p in parts if p is not lead]
    where: list[str] = []
    source = "fields c" if _is_condition(lead) else f"({_select(lead, scope, args)}) c"
    joins = []
    for n, part in enumerate(p for p in rest if _is_condition(p)):
        args.append(part[0])
        test = _test(part, f"g{n}.value", args)
        joins.append(
            f"CROSS JOIN fields g{n} INDEXED BY fields_item "
            f"ON g{n}.ns = c.ns AND g{n}.key = c.key "
            f"AND g{n}.field = ? AND {test}"
        )
    if _is_condition(lead):
        args.append(lead[0])
        where += ["c.field = ?", _test(lead, "c.value" if lead[1] == "=" else "+c.value", args)]
        where.append(scope.on("c", args))
    where += [_exists(p, args) for p in rest if not _is_condition(p)]
    return f"SELECT c.ns, c.key FROM {source} {' '.join(joins)}" + (
        f" WHERE {' AND '.join(where)}" if where else ""
    )


def _exists(plan: Any, args: list[Any]) -> str:
    """SQL that is true for the item ``(c.ns, c.key)`` when it satisfies *plan*."""
    if _is_condition(plan):
        args.append(plan[0])
        test = _test(plan, "g.value", args)
        return (
            "EXISTS (SELECT 1 FROM fields g INDEXED BY fields_item "
            "WHERE g.ns = c.ns AND g.key = c.key "
            f"AND g.field = ? AND {test})"
        )
    kind, parts = plan
    joiner = " OR " if kind == "or" else " AND "
    return "(" + joiner.join(_exists(p, args) for p in parts) + ")"

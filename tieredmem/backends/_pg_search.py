"""SQL for the PostgreSQL backend's searches: filters narrowed on ``jsonb``, text queries."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..filters import AllOf, AnyOf, Cond, Node, necessary

__all__ = ()

_RANGES = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def filter_sql(filter: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
    """SQL conditions on ``doc`` that every value matching *filter* satisfies (see
    :meth:`~tieredmem.backends.postgres.PostgresBackend.filter_scan`), and their arguments.

    Built from :func:`~tieredmem.filters.necessary` (the positive parts of the filter,
    ``$and`` and ``$or`` included), keeping only what PostgreSQL compares exactly as
    Python does: equality with a string or ``None`` by containment (``1 == True`` in
    Python, not in jsonb, so no numbers), ``$in`` of those, a range on a number (not a
    bool) against a field that holds a number (a field holding something else is kept),
    ``$contains`` of a string in an array, ``$exists: True``.
    """
    root = necessary(filter)
    if root is None:
        return [], []
    args: list[Any] = []
    if isinstance(root, AllOf):
        conds = []
        for part in root.parts:
            mark = len(args)
            sql = _node_sql(part, args)
            if sql is None:
                del args[mark:]
            else:
                conds.append(sql)
        return conds, args
    sql = _node_sql(root, args)
    return ([], []) if sql is None else ([sql], args)


def _node_sql(node: Node, args: list[Any]) -> str | None:
    """SQL true for every value satisfying *node* (``None``: none found); appends its
    arguments to *args* (only when it returns SQL)."""
    if isinstance(node, Cond):
        return _cond_sql(node, args)
    mark = len(args)
    parts = []
    for part in node.parts:
        sql = _node_sql(part, args)
        if sql is None:
            if isinstance(node, AnyOf):
                del args[mark:]
                return None
            continue
        parts.append(sql)
    if not parts:
        return None
    joiner = " OR " if isinstance(node, AnyOf) else " AND "
    return "(" + joiner.join(parts) + ")"


def _cond_sql(cond: Cond, args: list[Any]) -> str | None:
    parts = cond.path.split(".")
    expected = cond.operand
    if cond.op == "$eq" and (expected is None or type(expected) is str):
        if expected is not None and not _storable(expected):
            return None
        doc: Any = expected
        for part in reversed(parts):
            doc = {part: doc}
        args.append(json.dumps(doc))
        return "doc @> %s::jsonb"
    if cond.op in _RANGES and type(expected) in (int, float) and abs(expected) < 2**53:
        # An absent field never matches; one that is not a number (a bool, which Python
        # compares as an int) is left to the caller's test.  Below 2**53, shortest float
        # reprs (how orjson wrote the stored numbers, and how the bound is sent) order
        # exactly as the floats do.
        args += [parts, parts, repr(expected)]
        return (
            "(jsonb_typeof(doc #> %s) <> 'number' OR "
            f"(doc #>> %s)::numeric {_RANGES[cond.op]} %s::numeric)"
        )
    if cond.op == "$contains" and type(expected) is str and _storable(expected):
        # A list holding the string, or a string (holding it or not: left to the test).
        args += [parts, parts, json.dumps(expected)]
        return "(jsonb_typeof(doc #> %s) = 'string' OR doc #> %s @> %s::jsonb)"
    if cond.op == "$exists" and expected is True:
        args.append(parts)
        return "doc #> %s IS NOT NULL"
    return None


def _storable(text: str) -> bool:
    """False for text ``jsonb`` cannot hold (NUL, lone surrogates): no stored value
    holds it either, and the caller's test decides."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def tsquery(words: list[str]) -> str:
    """A ``to_tsquery`` text matching any of *words*, each one quoted operand
    (lower-cased, as the 'simple' configuration indexes them)."""
    return " | ".join("'" + w.lower().replace("\\", "\\\\").replace("'", "''") + "'" for w in words)

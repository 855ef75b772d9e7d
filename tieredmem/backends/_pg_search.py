"""SQL for the PostgreSQL backend's searches: filters narrowed on ``jsonb``, text queries."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ()

_RANGES = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def filter_sql(filter: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
    """SQL conditions on ``doc`` that every value matching *filter* satisfies (see
    :meth:`~tieredmem.backends.postgres.PostgresBackend.filter_scan`), and their arguments.

    Only what PostgreSQL compares exactly as Python does: a string or ``None`` (jsonb
    ``null``) by containment (``1 == True`` in Python, not in jsonb, so no numbers), and
    a number (not a bool) against a field that holds a number (a field that holds
    something else is kept).
    """
    conds: list[str] = []
    args: list[Any] = []
    contains: dict[str, Any] = {}
    for path, spec in filter.items():
        parts = path.split(".")
        ops = (
            spec
            if isinstance(spec, Mapping) and spec and all(str(k).startswith("$") for k in spec)
            else {"$eq": spec}
        )
        for op, expected in ops.items():
            if op == "$eq" and (expected is None or type(expected) is str):
                if expected is not None and not _storable(expected):
                    continue
                node = contains
                for part in parts[:-1]:
                    nxt = node.setdefault(part, {})
                    if not isinstance(nxt, dict):
                        break
                    node = nxt
                else:
                    if parts[-1] not in node:
                        node[parts[-1]] = expected
            elif op in _RANGES and type(expected) in (int, float) and abs(expected) < 2**53:
                # An absent field never matches; one that is not a number (a bool,
                # which Python compares as an int) is left to the caller's test.  Below
                # 2**53, shortest float reprs (how orjson wrote the stored numbers, and
                # how the bound is sent) order exactly as the floats do.
                conds.append(
                    "(jsonb_typeof(doc #> %s) <> 'number' OR "
                    f"(doc #>> %s)::numeric {_RANGES[op]} %s::numeric)"
                )
                args += [parts, parts, repr(expected)]
    if contains:
        conds.insert(0, "doc @> %s::jsonb")
        args.insert(0, json.dumps(contains))
    return conds, args


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

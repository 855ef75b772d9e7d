"""Declared field indexes: the values a store indexes for its items, and the part of a
search filter that the index can answer.

``tieredmem.open(path, index=["n", "user.lang"])`` declares fields (dotted for nested ones)
whose values are kept in SQL beside each item (SQLite files); a filter on a declared field
then reads the index's candidates, in (namespace, key) order, instead of decoding every
item under the prefix.  The index is only a sieve: each candidate still goes through the
filter in Python, which decides, so an index never changes what a search returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .codec import Codec
from .errors import SerializationError

__all__ = ["Condition", "conditions", "fields_of", "sql_value"]

#: ``(field, SQL operator, value)``: the index rows of *field* whose value satisfies it.
Condition = tuple[str, str, Any]

_SQL_OPS = {"$eq": "=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_INT64 = 2**63


def sql_value(value: Any) -> Any:
    """*value* as the index stores it (``None`` for a value the index does not hold).

    Numbers, strings and bools only: a bool as 0/1 (``True == 1`` in a filter too), an
    integer past 64 bits as a float (comparisons keep their order), no NaN."""
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return int(value)
    if kind is int:
        return value if -_INT64 <= value < _INT64 else float(value)
    if kind is float:
        return None if math.isnan(value) else value
    return None


def _field(value: Any, parts: Sequence[str]) -> Any:
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def fields_of(codec: Codec) -> Callable[[bytes, Sequence[str]], list[tuple[str, Any]]]:
    """``(frame, fields) -> [(field, value), ...]``: the index rows of a stored frame."""

    def extract(frame: bytes, fields: Sequence[str]) -> list[tuple[str, Any]]:
        try:
            value = codec.decode(frame)
        except SerializationError:
            return []
        if not isinstance(value, dict):
            return []
        out = []
        for field in fields:
            found = sql_value(_field(value, field.split(".")))
            if found is not None:
                out.append((field, found))
        return out

    return extract


def conditions(filter: Mapping[str, Any] | None, fields: Sequence[str]) -> list[Condition]:
    """The conditions of *filter* that the index of *fields* can answer (equality and
    ranges on a number or a string), equalities first.

    Every item matching *filter* satisfies them (``$ne`` also matches an absent field, and
    ``None`` or containers are not indexed, so those are left to the filter alone)."""
    if not filter or not fields:
        return []
    out: list[Condition] = []
    for path, spec in filter.items():
        if path not in fields:
            continue
        if isinstance(spec, Mapping) and spec and all(str(k).startswith("$") for k in spec):
            ops = [(op, exp) for op, exp in spec.items() if op in _SQL_OPS]
        else:
            ops = [("$eq", spec)]
        for op, expected in ops:
            value = sql_value(expected)
            if value is not None:
                out.append((path, _SQL_OPS[op], value))
    out.sort(key=lambda c: c[1] != "=")
    return out

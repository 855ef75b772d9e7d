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
from collections.abc import Callable, Sequence
from typing import Any, Union

from .codec import Codec
from .errors import SerializationError
from .filters import AnyOf, Cond, Node

__all__ = ["Condition", "FieldPlan", "field_plan", "fields_of", "sql_value"]

#: ``(field, SQL operator, value)``: the index rows of *field* whose value satisfies it.
Condition = tuple[str, str, Any]
#: A :data:`Condition`, or ``("and", [plans])``/``("or", [plans])``.
FieldPlan = Union[Condition, tuple[str, list["FieldPlan"]]]  # noqa: UP007

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


def _condition(cond: Cond) -> FieldPlan | None:
    """The index condition of one filter condition on a declared field, if any."""
    if cond.op not in _SQL_OPS:
        return None  # $contains, $exists: the index holds no rows for lists or None
    value = sql_value(cond.operand)
    if value is None:
        return None
    op = _SQL_OPS[cond.op]
    if type(value) is float and abs(value) >= _INT64 and op in (">", "<"):
        # Integers past 64 bits are indexed as floats: two of them may round to one
        # float, so a strict order could lose a match; the filter decides instead.
        op += "="
    return (cond.path, op, value)


def field_plan(node: Node | None, fields: Sequence[str]) -> tuple[FieldPlan | None, bool]:
    """What the index of *fields* can answer of a filter, given its
    :func:`~tieredmem.filters.necessary` condition *node* (``None``: nothing):
    equality, ``$in`` and ranges on a number or a string of a declared field, combined
    by ``$and`` and ``$or``; and whether every field the filter's positive conditions
    name is among *fields* (if not, a fresher list of declared fields might answer more).

    Every item matching the filter satisfies the plan (``$ne``, ``$nin``, ``$not`` and
    ``$exists: False`` also match an absent field, ``None`` and containers are not
    indexed, so those are left to the filter alone), so the index is a sieve: the filter
    still decides each item the index gives.
    """
    if node is None:
        return None, True
    declared = frozenset(fields)
    complete = True

    def plan(node: Node) -> FieldPlan | None:
        nonlocal complete
        if isinstance(node, Cond):
            if node.path not in declared:
                complete = False
                return None
            return _condition(node)
        parts = [plan(p) for p in node.parts]
        if isinstance(node, AnyOf):
            if any(p is None for p in parts):
                return None
            return ("or", [p for p in parts if p is not None])
        kept = [p for p in parts if p is not None]
        if not kept:
            return None
        return kept[0] if len(kept) == 1 else ("and", kept)

    return plan(node), complete

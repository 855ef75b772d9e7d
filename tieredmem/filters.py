"""Filters and text: the ``filter=`` of a search compiled into a test, the byte needles
that let a scan skip rows without parsing them, and the words full-text search indexes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from .codec import Codec
from .errors import SerializationError

__all__ = [
    "compile_filter",
    "filter_needles",
    "fts_query",
    "matches",
    "text_of",
    "validate_filter",
]

_WORD = re.compile(r"\w+", re.UNICODE)

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": lambda a, b: a == b,
    "$ne": lambda a, b: a != b,
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}
_ABSENT = object()


def _field(value: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _ABSENT
        value = value[part]
    return value


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if actual is _ABSENT:
        return op == "$ne"
    try:
        return _OPS[op](actual, expected)
    except TypeError:  # e.g. "a" > 1: not comparable, so no match
        return False


def validate_filter(filter: Mapping[str, Any] | None) -> None:
    """Raise ``ValueError`` for an operator that :func:`matches` does not know."""
    if filter is None:
        return
    if not isinstance(filter, Mapping):
        raise ValueError(f"filter must be a mapping, not {filter!r}")
    for spec in filter.values():
        if isinstance(spec, Mapping) and spec and all(str(k).startswith("$") for k in spec):
            for op in spec:
                if op not in _OPS:
                    raise ValueError(
                        f"unknown filter operator {op!r}; use one of {', '.join(_OPS)}"
                    )


def matches(value: Any, filter: Mapping[str, Any] | None) -> bool:
    """True if *value* satisfies *filter*: exact matches and ``$eq $ne $gt $gte $lt $lte``.

    Keys are field names of the (dict) value, dotted for nested fields.

    >>> matches({"age": 30, "lang": "fr"}, {"lang": "fr", "age": {"$gte": 18}})
    True
    """
    if not filter:
        return True
    for path, spec in filter.items():
        actual = _field(value, path)
        if isinstance(spec, Mapping) and spec and all(str(k).startswith("$") for k in spec):
            if not all(_compare(op, actual, expected) for op, expected in spec.items()):
                return False
        elif actual is _ABSENT or actual != spec:
            return False
    return True


def compile_filter(filter: Mapping[str, Any] | None) -> Callable[[Any], bool] | None:
    """:func:`matches` with *filter* bound: ``compile_filter(f)(v) == matches(v, f)``.

    The filter is taken apart once (paths split, operators looked up), not once a row:
    ~0.4 us a call instead of ~1.9 us for a two-field filter.  ``None`` for no filter.
    """
    if not filter:
        return None
    checks: list[tuple[list[str], Any, list[tuple[str, Callable[[Any, Any], bool], Any]]]] = []
    for path, spec in filter.items():
        if isinstance(spec, Mapping) and spec and all(str(k).startswith("$") for k in spec):
            checks.append(
                (path.split("."), None, [(op, _OPS[op], exp) for op, exp in spec.items()])
            )
        else:
            checks.append((path.split("."), spec, []))
    absent = _ABSENT

    def test(value: Any) -> bool:
        for parts, exact, ops in checks:
            actual = value
            for part in parts:
                if not isinstance(actual, dict) or part not in actual:
                    actual = absent
                    break
                actual = actual[part]
            if not ops:
                if actual is absent or actual != exact:
                    return False
                continue
            for op, fn, expected in ops:
                if actual is absent:
                    if op != "$ne":
                        return False
                    continue
                try:
                    if not fn(actual, expected):
                        return False
                except TypeError:  # e.g. "a" > 1: not comparable, so no match
                    return False
        return True

    return test


def filter_needles(filter: Mapping[str, Any] | None) -> tuple[bytes, ...]:
    """Byte strings that the JSON payload of any value matching *filter* must contain.

    An exact (or ``$eq``) match on a ``str`` or on ``None`` needs that JSON token in the
    payload: orjson writes a string the same way wherever it is (compact, only ``"``,
    ``\\`` and control characters escaped), so ``orjson.dumps(spec)`` is a substring of
    the payload of every match.  Numbers and booleans give none (``1 == 1.0 == True``), nor
    do containers or other operators.  A row whose payload lacks a needle is skipped
    without being parsed; the rest still go through :func:`matches`, which decides.
    """
    if not filter:
        return ()
    out: list[bytes] = []
    for spec in filter.values():
        if isinstance(spec, Mapping) and spec and all(str(k).startswith("$") for k in spec):
            spec = spec.get("$eq", _ABSENT)
        if type(spec) is str:
            try:
                out.append(orjson.dumps(spec))
            except orjson.JSONEncodeError:  # e.g. a lone surrogate: no stored str equals it
                continue
        elif spec is None:
            out.append(b"null")
    return tuple(out)


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


def fts_query(query: str) -> str:
    """Turn free text into an FTS5 query: any of its words, each quoted (no syntax)."""
    return " OR ".join(f'"{w}"' for w in _WORD.findall(query))


def text_of(codec: Codec) -> Callable[[bytes], str | None]:
    """The text full-text search indexes for a stored frame: the strings in its value."""

    def text_of(frame: bytes) -> str | None:
        try:
            value = codec.decode(frame)
        except SerializationError:
            return None
        parts: list[str] = []
        _strings(value, parts)
        return "\n".join(parts) or None

    return text_of

"""Filters and text: the ``filter=`` of a search compiled into a test, the byte needles
that let a scan skip rows without parsing them, and the words full-text search indexes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from .codec import Codec
from .errors import InvalidFilterError, SerializationError

__all__ = [
    "check_depth",
    "check_page",
    "check_pattern",
    "check_query",
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


def validate_filter(filter: Any) -> None:
    """Check a ``filter=``: ``None`` or a mapping of field names (``str``, dotted for
    nested fields, not starting with ``$``) to a value to equal or to a mapping of
    operators (``$eq $ne $gt $gte $lt $lte``) to operands.

    :raises InvalidFilterError: anything else, naming the part that is wrong.
    """
    if filter is None:
        return
    if not isinstance(filter, Mapping):
        raise InvalidFilterError(
            f"filter must be a mapping of field names to values, e.g. {{'lang': 'fr'}}, "
            f"not {type(filter).__name__}"
        )
    for path, spec in filter.items():
        if type(path) is not str:
            raise InvalidFilterError(
                f"filter field names are strings (dotted for nested fields), not {path!r}"
            )
        if path.startswith("$"):
            raise InvalidFilterError(
                f"filter field {path!r}: operators go inside a field's condition, e.g. "
                f"{{'age': {{'$gte': 18}}}}; there are no top-level operators such as "
                "$and or $or (all fields of a filter must match)"
            )
        if isinstance(spec, Mapping) and spec:
            dollars = [k for k in spec if type(k) is str and k.startswith("$")]
            if dollars and len(dollars) != len(spec):
                raise InvalidFilterError(
                    f"filter field {path!r} mixes operators and plain keys in {spec!r}: "
                    "use only operators, or no operator to match the whole dict"
                )
            for op in dollars:
                if op not in _OPS:
                    raise InvalidFilterError(
                        f"unknown filter operator {op!r} on field {path!r}; "
                        f"use one of {', '.join(_OPS)}"
                    )


def _whole(name: str, n: Any, least: int) -> None:
    if type(n) is not int or n < least:
        raise InvalidFilterError(f"{name} must be an int >= {least}, not {n!r}")


def check_page(limit: Any, offset: Any) -> None:
    """Check a search's or listing's ``limit`` and ``offset`` (ints >= 0).

    :raises InvalidFilterError: either is not.
    """
    _whole("limit", limit, 0)
    _whole("offset", offset, 0)


def check_query(query: Any) -> None:
    """Check a full-text ``query=`` (``None`` or a ``str``).

    :raises InvalidFilterError: it is neither.
    """
    if query is not None and not isinstance(query, str):
        raise InvalidFilterError(f"query must be a string or None, not {type(query).__name__}")


def check_depth(max_depth: Any) -> None:
    """Check a listing's ``max_depth`` (``None`` or an int >= 1).

    :raises InvalidFilterError: it is neither.
    """
    if max_depth is not None:
        _whole("max_depth", max_depth, 1)


def check_pattern(name: str, labels: Any) -> None:
    """Check a listing's ``prefix`` or ``suffix``: ``None`` or a tuple (or list) of
    string labels, ``"*"`` matching any label.

    :raises InvalidFilterError: it is not.
    """
    if labels is None:
        return
    if not isinstance(labels, (tuple, list)) or not all(type(x) is str for x in labels):
        raise InvalidFilterError(
            f'{name} must be a tuple of string labels ("*" matches any), not {labels!r}'
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

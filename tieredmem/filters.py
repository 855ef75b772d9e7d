"""Filters and text: the ``filter=`` of a search compiled into a test, the byte needles
that let a scan skip rows without parsing them, the conditions a backend may evaluate
itself (:func:`necessary`), and the words full-text search indexes.

The filter language (one semantics on every backend, checked in Python last)::

    {"kind": "fact"}                      equality (a dict: each of its keys, recursively)
    {"user.lang": "fr"}                   dotted paths reach nested fields
    {"score": {"$gte": 50, "$lt": 90}}    $eq $ne $gt $gte $lt $lte
    {"tag": {"$in": ["a", "b"]}}          $in $nin (a list of values)
    {"note": {"$exists": False}}          $exists (True: the field is present)
    {"tags": {"$contains": "x"}}          $contains (a list holding it, a str holding it)
    {"n": {"$not": {"$gt": 3}}}           $not (a field's condition, negated)
    {"$or": [{...}, {...}]}               $and $or (lists of filters), $not (a filter)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Union

import orjson

from .codec import Codec
from .errors import InvalidFilterError, SerializationError

__all__ = [
    "AllOf",
    "AnyOf",
    "Cond",
    "Node",
    "Prepared",
    "check_depth",
    "check_page",
    "check_pattern",
    "check_query",
    "compile_filter",
    "filter_needles",
    "fts_query",
    "matches",
    "necessary",
    "prepare_filter",
    "text_of",
    "validate_filter",
]

_WORD = re.compile(r"\w+", re.UNICODE)
_ABSENT = object()
_RANGE = ("$gt", "$gte", "$lt", "$lte")
FIELD_OPS = ("$eq", "$ne", *_RANGE, "$in", "$nin", "$exists", "$contains", "$not")
LOGICAL_OPS = ("$and", "$or", "$not")
_EXAMPLE = "e.g. {'kind': 'fact', 'score': {'$gte': 50}, '$or': [{'a': 1}, {'b': 2}]}"


# -- validation ---------------------------------------------------------------------------
def _is_ops(spec: Any) -> bool:
    """A field condition made of operators (``{"$gte": 1}``), rather than a value."""
    return (
        isinstance(spec, Mapping)
        and bool(spec)
        and all(type(k) is str and k.startswith("$") for k in spec)
    )


def _check_doc(filter: Any, where: str) -> None:
    if not isinstance(filter, Mapping):
        raise InvalidFilterError(
            f"{where} must be a mapping of field names to values ({_EXAMPLE}), "
            f"not {type(filter).__name__}"
        )
    for path, spec in filter.items():
        if type(path) is not str:
            raise InvalidFilterError(
                f"filter field names are strings (dotted for nested fields), not {path!r}"
            )
        if path.startswith("$"):
            _check_logical(path, spec)
        else:
            _check_spec(path, spec)


def _check_logical(op: str, spec: Any) -> None:
    if op == "$not":
        if not isinstance(spec, Mapping) or not spec:
            raise InvalidFilterError(
                f"$not takes a non-empty filter, e.g. {{'$not': {{'kind': 'fact'}}}}, not {spec!r}"
            )
        _check_doc(spec, "$not's filter")
        return
    if op not in LOGICAL_OPS:
        hint = (
            f"; {op} goes inside a field's condition, e.g. {{'score': {{{op!r}: ...}}}}"
            if op in FIELD_OPS
            else ""
        )
        raise InvalidFilterError(
            f"unknown top-level filter operator {op!r}: use $and, $or or $not{hint}"
        )
    if not isinstance(spec, (list, tuple)) or not spec:
        raise InvalidFilterError(
            f"{op} takes a non-empty list of filters, e.g. "
            f"{{{op!r}: [{{'kind': 'fact'}}, {{'score': {{'$gte': 50}}}}]}}, not {spec!r}"
        )
    for sub in spec:
        _check_doc(sub, f"each filter of {op}")


def _check_spec(path: str, spec: Any) -> None:
    if isinstance(spec, Mapping) and spec:
        dollars = [k for k in spec if type(k) is str and k.startswith("$")]
        if dollars and len(dollars) != len(spec):
            raise InvalidFilterError(
                f"filter field {path!r} mixes operators and plain keys in {spec!r}: "
                "use only operators, or no operator to match fields of a dict"
            )
        if not dollars:
            for key, sub in spec.items():
                _check_spec(f"{path}.{key}", sub)
            return
        for op, operand in spec.items():
            _check_op(path, op, operand)
    elif isinstance(spec, (list, tuple)):
        for sub in spec:
            _check_spec(path, sub)


def _check_op(path: str, op: str, operand: Any) -> None:
    if op not in FIELD_OPS:
        hint = " (at the top level of the filter, not inside a field)" if op in LOGICAL_OPS else ""
        raise InvalidFilterError(
            f"unknown filter operator {op!r} on field {path!r}{hint}; "
            f"use one of {' '.join(FIELD_OPS)}"
        )
    if op in _RANGE and type(operand) not in (int, float, str, bool):
        raise InvalidFilterError(
            f"{op} on field {path!r} compares with a number or a string, not {operand!r}"
        )
    if op in ("$in", "$nin") and not isinstance(operand, (list, tuple)):
        raise InvalidFilterError(
            f"{op} on field {path!r} takes a list of values, e.g. {{{op!r}: ['a', 'b']}}, "
            f"not {operand!r}"
        )
    if op == "$exists" and type(operand) is not bool:
        raise InvalidFilterError(f"$exists on field {path!r} takes True or False, not {operand!r}")
    if op == "$not":
        if isinstance(operand, Mapping) and not operand:
            raise InvalidFilterError(f"$not on field {path!r} takes a non-empty condition")
        _check_spec(path, operand)


def validate_filter(filter: Any) -> None:
    """Check a ``filter=``: ``None`` or a mapping of field names (dotted for nested fields)
    to a value or to operators, plus the logical ``$and $or $not`` (see the module).

    :raises InvalidFilterError: anything else, naming the operator or part that is wrong.
    """
    if filter is None:
        return
    prepare_filter(filter)


def _validate(filter: Any) -> None:
    _check_doc(filter, "filter")


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


# -- evaluation ---------------------------------------------------------------------------
Test = Callable[[Any], bool]


def _ordered(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` compare by order: two numbers (bools are 0/1) or two strs."""
    ta, tb = type(a), type(b)
    if ta in (int, float, bool):
        return tb in (int, float, bool)
    return ta is str and tb is str


def _op_test(op: str, operand: Any) -> Test:
    """A test of a field's value (``_ABSENT`` when the field is missing)."""
    absent = _ABSENT
    if op == "$eq":
        return lambda a: a is not absent and a == operand
    if op == "$ne":
        return lambda a: a is absent or a != operand
    if op in _RANGE:
        cmp: Callable[[Any, Any], bool] = {
            "$gt": lambda a, b: a > b,
            "$gte": lambda a, b: a >= b,
            "$lt": lambda a, b: a < b,
            "$lte": lambda a, b: a <= b,
        }[op]
        return lambda a: _ordered(a, operand) and cmp(a, operand)
    if op == "$in":
        choices = list(operand)
        return lambda a: a is not absent and any(a == c for c in choices)
    if op == "$nin":
        choices = list(operand)
        return lambda a: a is absent or not any(a == c for c in choices)
    if op == "$exists":
        return (lambda a: a is not absent) if operand else (lambda a: a is absent)
    if op == "$contains":

        def contains(a: Any) -> bool:
            if isinstance(a, (list, tuple)):
                return any(e == operand for e in a)
            return type(a) is str and type(operand) is str and operand in a

        return contains
    assert op == "$not"
    inner = _spec_test(operand)
    return lambda a: not inner(a)


def _spec_test(spec: Any) -> Test:
    """The test of a field's condition: operators, a dict (each key, recursively), a list
    (same length, item by item), or a value to equal."""
    absent = _ABSENT
    if _is_ops(spec):
        tests = [_op_test(op, operand) for op, operand in spec.items()]
        if len(tests) == 1:
            return tests[0]
        return lambda a: all(t(a) for t in tests)
    if isinstance(spec, Mapping):
        subs = [(k, _spec_test(v)) for k, v in spec.items()]

        def sub_dict(a: Any) -> bool:
            if not isinstance(a, dict):
                return False
            return all(t(a.get(k, absent)) for k, t in subs)

        return sub_dict
    if isinstance(spec, (list, tuple)):
        items = [_spec_test(v) for v in spec]

        def sub_list(a: Any) -> bool:
            if not isinstance(a, (list, tuple)) or len(a) != len(items):
                return False
            return all(t(x) for t, x in zip(items, a))

        return sub_list
    return lambda a: a is not absent and a == spec


def _path_test(path: str, spec: Any) -> Test:
    test = _spec_test(spec)
    absent = _ABSENT
    if "." not in path:

        def top(value: Any) -> bool:
            return test(value.get(path, absent) if isinstance(value, dict) else absent)

        return top
    parts = path.split(".")

    def nested(value: Any) -> bool:
        for part in parts:
            if not isinstance(value, dict) or part not in value:
                return test(absent)
            value = value[part]
        return test(value)

    return nested


def _all_test(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda v: first(v) and second(v)
    return lambda v: all(t(v) for t in tests)


def _any_test(tests: list[Test]) -> Test:
    return lambda v: any(t(v) for t in tests)


def _not_test(test: Test) -> Test:
    return lambda v: not test(v)


def _doc_test(filter: Mapping[str, Any]) -> Test:
    tests: list[Test] = []
    for path, spec in filter.items():
        if path == "$and":
            tests.append(_all_test([_doc_test(f) for f in spec]))
        elif path == "$or":
            tests.append(_any_test([_doc_test(f) for f in spec]))
        elif path == "$not":
            tests.append(_not_test(_doc_test(spec)))
        else:
            tests.append(_path_test(path, spec))
    return _all_test(tests)


def compile_filter(filter: Mapping[str, Any] | None) -> Test | None:
    """:func:`matches` with *filter* bound: ``compile_filter(f)(v) == matches(v, f)``.

    The filter is taken apart once (paths split, operators looked up), not once a row.
    ``None`` for no filter.  *filter* must be valid (:func:`validate_filter`).
    """
    if not filter:
        return None
    return _doc_test(filter)


def matches(value: Any, filter: Mapping[str, Any] | None) -> bool:
    """True if *value* satisfies *filter* (see the module for the operators).

    A missing field equals nothing (use ``$exists``) and differs from everything; an order
    (``$gt`` ...) holds between two numbers or two strings only; a dict condition matches
    a dict holding those keys (others may be there too), as LangGraph's InMemoryStore does.

    >>> matches({"age": 30, "lang": "fr"}, {"lang": "fr", "age": {"$gte": 18}})
    True
    >>> matches({"tags": ["a", "b"]}, {"$or": [{"tags": {"$contains": "b"}}, {"x": 1}]})
    True
    """
    test = compile_filter(filter)
    return test is None or test(value)


# -- what a backend may evaluate itself ------------------------------------------------------
class Cond(NamedTuple):
    """Field *path* (dotted) satisfies ``op`` (``$eq``, a range, ``$in``, ``$exists``
    (True) or ``$contains``) with *operand*."""

    path: str
    op: str
    operand: Any


class AllOf(NamedTuple):
    """Every one of *parts* holds."""

    parts: tuple[Node, ...]


class AnyOf(NamedTuple):
    """At least one of *parts* holds."""

    parts: tuple[Node, ...]


Node = Union[Cond, AllOf, AnyOf]  # noqa: UP007 - a runtime alias, Python 3.10


def _all(parts: list[Node | None]) -> Node | None:
    kept = [p for p in parts if p is not None]
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else AllOf(tuple(kept))


def _any(parts: list[Node | None]) -> Node | None:
    if not parts or any(p is None for p in parts):
        return None  # a branch that may hold anything: the whole "or" may
    kept = [p for p in parts if p is not None]
    return kept[0] if len(kept) == 1 else AnyOf(tuple(kept))


def _necessary_spec(path: str, spec: Any) -> Node | None:
    if _is_ops(spec):
        parts: list[Node | None] = []
        for op, operand in spec.items():
            if op in ("$eq", *_RANGE, "$contains") or (op == "$exists" and operand):
                parts.append(Cond(path, op, operand))
            elif op == "$in":
                parts.append(_any([Cond(path, "$eq", c) for c in operand]))
        return _all(parts)
    if isinstance(spec, Mapping):
        # A dict condition: the value is a dict and each key holds (keys with a dot would
        # read as paths, so they are left to the test).
        return _all(
            [_necessary_spec(f"{path}.{k}", v) for k, v in spec.items() if "." not in str(k)]
        )
    if isinstance(spec, (list, tuple)):
        return None
    return Cond(path, "$eq", spec)


def _necessary_doc(filter: Mapping[str, Any]) -> Node | None:
    parts: list[Node | None] = []
    for path, spec in filter.items():
        if path == "$and":
            parts.append(_all([_necessary_doc(f) for f in spec]))
        elif path == "$or":
            parts.append(_any([_necessary_doc(f) for f in spec]))
        elif path == "$not":
            continue
        else:
            parts.append(_necessary_spec(path, spec))
    return _all(parts)


def necessary(filter: Mapping[str, Any] | None) -> Node | None:
    """A condition every value matching *filter* satisfies, made of the positive parts
    of the filter (``None``: nothing useful).  A backend narrows a search with the parts
    it can evaluate (dropping others from an :class:`AllOf`, giving up an :class:`AnyOf`
    with a part it cannot), and :func:`compile_filter` decides each row it returns.

    >>> necessary({"k": "x", "$or": [{"a": 1}, {"b": 2}]})  # doctest: +NORMALIZE_WHITESPACE
    AllOf(parts=(Cond(path='k', op='$eq', operand='x'),
                 AnyOf(parts=(Cond(path='a', op='$eq', operand=1),
                              Cond(path='b', op='$eq', operand=2)))))
    """
    if not filter:
        return None
    return _necessary_doc(filter)


def filter_needles(filter: Mapping[str, Any] | None) -> tuple[bytes, ...]:
    """Byte strings that the JSON payload of any value matching *filter* must contain.

    An equality (plain or ``$eq``, at the top level or under ``$and``) with a ``str`` or
    ``None`` needs that JSON token in the payload: orjson writes a string the same way
    wherever it is (compact, only ``"``, ``\\`` and control characters escaped), so
    ``orjson.dumps(spec)`` is a substring of the payload of every match.  Numbers and
    booleans give none (``1 == 1.0 == True``), nor do containers or other operators.  A
    row whose payload lacks a needle is skipped without being parsed; the rest still go
    through :func:`matches`, which decides.
    """
    out: list[bytes] = []

    def walk(node: Node | None) -> None:
        if isinstance(node, AllOf):
            for part in node.parts:
                walk(part)
        elif isinstance(node, Cond) and node.op == "$eq":
            if type(node.operand) is str:
                try:
                    out.append(orjson.dumps(node.operand))
                except orjson.JSONEncodeError:  # a lone surrogate: no stored str equals it
                    return
            elif node.operand is None:
                out.append(b"null")

    walk(necessary(filter))
    return tuple(dict.fromkeys(out))


class Prepared(NamedTuple):
    """A filter taken apart once: its test, its needles, its necessary condition."""

    test: Test | None
    needles: tuple[bytes, ...]
    necessary: Node | None


_NO_FILTER = Prepared(None, (), None)
#: Filters prepared lately, by their JSON (a search repeats a few filter shapes with
#: many values; each entry is small).  Cleared whole when full.
_PREPARED: dict[bytes, Prepared] = {}
_PREPARED_MAX = 1024
_KEY_OPTIONS = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _prepare(filter: Mapping[str, Any]) -> Prepared:
    return Prepared(compile_filter(filter), filter_needles(filter), necessary(filter))


def prepare_filter(filter: Any) -> Prepared:
    """Validate *filter* (see :func:`validate_filter`) and take it apart: what a search
    needs of it.  A filter that JSON holds exactly (plain dicts, lists, str, numbers,
    bools, ``None``; not tuples, str subclasses, NaN, datetimes) is prepared once from a
    private copy and reused, so a caller mutating its filter later changes nothing.

    :raises InvalidFilterError: the filter is malformed.
    """
    if not filter:
        if filter is not None and not isinstance(filter, Mapping):
            _validate(filter)
        return _NO_FILTER
    try:
        key = orjson.dumps(filter, option=_KEY_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        key = None
    if key is not None:
        found = _PREPARED.get(key)
        if found is not None:
            return found
    _validate(filter)
    if key is None:
        return _prepare(filter)
    copy = orjson.loads(key)
    if copy != filter:  # e.g. a tuple, a NaN, a UUID: JSON does not hold it exactly
        return _prepare(filter)
    if len(_PREPARED) >= _PREPARED_MAX:
        _PREPARED.clear()
    prepared = _PREPARED[key] = _prepare(copy)
    return prepared


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

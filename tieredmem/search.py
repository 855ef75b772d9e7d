"""Search and listing over the cold tier: filters, full-text queries and namespaces.

Every function reads pages in index order and stops as soon as it has what was asked
(``offset + limit`` matches), so a search costs what it returns and what it skips, not
the size of the file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from .backends import SEP, Backend, Row
from .codec import JSON, Codec
from .errors import CorruptValueError
from .fieldindex import field_plan
from .filters import (
    check_depth,
    check_page,
    check_pattern,
    fts_query,
    prepare_filter,
)
from .item import Item
from .names import INTERNAL_ROOT, Namespace, damaged, match_labels
from .names import prefix as prefix_of

__all__ = ["list_namespaces", "row_item", "search_rows"]

#: Rows read at most per page of a filtered scan.
_MAX_PAGE = 512


def search_rows(
    backend: Backend,
    coder: Codec,
    prefix: str,
    *,
    query: str | None,
    filter: Mapping[str, Any] | None,
    limit: int,
    offset: int,
    now: float,
    internal: bool = False,
) -> list[Item]:
    """Live items under the joined *prefix* matching *filter* and the full-text *query*
    (best first, each with ``score``; without a query in (namespace, key) order), from
    ``offset`` on, at most ``limit``.  Reads stop at the ``offset + limit``-th match."""
    skip = None if internal or prefix else INTERNAL_ROOT
    wanted = offset + limit
    if limit == 0:
        return []
    prepared = prepare_filter(filter)
    needles, test, node = prepared.needles, prepared.test, prepared.necessary
    names: dict[str, Namespace] = {}
    found: list[Item] = []
    if query is not None:
        q = fts_query(query)
        if not q:
            return []
        ask = max(wanted * 2, 20)
        while True:
            hits = backend.text_search(prefix, q, limit=ask, skip_prefix=skip)
            found = []
            for row, score in hits:  # best first: decode only until enough matched
                item = _match_row(coder, row, now, score, test, needles, names)
                if item is not None:
                    found.append(item)
                    if len(found) >= wanted:
                        break
            if len(found) >= wanted or len(hits) < ask:
                break
            ask *= 4
        return found[offset:wanted]
    # Rows come in (ns, key) order: stop reading (and decoding) at the wanted-th match.
    # Pages start small and grow, so a search whose matches come early reads few rows
    # (without a filter every live row matches: little more than wanted).
    page = min(_MAX_PAGE, wanted + 8 if not filter else max(32, wanted * 4))
    # A filter on declared fields reads only the index's candidates (the filter below
    # still decides each one).
    # A backend that can narrow the rows by the filter itself (PostgreSQL: jsonb) returns
    # a superset of the matches; the test below still decides each row.
    scan: Callable[..., list[Row]] = backend.scan
    indexed = getattr(backend, "indexed_fields", None)
    narrowing = getattr(backend, "filter_scan", None)
    if filter and indexed is not None:
        # Declared fields are never undeclared: the fields this handle last saw still
        # are, and only a filter naming others needs the file's current list (a read).
        plan, complete = field_plan(node, indexed(fresh=False))
        if not complete:
            plan, _ = field_plan(node, indexed())
        if plan is not None:
            scan = partial(backend.field_scan, plan=plan)  # type: ignore[attr-defined]
            # The index's candidates mostly match: read about what is wanted (a page
            # reads its rows' values whole, decoded or not), then more if need be.
            page = min(_MAX_PAGE, wanted)
    elif filter and narrowing is not None:
        scan = partial(narrowing, filter=filter)
    after: tuple[str, str] | None = None
    unframe, load = coder.unframe, coder.load_payload
    first, rest = (needles[0], needles[1:]) if needles else (None, ())
    while True:
        rows = scan(prefix, after=after, limit=page, skip_prefix=skip)
        # _match_row, inlined: this loop runs for every row under the prefix.
        for row in rows:
            if row.expires_at is not None and row.expires_at <= now:
                continue
            try:
                codec, payload = unframe(row.frame)
            except CorruptValueError as exc:
                raise damaged(row.ns, row.key, exc) from None
            if (
                first is not None
                and codec == JSON
                # find() rather than 'in': ~0.1 us less on a 1 KB payload (CPython 3.11)
                and (payload.find(first) < 0 or (rest and not all(n in payload for n in rest)))
            ):
                continue
            try:
                value = load(codec, payload)
            except CorruptValueError as exc:
                raise damaged(row.ns, row.key, exc) from None
            if test is not None and not test(value):
                continue
            namespace = names.get(row.ns)
            if namespace is None:
                namespace = names[row.ns] = tuple(row.ns.split(SEP))
            found.append(
                Item(
                    namespace,
                    row.key,
                    value,
                    row.created_at,
                    row.updated_at,
                    row.expires_at,
                )
            )
            if len(found) >= wanted:
                return found[offset:wanted]
        if len(rows) < page:
            return found[offset:wanted]
        after = (rows[-1].ns, rows[-1].key)
        page = min(_MAX_PAGE, page * 4)


def _match_row(
    coder: Codec,
    row: Row,
    now: float,
    score: float | None,
    test: Callable[[Any], bool] | None,
    needles: tuple[bytes, ...],
    names: dict[str, Namespace],
) -> Item | None:
    """The live item of *row* if it passes *test* (a :func:`compile_filter`), else
    ``None``.

    A JSON payload lacking one of *needles* (see :func:`filter_needles`) cannot match,
    so it is not parsed.
    """
    if row.expires_at is not None and row.expires_at <= now:
        return None
    try:
        codec, payload = coder.unframe(row.frame)
        if needles and codec == JSON:
            for needle in needles:
                if needle not in payload:
                    return None
        value = coder.load_payload(codec, payload)
    except CorruptValueError as exc:
        raise damaged(row.ns, row.key, exc) from None
    if test is not None and not test(value):
        return None
    namespace = names.get(row.ns)
    if namespace is None:
        namespace = names[row.ns] = tuple(row.ns.split(SEP))
    return Item(namespace, row.key, value, row.created_at, row.updated_at, row.expires_at, score)


def row_item(coder: Codec, row: Row, now: float, score: float | None = None) -> Item | None:
    """The live item of a cold-tier row (``None`` once expired)."""
    if row.expires_at is not None and row.expires_at <= now:
        return None
    try:
        value = coder.decode(row.frame)
    except CorruptValueError as exc:
        raise damaged(row.ns, row.key, exc) from None
    return Item(
        tuple(row.ns.split(SEP)),
        row.key,
        value,
        row.created_at,
        row.updated_at,
        row.expires_at,
        score,
    )


def list_namespaces(
    backend: Backend,
    *,
    prefix: Sequence[str] | None = None,
    suffix: Sequence[str] | None = None,
    max_depth: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Namespace]:
    """Namespaces that hold items, sorted; ``"*"`` in *prefix*/*suffix* matches any label.

    *max_depth* truncates deeper namespaces to that many labels (deduplicated).
    Reading never creates a namespace.
    """
    check_pattern("prefix", prefix)
    check_pattern("suffix", suffix)
    check_depth(max_depth)
    check_page(limit, offset)
    pre = tuple(prefix or ())
    suf = tuple(suffix or ())
    literal: list[str] = []
    for label in pre:
        if label == "*":
            break
        literal.append(label)
    _, lit = prefix_of(tuple(literal))
    skip = None if lit else INTERNAL_ROOT
    out: list[Namespace] = []
    seen: set[Namespace] = set()
    after: str | None = None
    while len(out) < offset + limit:
        batch = backend.namespaces(lit, after=after, limit=500, skip_prefix=skip)
        for joined in batch:
            ns = tuple(joined.split(SEP))
            if not match_labels(ns, pre) or not match_labels(ns[::-1], suf[::-1]):
                continue
            if max_depth is not None:
                ns = ns[:max_depth]
            if ns not in seen:
                seen.add(ns)
                out.append(ns)
        if len(batch) < 500:
            break
        after = batch[-1]
    return out[offset : offset + limit]

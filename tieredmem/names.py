"""Namespace and key rules: what a namespace, a key and a ttl may be, and how a namespace
is joined into the one string the cold tier stores.

A namespace is a non-empty tuple of non-empty labels without control characters; the root
label ``tieredmem`` is reserved for tieredmem's own layers (histories, states, the
LangGraph adapters), which pass ``internal=True``.  Joined, the labels are separated by
:data:`tieredmem.backends.SEP`; a hot-tier key is the joined namespace, :data:`HOT_SEP` and
the key.
"""

from __future__ import annotations

import functools
import math
import re
from datetime import timedelta
from typing import Any

from .backends import SEP
from .errors import CorruptValueError, InvalidKeyError, InvalidNamespaceError, InvalidTTLError

__all__ = [
    "CONTROL",
    "HOT_SEP",
    "INTERNAL_ROOT",
    "MAX_TTL",
    "Namespace",
    "VALIDATED",
    "check_key",
    "check_name",
    "hot_key",
    "is_text",
    "match_labels",
    "namespace",
    "owner",
    "prefix",
    "split",
    "ttl_seconds",
]

#: Root label of the namespaces tieredmem uses for itself (histories, states).
INTERNAL_ROOT = "tieredmem"
#: Internal kinds whose namespaces shadow a user's: ``("tieredmem", kind, *ns)`` holds
#: data kept with *ns* (TieredStore's vectors), written in the same batch as *ns*'s items.
SHADOW_KINDS = frozenset({"vec"})
#: Between the joined namespace and the key in hot-tier keys.
HOT_SEP = "\x1e"
#: Characters no label (and no history or state name) may contain.
CONTROL = re.compile(r"[\x00-\x1f]")

Namespace = tuple[str, ...]


def is_text(s: str) -> bool:
    """True if *s* is valid Unicode text: it encodes to UTF-8 (no lone surrogate such as
    ``"\\ud800"``, which SQLite, Redis and JSON cannot store)."""
    if s.isascii():
        return True
    try:
        s.encode()
    except UnicodeEncodeError:
        return False
    return True


_SURROGATE_HINT = (
    "contains a lone surrogate (e.g. '\\ud800', from decoding bytes with "
    "errors='surrogateescape'), which cannot be stored; decode the bytes properly or "
    "use their hex"
)


def hot_key(ns: str, key: str) -> str:
    """The hot-tier key of ``(ns, key)`` (*ns* joined)."""
    return ns + HOT_SEP + key


def split(ns: str) -> Namespace:
    """The labels of a joined namespace."""
    return tuple(ns.split(SEP))


@functools.lru_cache(maxsize=8192)
def damaged(ns: str, key: str, exc: Exception) -> CorruptValueError:
    """The error of the damaged stored value at joined *ns* and *key* (*exc*: what the
    codec found), naming both and saying what to do."""
    return CorruptValueError(
        f"the stored value at namespace {split(ns)!r} key {key!r} is damaged ({exc}); "
        "delete or rewrite that item, or restore a backup ('tieredmem doctor' lists every "
        "damaged value)"
    )


def _join(namespace: Namespace, internal: bool) -> str:
    if not namespace:
        raise InvalidNamespaceError("a namespace needs at least one label, e.g. ('users',)")
    for label in namespace:
        if not isinstance(label, str) or not label:
            raise InvalidNamespaceError(
                f"namespace {namespace!r}: every label must be a non-empty string"
            )
        if CONTROL.search(label):
            raise InvalidNamespaceError(
                f"namespace {namespace!r}: labels may not contain control characters"
            )
        if not is_text(label):
            raise InvalidNamespaceError(f"namespace {namespace!r}: a label {_SURROGATE_HINT}")
    if not internal and namespace[0] == INTERNAL_ROOT:
        raise InvalidNamespaceError(
            f"namespace {namespace!r}: the root label {INTERNAL_ROOT!r} is reserved"
        )
    return SEP.join(namespace)


def _as_namespace(namespace: Any) -> Namespace:
    if type(namespace) is tuple:
        return namespace
    if isinstance(namespace, (list, tuple)):
        return tuple(namespace)
    if isinstance(namespace, str):
        raise InvalidNamespaceError(
            f"namespace {namespace!r} is a string; use a tuple of labels, e.g. ({namespace!r},)"
        )
    raise InvalidNamespaceError(f"namespace must be a tuple of strings, not {namespace!r}")


#: Namespaces validated lately (by ``internal``): a read or write of a namespace seen
#: before skips the label checks (most calls name a handful of namespaces).  Cleared
#: when full, so it stays small whatever the namespaces.
_SEEN: tuple[dict[Any, tuple[Namespace, str]], dict[Any, tuple[Namespace, str]]] = ({}, {})
_SEEN_MAX = 1024
#: Users' namespaces validated lately, ``labels -> (labels, joined)`` (read-only for
#: callers): the hottest callers look a namespace up here before calling
#: :func:`namespace`, which adds to it.
VALIDATED = _SEEN[False]


def namespace(namespace: Any, internal: bool = False) -> tuple[Namespace, str]:
    """``(labels, joined)`` of a namespace given as a tuple (or list) of labels.

    :raises InvalidNamespaceError: not a non-empty tuple of non-empty strings.
    """
    seen = _SEEN[internal]
    if type(namespace) is tuple:
        try:
            return seen[namespace]
        except (KeyError, TypeError):  # new, or a label that is not hashable
            pass
    ns = _as_namespace(namespace)
    try:
        found = ns, _join(ns, internal)
    except TypeError:  # unhashable label
        raise InvalidNamespaceError(
            f"namespace {namespace!r}: every label must be a non-empty string"
        ) from None
    if len(seen) >= _SEEN_MAX:
        seen.clear()
    if all(type(label) is str for label in ns):  # only plain strings: equal means same
        seen[ns] = found
    return found


def prefix(namespace_prefix: Any) -> tuple[Namespace, str]:
    """``(labels, joined)`` of a namespace prefix; the empty prefix joins to ``""``."""
    ns = _as_namespace(namespace_prefix)
    if not ns:
        return ns, ""
    return namespace(ns)


def check_key(key: Any) -> None:
    """Raise :class:`InvalidKeyError` unless *key* is a non-empty string of valid text."""
    if type(key) is not str or not key:
        raise InvalidKeyError(f"key must be a non-empty string, not {key!r}")
    if not is_text(key):
        raise InvalidKeyError(f"key {key!r} {_SURROGATE_HINT}")


def check_name(kind: str, name: Any) -> str:
    """*name* if it is a valid history or state name (a non-empty string of valid text
    without control characters).

    :raises InvalidKeyError: it is not.
    """
    if not isinstance(name, str) or not name or CONTROL.search(name):
        raise InvalidKeyError(f"{kind} name must be a non-empty string without control characters")
    if not is_text(name):
        raise InvalidKeyError(f"{kind} name {name!r} {_SURROGATE_HINT}")
    return name


#: Largest ttl accepted (about 31,700 years): far beyond any use, and small enough that
#: an expiry time stays exact to the millisecond in every backend.
MAX_TTL = 1e12


def ttl_seconds(ttl: float | timedelta | None) -> float | None:
    """A ttl in seconds (``None``: never expires).

    A ttl is a finite number of seconds in ``(0, MAX_TTL]`` or a positive timedelta.
    ``nan``, infinities, zero and negative numbers are refused rather than read as
    "never" or "already expired": pass ``None`` for an item that never expires and
    delete an item to remove it.

    :raises InvalidTTLError: anything else.
    """
    if ttl is None:
        return None
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        try:
            seconds = float(ttl)
        except OverflowError:  # an int beyond float range
            seconds = math.inf
    else:
        raise InvalidTTLError(
            f"ttl must be seconds (int or float) or a timedelta, not {ttl!r}; "
            "pass ttl=None for no expiry"
        )
    if not math.isfinite(seconds):
        raise InvalidTTLError(
            f"ttl must be a finite number of seconds, got {ttl!r}; pass ttl=None for no expiry"
        )
    if seconds <= 0:
        raise InvalidTTLError(
            f"ttl must be positive, got {ttl!r}; pass ttl=None for no expiry, or delete "
            "the item to remove it"
        )
    if seconds > MAX_TTL:
        raise InvalidTTLError(
            f"ttl {ttl!r} is over the maximum of {MAX_TTL:g} seconds; pass ttl=None for no expiry"
        )
    return seconds


def match_labels(ns: Namespace, pattern: Namespace) -> bool:
    """True if *ns* starts with *pattern*, where ``"*"`` matches any label."""
    if len(ns) < len(pattern):
        return False
    return all(p == "*" or p == label for p, label in zip(pattern, ns))


def owner(joined: str) -> str:
    """The namespace whose data a joined namespace is kept with: *ns* for a shadow
    namespace ``tieredmem/<kind>/*ns`` (a :data:`SHADOW_KINDS` kind), else itself.

    A backend that places data by namespace (Redis Cluster's hash slots) places a shadow
    namespace with its owner, so a batch writing both stays in one place.

    >>> owner("tieredmem\\x1fvec\\x1fusers\\x1falice")
    'users\\x1falice'
    >>> owner("users\\x1falice")
    'users\\x1falice'
    """
    labels = joined.split(SEP, 2)
    if len(labels) == 3 and labels[0] == INTERNAL_ROOT and labels[1] in SHADOW_KINDS:
        return labels[2]
    return joined

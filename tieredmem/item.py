"""What reads return: :class:`Item` (one stored item) and :class:`Stats` (a snapshot of
a store's counters and sizes)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import FrozenInstanceError
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, ClassVar

__all__ = ["Item", "Namespace", "Stats"]

Namespace = tuple[str, ...]


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


class Item:
    """One stored item, as :meth:`Store.get` and :meth:`Store.search` return it.

    ``value`` is the caller's own copy: mutating it changes nothing stored.
    ``created_at`` survives updates; ``updated_at`` is the last write.  ``score`` is set
    by full-text search (higher is better) and ``None`` otherwise.
    """

    __slots__ = ("created", "expires_at", "key", "namespace", "score", "updated", "value")

    def __init__(
        self,
        namespace: Namespace,
        key: str,
        value: Any,
        created: float,
        updated: float,
        expires_at: float | None = None,
        score: float | None = None,
    ) -> None:
        self.namespace = namespace
        self.key = key
        self.value = value
        #: ``created_at`` as seconds since the epoch (UTC).
        self.created = created
        #: ``updated_at`` as seconds since the epoch (UTC).
        self.updated = updated
        self.expires_at = expires_at
        self.score = score

    @property
    def created_at(self) -> datetime:
        """When the item was first written (UTC)."""
        return _utc(self.created)

    @property
    def updated_at(self) -> datetime:
        """When the item was last written (UTC)."""
        return _utc(self.updated)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Item):
            return NotImplemented
        return (self.namespace, self.key, self.value, self.created, self.updated) == (
            other.namespace,
            other.key,
            other.value,
            other.created,
            other.updated,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Item(namespace={self.namespace!r}, key={self.key!r}, value={self.value!r}, "
            f"created_at={self.created_at.isoformat()}, updated_at={self.updated_at.isoformat()})"
        )

    def dict(self) -> dict[str, Any]:
        """The item as a plain dict (times as ISO 8601 strings)."""
        return {
            "namespace": list(self.namespace),
            "key": self.key,
            "value": self.value,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


#: The fields every :class:`Stats` has, in order (``hit_rate`` is derived from two of them).
_FIELDS = (
    "hot_items",
    "hot_bytes",
    "hot_budget",
    "hits",
    "misses",
    "spills",
    "loads",
    "writes",
    "deletes",
    "expired",
    "pending_writes",
    "cold_bytes",
    "cold_free_bytes",
    "cold_rows",
    "wal_bytes",
    "url",
    "durability",
)
_FIELD_SET = frozenset(_FIELDS)


class Stats(Mapping[str, Any]):
    """A snapshot of a store's counters and sizes: what every ``stats()`` returns.

    :meth:`Store.stats <tieredmem.Store.stats>`, :meth:`MemorySaver.stats
    <tieredmem.MemorySaver.stats>` and :meth:`TieredSaver.stats
    <tieredmem.langgraph.TieredSaver.stats>` all return a ``Stats``.  It is both a read-only
    mapping and an object with attributes: ``s["hot_items"] == s.hot_items``, ``"hits" in
    s``, ``s.keys()``, ``dict(s)``.  The keys are the fields in :attr:`FIELDS`, then
    ``hit_rate``, then the *extra* fields a layer above the store adds (``threads``,
    ``open_histories``, ...), each also readable as an attribute (typed ``Any``).
    :meth:`as_dict` gives a plain ``dict`` for JSON.

    >>> s = Stats(1, 100, 1024, 3, 1, 0, 1, 2, 0, 0, 0, 4096, 0, 2, 0, "sqlite:///a.db", "sync")
    >>> s.hot_items, s["hits"], s.hit_rate
    (1, 3, 0.75)
    >>> t = s.with_extra(threads=2)
    >>> t.threads, t["threads"], "threads" in t, "threads" in s
    (2, 2, True, False)
    >>> list(t)[-3:]
    ['durability', 'hit_rate', 'threads']
    """

    __slots__ = (*_FIELDS, "_extra")

    #: Names of the fields every ``Stats`` has, in order.
    FIELDS: ClassVar[tuple[str, ...]] = _FIELDS

    hot_items: int
    hot_bytes: int
    hot_budget: int
    hits: int
    misses: int
    spills: int
    loads: int
    writes: int
    deletes: int
    expired: int
    pending_writes: int
    cold_bytes: int
    cold_free_bytes: int
    cold_rows: int
    wal_bytes: int
    url: str
    durability: str
    _extra: dict[str, Any]

    def __init__(
        self,
        hot_items: int,
        hot_bytes: int,
        hot_budget: int,
        hits: int,
        misses: int,
        spills: int,
        loads: int,
        writes: int,
        deletes: int,
        expired: int,
        pending_writes: int,
        cold_bytes: int,
        cold_free_bytes: int,
        cold_rows: int,
        wal_bytes: int,
        url: str,
        durability: str,
        **extra: Any,
    ) -> None:
        """Every field of :attr:`FIELDS` is required (so a misspelled one is an error, not
        an extra); any other keyword is an extra field (see :meth:`with_extra`)."""
        values = (
            hot_items,
            hot_bytes,
            hot_budget,
            hits,
            misses,
            spills,
            loads,
            writes,
            deletes,
            expired,
            pending_writes,
            cold_bytes,
            cold_free_bytes,
            cold_rows,
            wal_bytes,
            url,
            durability,
        )
        for name, value in zip(_FIELDS, values):
            object.__setattr__(self, name, value)
        for name in extra:
            _check_extra(name)
        object.__setattr__(self, "_extra", dict(extra))

    # -- derived and extra fields ----------------------------------------------------------
    @property
    def hit_rate(self) -> float:
        """Hits over reads (0.0 before the first read)."""
        reads = self.hits + self.misses
        return self.hits / reads if reads else 0.0

    @property
    def extra(self) -> Mapping[str, Any]:
        """The extra fields (those not in :attr:`FIELDS`), read-only."""
        return MappingProxyType(self._extra)

    def with_extra(self, **fields: Any) -> Stats:
        """A copy with *fields* added as extra fields (replacing extras of the same name).

        :raises ValueError: a name is a core field, ``hit_rate``, starts with ``_``, or
            is an attribute of ``Stats`` (``keys``, ``as_dict``, ...).
        """
        for name in fields:
            _check_extra(name)
        core = {name: getattr(self, name) for name in _FIELDS}
        return Stats(**core, **{**self._extra, **fields})

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: the extra fields.
        if not name.startswith("_"):
            try:
                return self._extra[name]
            except KeyError:
                pass
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- the mapping -----------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key in _FIELD_SET:
            return getattr(self, key)
        if key == "hit_rate":
            return self.hit_rate
        return self._extra[key]

    def __contains__(self, key: object) -> bool:
        return key in _FIELD_SET or key == "hit_rate" or key in self._extra

    def __iter__(self) -> Iterator[str]:
        yield from _FIELDS
        yield "hit_rate"
        yield from self._extra

    def __len__(self) -> int:
        return len(_FIELDS) + 1 + len(self._extra)

    def as_dict(self) -> dict[str, Any]:
        """All fields, ``hit_rate`` and the extra fields as a plain ``dict``, for JSON."""
        return dict(self)

    # -- immutability, copying, display ----------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}: Stats is read-only")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}: Stats is read-only")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (tuple(getattr(self, n) for n in _FIELDS), dict(self._extra)))

    def __repr__(self) -> str:
        fields = [f"{n}={getattr(self, n)!r}" for n in _FIELDS]
        fields += [f"{n}={v!r}" for n, v in self._extra.items()]
        return f"Stats({', '.join(fields)})"


def _check_extra(name: str) -> None:
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"extra stats field {name!r}: use an identifier not starting with '_'")
    if name in _FIELD_SET or name == "hit_rate" or hasattr(Stats, name):
        raise ValueError(f"extra stats field {name!r} would hide a Stats field or method")


def _restore(core: tuple[Any, ...], extra: dict[str, Any]) -> Stats:
    return Stats(*core, **extra)

"""The cold tier: one narrow protocol, and a registry of backends by URL scheme.

A backend stores rows ``(ns, key, frame, created_at, updated_at, expires_at)`` where ``ns``
is a namespace joined with :data:`SEP`.  It knows nothing of values, hot tiers or
histories: the layers above build those from atomic batch writes, point and range reads,
prefix scans and expiry.  Backends register by URL scheme; third-party ones through the
``tieredmem.backends`` entry point group (the value is a factory
``(url, **options) -> Backend``).

Optional methods a backend may add: ``unchanged()`` (see :meth:`Backend.foreign_change`),
``attach_codec(codec)`` (the store hands over its codec, for a backend that indexes
values), and ``filter_scan(ns_prefix, filter, *, after, limit, skip_prefix)``
(:meth:`Backend.scan` narrowed to a superset of the rows matching a search's filter).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import UnsupportedURLError

__all__ = [
    "SEP",
    "Backend",
    "Delete",
    "DeleteRange",
    "Put",
    "Row",
    "Touch",
    "VectorBackend",
    "VectorEntry",
    "available_schemes",
    "open_backend",
    "redact_url",
    "register",
]

#: Separator between namespace labels in a joined namespace (labels may not contain it).
SEP = "\x1f"


class Row(NamedTuple):
    """One stored item as the cold tier holds it."""

    ns: str
    key: str
    frame: bytes
    created_at: float
    updated_at: float
    expires_at: float | None
    ttl: float | None = None


class Put(NamedTuple):
    """Insert or replace an item.

    ``created_at`` of an existing item is preserved unless ``created`` is given (a
    buffered write that knows the item was deleted and written anew).
    """

    ns: str
    key: str
    frame: bytes
    now: float
    expires_at: float | None = None
    created: float | None = None
    #: ``frame`` is the bare payload, not framed nor compressed yet: the store does both
    #: when it commits the batch (only the store's own buffered puts are deferred).
    deferred: bool = False
    #: seconds; kept so a read can refresh the expiry (``expires_at = now + ttl``).
    ttl: float | None = None


class Touch(NamedTuple):
    """Refresh an item's expiry: ``expires_at = now + ttl`` (items without a ttl: no-op)."""

    ns: str
    key: str
    now: float


class Delete(NamedTuple):
    """Delete one item (no error if it is absent)."""

    ns: str
    key: str


class DeleteRange(NamedTuple):
    """Delete the items of namespace ``ns`` whose keys are in ``[start, stop)``."""

    ns: str
    start: str
    stop: str | None = None


Op = Put | Delete | DeleteRange | Touch


@runtime_checkable
class Backend(Protocol):
    """What the cold tier must offer; one conformance suite runs against every backend."""

    #: Where the data lives, as users see it (``Store.url``, ``repr``, ``stats()``,
    #: errors): any password in it replaced by ``***`` (use :func:`redact_url`).
    url: str

    def get(self, ns: str, key: str) -> Row | None:
        """Point read (expired rows included: the caller checks ``expires_at``)."""

    def get_many(self, keys: Sequence[tuple[str, str]]) -> list[Row | None]:
        """Point reads, in the order given, in one read snapshot."""

    def range(
        self,
        ns: str,
        start: str | None = None,
        stop: str | None = None,
        *,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Row]:
        """Rows of one namespace with ``start <= key < stop``, ordered by key."""

    def keys(self, ns: str, start: str = "", stop: str | None = None) -> list[str]:
        """Keys of one namespace with ``start <= key < stop``, ordered, values not read."""

    def scan(
        self,
        ns_prefix: str,
        *,
        after: tuple[str, str] | None = None,
        limit: int = 1000,
        skip_prefix: str | None = None,
    ) -> list[Row]:
        """Rows whose namespace is ``ns_prefix`` or below it (but not below
        ``skip_prefix``), ordered by (ns, key), starting after ``after``."""

    def namespaces(
        self,
        ns_prefix: str,
        *,
        after: str | None = None,
        limit: int = 1000,
        skip_prefix: str | None = None,
    ) -> list[str]:
        """Distinct joined namespaces equal to or below ``ns_prefix``, ordered."""

    def write(self, ops: Sequence[Op]) -> list[float]:
        """Apply *ops* atomically; return ``created_at`` of each :class:`Put`, in order."""

    def expire(self, now: float, *, limit: int = 10_000) -> list[tuple[str, str]]:
        """Delete rows expired at *now*; return their ``(ns, key)``."""

    def text_search(
        self, ns_prefix: str, query: str, *, limit: int, skip_prefix: str | None = None
    ) -> list[tuple[Row, float]]:
        """Full-text search; ``(row, score)`` best first (higher score is better)."""

    def foreign_change(self) -> bool:
        """True if another connection committed since the last call (hot tier is stale).

        A backend may also offer ``unchanged() -> bool``: a cheap, lock-free proof that no
        connection at all committed since the last ``foreign_change()`` (``False`` means
        only "ask"); the store then skips the full check (SQLite: the WAL index header).
        """

    def dictionaries(self) -> dict[int, bytes]:
        """Every stored zstd dictionary by id (see :mod:`tieredmem.codec`)."""

    def dictionary(self, dict_id: int) -> bytes | None:
        """One stored zstd dictionary, or ``None``."""

    def add_dictionary(self, data: bytes) -> int:
        """Store a zstd dictionary (immutable from then on); return its new id."""

    def maintain(self) -> dict[str, Any]:
        """Index, vacuum and checkpoint now; return what was done."""

    def stats(self) -> dict[str, Any]:
        """Sizes and counts of the cold tier."""

    def close(self) -> None:
        """Release connections; idempotent."""


class VectorEntry(NamedTuple):
    """The vectors of one item after a write: keep the rows whose digest is in *keep*,
    delete the others, add *add* (``(digest, float32 bytes)``)."""

    ns: str
    key: str
    keep: frozenset[bytes]
    add: Sequence[tuple[bytes, bytes]]


@runtime_checkable
class VectorBackend(Protocol):
    """A backend that keeps a vector index beside its rows (SQLite with sqlite-vec); the
    others (Redis, PostgreSQL) leave vector search to the layer above (exact, numpy)."""

    def vector_setup(self, dims: int, quantization: str = "none", oversample: int = 8) -> bool:
        """Use (or create) the store's index; ``False`` if this backend cannot here."""

    def vector_digests(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], frozenset[bytes]]:
        """Digests of the texts embedded for each ``(ns, key)``."""

    def vector_write(self, entries: Sequence[VectorEntry]) -> None:
        """Replace items' vectors (``VectorEntry`` rows), in the held transaction."""

    def vector_search(
        self, ns_prefix: str, query: bytes, limit: int
    ) -> tuple[list[tuple[str, str, float]], bool]:
        """Nearest items ``(ns, key, cosine similarity)`` and whether more may exist."""


BackendFactory = Callable[..., Backend]
_REGISTRY: dict[str, BackendFactory] = {}


#: Query parameters whose values are hidden by :func:`redact_url` (by substring).
_SECRET_PARAMS = ("pass", "secret", "token", "auth", "key")


def redact_url(url: str) -> str:
    """*url* as it may be shown: the password in its user info (and any query parameter
    named like a secret) replaced by ``***``.

    What :attr:`Store.url <tieredmem.Store.url>`, ``repr``, ``stats()`` and error
    messages show; the real URL is only ever handed to the connection.

    >>> redact_url("redis://:hunter2@db.example:6379/0")
    'redis://:***@db.example:6379/0'
    >>> redact_url("redis://alice:hunter2@db.example/0?prefix=tm:")
    'redis://alice:***@db.example/0?prefix=tm:'
    >>> redact_url("agent.db")
    'agent.db'
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced '[' in the host
        return _unparsable(url)
    netloc, query = parts.netloc, parts.query
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if colon else f"***@{host}"
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(s in k.lower() for k, _ in pairs for s in _SECRET_PARAMS):
            query = urlencode(
                [
                    (k, "***" if any(s in k.lower() for s in _SECRET_PARAMS) else v)
                    for k, v in pairs
                ],
                safe=":*",
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _secret_param(name: str) -> bool:
    low = name.lower()
    return any(s in low for s in _SECRET_PARAMS)


def _unparsable(url: str) -> str:
    """A URL that cannot be parsed, shown as its scheme only."""
    return url.split("://", 1)[0] + "://<unparsable URL hidden>"


def register(scheme: str, factory: BackendFactory) -> None:
    """Register *factory* for URLs ``scheme://...``."""
    _REGISTRY[scheme] = factory


def _load_entry_points() -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group="tieredmem.backends"):
        if ep.name not in _REGISTRY:
            _REGISTRY[ep.name] = ep.load()


def _sqlite_factory(url: str, **options: Any) -> Backend:
    from .sqlite import SQLiteBackend

    return SQLiteBackend(url, **options)


def _redis_factory(url: str, **options: Any) -> Backend:
    from .redis import RedisBackend

    return RedisBackend(url, **options)


def _redis_cluster_factory(url: str, **options: Any) -> Backend:
    from .redis_cluster import RedisClusterBackend

    return RedisClusterBackend(url, **options)


def _postgres_factory(url: str, **options: Any) -> Backend:
    from .postgres import PostgresBackend

    return PostgresBackend(url, **options)


register("sqlite", _sqlite_factory)
register("redis", _redis_factory)
register("redis+cluster", _redis_cluster_factory)
register("rediss+cluster", _redis_cluster_factory)
register("postgresql", _postgres_factory)
register("postgres", _postgres_factory)


def available_schemes() -> list[str]:
    """URL schemes that :func:`open_backend` accepts now."""
    _load_entry_points()
    return sorted(_REGISTRY)


def open_backend(url: str | os.PathLike[str], **options: Any) -> Backend:
    """Open the backend for *url*: ``":memory:"``, a path, ``sqlite:///path`` or ``scheme://``.

    *url* is a ``str`` or an ``os.PathLike`` (such as ``pathlib.Path``).

    :raises TypeError: *url* is neither (a ``sqlite3.Connection``, a number, bytes, ...).
    :raises UnsupportedURLError: no backend is registered for the scheme.
    """
    target: object = os.fspath(url) if isinstance(url, os.PathLike) else url
    if not isinstance(target, str):
        raise TypeError(
            "expected a file path or store URL as a str or os.PathLike (e.g. pathlib.Path, "
            f"'agent.db', ':memory:', 'redis://host:6379/0'), not {type(url).__name__}"
        )
    url = target
    if url == ":memory:" or "://" not in url:
        return _sqlite_factory(url, **options)
    scheme = url.split("://", 1)[0].lower()
    if scheme not in _REGISTRY:
        _load_entry_points()
    factory = _REGISTRY.get(scheme)
    if factory is None:
        raise UnsupportedURLError(
            f"no backend for URL scheme {scheme!r} in {redact_url(url)!r}; supported: "
            + ", ".join(f"{s}://" for s in available_schemes())
            + ", ':memory:' or a file path"
        )
    return factory(url, **options)

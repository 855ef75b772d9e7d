"""Typed errors raised by tieredmem.

Every error derives from :class:`TieredMemError`, so ``except tieredmem.TieredMemError``
catches all of them.  Where Python has a natural standard exception (``TypeError`` for a
value that cannot be encoded, ``ValueError`` for a malformed namespace) the error also
derives from it, so callers written against the standard types keep working.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "BusyTimeoutError",
    "CorruptStoreError",
    "InvalidKeyError",
    "InvalidNamespaceError",
    "NotAStoreError",
    "SchemaVersionError",
    "SerializationError",
    "SharingError",
    "StoreClosedError",
    "TieredMemError",
    "UnsupportedURLError",
    "ValueTooLargeError",
]


class TieredMemError(Exception):
    """Base class of every error tieredmem raises."""


class StoreClosedError(TieredMemError, RuntimeError):
    """The store (or the object built on it) was closed; open a new one to continue."""


class NotAStoreError(TieredMemError):
    """The file is not a tieredmem store (not SQLite, or SQLite written by something else)."""


class SchemaVersionError(TieredMemError):
    """The file was written by a newer tieredmem; upgrade tieredmem to open it."""


class CorruptStoreError(TieredMemError):
    """SQLite reports the file as damaged; restore a backup or run ``PRAGMA integrity_check``."""


class SerializationError(TieredMemError, TypeError):
    """A value cannot be encoded (or a stored frame cannot be decoded)."""


class InvalidNamespaceError(TieredMemError, ValueError):
    """A namespace is not a non-empty tuple of non-empty strings."""


class InvalidKeyError(TieredMemError, ValueError):
    """A key is not a non-empty string."""


class ValueTooLargeError(TieredMemError, ValueError):
    """An encoded value is larger than the store accepts in one row."""


class UnsupportedURLError(TieredMemError, ValueError):
    """The URL scheme names no installed backend."""


class BusyTimeoutError(TieredMemError, TimeoutError):
    """Another connection held the database lock longer than the busy timeout."""


class SharingError(TieredMemError, ValueError):
    """A second object was asked for a history or state that is open on the store (get
    the open one with ``History.shared`` / ``State.shared``, or through a
    ``MemorySaver``), or it was asked for with another encoding."""


class BackendUnavailableError(TieredMemError, ConnectionError):
    """The database server could not be reached or dropped the connection; the operation
    was not acknowledged: retry once the server is back (the store reconnects by itself)."""

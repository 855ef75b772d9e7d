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
    "CannotOpenError",
    "CheckpointTypeError",
    "CorruptStoreError",
    "CorruptValueError",
    "DiskFullError",
    "InvalidFilterError",
    "InvalidKeyError",
    "InvalidNamespaceError",
    "InvalidTTLError",
    "NotAStoreError",
    "ReadOnlyError",
    "SchemaVersionError",
    "SerializationError",
    "SharingError",
    "StoreClosedError",
    "TieredMemError",
    "UnsupportedURLError",
    "ValueTooLargeError",
    "VectorIndexError",
]


class TieredMemError(Exception):
    """Base class of every error tieredmem raises."""


class StoreClosedError(TieredMemError, RuntimeError):
    """The store (or the object built on it) was closed; open a new one to continue."""


class SerializationError(TieredMemError, TypeError):
    """A value cannot be encoded (or a stored frame cannot be decoded)."""


class NotAStoreError(TieredMemError):
    """The file is not a tieredmem store (not SQLite, or SQLite written by something else)."""


class SchemaVersionError(TieredMemError):
    """The file was written by a newer tieredmem; upgrade tieredmem to open it."""


class CorruptStoreError(TieredMemError):
    """The file is damaged (truncated, or SQLite reports corruption); the message says how
    to recover (``tieredmem doctor``, a backup, or SQLite's ``.recover``)."""


class CorruptValueError(CorruptStoreError, SerializationError):
    """One stored value is damaged (its checksum does not match, or it does not decode);
    the message names its namespace and key.  Delete or rewrite that item, or restore a
    backup; ``tieredmem doctor`` lists every damaged value."""


class CannotOpenError(TieredMemError, OSError):
    """The file (or the directory SQLite must create ``-wal``/``-shm`` in) cannot be
    opened: check the path and its permissions, or open it with ``readonly=True``."""


class ReadOnlyError(TieredMemError, PermissionError):
    """The store cannot be written: it was opened with ``readonly=True``, or its file,
    directory or mount is read-only.  Open it read-write where you may write, or only read."""


class DiskFullError(TieredMemError, OSError):
    """The disk (or the process's file size limit) is full; nothing of the failed call was
    written.  Free space (``tieredmem compact`` gives deleted pages back), then retry."""


class InvalidNamespaceError(TieredMemError, ValueError):
    """A namespace is not a non-empty tuple of non-empty strings."""


class InvalidKeyError(TieredMemError, ValueError):
    """A key is not a non-empty string."""


class InvalidTTLError(TieredMemError, ValueError):
    """A ttl is not a finite, positive number of seconds or a positive timedelta (pass
    ``ttl=None`` for an item that never expires)."""


class InvalidFilterError(TieredMemError, ValueError):
    """A search's or a listing's ``filter``, ``query``, ``limit``, ``offset``, prefix,
    suffix or ``max_depth`` is malformed."""


class ValueTooLargeError(TieredMemError, ValueError):
    """An encoded value is larger than the store accepts in one row."""


class UnsupportedURLError(TieredMemError, ValueError):
    """The URL scheme names no installed backend, the URL is malformed (such as a port
    that is not a number), or it names a server of a kind the backend does not run on
    (a Redis Cluster node)."""


class BackendUnavailableError(TieredMemError, ConnectionError):
    """The cold tier's server (Redis, PostgreSQL) cannot be reached, refused the
    credentials or dropped the connection; the operation was not acknowledged.  The
    message says what to check (passwords are never shown); retry once the server is
    back (the store reconnects by itself)."""


class CrossSlotError(TieredMemError, ValueError):
    """A ``transaction()`` on a Redis Cluster writes namespaces of several units (hash
    slots), which cannot commit atomically; nothing was written.  Keep a transaction within
    one unit, or write without a transaction (each unit is then atomic on its own)."""


class CheckpointTypeError(SerializationError):
    """A stored checkpoint names a type outside the serializer's allow-list, so it was not
    imported or called; allow it with ``TieredSaver(..., allowed_types=[MyType])``."""


class BusyTimeoutError(TieredMemError, TimeoutError):
    """Another connection held the database lock longer than the busy timeout."""


class SharingError(TieredMemError, ValueError):
    """A second object was asked for a history or state that is open on the store (get
    the open one with ``History.shared`` / ``State.shared``, or through a
    ``MemorySaver``), or it was asked for with another encoding."""


class VectorIndexError(TieredMemError, ValueError):
    """A vector index cannot be used as configured: its dims or quantization differ from
    the file's, an embedding has the wrong number of dimensions, or sqlite-vec (``pip
    install 'tieredmem[vector]'``) is missing for a file that has an index."""

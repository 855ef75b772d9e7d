"""tieredmem: bounded, persistent memory for AI agents.

A byte-bounded LRU hot tier in process memory in front of one SQLite file (WAL) that cold
data spills into.  ``import tieredmem`` never imports LangGraph, Redis or rich: the
adapters live in ``tieredmem.langgraph`` and install with extras.
"""

from __future__ import annotations

from .cached import cached
from .codec import Codec
from .errors import (
    BackendUnavailableError,
    BusyTimeoutError,
    CannotOpenError,
    CheckpointTypeError,
    CorruptStoreError,
    CorruptValueError,
    CrossSlotError,
    DiskFullError,
    InvalidFilterError,
    InvalidKeyError,
    InvalidNamespaceError,
    InvalidTTLError,
    NotAStoreError,
    ReadOnlyError,
    SchemaVersionError,
    SerializationError,
    SharingError,
    StoreClosedError,
    TieredMemError,
    UnsupportedURLError,
    ValueTooLargeError,
    VectorIndexError,
)
from .history import History
from .hot import parse_bytes
from .memory import MemorySaver
from .retention import Retention
from .state import State
from .store import Item, Stats, Store, open  # noqa: A004

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "BusyTimeoutError",
    "CannotOpenError",
    "CheckpointTypeError",
    "Codec",
    "CorruptStoreError",
    "CorruptValueError",
    "CrossSlotError",
    "DiskFullError",
    "InvalidFilterError",
    "InvalidKeyError",
    "InvalidNamespaceError",
    "InvalidTTLError",
    "History",
    "Item",
    "MemorySaver",
    "NotAStoreError",
    "ReadOnlyError",
    "SchemaVersionError",
    "Retention",
    "SerializationError",
    "SharingError",
    "State",
    "Stats",
    "Store",
    "StoreClosedError",
    "TieredMemError",
    "UnsupportedURLError",
    "ValueTooLargeError",
    "VectorIndexError",
    "__version__",
    "cached",
    "open",
    "parse_bytes",
]

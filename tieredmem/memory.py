"""MemorySaver: the agent-facing API — histories, working state, scratch, long-term memory.

>>> import tieredmem
>>> with tieredmem.MemorySaver(max_history=100, persistent=False) as memory:
...     h = memory.history("session-1")
...     h.append({"role": "user", "content": "hi"})
...     h.recent()
[{'role': 'user', 'content': 'hi'}]
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from cachetools import LRUCache

from .history import History, TailBudget, default_budget
from .hot import parse_bytes
from .item import Stats
from .names import check_name
from .retention import Retention
from .state import State
from .store import Clock, Store
from .store import open as open_store

__all__ = ["DEFAULT_PATH", "MemorySaver"]

log = logging.getLogger(__name__)

_UNSET: Any = object()

#: Settings read by :meth:`MemorySaver.from_config`: config name -> (argument, parser).
_CONFIG: dict[str, tuple[str, Callable[[Any], Any]]] = {}


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        if value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if value.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    return bool(value)


def _int_or_none(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    return int(value)


for _names, _arg, _parse in (
    (("PERSISTENT_STORAGE", "PERSISTENT"), "persistent", _bool),
    (("MAX_HISTORY",), "max_history", int),
    (
        ("CACHE_SIZE", "HOT_BYTES"),
        "hot_bytes",
        parse_bytes,
    ),
    (("PATH", "DB_PATH", "URL"), "path", str),
    (("DURABILITY",), "durability", str),
    (("RETENTION_MAX_ITEMS",), "retention_max_items", _int_or_none),
    (("RETENTION_TTL",), "retention_ttl", lambda v: None if v in (None, "") else float(v)),
    (("USE_MEMORY_SAVER",), "enabled", _bool),
):
    for _name in _names:
        _CONFIG[_name] = (_arg, _parse)


#: The file a persistent :class:`MemorySaver` (and a LangGraph ``TieredSaver``) opens
#: when given no path: ``tieredmem.db`` in the current directory.
DEFAULT_PATH = os.path.join(".", "tieredmem.db")


def _store_path(path: object) -> str:
    """*path* (``None``, a ``str`` or an ``os.PathLike`` such as ``pathlib.Path``) as the
    ``str`` a persistent saver opens (``None``: :data:`DEFAULT_PATH`)."""
    if path is None:
        return DEFAULT_PATH
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(
            "path must be a file path or store URL as a str or os.PathLike (e.g. "
            f"pathlib.Path), not {type(path).__name__}; to share an open store, pass "
            "store=..."
        )
    return path


class _HistoryLRU(LRUCache[str, History]):
    """Recently used History objects stay open; the others release what they hold."""

    def popitem(self) -> tuple[str, History]:
        name, history = super().popitem()
        history.release()
        return name, history


class MemorySaver:
    """Bounded, persistent memory for one agent (or many sessions of one).

    Not a LangGraph checkpointer: for LangGraph's ``checkpointer=`` use
    :class:`tieredmem.langgraph.MemorySaver` (same arguments, a ``TieredSaver``), or give
    this saver to a ``TieredSaver`` to share its file: ``TieredSaver(memory)``.

    :param int max_history: items of each history kept hot (``recent()``'s default).
    :param bool persistent: keep memory in a file across runs (``./tieredmem.db`` unless
        *path* is given; the file ``TieredSaver()`` opens too).  ``False`` spills to a
        private temporary file removed on close, so memory stays bounded either way.
    :param path: file path or store URL.
    :param hot_bytes: hot-tier budget shared by everything in this saver.
    :param Retention retention: default retention of every history.
    :param str durability: ``"sync"`` or ``"batch"`` (see :func:`tieredmem.open`).
    :param int chunk_items: items per history chunk (chunks are also bounded by
        *chunk_bytes*).
    :param int open_histories: recently used History objects kept ready.
    :param max_pending_bytes: with ``durability="batch"``, writes buffered before a commit
        is started (see :func:`tieredmem.open`); buffered chunks are held uncompressed, so
        this bounds memory too.
    :param history_bytes: byte budget shared by the items histories hold in memory (each
        one's open tail and last ``max_history`` items, so ``recent()`` reads nothing);
        over it, the histories used least recently drop theirs and read them back when
        used again.  Default: an eighth of *hot_bytes*, on top of it.
    :param store: use this store (and its file) instead of opening one.  Savers (and
        LangGraph checkpointers) on one store share its History and State objects: one
        per name in the process, built with the options of whichever asked first.
    """

    def __init__(
        self,
        max_history: int = 100,
        persistent: bool = True,
        path: str | os.PathLike[str] | None = None,
        hot_bytes: int | str = "64MiB",
        retention: Retention | None = None,
        durability: str = "sync",
        *,
        chunk_items: int = 50,
        chunk_bytes: int | str = "64KiB",
        maintenance_interval: float = 60.0,
        flush_interval: float = 1.0,
        max_pending_bytes: int | str = "1MiB",
        clock: Clock = time.time,
        open_histories: int = 128,
        history_bytes: int | str | None = None,
        store: Store | None = None,
        metrics: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        if max_history < 0:
            raise ValueError("max_history must be >= 0")
        self.max_history = max_history
        self.persistent = persistent
        self.retention = retention or Retention()
        self.chunk_items = chunk_items
        self.chunk_bytes = parse_bytes(chunk_bytes)
        self._tmpdir: str | None = None
        self._owns_store = store is None
        if store is not None:
            self.store = store
        else:
            if persistent:
                url = _store_path(path)
            else:
                import tempfile  # only for persistent=False

                self._tmpdir = tempfile.mkdtemp(prefix="tieredmem-")  # mode 0700
                url = os.path.join(self._tmpdir, "memory.db")
            try:
                self.store = open_store(
                    url,
                    hot_bytes=hot_bytes,
                    durability=durability,
                    maintenance_interval=maintenance_interval,
                    flush_interval=flush_interval,
                    max_pending_bytes=max_pending_bytes,
                    clock=clock,
                    metrics=metrics,
                )
            except BaseException:
                self._remove_tmpdir()
                raise
        self._lock = threading.Lock()
        # The live History objects this saver handed out are in the weak map (one object
        # per name, shared with every other user of the store: History.shared); the most
        # recently used also stay in a small LRU so re-opening one is free.
        self._histories: weakref.WeakValueDictionary[str, History] = weakref.WeakValueDictionary()
        self._recent_histories: LRUCache[str, History] = _HistoryLRU(maxsize=open_histories)
        self._history_retention: dict[str, Retention] = {}
        self.history_budget: TailBudget = (
            default_budget(self.store)
            if history_bytes is None
            else TailBudget(parse_bytes(history_bytes))
        )
        self._states: weakref.WeakValueDictionary[str, State] = weakref.WeakValueDictionary()
        self._tasks: dict[str, dict[str, Any]] = {}
        self._temp: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
        self._retention_deleted = 0
        self.store.raw.add_maintenance_hook(self._maintenance_hook)

    # -- configuration ----------------------------------------------------------------
    @classmethod
    def from_config(
        cls, config: Mapping[str, Any] | ModuleType | None = None, **overrides: Any
    ) -> MemorySaver:
        """Build a saver from a mapping or module, then ``TIEREDMEM_*`` environment variables.

        Names (upper case, optionally prefixed ``TIEREDMEM_``): ``PERSISTENT_STORAGE``,
        ``MAX_HISTORY``, ``CACHE_SIZE`` (bytes, e.g. ``"64MiB"``), ``PATH``, ``DURABILITY``,
        ``RETENTION_MAX_ITEMS``, ``RETENTION_TTL`` (seconds), ``USE_MEMORY_SAVER`` (when
        false, memory is kept in a temporary file that is removed on close).  Precedence:
        keyword *overrides* (arguments), then *config*, then the environment.
        """
        settings: dict[str, Any] = {}

        def take(source: Mapping[str, Any]) -> None:
            for raw, value in source.items():
                name = raw.upper()
                if name.startswith("TIEREDMEM_"):
                    name = name[len("TIEREDMEM_") :]
                if name in _CONFIG:
                    arg, parse = _CONFIG[name]
                    try:
                        settings[arg] = parse(value)
                    except (TypeError, ValueError) as exc:
                        raise ValueError(f"bad setting {raw}={value!r}: {exc}") from None

        # Lowest precedence first: environment, then the mapping/module, then arguments.
        take({k: v for k, v in os.environ.items() if k.startswith("TIEREDMEM_")})
        if isinstance(config, ModuleType):
            take({k: getattr(config, k) for k in dir(config) if k.isupper()})
        elif config is not None:
            take(config)
        settings.update(overrides)
        if not settings.pop("enabled", True):
            settings["persistent"] = False
        max_items = settings.pop("retention_max_items", None)
        ttl = settings.pop("retention_ttl", None)
        if (max_items is not None or ttl is not None) and "retention" not in settings:
            settings["retention"] = Retention(max_items=max_items, ttl=ttl)
        return cls(**settings)

    # -- parts ------------------------------------------------------------------------
    @property
    def longterm(self) -> Store:
        """A :class:`Store` in the same file for facts that outlive sessions."""
        return self.store

    def history(self, name: str, *, retention: Retention | None = None) -> History:
        """The history called *name* (created on first append; reopened from the file).

        Every user of this saver's store (other savers given the same ``store=``, a
        LangGraph checkpointer on it) gets the same object (:meth:`History.shared`), so
        each sees the others' appends; if another opened it first, its options
        (``max_history``, chunk sizes, history budget) are the ones in effect.
        """
        self._check_open()
        check_name("history", name)
        with self._lock:
            if retention is not None:
                self._history_retention[name] = retention
            h = self._histories.get(name)
            if h is None:
                h = self._open_history(name)
                self._histories[name] = h
            if retention is not None:
                h.retention = retention
            self._recent_histories[name] = h
            return h

    def _open_history(self, name: str) -> History:
        return History.shared(
            self.store,
            name,
            max_history=self.max_history,
            chunk_items=self.chunk_items,
            chunk_bytes=self.chunk_bytes,
            retention=self._history_retention.get(name),
            budget=self.history_budget,
        )

    def histories(self) -> list[str]:
        """Names of the histories stored in the file."""
        self._check_open()
        prefix = self.store.raw.internal_ns("history")
        return [
            ns[len(prefix) + 1 :] for ns in self.store.raw.namespaces_under(prefix) if ns != prefix
        ]

    def state(self, name: str) -> State:
        """The working state called *name* (its last commit, when reopened).

        Every user of this saver's store gets the same object (:meth:`State.shared`):
        uncommitted changes made through one are seen, and committed, by the others.
        """
        self._check_open()
        with self._lock:
            s = self._states.get(name)
            if s is None:
                s = State.shared(self.store, name)
                self._states[name] = s
            return s

    @contextmanager
    def task(self, name: str) -> Iterator[dict[str, Any]]:
        """Scratch space for one task: never written to disk, released when the block exits.

        >>> import tieredmem
        >>> with tieredmem.MemorySaver(persistent=False) as memory:
        ...     with memory.task("job-1") as scratch:
        ...         scratch["draft"] = [1, 2, 3]
        ...     memory.active_tasks()
        []
        """
        self._check_open()
        scratch: dict[str, Any] = {}
        with self._lock:
            if name in self._tasks:
                raise ValueError(f"task {name!r} is already running")
            self._tasks[name] = scratch
        try:
            yield scratch
        finally:
            with self._lock:
                self._tasks.pop(name, None)
            scratch.clear()  # drop references even if the caller keeps the dict

    def active_tasks(self) -> list[str]:
        """Names of the tasks whose ``with`` block is running."""
        with self._lock:
            return sorted(self._tasks)

    def temp(self, key: str, obj: Any = _UNSET) -> Any:
        """A weak cache entry: ``temp(key, obj)`` remembers *obj* while you hold it;
        ``temp(key)`` returns it, or ``None`` once it is gone.

        :raises TypeError: *obj* does not support weak references (e.g. a plain dict).
        """
        if obj is _UNSET:
            return self._temp.get(key)
        try:
            self._temp[key] = obj
        except TypeError:
            raise TypeError(
                f"temp() holds objects weakly and {type(obj).__name__} cannot be weakly "
                "referenced; wrap it in a small class, or use task() scratch instead"
            ) from None
        return obj

    # -- maintenance ------------------------------------------------------------------
    def _retention_for(self, name: str) -> Retention:
        return self._history_retention.get(name) or self.retention

    def _maintenance_hook(self) -> dict[str, Any]:
        deleted = 0
        for name in self.histories():
            policy = self._retention_for(name)
            if not policy.active:
                continue
            with self._lock:
                h = self._histories.get(name)
            if h is None:
                h = self._open_history(name)
            deleted += h.apply_retention(policy)
        self._retention_deleted += deleted
        if deleted:
            log.info("retention deleted %d history items", deleted)
        return {"retention_deleted": deleted}

    def maintain(self) -> dict[str, Any]:
        """Apply retention, expire, compact and vacuum now (a thread also does it)."""
        self._check_open()
        return self.store.maintain()

    def stats(self) -> Stats:
        """The store's :class:`~tieredmem.Stats` plus, as extra fields, this saver's open
        histories, states, tasks and temp entries, retention deletions, history budget
        (``history_bytes_held``, ``history_bytes_budget``, ``history_drops``) and
        ``chunk_reads``."""
        self._check_open()
        base = self.store.stats()
        with self._lock:
            histories = list(self._histories.values())
            extra = {
                "open_histories": len(histories),
                "open_states": len(self._states),
                "active_tasks": len(self._tasks),
                "temp_entries": len(self._temp),
                "retention_deleted": self._retention_deleted,
                "history_bytes_held": self.history_budget.used,
                "history_bytes_budget": self.history_budget.max_bytes,
                "history_drops": self.history_budget.drops,
            }
        extra["chunk_reads"] = sum(h.chunk_reads for h in histories)
        return base.with_extra(**extra)

    # -- lifecycle --------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.store.closed:
            self.store.raw.check_open()

    def _remove_tmpdir(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def close(self) -> None:
        """Flush and close; with ``persistent=False`` the temporary file is removed."""
        try:
            if self._owns_store:
                self.store.close()
        finally:
            with self._lock:
                self._tasks.clear()
                self._temp.clear()
                self._recent_histories.clear()
            self._remove_tmpdir()

    @property
    def path(self) -> str:
        """Where this saver keeps its memory."""
        return self.store.url

    def __enter__(self) -> MemorySaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<MemorySaver {self.store.url} max_history={self.max_history}>"

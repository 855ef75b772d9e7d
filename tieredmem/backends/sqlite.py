"""The SQLite backend: one file, WAL mode, through apsw.

One writer connection (guarded by a lock, so a process never competes with itself for
SQLite's write lock) and one reader connection per thread, so reads run beside a write.
Locks between processes wait (busy timeout) instead of failing.

Whether the hot tier above may be trusted is decided by :meth:`SQLiteBackend.foreign_change`,
and SQLite itself answers it, so no file of ours, PID or clock is involved.  A read first
compares the WAL index's header (96 bytes of ``-shm`` that every commit rewrites, read with
a memory map; see :mod:`tieredmem.backends._shm`) with the bytes it saw last: unchanged, no
connection committed.  Otherwise it asks the *watch*, one more connection each handle
keeps: ``PRAGMA data_version`` on it changes whenever any other connection committed, this
handle's writer included; only when it moved is the writer asked, whose ``data_version``
changes exactly when a connection *other than this handle's* committed.  That holds for
another handle in this process, another process (whatever its PID or PID namespace), a
process that restarted, and programs other than tieredmem.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import apsw

from ..errors import (
    BusyTimeoutError,
    CannotOpenError,
    CorruptStoreError,
    DiskFullError,
    NotAStoreError,
    ReadOnlyError,
    SchemaVersionError,
    StoreClosedError,
    TieredMemError,
    VectorIndexError,
)
from ..hot import parse_bytes
from . import SEP, Delete, Op, Put, Row, Touch, VectorEntry
from ._checkpoint import Checkpointer
from ._schema import (
    APPLICATION_ID,
    FORMAT_VERSION,
    FTS_BACKFILL,
    FTS_TRIGGERS,
    MIGRATIONS,
)
from ._shm import ShmHeader
from ._sqlite_fields import FieldIndex, FieldsOf, internal
from ._sqlite_file import (
    analysis_limit,
    auto_vacuum,
    busy_timeout,
    check_header,
    checkpoint_connection,
    create_private,
    damage_message,
    immediate,
    keep_stats,
    no_double_quoted_strings,
    remove_unused_wal,
    ro_uri,
    synchronous,
    wal,
    wal_bound,
)
from ._sqlite_vec import VectorIndex, file_spec, load_extension

__all__ = ["SQLiteBackend"]

log = logging.getLogger(__name__)

_MAX_IDLE = 8  # idle reader connections kept open
_TOP = "\U0010ffff"
#: Rows indexed in one index_pending() call from which the full-text index is merged.
_MERGE_AFTER = 10_000

_COLS = "ns, key, value, created_at, updated_at, expires_at, ttl"
_GET = f"SELECT {_COLS} FROM items WHERE ns = ? AND key = ?"
#: get()'s query: the caller knows ns and key, so only the other columns (~10% faster).
_GET_VALUE = (
    "SELECT value, created_at, updated_at, expires_at, ttl FROM items WHERE ns = ? AND key = ?"
)
_UPSERT_SET = (
    "INSERT INTO items (ns, key, value, created_at, updated_at, expires_at, ttl) "
    "VALUES (?1, ?2, ?3, coalesce(?6, ?4), ?4, ?5, ?7) "
    "ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, "
    "created_at = coalesce(?6, items.created_at), "
    "updated_at = excluded.updated_at, expires_at = excluded.expires_at, ttl = excluded.ttl"
)
#: The upsert that reads back the created_at it kept (RETURNING costs ~1-2 us a row, so
#: a put that names its created_at, such as a history's tail row, uses _UPSERT_SET).
_UPSERT = _UPSERT_SET + " RETURNING created_at"
_INSERT = (
    "INSERT INTO items (ns, key, value, created_at, updated_at, expires_at, ttl) "
    "VALUES (?1, ?2, ?3, coalesce(?6, ?4), ?4, ?5, ?7)"
)
#: Writes per window of the insert-first heuristic (see SQLiteBackend._put).
_WINDOW = 256
_DATA_VERSION = "PRAGMA data_version"
_ITEM_COUNT = "SELECT n FROM counts WHERE name = 'items'"
#: SQLite VM steps between two progress reports of integrity_check().
_PROGRESS_STEPS = 100_000
#: Seconds one maintain() spends at most on the full-text backlog (past one batch).
_MAINTAIN_INDEX_SECONDS = 1.0
#: Free pages one maintain() gives back to the file system (8 MiB of 4 KiB pages).
_VACUUM_PAGES = 2048
#: Seconds a coherence check waits for this handle's own writer before assuming the worst.
_WRITER_WAIT = 0.05
#: Serializes a forked child's reopening of connections (reset in every child).
_FORK_LOCK = threading.Lock()


class _Local(threading.local):
    """A thread's state: ``in_write`` while it runs a write block (reads then go through
    the writer).  A class default, so reading it is an attribute lookup, not a
    ``getattr`` that raises and catches ``AttributeError`` in threads that never wrote."""

    in_write = False


def _version(con: apsw.Connection) -> int:
    """``PRAGMA data_version`` (the cursor run to its end, so its read ends with it)."""
    ((version,),) = con.execute(_DATA_VERSION).fetchall()
    return int(cast(int, version))


def _reset_fork_lock() -> None:
    global _FORK_LOCK
    _FORK_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_fork_lock)
_DELETE = "DELETE FROM items WHERE ns = ? AND key = ?"
_TOUCH = "UPDATE items SET expires_at = ?3 + ttl WHERE ns = ?1 AND key = ?2 AND ttl IS NOT NULL"
#: A Row from a result tuple of the _COLS columns, without the Python-level __new__.
_row = functools.partial(tuple.__new__, Row)


def prefix_bounds(prefix: str) -> tuple[str, str]:
    """``[lo, hi)`` of joined namespaces equal to or below *prefix*.

    Labels contain no control characters, so ``prefix + " "`` sorts after every
    ``prefix + SEP + ...`` and before any longer label that merely starts with *prefix*.
    """
    if not prefix:
        return "", _TOP
    return prefix, prefix + " "


class SQLiteBackend:
    """Cold tier on one SQLite file (or ``:memory:``).

    :param str url: ``":memory:"``, a path, or ``sqlite:///path``.
    :param str synchronous: ``"NORMAL"`` (default) or ``"FULL"``.
    :param float busy_timeout: seconds a lock is waited for before :class:`BusyTimeoutError`.
    :param text_of: returns the text to full-text index for a stored frame (or ``None``).
    :param wal_bytes: checkpoint the WAL at about this size and truncate it back to it.
    :param bool readonly: open an existing store for reading only (see :func:`ro_uri`);
        every write raises :class:`ReadOnlyError`.
    :param check_frame: raises :class:`~tieredmem.CorruptValueError` for a damaged stored
        frame (the codec's checksum test), used by :meth:`integrity_check`.
    :param fields_of: returns the declared fields' values of a stored frame (see
        :mod:`tieredmem.fieldindex`); needed to keep field indexes.
    :param index: fields to index (added to those the file already declares).
    """

    def __init__(
        self,
        url: str,
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float = 60.0,
        text_of: Callable[[bytes], str | None] | None = None,
        fields_of: FieldsOf | None = None,
        index: Sequence[str] | None = None,
        wal_bytes: int | str = "4MiB",
        readonly: bool = False,
        check_frame: Callable[[bytes], object] | None = None,
    ) -> None:
        path = url[len("sqlite://") :] if url.startswith("sqlite://") else url
        if path.startswith("/:memory:") or path == "":
            path = ":memory:"
        if synchronous.upper() not in ("NORMAL", "FULL", "OFF", "EXTRA"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        self.memory = path == ":memory:"
        self.path = path if self.memory else os.path.abspath(path)
        self.url = ":memory:" if self.memory else f"sqlite:///{self.path}"
        if readonly and self.memory:
            raise ValueError("readonly=True needs a store file, not ':memory:'")
        self.readonly = readonly
        self._check_frame = check_frame
        self._synchronous = synchronous.upper()
        self._busy_ms = int(busy_timeout * 1000)
        self._wal_bytes = parse_bytes(wal_bytes)
        self._insert_first = True
        self._attempts = self._conflicts = self._upserts_left = 0
        self._text_of = text_of
        self._fields = FieldIndex(fields_of)
        self._wlock = threading.RLock()
        self._local = _Local()
        self._readers: list[apsw.Connection] = []
        self._idle: list[apsw.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._fts = False
        self._pid = os.getpid()
        self._watch: apsw.Connection | None = None
        self._watch_lock = threading.Lock()
        self._seen_watch = self._seen_dv = -1
        self._shm: ShmHeader | None = None
        self._seen_head = b""
        self._ro_uri = "" if self.memory else ro_uri(self.path)  # one mode for every connection
        # A readonly store that finds no -wal makes SQLite create -wal and -shm; close()
        # removes them again when no other connection uses the file.
        self._ro_tidy = readonly and not self.memory and not os.path.exists(self.path + "-wal")
        self._checkpointer: Checkpointer | None = None
        self._vectors: VectorIndex | None = None
        # Connections sqlite-vec was loaded into (only once an index is configured: the
        # module imports ctypes, which a store without vectors does without).
        self._vec_loaded: weakref.WeakSet[apsw.Connection] = weakref.WeakSet()
        self._vec_lock = threading.Lock()
        if not self.memory:
            check_header(self.path)
            if readonly:
                if not os.path.isfile(self.path):
                    raise CannotOpenError(
                        f"{self.path} does not exist; readonly=True opens an existing store only"
                    )
            else:
                try:
                    create_private(self.path)
                except OSError as exc:
                    raise self._os_error(exc) from exc
        self._writer = self._connect(writer=True)
        self._open_watch()
        if index:
            self.declare_index(index)

    # -- connections -----------------------------------------------------------------
    def _connect(self, *, writer: bool) -> apsw.Connection:
        flags = apsw.SQLITE_OPEN_READWRITE
        name = self.path
        if self.readonly:
            flags, name = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI, self._ro_uri
        elif writer:
            flags |= apsw.SQLITE_OPEN_CREATE
        try:
            con = apsw.Connection(name, flags=flags, statementcachesize=64)
        except apsw.Error as exc:
            raise self._error(exc) from exc
        busy_timeout(con, self._busy_ms)
        no_double_quoted_strings(con)
        try:
            if self.readonly:
                con.pragma("query_only", True)
                if writer:
                    self._vet_readonly(con)
            elif writer and not self.memory and con.readonly("main"):
                raise ReadOnlyError(
                    f"{self.path} is read-only (file permissions or a read-only mount); "
                    "open it with readonly=True to read it, or make it writable"
                )
            elif writer:
                # Until the file is vetted, closing must not checkpoint a foreign WAL
                # database into its main file (refused files are left untouched).
                con.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
                self._setup(con)
                con.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0)
                if not self.memory:
                    self._checkpoint_in_background(con)
            else:
                con.pragma("query_only", True)
        except apsw.Error as exc:
            con.close()
            raise self._error(exc) from exc
        except BaseException:
            con.close()
            raise
        return con

    def _vet_readonly(self, con: apsw.Connection) -> None:
        """Refuse, for ``readonly=True``, what cannot be read without writing."""
        version, tables = self._vet(con)
        if not tables:
            raise NotAStoreError(
                f"{self.path} holds no tieredmem store yet (it is empty); "
                "readonly=True opens an existing store only"
            )
        if version < FORMAT_VERSION:
            raise SchemaVersionError(
                f"{self.path} has format version {version}, older than this tieredmem "
                f"writes ({FORMAT_VERSION}); open it once read-write to upgrade it, "
                "then read it with readonly=True"
            )

    def _vet(self, con: apsw.Connection) -> tuple[int, bool]:
        """``(user_version, has_tables)``, read in one snapshot (in the caller's transaction,
        or in one of its own); refuse a foreign or newer file.

        Separate reads could straddle another process's creating commit and see its
        tables without its application_id.
        """
        try:
            with con:  # a savepoint: one snapshot (nested in the caller's, if any)
                user_version = int(con.pragma("user_version"))
                app_id = int(con.pragma("application_id"))
                tables = any(con.execute("SELECT 1 FROM sqlite_schema LIMIT 1"))
        except (apsw.NotADBError, apsw.CorruptError) as exc:
            # The header was vetted (a SQLite file): the rest of it is damaged.
            raise CorruptStoreError(damage_message(self.path, str(exc))) from exc
        if tables and app_id != APPLICATION_ID:
            raise NotAStoreError(
                f"{self.path} is a SQLite database but not a tieredmem store; choose another path"
            )
        if user_version > FORMAT_VERSION:
            raise SchemaVersionError(
                f"{self.path} has format version {user_version}, newer than this "
                f"tieredmem understands ({FORMAT_VERSION}); upgrade tieredmem to open it"
            )
        return user_version, tables

    def _setup(self, con: apsw.Connection) -> None:
        _, tables = self._vet(con)
        if not tables:
            auto_vacuum(con)
        if not self.memory:
            wal(con, self._busy_ms)
            self._wal_pages = wal_bound(con, self._wal_bytes)
        synchronous(con, self._synchronous)
        con.pragma("temp_store", "memory")
        analysis_limit(con)
        self._migrate(con)

    def _migrate(self, con: apsw.Connection) -> None:
        if int(con.pragma("user_version")) == FORMAT_VERSION:
            return
        con.execute("BEGIN IMMEDIATE")
        try:
            # Vet again under the write lock: another process may have created the store
            # (or something else) since the first look.
            version, _ = self._vet(con)
            if version == FORMAT_VERSION:  # created by another process meanwhile
                con.execute("COMMIT")
                return
            for number in range(version, FORMAT_VERSION):
                con.execute(MIGRATIONS[number])
                log.info("%s: applied migration %d", self.path, number + 1)
            if version == 0:
                con.pragma("application_id", APPLICATION_ID)
                con.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    ("format", "tieredmem"),
                )
            con.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                ("format_version", str(FORMAT_VERSION)),
            )
            con.pragma("user_version", FORMAT_VERSION)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        if not self.memory:
            # Put the header (application_id, user_version) into the main file now, so
            # the next open can vet the file without SQLite.
            con.pragma("wal_checkpoint", "TRUNCATE")

    def _checkpoint_in_background(self, con: apsw.Connection) -> None:
        """Replace the writer's automatic checkpoint (inside the commit that fills the
        WAL) by one in a thread (see :mod:`tieredmem.backends._checkpoint`)."""
        self._checkpointer = Checkpointer(
            checkpoint_connection(self.path, self._busy_ms), self._wal_pages
        )
        con.set_wal_hook(self._checkpointer.hook)

    def _after_commit(self, con: apsw.Connection) -> None:
        """With the write lock held: checkpoint here if the background one fell behind
        (not inside a transaction held open by :meth:`locked`: its commit comes later)."""
        checkpointer = self._checkpointer
        if checkpointer is not None and checkpointer.overdue and not con.in_transaction:
            checkpointer.catch_up(con)

    def _open_watch(self) -> None:
        """Open the watch connection and take the current versions as seen."""
        if self.memory:
            return
        self._watch = self._connect(writer=False)
        self._seen_watch = self._seen_dv = -1
        self._seen_head = b""
        self.foreign_change()  # the watch's first read: the -shm file exists from here
        # SQLite's own name for the file (symlinks resolved), as it names the -shm.
        self._shm = ShmHeader(self._writer.filename or self.path)

    def _check(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{self.url} is closed; open the store again to use it")
        if os.getpid() != self._pid:
            with _FORK_LOCK:
                if os.getpid() != self._pid:
                    self._after_fork()

    def _after_fork(self) -> None:
        """In a forked child: a connection must not cross fork(), so open new ones.

        The parent's connections are closed in the child first: SQLite keeps its POSIX
        lock bookkeeping per file and process, and while the inherited connections live,
        new ones would believe the locks are held and take none (another process could
        then remove the WAL under the child).  Closing them releases nothing of the
        parent's: POSIX locks are not inherited.
        """
        if self._checkpointer is not None:
            self._checkpointer.forget()
        inherited = [self._writer, self._watch, *self._readers]
        for con in inherited:
            if con is None:
                continue
            try:
                con.close(True)
            except apsw.Error:  # pragma: no cover - closing a copy; nothing to recover
                log.debug("closing an inherited connection failed", exc_info=True)
        self._wlock = threading.RLock()
        self._local = _Local()
        self._readers = []
        self._idle = []
        self._readers_lock = threading.Lock()
        self._watch_lock = threading.Lock()
        self._vec_lock = threading.Lock()
        self._vec_loaded = weakref.WeakSet()
        self._watch = None
        self._shm = None  # the descriptor stays open: the parent may hold locks through it
        parent = self._pid
        self._writer = self._connect(writer=True)
        self._pid = os.getpid()  # only once the child's own connections are open
        try:
            self._open_watch()
        except BaseException:
            self._pid = parent  # the next call tries again
            raise

    def _acquire(self) -> apsw.Connection:
        """A reader connection from the pool (opened when every pooled one is busy).

        A pool, not one connection per thread: LangGraph and thread pools start threads
        freely, and per-thread connections would pile up (memory, file handles) until close.
        The pool holds as many connections as reads ever ran at once, at most _MAX_IDLE idle.
        """
        with self._readers_lock:
            if self._idle:
                return self._idle.pop()
        con = self._connect(writer=False)
        with self._readers_lock:
            if self._closed:  # closed while this one opened
                con.close()
                raise self._closed_error()
            self._readers.append(con)
        return con

    def _release(self, con: apsw.Connection) -> None:
        with self._readers_lock:
            if not self._closed and len(self._idle) < _MAX_IDLE:
                self._idle.append(con)
                return
            if con in self._readers:
                self._readers.remove(con)
        con.close()

    def _shrink_idle(self) -> None:
        """Close idle connections past _MAX_IDLE (get() returns them without the lock)."""
        with self._readers_lock:
            while len(self._idle) > _MAX_IDLE:
                try:
                    con = self._idle.pop()
                except IndexError:  # taken by a reader meanwhile
                    return
                if con in self._readers:
                    self._readers.remove(con)
                con.close()

    @contextmanager
    def _reading(self) -> Iterator[apsw.Connection]:
        self._check()
        if self.memory or self._local.in_write:
            with self._wlock:
                yield self._writer
            return
        con = self._acquire()
        try:
            yield con
        finally:
            self._release(con)

    def _closed_error(self) -> StoreClosedError:
        return StoreClosedError(f"{self.url} is closed; open the store again to use it")

    def _os_error(self, exc: OSError) -> TieredMemError:
        """Creating the file failed: say why and what to do."""
        if exc.errno == errno.ENOSPC:
            return DiskFullError(f"cannot create {self.path}: the disk is full; free space")
        return CannotOpenError(
            f"cannot create {self.path} ({exc.strerror}): check that its directory exists "
            "and is writable, or open an existing store with readonly=True"
        )

    def _error(self, exc: apsw.Error) -> TieredMemError:
        if isinstance(exc, apsw.ReadOnlyError):
            why = (
                "it was opened with readonly=True"
                if self.readonly
                else "its file, directory or mount is read-only"
            )
            return ReadOnlyError(
                f"{self.path} cannot be written: {why}; open it read-write where it may be "
                "written, or only read it (readonly=True)"
            )
        if isinstance(exc, apsw.FullError):
            return DiskFullError(
                f"{self.path}: the disk is full (or the file size limit was reached); the "
                "write was rolled back, nothing of it was stored. Free space (deleting items "
                "then 'tieredmem compact' gives pages back), then retry"
            )
        if isinstance(exc, apsw.CantOpenError):
            return CannotOpenError(
                f"cannot open {self.path} ({exc}): check that it exists and that its "
                "directory is writable (SQLite creates -wal and -shm files beside it), "
                "or open it with readonly=True"
            )
        if isinstance(exc, apsw.BusyError):
            return BusyTimeoutError(
                f"{self.path}: the database stayed locked by another connection for longer "
                f"than the busy timeout ({self._busy_ms / 1000:g}s); retry, or raise busy_timeout"
            )
        if isinstance(exc, (apsw.CorruptError, apsw.NotADBError)):
            return CorruptStoreError(damage_message(self.path, str(exc)))
        if isinstance(exc, apsw.ConnectionClosedError):
            return StoreClosedError(f"{self.url} is closed; open the store again to use it")
        return TieredMemError(f"{self.path}: {exc}")

    # -- reads -------------------------------------------------------------------------
    def get(self, ns: str, key: str) -> Row | None:
        # The hottest cold-tier call: rows are built with the C-level tuple constructor
        # (_row: the SELECT yields exactly Row's fields, in order), not namedtuple's __new__.
        if self._closed or os.getpid() != self._pid:
            self._check()
        try:
            if self.memory or self._local.in_write:
                with self._wlock:
                    for row in self._writer.execute(_GET_VALUE, (ns, key)):
                        return _row((ns, key, *row))
                return None
            idle = self._idle
            try:
                con = idle.pop()  # atomic: no lock for the common case
            except IndexError:
                con = self._acquire()
            try:
                for row in con.execute(_GET_VALUE, (ns, key)):
                    return _row((ns, key, *row))
            finally:
                if self._closed:
                    self._release(con)
                else:
                    idle.append(con)
                    if len(idle) > _MAX_IDLE:
                        self._shrink_idle()
        except apsw.Error as exc:
            raise self._error(exc) from exc
        return None

    def get_many(self, keys: Sequence[tuple[str, str]]) -> list[Row | None]:
        out: list[Row | None] = []
        try:
            with self._reading() as con:
                in_tx = con is not self._writer and len(keys) > 1
                if in_tx:
                    con.execute("BEGIN")
                try:
                    for ns, key in keys:
                        found = None
                        for row in con.execute(_GET, (ns, key)):
                            found = Row(*row)
                        out.append(found)
                finally:
                    if in_tx:
                        con.execute("COMMIT")
        except apsw.Error as exc:
            raise self._error(exc) from exc
        return out

    def range(
        self,
        ns: str,
        start: str | None = None,
        stop: str | None = None,
        *,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Row]:
        sql = f"SELECT {_COLS} FROM items WHERE ns = ? AND key >= ? AND key < ? ORDER BY key"
        sql += " DESC" if reverse else ""
        sql += " LIMIT ?"
        args = (ns, start or "", _TOP if stop is None else stop, -1 if limit is None else limit)
        try:
            with self._reading() as con:
                return list(map(_row, con.execute(sql, args)))
        except apsw.Error as exc:
            raise self._error(exc) from exc

    def keys(self, ns: str, start: str = "", stop: str | None = None) -> list[str]:
        sql = "SELECT key FROM items WHERE ns = ? AND key >= ? AND key < ? ORDER BY key"
        try:
            with self._reading() as con:
                return [r[0] for r in con.execute(sql, (ns, start, _TOP if stop is None else stop))]
        except apsw.Error as exc:
            raise self._error(exc) from exc

    def scan(
        self,
        ns_prefix: str,
        *,
        after: tuple[str, str] | None = None,
        limit: int = 1000,
        skip_prefix: str | None = None,
    ) -> list[Row]:
        lo, hi = prefix_bounds(ns_prefix)
        where = "ns >= ? AND ns < ?"
        args: list[Any] = [lo, hi]
        if after is not None:
            where += " AND (ns, key) > (?, ?)"
            args += list(after)
        if skip_prefix:
            where += " AND NOT (ns >= ? AND ns < ?)"
            args += list(prefix_bounds(skip_prefix))
        sql = f"SELECT {_COLS} FROM items WHERE {where} ORDER BY ns, key LIMIT {int(limit)}"
        try:
            with self._reading() as con:
                return list(map(_row, con.execute(sql, args)))
        except apsw.Error as exc:
            raise self._error(exc) from exc

    def namespaces(
        self,
        ns_prefix: str,
        *,
        after: str | None = None,
        limit: int = 1000,
        skip_prefix: str | None = None,
    ) -> list[str]:
        # A skip-scan: one index seek per distinct namespace, not one step per row.
        lo, hi = prefix_bounds(ns_prefix)
        s_lo, s_hi = prefix_bounds(skip_prefix) if skip_prefix else ("", "")
        out: list[str] = []
        cursor, strict = (after, True) if after is not None else (lo, False)
        try:
            with self._reading() as con:
                while len(out) < limit:
                    op = ">" if strict else ">="
                    found = None
                    for (ns,) in con.execute(
                        f"SELECT ns FROM items WHERE ns {op} ? AND ns < ? ORDER BY ns LIMIT 1",
                        (cursor, hi),
                    ):
                        found = ns
                    if found is None:
                        break
                    if skip_prefix and s_lo <= found < s_hi:
                        cursor, strict = s_hi, False
                        continue
                    out.append(found)
                    cursor, strict = found, True
        except apsw.Error as exc:
            raise self._error(exc) from exc
        return out

    def text_search(
        self, ns_prefix: str, query: str, *, limit: int, skip_prefix: str | None = None
    ) -> list[tuple[Row, float]]:
        if not self.readonly:
            self.enable_fts()
            self.index_pending()
        elif not self.fts_enabled():
            raise ReadOnlyError(
                f"full-text search on {self.path} needs its index, which the first text "
                "search of a read-write handle builds; search it read-write once (with "
                "readonly=True, text search reads the index as it is)"
            )
        lo, hi = prefix_bounds(ns_prefix)
        sql = (
            "SELECT i.ns, i.key, i.value, i.created_at, i.updated_at, i.expires_at, i.ttl, "
            "bm25(items_fts, 0.0, 1.0) AS rank FROM items_fts "
            "JOIN fts_docs d ON d.id = items_fts.rowid "
            "JOIN items i ON i.ns = d.ns AND i.key = d.key "
            "WHERE items_fts MATCH ? AND d.ns >= ? AND d.ns < ? "
            "ORDER BY rank LIMIT ?"
        )
        match = f"text : ({query})"
        if any(ch.isalnum() for ch in ns_prefix):
            # Narrow inside the index: the namespace's labels are the first words of 'ns'
            # (the exact prefix test on d.ns below still decides).
            phrase = ns_prefix.replace(SEP, " ").replace('"', '""')
            match += f' AND ns : ^"{phrase}"'
        try:
            with self._reading() as con:
                rows = list(con.execute(sql, (match, lo, hi, limit)))
        except apsw.SQLError as exc:
            raise ValueError(f"bad full-text query {query!r}: {exc}") from None
        except apsw.Error as exc:
            raise self._error(exc) from exc
        # bm25() is lower-is-better and negative; report higher-is-better scores.
        s_lo, s_hi = prefix_bounds(skip_prefix) if skip_prefix else ("", "")
        out = []
        for r in rows:
            row = Row(*r[:7])
            if not (s_lo <= row.ns < s_hi):
                out.append((row, -float(r[7])))
        return out

    # -- writes ------------------------------------------------------------------------
    def _refuse_write(self) -> None:
        if self.readonly:
            raise ReadOnlyError(
                f"{self.path} was opened with readonly=True; open it without readonly to write"
            )

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the write lock for the block (``BEGIN IMMEDIATE``), committing when it
        ends, rolling back if it raises: no other connection commits meanwhile, and the
        block's :meth:`write` calls join the one transaction (``store.transaction()``).

        The lock is waited for (busy timeout).  ``:memory:`` has one connection, whose
        users the store's own lock already serializes: nothing is taken here.
        """
        self._check()
        self._refuse_write()
        if self.memory:
            yield
            return
        with self._wlock:
            con = self._writer
            try:
                con.execute("BEGIN IMMEDIATE")
            except apsw.Error as exc:
                raise self._error(exc) from exc
            # This thread's reads go through the writer meanwhile: they see what the
            # block's own statements wrote (a full-text index it brought up to date).
            self._local.in_write = True
            try:
                yield
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            finally:
                self._local.in_write = False
            try:
                con.execute("COMMIT")
            except apsw.Error as exc:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise self._error(exc) from exc

    @contextmanager
    def _writing(self) -> Iterator[apsw.Connection]:
        self._check()
        self._refuse_write()
        with self._wlock:
            outer = self._local.in_write  # inside locked()
            self._local.in_write = True
            try:
                yield self._writer
                self._after_commit(self._writer)
            finally:
                self._local.in_write = outer

    def write(self, ops: Sequence[Op]) -> list[float]:
        self._check()
        self._refuse_write()
        created: list[float] = []
        local = self._local
        with self._wlock:
            con = self._writer
            outer = local.in_write  # inside locked()
            local.in_write = True
            try:
                fields = self._fields.kept(con)
                if len(ops) == 1 and type(ops[0]) is Put and not fields:
                    # One autocommit statement: SQLite retries the lock itself.
                    put = ops[0]
                    args = (
                        put.ns,
                        put.key,
                        put.frame,
                        put.now,
                        put.expires_at,
                        put.created,
                        put.ttl,
                    )
                    created.append(self._put(con, args))
                    self._after_commit(con)
                    return created
                with immediate(con):
                    for op in ops:
                        if isinstance(op, Put):
                            args = (
                                op.ns,
                                op.key,
                                op.frame,
                                op.now,
                                op.expires_at,
                                op.created,
                                op.ttl,
                            )
                            created.append(self._put(con, args))
                            if fields and not internal(op.ns):
                                self._fields.put(con, op.ns, op.key, op.frame)
                        elif isinstance(op, Delete):
                            con.execute(_DELETE, op)
                        elif isinstance(op, Touch):
                            con.execute(_TOUCH, op)
                        else:
                            con.execute(
                                "DELETE FROM items WHERE ns = ? AND key >= ? AND key < ?",
                                (op.ns, op.start, _TOP if op.stop is None else op.stop),
                            )
                self._after_commit(con)
            except apsw.Error as exc:
                raise self._error(exc) from exc
            finally:
                local.in_write = outer
        return created

    # -- declared field indexes (see tieredmem.fieldindex, ._sqlite_fields) ------------
    def indexed_fields(self, *, fresh: bool = True) -> tuple[str, ...]:
        """Fields whose index is complete (declared, and the items stored before the
        declaration indexed), which searches may use (``tieredmem.open(..., index=...)``).

        ``fresh=False``: those this handle last read, without reading the file (fields
        declared since by another handle may be missing; none listed is ever wrong, as a
        declared field is never undeclared)."""
        if not fresh:
            return self._fields.ready
        try:
            with self._reading() as con:
                self._fields.declared(con)
                return self._fields.ready
        except apsw.Error as exc:
            raise self._error(exc) from exc

    def declare_index(self, fields: Sequence[str]) -> None:
        """Index *fields* from now on (with those declared before), and the items already
        stored: once per field and file, in batches of their own transactions (a write
        made meanwhile by any connection indexes itself)."""
        index = self._fields
        if index.fields_of is None:
            raise TieredMemError("declaring a field index needs fields_of (tieredmem.open)")
        wanted = [f for f in dict.fromkeys(fields) if isinstance(f, str) and f]
        if len(wanted) != len(list(fields)):
            raise ValueError(f"index must list distinct non-empty field names, not {fields!r}")
        try:
            # 1. Declared: from this commit on, every write keeps the fields.
            with self._writing() as con, immediate(con):
                index.declare(con, wanted)
            pending = [f for f in wanted if f not in index.ready]
            if not pending:
                return
            # 2. The items stored before (again, if an earlier declaration was cut short).
            after: tuple[str, str] | None = ("", "")
            while after is not None:
                with self._writing() as con, immediate(con):
                    after = index.backfill(con, pending, after)
            # 3. Complete: searches may use them.
            with self._writing() as con, immediate(con):
                index.mark_ready(con, pending)
            log.info("%s: indexed fields %s", self.path, ", ".join(pending))
        except apsw.Error as exc:
            raise self._error(exc) from exc

    def field_scan(
        self,
        ns_prefix: str,
        plan: Any,
        *,
        after: tuple[str, str] | None = None,
        limit: int = 1000,
        skip_prefix: str | None = None,
    ) -> list[Row]:
        """:meth:`scan` narrowed to the items whose indexed fields satisfy *plan* (see
        :func:`tieredmem.fieldindex.field_plan`), in (ns, key) order."""
        skip = prefix_bounds(skip_prefix) if skip_prefix else None
        sql, args = FieldIndex.scan_sql(prefix_bounds(ns_prefix), plan, after, limit, skip)
        try:
            with self._reading() as con:
                return list(map(_row, con.execute(sql, args)))
        except apsw.Error as exc:
            raise self._error(exc) from exc

    # -- the vector index (see ._sqlite_vec) ------------------------------------------
    def vector_setup(self, dims: int, quantization: str = "none", oversample: int = 8) -> bool:
        """Keep a vector index of *dims* dimensions in this file (created if the file has
        none); ``False`` if sqlite-vec is not installed and the file has no index (the
        caller then searches its own way).

        :raises VectorIndexError: the file's index has other dims or quantization, or it
            has an index and sqlite-vec is not installed.
        """
        index = VectorIndex(dims, quantization, oversample)
        try:
            if not self._vec_ready(self._writer):
                with self._reading() as con:
                    spec = file_spec(con)
                if spec is None:
                    return False
                raise VectorIndexError(
                    f"{self.path} has a vector index (sqlite-vec), which this Python "
                    "cannot read: pip install 'tieredmem[vector]' (it installs sqlite-vec)"
                )
            if self.readonly:
                with self._reading() as con:
                    spec = file_spec(con)
                if spec is None:
                    return False
                index.check(spec)
            else:
                with self._writing() as con, immediate(con):
                    if index.create(con):
                        log.info("%s: vector index created (%d dims)", self.path, dims)
        except apsw.Error as exc:
            raise self._error(exc) from exc
        self._vectors = index
        return True

    def _vec_ready(self, con: apsw.Connection) -> bool:
        """Load sqlite-vec into *con* once; ``False`` if it is not installed."""
        if con in self._vec_loaded:
            return True
        with self._vec_lock:
            if con not in self._vec_loaded and load_extension(con):
                self._vec_loaded.add(con)
        return con in self._vec_loaded

    def _vector_index(self) -> VectorIndex:
        if self._vectors is None:
            raise VectorIndexError("no vector index: call vector_setup(dims) first")
        return self._vectors

    def vector_digests(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], frozenset[bytes]]:
        """The digests of the texts embedded for each of *keys* (``(ns, key)``)."""
        index = self._vector_index()
        try:
            with self._reading() as con:
                self._vec_ready(con)
                return index.digests(con, keys)
        except apsw.Error as exc:
            raise self._error(exc) from exc

    def vector_write(self, entries: Sequence[VectorEntry]) -> None:
        """Replace the items' vectors (inside ``locked()``: in its transaction, so with
        the items written there)."""
        index = self._vector_index()
        try:
            with self._writing() as con, immediate(con):
                self._vec_ready(con)
                index.write(con, entries)
        except apsw.Error as exc:
            raise self._error(exc) from exc

    def vector_search(
        self, ns_prefix: str, query: bytes, limit: int
    ) -> tuple[list[tuple[str, str, float]], bool]:
        """The *limit* items under *ns_prefix* nearest to *query* (float32 bytes), best
        first, ``(ns, key, cosine similarity)``, and whether more may exist."""
        index = self._vector_index()
        try:
            # Rows of deleted items not purged yet are skipped by the search itself;
            # writes and maintain() purge them.
            with self._reading() as con:
                self._vec_ready(con)
                return index.search(con, prefix_bounds(ns_prefix), query, limit)
        except apsw.Error as exc:
            raise self._error(exc) from exc

    def dictionaries(self) -> dict[int, bytes]:
        try:
            with self._reading() as con:
                return {i: bytes(d) for i, d in con.execute("SELECT id, data FROM zstd_dicts")}
        except apsw.Error as exc:
            raise self._error(exc) from exc

    def dictionary(self, dict_id: int) -> bytes | None:
        try:
            with self._reading() as con:
                for (data,) in con.execute("SELECT data FROM zstd_dicts WHERE id = ?", (dict_id,)):
                    return bytes(data)
        except apsw.Error as exc:
            raise self._error(exc) from exc
        return None

    def add_dictionary(self, data: bytes) -> int:
        try:
            with self._writing() as con:
                for (dict_id,) in con.execute(
                    "INSERT INTO zstd_dicts (data, created_at) VALUES (?, ?) RETURNING id",
                    (data, time.time()),
                ):
                    return int(dict_id)
        except apsw.Error as exc:
            raise self._error(exc) from exc
        raise TieredMemError(f"{self.path}: storing a dictionary returned no id")

    def _put(self, con: apsw.Connection, args: tuple[Any, ...]) -> float:
        """Write one row; return its ``created_at``.

        A plain INSERT of a new key costs about 60 % of the UPSERT (measured: p50 10.5 vs
        18 us; SQLite checks an UPSERT's conflict with a separate seek), while an UPSERT
        that updates is cheapest of all (7.6 us).  So while most writes are of new keys,
        try the INSERT first and fall back to the UPSERT on a conflict; once conflicts are
        common (a quarter of a window), go straight to the UPSERT for a while.
        """
        if self._insert_first:
            self._attempts += 1
            try:
                con.execute(_INSERT, args)
            except apsw.ConstraintError:
                self._conflicts += 1
            else:
                self._adapt()
                return float(args[5] if args[5] is not None else args[3])
            self._adapt()
        else:
            self._upserts_left -= 1
            if self._upserts_left <= 0:
                self._insert_first, self._attempts, self._conflicts = True, 0, 0
        if args[5] is not None:  # created_at given: the upsert sets it
            con.execute(_UPSERT_SET, args)
            return float(args[5])
        for (c,) in con.execute(_UPSERT, args):
            return float(c)
        raise TieredMemError(f"{self.path}: a write returned no row")  # pragma: no cover

    def _adapt(self) -> None:
        if self._attempts >= _WINDOW:
            if self._conflicts * 4 > self._attempts:
                self._insert_first, self._upserts_left = False, 16 * _WINDOW
            self._attempts = self._conflicts = 0

    def expire(self, now: float, *, limit: int = 10_000) -> list[tuple[str, str]]:
        try:
            with self._writing() as con:
                keys = [
                    (ns, key)
                    for ns, key in con.execute(
                        "DELETE FROM items WHERE (ns, key) IN (SELECT ns, key FROM items "
                        "WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?) "
                        "RETURNING ns, key",
                        (now, limit),
                    )
                ]
                return keys
        except apsw.Error as exc:
            raise self._error(exc) from exc

    def fts_enabled(self) -> bool:
        """True once full-text search was used on this file (by any process)."""
        if not self._fts:
            with self._reading() as con:
                self._fts = any(
                    con.execute("SELECT 1 FROM sqlite_schema WHERE name = 'items_fts_insert'")
                )
        return self._fts

    def enable_fts(self) -> None:
        """Start keeping the full-text index: triggers, plus every existing row queued."""
        if self.fts_enabled():
            return
        try:
            with self._writing() as con, immediate(con):
                for sql in FTS_TRIGGERS:
                    con.execute(sql)
                con.execute(FTS_BACKFILL)
        except apsw.Error as exc:
            raise self._error(exc) from exc
        self._fts = True
        log.info("%s: full-text index enabled", self.path)

    def index_pending(self, batch: int = 2000, seconds: float | None = None) -> int:
        """Bring the full-text index up to date (or stop after the batch that ends past
        *seconds*); return the number of rows (re)indexed."""
        if not self.fts_enabled():
            return 0
        done = 0
        text_of = self._text_of
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            while deadline is None or time.monotonic() < deadline:
                with self._writing() as con:
                    stale = list(
                        con.execute(
                            "SELECT id, ns, key FROM fts_docs WHERE stale = 1 LIMIT ?", (batch,)
                        )
                    )
                    if not stale:
                        if done >= _MERGE_AFTER:
                            self._merge_fts(con, done)
                        return done
                    with immediate(con):
                        for doc_id, ns, key in stale:
                            con.execute("DELETE FROM items_fts WHERE rowid = ?", (doc_id,))
                            frame = None
                            for row in con.execute(
                                "SELECT value FROM items WHERE ns = ? AND key = ?", (ns, key)
                            ):
                                frame = row[0]
                            if frame is None:
                                con.execute("DELETE FROM fts_docs WHERE id = ?", (doc_id,))
                                continue
                            text = text_of(frame) if text_of is not None else None
                            if text:
                                con.execute(
                                    "INSERT INTO items_fts (rowid, ns, text) VALUES (?, ?, ?)",
                                    (doc_id, ns.replace(SEP, " "), text),
                                )
                            con.execute("UPDATE fts_docs SET stale = 0 WHERE id = ?", (doc_id,))
                    done += len(stale)
            return done  # out of time: the next round goes on
        except apsw.Error as exc:
            raise self._error(exc) from exc

    def _merge_fts(self, con: apsw.Connection, indexed: int) -> None:
        """Merge the full-text index into one segment after a large (re)indexing.

        Indexing in batches leaves the index in many segments, and a query reads the
        doclist of each of its terms from every segment: on benchmarks/store.py's 100,000
        items the text query's SQL went from ~430 to ~190 us once merged (the merge took
        0.7 s).  Only when this run indexed at least half of the documents (a backfill), so
        the merge, whose cost is that of the whole index, stays proportional to the work
        just done; FTS5's automerge looks after the rest.
        """
        total = next(iter(con.execute("SELECT count(*) FROM fts_docs")))[0]
        if indexed * 2 >= total:
            con.execute("INSERT INTO items_fts (items_fts) VALUES ('optimize')")

    # -- coherence, maintenance, stats -------------------------------------------------
    def unchanged(self) -> bool:
        """True if provably no connection committed since the last :meth:`foreign_change`
        (the WAL index's header has not moved); ``False`` means "ask"."""
        shm = self._shm
        if shm is None:
            return self.memory
        head = shm.read()
        return bool(head) and head == self._seen_head

    def foreign_change(self) -> bool:
        if self.memory:
            return False
        if self._closed or os.getpid() != self._pid:
            self._check()
        shm = self._shm
        head = shm.read() if shm is not None else b""
        if head and head == self._seen_head:
            return False  # the WAL index's header has not moved: nobody committed
        try:
            with self._watch_lock:
                watch = self._watch
                if watch is None:  # closed meanwhile
                    self._check()
                    return False
                moved = _version(watch)
                if moved == self._seen_watch:
                    self._seen_head = head
                    return False  # nobody committed, this handle included
                # Someone committed: was it only this handle's writer?  Its data_version
                # moves only for other connections' commits.  A write of this handle in
                # progress (a long flush, a busy wait) is not waited out: the answer is
                # then "maybe", and the caller drops its caches.
                if not self._wlock.acquire(timeout=_WRITER_WAIT):
                    return True
                try:
                    dv = _version(self._writer)
                finally:
                    self._wlock.release()
                changed: bool = dv != self._seen_dv
                self._seen_watch, self._seen_dv = moved, dv
                # Read before the check: a commit after it moves the header again.
                self._seen_head = head
                return changed
        except apsw.Error as exc:
            raise self._error(exc) from exc

    def maintain(self) -> dict[str, Any]:
        # Bounded per call: a large backlog (a first text search on a big store) is
        # indexed over several rounds; a text search still brings it up to date first.
        indexed = self.index_pending(seconds=_MAINTAIN_INDEX_SECONDS)
        try:
            with self._writing() as con:
                # Under the write lock, taken first: PRAGMA optimize reads, then writes
                # (ANALYZE), which fails at once under contention when begun as a read.
                with immediate(con):
                    free_before = int(con.pragma("freelist_count"))
                    # Bounded per call: the worker's next round frees the next pages.
                    for _ in con.execute(f"PRAGMA incremental_vacuum({_VACUUM_PAGES})"):
                        pass  # each step frees a page
                    freed = free_before - int(con.pragma("freelist_count"))
                    page = int(con.pragma("page_size"))
                    ((items,),) = con.execute(_ITEM_COUNT).fetchall()
                    keep_stats(con, "items", int(cast(int, items)))
                    fields = self._fields.declared(con)
                    if fields:  # at most a row per item and declared field
                        keep_stats(con, "fields", int(cast(int, items)) * len(fields))
                    if self._vectors is not None and self._vec_ready(con):
                        self._vectors.purge(con)
                    con.execute("PRAGMA optimize")
                if not self.memory and not con.in_transaction:  # not inside locked()
                    con.pragma("wal_checkpoint", "PASSIVE")
        except apsw.Error as exc:
            raise self._error(exc) from exc
        return {"indexed": indexed, "vacuumed_bytes": freed * page}

    def checkpoint(self, mode: str = "TRUNCATE") -> None:
        """Copy the WAL into the main file (``TRUNCATE`` also empties the WAL)."""
        if self.memory:
            return
        try:
            with self._writing() as con:
                con.pragma("wal_checkpoint", mode)
        except apsw.Error as exc:
            raise self._error(exc) from exc

    def settings(self) -> dict[str, Any]:
        """The SQLite settings an operator checks: journal mode, synchronous, auto_vacuum,
        page size and format version."""
        names = ("journal_mode", "synchronous", "auto_vacuum", "page_size", "user_version")
        try:
            with self._reading() as con:
                return {name: con.pragma(name) for name in names}
        except apsw.Error as exc:
            raise self._error(exc) from exc

    def integrity_check(
        self,
        *,
        full: bool = False,
        progress: Callable[[], None] | None = None,
        limit: int = 100,
    ) -> str:
        """``"ok"`` for a sound file; otherwise one line per problem (at most *limit*).

        ``PRAGMA quick_check`` reads every page once; with *full*, ``integrity_check``
        also compares every index with its table, and then every stored value's checksum
        is verified (``check_frame``), each damaged one named by namespace and key.  Runs
        in a read transaction (writers go on); *progress* is called every ~100,000
        SQLite VM steps."""
        pragma = "integrity_check" if full else "quick_check"

        def tick() -> bool:
            if progress is not None:
                progress()
            return False  # go on

        try:
            with self._reading() as con:
                con.set_progress_handler(tick, _PROGRESS_STEPS)
                try:
                    lines = [str(r[0]) for r in con.execute(f"PRAGMA {pragma}")]
                    if lines == ["ok"]:
                        lines = []
                    if full and self._check_frame is not None:
                        for ns, key, frame in con.execute("SELECT ns, key, value FROM items"):
                            try:
                                self._check_frame(frame)
                            except TieredMemError as exc:
                                where = f"namespace {tuple(ns.split(SEP))!r} key {key!r}"
                                lines.append(f"{where}: {exc}")
                            if len(lines) >= limit:
                                break
                finally:
                    con.set_progress_handler(None)
        except (apsw.CorruptError, apsw.NotADBError) as exc:
            return f"damaged: {exc}"
        except apsw.Error as exc:
            raise self._error(exc) from exc
        return "\n".join(lines) if lines else "ok"

    def stats(self) -> dict[str, Any]:
        try:
            with self._reading() as con:
                page = int(con.pragma("page_size"))
                pages = int(con.pragma("page_count"))
                free = int(con.pragma("freelist_count"))
                # Kept by triggers (format 3): one row, whatever the size of the file.
                rows = int(next(iter(con.execute(_ITEM_COUNT)))[0])
        except apsw.Error as exc:
            raise self._error(exc) from exc
        wal = 0
        if not self.memory:
            try:
                wal = os.path.getsize(self.path + "-wal")
            except OSError:
                wal = 0
        return {
            "cold_bytes": page * pages,
            "cold_free_bytes": page * free,
            "wal_bytes": wal,
            "cold_rows": rows,
            "format_version": FORMAT_VERSION,
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Reads in flight end on their own connections, closed as they are handed back
        # (closing one under a reading thread would raise ThreadingViolationError there);
        # new reads raise StoreClosedError.  Wait for them, at most the busy timeout.
        deadline = time.monotonic() + self._busy_ms / 1000
        while True:
            with self._readers_lock:
                idle = self._idle  # the list get() hands connections back to
                while idle:
                    con = idle.pop()
                    if con in self._readers:
                        self._readers.remove(con)
                    con.close()
                busy = len(self._readers)
            if not busy or time.monotonic() > deadline:
                break
            time.sleep(0.001)
        with self._watch_lock:
            if self._watch is not None:
                self._watch.close()
                self._watch = None
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._wlock:
            self._writer.close()
        if self._shm is not None:
            self._shm.detach()  # after our connections: SQLite may have removed -shm
            self._shm = None
        if self._ro_tidy:
            remove_unused_wal(self.path)

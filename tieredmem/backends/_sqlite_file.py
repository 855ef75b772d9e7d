"""Opening and setting up a SQLite store file: the pragmas (one small function each,
saying why, as apsw's best practice suggests), the checks of a file's header before SQLite
opens it, read-only URIs, private creation, and the write-lock transaction every writing
statement runs in.  Used by :mod:`tieredmem.backends.sqlite`."""

from __future__ import annotations

import logging
import os
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

import apsw

from ..errors import CorruptStoreError, NotAStoreError, SchemaVersionError
from ._schema import APPLICATION_ID, FORMAT_VERSION

__all__ = [
    "ANALYSIS_ROWS",
    "SQLITE_MAGIC",
    "analysis_limit",
    "auto_vacuum",
    "busy_timeout",
    "check_header",
    "checkpoint_connection",
    "create_private",
    "damage_message",
    "immediate",
    "keep_stats",
    "no_double_quoted_strings",
    "remove_unused_wal",
    "ro_uri",
    "synchronous",
    "wal",
    "wal_bound",
]

log = logging.getLogger("tieredmem.backends.sqlite")

SQLITE_MAGIC = b"SQLite format 3\x00"
#: Rows an ANALYZE samples per index (PRAGMA analysis_limit).
ANALYSIS_ROWS = 400


# -- pragmas: one small function each, saying why (apsw's bestpractice) ---------------
def busy_timeout(con: apsw.Connection, ms: int) -> None:
    """Wait for another process's lock instead of failing with 'database is locked'."""
    con.set_busy_timeout(ms)


def wal(con: apsw.Connection, busy_ms: int) -> None:
    """WAL: readers never block the writer and the writer never blocks readers.

    Switching a new file to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY
    at once instead of calling the busy handler when processes that create the same file
    at the same moment race for it: retry, backing off, for up to the busy timeout."""
    deadline = time.monotonic() + busy_ms / 1000
    delay = 0.001
    while True:
        try:
            mode = con.pragma("journal_mode", "wal")
            break
        except apsw.BusyError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    if str(mode).lower() != "wal":  # pragma: no cover - only on VFSes without shared memory
        log.warning("journal_mode is %s, not wal", mode)


def synchronous(con: apsw.Connection, level: str) -> None:
    """NORMAL: a commit survives a process crash (WAL); FULL also survives power loss."""
    con.pragma("synchronous", level)


def auto_vacuum(con: apsw.Connection) -> None:
    """INCREMENTAL, set before the first table: deleted data can give disk space back."""
    con.pragma("auto_vacuum", "incremental")


def wal_bound(con: apsw.Connection, wal_bytes: int) -> int:
    """Checkpoint once the WAL holds about *wal_bytes* (SQLite's default is 1,000 pages,
    ~4 MiB) and truncate it back to that size afterwards, so the WAL stays bounded.

    Measured (benchmarks/kv.py): checkpointing every 1 MiB instead of 4 costs ~15% of the
    sync-put rate (more checkpoints, each with two fsyncs), so 4 MiB is the default; a
    workload of few, larger commits (a LangGraph checkpointer) loses nothing measurable
    with 1 MiB and keeps its files smaller (``wal_bytes``)."""
    page = int(con.pragma("page_size")) or 4096
    # A WAL frame is a page plus a 24-byte header: checkpoint before the log outgrows
    # wal_bytes, so SQLite rewinds it in place instead of growing and truncating it.
    pages = max(16, wal_bytes // (page + 24))
    con.pragma("wal_autocheckpoint", pages)
    con.pragma("journal_size_limit", wal_bytes)
    return pages


def checkpoint_connection(path: str, busy_ms: int) -> Callable[[], apsw.Connection]:
    """Opens the connection background checkpoints run on (no reference to the backend,
    so a backend nobody uses is still collected)."""

    def connect() -> apsw.Connection:
        con = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE)
        busy_timeout(con, busy_ms)
        return con

    return connect


def analysis_limit(con: apsw.Connection) -> None:
    """Bound any ANALYZE (``PRAGMA optimize`` runs one when statistics look stale) to
    sampling a few hundred rows per index, instead of reading every row of the file."""
    con.pragma("analysis_limit", ANALYSIS_ROWS)


def keep_stats(con: apsw.Connection, table: str, rows: int) -> None:
    """Keep ``sqlite_stat1``'s rows for *table* (``items``, ``fields``) from a row count
    this store keeps (format 3's ``counts``), so that ``PRAGMA optimize`` never analyzes
    the largest tables: even a sampled ``ANALYZE`` walks their b-trees (~0.2 s each on
    benchmarks/scale.py's 10,000,000 items).  Rewritten when the count moved by 2x."""
    rows = max(1, rows)
    if not any(con.execute("SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_stat1'")):
        con.execute("ANALYZE sqlite_schema")  # creates sqlite_stat1, analyzes nothing
    known = con.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = ? AND idx = ?", (table, table))
    for (stat,) in known:
        before = int(str(stat).split()[0] or 0)
        if rows / 2 <= before <= rows * 2:
            return
    con.execute("DELETE FROM sqlite_stat1 WHERE tbl = ?", (table,))
    # Every index of the table (its primary key, which SQLite names after a WITHOUT ROWID
    # table, included): the row count, then rows per distinct prefix of its key columns.
    # Lookups are by key, so only the row count matters to the planner.
    indexes = [(str(r[1]), r[3] == "pk") for r in con.execute(f"PRAGMA index_list('{table}')")]
    for index, primary in indexes:
        keys = con.execute("SELECT count(*) FROM pragma_index_xinfo(?) WHERE key", (index,))
        ((columns,),) = keys.fetchall()
        stat = " ".join([str(rows)] + ["1"] * int(cast(int, columns)))
        con.execute(
            "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)",
            (table, table if primary else index, stat),
        )
    con.execute("ANALYZE sqlite_schema")  # load the statistics just written


def no_double_quoted_strings(con: apsw.Connection) -> None:
    """Typos in identifiers fail instead of silently becoming string literals."""
    con.config(apsw.SQLITE_DBCONFIG_DQS_DML, 0)
    con.config(apsw.SQLITE_DBCONFIG_DQS_DDL, 0)


def check_header(path: str) -> None:
    """Refuse, without writing anything, a file that is not (or is a newer) tieredmem store."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
    except FileNotFoundError:
        return
    if not header:
        return  # an empty file becomes a new store
    if header.startswith(SQLITE_MAGIC) and len(header) < 100:
        raise CorruptStoreError(damage_message(path, "it is truncated inside its header"))
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise NotAStoreError(
            f"{path} is not a tieredmem store (not a SQLite database); "
            "choose another path or move the file away"
        )
    user_version = int.from_bytes(header[60:64], "big")
    app_id = int.from_bytes(header[68:72], "big")
    pages = int.from_bytes(header[28:32], "big")
    if app_id == 0 and user_version == 0 and pages <= 1:
        # No table yet: an empty database, or a store another process is creating right
        # now (its first commit is still in the WAL).  SQLite decides, in one snapshot.
        return
    if app_id != APPLICATION_ID:
        raise NotAStoreError(
            f"{path} is a SQLite database but not a tieredmem store "
            f"(application_id {app_id:#x}); choose another path"
        )
    if user_version > FORMAT_VERSION:
        raise SchemaVersionError(
            f"{path} has format version {user_version}, newer than this tieredmem "
            f"understands ({FORMAT_VERSION}); upgrade tieredmem to open it"
        )


def damage_message(path: str, what: str) -> str:
    """The message of a :class:`CorruptStoreError`: what is wrong and how to recover."""
    return (
        f"{path} is a damaged tieredmem store ({what}). Do not write to it. Recover: "
        f"restore a backup; or copy out what still reads with 'tieredmem export {path}' "
        f"(or sqlite3's '.recover') into a new store; 'tieredmem doctor {path}' shows "
        "what is affected"
    )


@contextmanager
def immediate(con: apsw.Connection) -> Iterator[None]:
    """A transaction that takes the write lock first (``BEGIN IMMEDIATE``), so every
    statement in it that writes was cleared by the busy handler; inside a transaction
    already open on *con* (:meth:`SQLiteBackend.locked`, which holds the lock), a
    savepoint of it.

    A statement that starts reading and then writes (``PRAGMA optimize``'s ``ANALYZE``,
    a read followed by a write in one deferred transaction) cannot wait for the lock:
    SQLite answers SQLITE_BUSY (or BUSY_SNAPSHOT, when another connection committed since
    it began reading) at once, whatever the busy timeout.
    """
    nested = con.in_transaction
    con.execute("SAVEPOINT tm_write" if nested else "BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if nested:
            con.execute("ROLLBACK TO tm_write")
            con.execute("RELEASE tm_write")
        elif con.in_transaction:
            con.execute("ROLLBACK")
        raise
    con.execute("RELEASE tm_write" if nested else "COMMIT")


def ro_uri(path: str) -> str:
    """The URI a ``readonly=True`` store opens: ``mode=ro``, so SQLite never writes the
    database file.  SQLite still needs ``-wal`` and ``-shm`` to read coherently beside
    writers: existing ones are used as they are, and where they are missing it creates
    them (empty) if the directory is writable.  Where it is not (a read-only directory or
    mount) and there is no ``-wal``, no process can be writing the file, so it is opened
    ``immutable``: nothing is created and no lock is taken."""
    uri = "file:" + urllib.parse.quote(path) + "?mode=ro"
    directory = os.path.dirname(path) or "."
    if not os.path.exists(path + "-wal") and not os.access(directory, os.W_OK):
        uri += "&immutable=1"
    return uri


def remove_unused_wal(path: str) -> None:
    """Remove the empty ``-wal`` and ``-shm`` that a ``readonly=True`` open made SQLite
    create, leaving the directory as it was.

    SQLite removes them when the last read-write connection closes, and only when it can
    lock the database exclusively (no other connection, in any process, has it open); a
    brief read-write connection that reads once and closes does exactly that.  The WAL had no frames
    when the store was opened and nothing was written through it, so the database file is
    not changed.  Where the file cannot be opened for writing they stay.
    """
    if not os.path.exists(path + "-wal") or not os.access(path, os.W_OK):
        return
    try:
        con = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE)
        try:
            con.pragma("schema_version")  # a read: the connection opens the WAL
        finally:
            con.close()
    except apsw.Error as exc:  # a read-only mount, a busy file: harmless to leave
        log.debug("%s: left -wal and -shm in place (%s)", path, exc)


def create_private(path: str) -> None:
    """Create *path* empty with mode 0600 so the database is private to its owner."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)

"""WAL checkpoints off the commit path of writes.

SQLite's automatic checkpoint runs inside the commit that takes the WAL past its bound,
so one write in a few hundred pays for copying the whole WAL into the database file
(benchmarks/scale.py measures the put p99 this costs).  Here the writer's WAL hook only
*asks* for a checkpoint, which a thread of its own runs on a connection of its own while
writes go on (a checkpoint takes no write lock).  A writer that never pauses can outrun
it: from ``cap`` pages (1.75 times the bound) the writer checkpoints itself after its
commit, as SQLite would, but with most of the WAL already copied; so the WAL stays within
twice its bound whatever the load.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import apsw

__all__ = ()

log = logging.getLogger(__name__)

_CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"
#: Checkpoints one request runs at most, while writes keep adding frames.
_ROUNDS = 8


class Checkpointer:
    """One per writer connection: the WAL hook and the thread that checkpoints.

    :param connect: opens the connection the thread checkpoints on (called in the thread).
    :param pages: WAL pages from which a checkpoint is asked for.
    """

    def __init__(self, connect: Callable[[], apsw.Connection], pages: int) -> None:
        self._connect = connect
        self.pages = pages
        self.cap = pages * 7 // 4
        self.overdue = False  # the writer must checkpoint itself (the WAL reached cap)
        self.runs = 0
        #: Held while a checkpoint of this process runs: the writer's own (at cap) waits
        #: for the thread's to end instead of finding SQLite's checkpoint lock taken.
        self.running = threading.Lock()
        self._wanted = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._con: apsw.Connection | None = None

    def hook(self, con: apsw.Connection, dbname: str, pages: int) -> int:
        """The writer's WAL hook: called after each commit with the WAL's size in pages."""
        if pages >= self.cap:
            self.overdue = True
        elif pages >= self.pages:
            self._ask()
        return int(apsw.SQLITE_OK)

    def _ask(self) -> None:
        self._wanted.set()
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._closed:
                    self._thread = threading.Thread(
                        target=self._run, name="tieredmem-checkpoint", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._closed:
                    return
                try:
                    if self._con is None:
                        self._con = self._connect()
                    # PASSIVE: copies what no reader still needs, never waits for a lock;
                    # once everything is copied, the writer's next commit rewinds the WAL.
                    # (The pragma, not Connection.wal_checkpoint: a connection that
                    # has read nothing yet does not know the file is in WAL mode.)
                    # Again while commits added frames meanwhile (a few rounds at most):
                    # the WAL rewinds only once a checkpoint has copied all of it.
                    for _ in range(_ROUNDS):
                        with self.running:
                            _, log_frames, copied = self._con.execute(_CHECKPOINT).fetchall()[0]
                        self.runs += 1
                        if self._closed or log_frames == copied:
                            break
                except apsw.Error:  # busy with another checkpoint, closed meanwhile: next time
                    log.debug("background checkpoint failed", exc_info=True)
        finally:
            con, self._con = self._con, None
            if con is not None:
                con.close()

    def catch_up(self, con: apsw.Connection) -> None:
        """On the writer, after a commit that took the WAL to ``cap``: checkpoint now
        (after the thread's checkpoint in progress, which has copied most of the WAL)."""
        self.overdue = False
        with self.running:
            con.pragma("wal_checkpoint", "PASSIVE")

    def close(self) -> None:
        """Stop the thread (a checkpoint in progress finishes first); idempotent."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wanted.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def forget(self) -> None:
        """In a forked child: the thread did not cross fork(); drop the connection copy."""
        con, self._con = self._con, None
        if con is not None:
            try:
                con.close(True)
            except apsw.Error:  # pragma: no cover - closing a copy; nothing to recover
                log.debug("closing an inherited connection failed", exc_info=True)
        self._closed = True

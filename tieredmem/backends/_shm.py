"""A cheap "did anything commit?" for a WAL database: its WAL-index header.

SQLite keeps the WAL index in the ``-shm`` file beside the database, and every commit
rewrites the index's header (two 48-byte copies at its start, see SQLite's
``walformat.html``): ``iChange`` counts transactions and ``mxFrame`` moves.  Reading those
96 bytes with ``pread`` costs a fraction of a statement, so a read compares them with the
bytes it saw at its last full check and asks SQLite (``PRAGMA data_version``) only when
they moved.  Bytes that did not move mean no connection committed since; bytes that moved
mean only "ask SQLite", so nothing here decides coherence on its own.

The descriptors need care: closing *any* descriptor of a file drops every POSIX lock the
process holds on it, SQLite's included, and another process would then re-initialise the
shared memory under live connections.  So a descriptor is opened once per ``-shm`` inode
and process, shared by every handle, and closed only when no handle uses it *and* the
inode is no longer the live ``-shm`` (SQLite deletes it when the last connection closes:
then no lock of anyone's is left on it).  A live inode's descriptor stays open until the
process ends; there is one per database file the process has open or had open.
"""

from __future__ import annotations

import os
import threading

__all__ = ["HEADER_BYTES", "ShmHeader"]

#: The two copies of the WAL-index header.
HEADER_BYTES = 96

_lock = threading.Lock()
#: ``(st_dev, st_ino)`` of a -shm file -> [descriptor, handles using it]
_open: dict[tuple[int, int], list[int]] = {}
#: Descriptors that must never be closed (see ShmHeader._attach).
_kept: list[int] = []


def _linked(fd: int) -> bool:
    """True while the file of *fd* still has a name: SQLite removes ``-shm`` only when
    the last connection to the database closes, and then nobody holds a lock on it."""
    try:
        return os.fstat(fd).st_nlink > 0
    except OSError:
        return False


def _sweep() -> None:
    """Close the unused descriptors of removed files (call with ``_lock`` held)."""
    for key, (fd, users) in list(_open.items()):
        if users <= 0 and not _linked(fd):
            del _open[key]
            os.close(fd)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a parent thread may have held it at fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class ShmHeader:
    """The WAL-index header of the database at *path*, read without SQLite."""

    def __init__(self, path: str) -> None:
        self.path = path + "-shm"
        self._key: tuple[int, int] | None = None
        self._fd = -1
        self._attach()

    def _attach(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:  # no -shm (not WAL, or not yet): every read asks SQLite
            return
        key = (st.st_dev, st.st_ino)
        with _lock:
            _sweep()
            known = _open.get(key)
            if known is None:
                try:
                    fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                except OSError:
                    return
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != key:
                    # Replaced between stat and open: this descriptor is of another inode,
                    # which may be live and locked by SQLite, so it is never closed.
                    _kept.append(fd)
                    return
                known = _open[key] = [fd, 0]
            known[1] += 1
        self._key, self._fd = key, known[0]

    def read(self) -> bytes:
        """The header bytes now (``b""`` when there is no ``-shm`` to read)."""
        if self._fd < 0:
            return b""
        try:
            return os.pread(self._fd, HEADER_BYTES, 0)
        except OSError:
            return b""

    def detach(self) -> None:
        """This handle is done; close the descriptor once nobody can hold locks through it."""
        key, self._key, self._fd = self._key, None, -1
        if key is None:
            return
        with _lock:
            known = _open.get(key)
            if known is None:
                return
            known[1] -= 1
            if known[1] > 0:
                return
            if _linked(known[0]):
                return  # keep it: closing would drop this process's locks on the live file
            del _open[key]
        os.close(known[0])

"""A cheap "did anything commit?" for a WAL database: its WAL-index header.

SQLite keeps the WAL index in the ``-shm`` file beside the database, and every commit
rewrites the index's header (two 48-byte copies at its start, see SQLite's
``walformat.html``): ``iChange`` counts transactions and ``mxFrame`` moves.  Reading those
96 bytes through a read-only memory map (as SQLite itself reads them) costs a fraction of
a statement, and unlike a ``pread`` it does not release the interpreter lock, so reader
threads do not hand it to each other on every read, so a read compares them with the
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

The map never outlives its safety: SQLite truncates ``-shm`` only when it opens the first
connection to a database nobody has open, and a handle reads the map only while its own
connections are open.  A file shorter than the header (not SQLite's) is read with
``pread`` instead.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Callable
from functools import partial
from typing import cast

__all__ = ["HEADER_BYTES", "ShmHeader"]

#: The two copies of the WAL-index header.
HEADER_BYTES = 96
_MAP_BYTES = mmap.PAGESIZE


class _File:
    """One -shm inode's descriptor (and map), shared by this process's handles."""

    __slots__ = ("fd", "map", "users")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.users = 0
        self.map: mmap.mmap | None = None
        try:
            if os.fstat(fd).st_size >= _MAP_BYTES:
                # mmap duplicates the descriptor: the duplicate, like ours, is closed only
                # once the file is gone (see the module text).
                self.map = mmap.mmap(fd, _MAP_BYTES, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            self.map = None

    def read(self) -> bytes:
        if self.map is not None:
            return self.map[:HEADER_BYTES]
        try:
            return os.pread(self.fd, HEADER_BYTES, 0)
        except OSError:
            return b""

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
        os.close(self.fd)


_lock = threading.Lock()
#: ``(st_dev, st_ino)`` of a -shm file -> its shared descriptor
_open: dict[tuple[int, int], _File] = {}
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
    for key, known in list(_open.items()):
        if known.users <= 0 and not _linked(known.fd):
            del _open[key]
            known.close()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a parent thread may have held it at fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _nothing() -> bytes:
    return b""


class ShmHeader:
    """The WAL-index header of the database at *path*, read without SQLite."""

    def __init__(self, path: str) -> None:
        self.path = path + "-shm"
        self._key: tuple[int, int] | None = None
        self._file: _File | None = None
        #: The header bytes now (``b""`` when there is no ``-shm`` to read): a slice of
        #: the map bound in C where there is one (every read calls it), else ``pread``.
        self.read: Callable[[], bytes] = _nothing
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
                known = _open[key] = _File(fd)
            known.users += 1
        self._key, self._file = key, known
        if known.map is not None:
            head = partial(known.map.__getitem__, slice(0, HEADER_BYTES))
            self.read = cast("Callable[[], bytes]", head)  # the slice overload
        else:
            self.read = known.read

    def detach(self) -> None:
        """This handle is done; close the descriptor once nobody can hold locks through it."""
        key, known, self._key, self._file = self._key, self._file, None, None
        self.read = _nothing
        if key is None or known is None:
            return
        with _lock:
            known.users -= 1
            if known.users > 0 or _linked(known.fd):
                return  # in use, or live: closing would drop this process's locks on it
            if _open.get(key) is known:
                del _open[key]
        known.close()

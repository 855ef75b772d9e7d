"""The PostgreSQL backend's connections: a psycopg pool, errors translated into tieredmem's,
a retry after a server restart, and fork safety.  Passwords never reach a message."""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import (
    BackendUnavailableError,
    BusyTimeoutError,
    InvalidKeyError,
    NotAStoreError,
    StoreClosedError,
    TieredMemError,
)

__all__ = ()

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Pools and connections a forked child inherited: kept, never used (see _after_fork).
_INHERITED: list[Any] = []
_FORK_LOCK = threading.Lock()


class Connections:
    """A pool of autocommit connections to one database.

    :param conninfo: the libpq URL (with the password: never shown).
    :param kwargs: psycopg connection options (``autocommit``, ``prepare_threshold``).
    :param url: the URL as shown (password redacted).
    :param what: the store's tables, for messages (``schema.prefix*``).
    :param after_fork: called in a forked child once it has connections of its own.
    """

    def __init__(
        self,
        conninfo: str,
        kwargs: dict[str, Any],
        *,
        url: str,
        password: str,
        pool_max: int,
        pool_timeout: float,
        what: str,
        after_fork: Callable[[], None],
    ) -> None:
        import psycopg
        import psycopg_pool

        self._psycopg = psycopg
        self._pool_mod = psycopg_pool
        self._conninfo = conninfo
        self._kwargs = kwargs
        self.url = url
        self._password = password
        self._pool_max = pool_max
        self._pool_timeout = pool_timeout
        self._what = what
        self._after_fork_hook = after_fork
        self.closed = False
        self._pid = os.getpid()
        #: Every connection opened (see _after_fork).
        self._conns: weakref.WeakSet[Any] = weakref.WeakSet()
        self._pool = self._open_pool()

    def connect(self) -> Any:
        """A connection outside the pool (a LISTEN connection), with the pool's options."""
        conn = self._psycopg.Connection.connect(self._conninfo, **self._kwargs)
        self._conns.add(conn)
        return conn

    def _open_pool(self) -> Any:
        pool = self._pool_mod.ConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self._pool_max,
            kwargs=self._kwargs,
            timeout=self._pool_timeout,
            open=False,
            name=f"tieredmem-{self._what}",
            configure=self._conns.add,
        )
        try:
            pool.open(wait=True, timeout=self._pool_timeout)
        except self._pool_mod.PoolTimeout:
            pool.close()
            raise BackendUnavailableError(
                f"cannot connect to PostgreSQL at {self.url} within {self._pool_timeout:g}s; "
                "check that the server runs and the URL (host, port, user, password) is right"
            ) from None
        return pool

    def _check(self) -> None:
        if self.closed:
            raise StoreClosedError(f"{self.url} is closed; open the store again to use it")
        if os.getpid() != self._pid:
            with _FORK_LOCK:
                if os.getpid() != self._pid:
                    self._after_fork()

    def _after_fork(self) -> None:
        """In a forked child: a connection must not cross fork(), so open new ones.

        The inherited connections' sockets are the parent's sessions: each is pointed at
        ``/dev/null`` first, so that closing (or collecting) them in the child cannot end
        the parent's sessions, and the inherited pool is kept referenced, never used."""
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            for conn in list(self._conns):
                try:
                    fd = conn.pgconn.socket
                except Exception:  # already closed: nothing to protect
                    continue
                os.dup2(devnull, fd)
        finally:
            os.close(devnull)
        _INHERITED.append((self._pool, list(self._conns)))
        self._conns = weakref.WeakSet()
        self._pid = os.getpid()
        self._pool = self._open_pool()
        self._after_fork_hook()

    def scrub(self, text: str) -> str:
        """*text* with the password (if any) replaced by ``***``."""
        if self._password:
            text = text.replace(self._password, "***")
        return text

    def error(self, exc: BaseException) -> TieredMemError:
        """The tieredmem error for a psycopg (or pool) exception."""
        psycopg = self._psycopg
        text = str(exc).strip()
        message = self.scrub(text.splitlines()[0] if text else type(exc).__name__)
        if isinstance(exc, self._pool_mod.PoolTimeout):
            return BackendUnavailableError(
                f"PostgreSQL at {self.url}: no connection within {self._pool_timeout:g}s "
                "(the server is down or unreachable, or every connection is busy); the "
                "operation was not acknowledged: retry when the server is back"
            )
        if isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
            return BusyTimeoutError(f"PostgreSQL at {self.url}: {message}; retry")
        if isinstance(exc, psycopg.errors.UntranslatableCharacter) or "NUL (0x00)" in message:
            return InvalidKeyError(
                f"PostgreSQL cannot store NUL characters in namespaces or keys ({message})"
            )
        if isinstance(exc, psycopg.errors.UndefinedTable):
            return NotAStoreError(
                f"PostgreSQL at {self.url}: the tieredmem tables {self._what} are gone "
                f"({message}); open the store again"
            )
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return BackendUnavailableError(
                f"PostgreSQL at {self.url}: the connection failed ({message}); the operation "
                "was not acknowledged: retry when the server is back"
            )
        return TieredMemError(f"PostgreSQL at {self.url}: {message}")

    def run(self, fn: Callable[[Any], T], *, retry: bool = True) -> T:
        """Run ``fn(connection)``; on a connection that turns out dead (the server
        restarted), drop the pool's dead connections and, with *retry*, run it once more.

        Retrying is safe for every call of the backend protocol: reads, and write
        batches, which are idempotent (a batch re-applied sets the same rows to the same
        values with the same times; one that had committed before its answer was lost is
        then simply applied twice).
        """
        self._check()
        psycopg = self._psycopg
        for attempt in (0, 1):
            try:
                conn = self._pool.getconn()
            except self._pool_mod.PoolTimeout as exc:
                raise self.error(exc) from None
            except self._pool_mod.PoolClosed:
                raise StoreClosedError(
                    f"{self.url} is closed; open the store again to use it"
                ) from None
            try:
                return fn(conn)
            except psycopg.Error as exc:
                broken = conn.broken or conn.closed
                if not (broken and retry and attempt == 0):
                    raise self.error(exc) from None
                log.info("%s: connection lost (%s); retrying", self.url, self.scrub(str(exc)))
                self._pool.check()  # drop the other dead idle connections too
            finally:
                self._pool.putconn(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the pool; idempotent."""
        if self.closed:
            return
        self.closed = True
        self._pool.close()

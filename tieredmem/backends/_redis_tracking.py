"""Client-side caching for the Redis backend (``?coherence=tracking``).

Every write batch of every client (and every expiry sweep) sets and deletes the key
``<prefix>w:<writer id>`` inside its Lua script, so Redis, which runs a script whole,
signals that key exactly when the batch is applied.  A client in tracking mode keeps one
more connection, on a thread, that asked Redis for those signals (``CLIENT TRACKING ON
REDIRECT <itself> BCAST PREFIX <prefix>w:``, then ``SUBSCRIBE __redis__:invalidate``).
While that connection is up, no other writer's key has been signalled and the last full
version check is younger than ``bound`` seconds, a read skips the per-read version check
(the one round trip of the strict mode).  A signal for another writer's key, or a flush
(signalled as a null key), marks the hot tier suspect: the next read checks the version
and drops the hot tier (and the caches above it) if it moved.  Each time the connection
is (re)established, by the first connect, a reconnect after a dropped connection or a
server restart, the next read drops the hot tier whatever the version says: signals may
have been lost while it was down.

Guarantee: a write acknowledged by another client is seen by every read that starts
after its signal reached this client's tracking thread (Redis queues the signal before
it answers the writer), and in any case by every read that starts more than ``bound``
seconds after the write was acknowledged, whether or not signals arrive.  While the
tracking connection is down, every read checks the version, as in the strict mode.

Why not redis-py's own client-side cache (``cache_config``): it caches the raw replies of
single read commands, per connection, and learns of invalidations only when that
connection is next used; tieredmem's hot tier holds decoded values and, above it, the
History and checkpoint caches, which must be dropped by the same signal.  Tracking one key
family per writer keeps the push traffic to one short message per write batch.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, cast

__all__ = ()

log = logging.getLogger(__name__)

#: ``FORKS[0]`` counts the forks this process is a child of (cheaper to compare on every
#: read than ``os.getpid()``): a tracking thread and a writer id do not survive a fork.
FORKS = [0]
os.register_at_fork(after_in_child=lambda: FORKS.__setitem__(0, FORKS[0] + 1))

#: Seconds without traffic after which the tracking connection is pinged, and seconds a
#: ping may go unanswered before the connection is taken as lost.
_PING_AFTER, _PING_TIMEOUT = 2.0, 5.0


def connector(url: str, node: tuple[str, int] | None = None) -> Callable[[], Any]:
    """The *connect* of a :class:`Tracker` on the server of *url*, or on *node* (a cluster
    master's host and port; no database there): an unconnected RESP2 connection (signals
    arrive as messages), TLS for ``rediss://``."""
    from redis import connection

    kwargs: dict[str, Any] = cast(Any, connection).parse_url(url)
    kind = kwargs.pop("connection_class", connection.Connection)  # SSLConnection for rediss://
    kwargs.update(protocol=2, socket_timeout=10)
    if node is not None:
        kwargs.update(host=node[0], port=node[1])
        kwargs.pop("db", None)
    return lambda: kind(**kwargs)


class Tracker:
    """A thread holding the tracking connection; :meth:`quiet` is the cheap "nothing
    new" proof.  *connect* returns an unconnected redis-py ``Connection`` speaking RESP2."""

    def __init__(
        self, connect: Callable[[], Any], prefix: bytes, writer: bytes, *, bound: float = 1.0
    ) -> None:
        self._connect = connect
        self._watch = prefix + b"w:"
        self._own = writer  # a signal key ending in it is this client's (16 hex digits)
        self.bound = float(bound)
        self._dirty = True
        self._reset = False
        self._listening = False
        self._deadline = 0.0
        #: Connections established so far (tests and stats read it).
        self.connects = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        # PINGs sent and answered on the current connection (see ping()/answered()).
        self._cond = threading.Condition()
        self._conn: Any = None
        self._sent = self._answered = 0
        self._thread = threading.Thread(
            target=self._run,
            name=f"tieredmem-tracking-{prefix.decode(errors='replace')}",
            daemon=True,
        )
        self._thread.start()
        self._ready.wait(10)

    def quiet(self) -> bool:
        """True while the tracking connection is up, no other writer was signalled since
        the last full check and that check is younger than the bound."""
        return self._listening and not self._dirty and time.monotonic() < self._deadline

    def before_check(self) -> None:
        """Called just before a full version check: signals from now on count."""
        self._dirty = False

    def after_check(self) -> bool:
        """Called after a successful full version check; True if the connection was
        (re)established since the previous check (the hot tier must then be dropped)."""
        self._deadline = time.monotonic() + self.bound
        reset, self._reset = self._reset, False
        return reset

    def dirty(self) -> bool:
        """True if a signal (or a (re)connect) arrived since :meth:`before_check`."""
        return self._dirty

    def ping(self) -> int | None:
        """Send a PING through the tracking connection; the number to pass to
        :meth:`answered`, or ``None`` if the connection is down.  Redis queues a write's
        signal before it answers the writer, and one connection delivers in order, so once
        the PING is answered every signal of a write acknowledged before it was sent has
        been handled."""
        with self._cond:
            conn = self._conn
            if conn is None or not self._listening:
                return None
            try:
                conn.send_command("PING")
            except Exception:
                return None
            self._sent += 1
            return self._sent

    def answered(self, target: int, timeout: float = 5.0) -> bool:
        """Wait until PING number *target* is answered on the same connection."""
        with self._cond:
            conn = self._conn
            return bool(
                self._cond.wait_for(
                    lambda: self._answered >= target or self._conn is not conn, timeout
                )
                and self._conn is conn
                and self._answered >= target
            )

    def _signalled(self, keys: Any) -> None:
        if keys is None or any(not bytes(k).endswith(self._own) for k in keys):
            self._dirty = True

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            conn: Any = None
            try:
                conn = self._connect()
                conn.connect()
                conn.send_command("CLIENT", "ID")
                client_id = conn.read_response()
                conn.send_command(
                    "CLIENT",
                    "TRACKING",
                    "ON",
                    "REDIRECT",
                    client_id,
                    "BCAST",
                    "PREFIX",
                    self._watch,
                )
                conn.read_response()
                conn.send_command("SUBSCRIBE", "__redis__:invalidate")
                conn.read_response()
                # Tracking from here: whatever was applied before may have been missed.
                self._reset = True
                self._dirty = True
                with self._cond:
                    self._conn = conn
                    self._sent = self._answered = 0
                    self._listening = True
                self.connects += 1
                self._ready.set()
                backoff = 0.05
                last = time.monotonic()
                pinged: float | None = None
                while not self._stop.is_set():
                    if conn.can_read(timeout=0.25):
                        msg = conn.read_response()
                        last = time.monotonic()
                        if msg[0] == b"message":
                            self._signalled(msg[2])
                        elif msg[0] == b"pong":
                            with self._cond:
                                self._answered += 1
                                self._cond.notify_all()
                        continue
                    now = time.monotonic()
                    with self._cond:
                        waiting = self._sent > self._answered
                    if waiting and pinged is not None and now - pinged > _PING_TIMEOUT:
                        raise ConnectionError("the tracking connection stopped answering")
                    if not waiting:
                        pinged = None
                    if pinged is None and now - last > _PING_AFTER:
                        pinged = now
                        self.ping()
            except Exception:  # lost: strict checks until it is back, then a drop
                log.debug("tracking connection on %r lost", self._watch, exc_info=True)
            finally:
                with self._cond:
                    self._listening = False
                    self._conn = None
                    self._cond.notify_all()
                self._dirty = True
                self._ready.set()
                if conn is not None:
                    try:
                        conn.disconnect()
                    except Exception:  # pragma: no cover - closing a broken connection
                        pass
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 2.0)

    def close(self) -> None:
        """Stop the thread and close its connection."""
        self._stop.set()
        self._thread.join(5)

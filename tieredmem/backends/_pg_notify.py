"""LISTEN/NOTIFY invalidation for the PostgreSQL backend (``?coherence=notify``).

Every write batch of every client sends ``pg_notify(<channel>, <client id>)`` inside its
transaction, so PostgreSQL delivers it exactly when the batch commits.  A client in notify
mode keeps one more connection that LISTENs on a thread; while it is connected, no other
client's notification has arrived and its last full version check is younger than
``bound`` seconds, a read skips the per-read version check (one round trip).

Guarantee: a write acknowledged by another client is seen by every read that starts after
its notification reached this client (PostgreSQL sends it at commit), and in any case by
every read that starts more than ``bound`` seconds after the commit.  While the listening
connection is down, every read checks the version, as in the default strict mode.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

__all__ = ()

log = logging.getLogger(__name__)


class Listener:
    """A thread LISTENing on *channel*; :meth:`quiet` is the cheap "nothing new" proof."""

    def __init__(self, connect: Any, channel: str, client_id: str, *, bound: float = 1.0) -> None:
        self._connect = connect
        self._channel = channel
        self._client_id = client_id
        self.bound = float(bound)
        self._dirty = True
        self._listening = False
        self._deadline = 0.0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._conn: Any = None
        self._thread = threading.Thread(
            target=self._run, name=f"tieredmem-listen-{channel}", daemon=True
        )
        self._thread.start()
        self._ready.wait(10)

    def quiet(self) -> bool:
        """True while the listener is connected, nothing arrived from another client and
        the last full check is younger than the bound."""
        return self._listening and not self._dirty and time.monotonic() < self._deadline

    def before_check(self) -> None:
        """Called just before a full version check: notifications from now on count."""
        self._dirty = False

    def after_check(self) -> None:
        """Called after a successful full version check."""
        self._deadline = time.monotonic() + self.bound

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                conn = self._connect()
                self._conn = conn
                conn.execute(f'LISTEN "{self._channel}"')
                # Listening from here: whatever committed before may have been missed.
                self._dirty = True
                self._listening = True
                self._ready.set()
                backoff = 0.05
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=0.5):
                        if note.payload != self._client_id:
                            self._dirty = True
            except Exception:  # the connection dropped: strict checks until it is back
                self._listening = False
                self._dirty = True
                log.debug("LISTEN connection on %s lost", self._channel, exc_info=True)
                self._ready.set()
            finally:
                self._listening = False
                conn, self._conn = self._conn, None
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # pragma: no cover - closing a broken connection
                        pass
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 2.0)

    def close(self) -> None:
        """Stop the thread and close its connection."""
        self._stop.set()
        self._thread.join(5)

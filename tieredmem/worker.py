"""The background worker: one daemon thread per store that commits batched writes every
``flush_interval`` and runs maintenance every ``maintenance_interval``.

The thread holds only a weak reference to its store, so a store that nobody uses any more
is collected (its ``atexit`` hook is weak too).  After ``fork()`` the child has no worker
thread, and the locks it inherited may be held by threads that no longer exist:
:func:`on_fork_child` runs every live store's ``after_fork`` hook in the child, which
builds fresh locks, forgets the parent's buffered writes (the parent commits them) and
starts a new worker.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Protocol

__all__ = ["Worker", "release_freed_memory", "weak_callback", "watch_forks"]

log = logging.getLogger(__name__)


class _Ticking(Protocol):
    @property
    def closed(self) -> bool: ...

    @property
    def url(self) -> str: ...

    def tick(self) -> None: ...

    def after_fork(self) -> None: ...


class Worker:
    """A daemon thread calling ``owner.tick()`` every *period* seconds (or on :meth:`wake`)."""

    def __init__(self, owner: _Ticking, period: float) -> None:
        self.period = period
        self._ref = weakref.ref(owner)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tieredmem-worker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        stop, wake, ref = self._stop, self._wake, self._ref
        while True:
            wake.wait(self.period)
            wake.clear()
            owner = ref()
            if stop.is_set() or owner is None or owner.closed:
                return
            try:
                owner.tick()
            except Exception:  # keep the worker alive; the next tick retries
                log.exception("background maintenance of %s failed", owner.url)
            del owner

    def wake(self) -> None:
        """Run the next tick now."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the thread and wait (up to 5 s) for a tick in progress to end."""
        self._stop.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


def weak_callback(method: Callable[[], None]) -> Callable[[], None]:
    """A callable that calls the bound *method* while its object is alive (for atexit)."""
    ref = weakref.WeakMethod(method)

    def call() -> None:
        bound = ref()
        if bound is not None:
            bound()

    return call


_LIVE: weakref.WeakSet[_Ticking] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for owner in list(_LIVE):
        if not owner.closed:
            owner.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def watch_forks(owner: _Ticking) -> None:
    """Call ``owner.after_fork()`` in the child of every ``fork()`` while *owner* lives."""
    _LIVE.add(owner)


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # only where it is used: a process that never trims does not load it

    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
        return trim
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to do
        return None


def release_freed_memory() -> None:
    """Return the free pages of glibc's heaps to the OS (``malloc_trim``).

    A batch commit frees megabytes of buffered payloads that threads allocated in their
    own malloc arenas; glibc keeps those pages, so a multi-threaded writer's RSS grows
    far past what it holds (benchmarks/agent_memory.py measures it).  Called once per
    MiB committed."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)

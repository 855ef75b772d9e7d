"""Retention policies: what maintenance deletes from disk, and what it must keep.

A :class:`Retention` is a small value object; the layers that own data (histories,
checkpoints) apply it during :meth:`tieredmem.Store.maintain`, which a background thread
also runs periodically.  Time comes from the store's injectable clock, so tests move time
by hand instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .names import ttl_seconds

__all__ = ["Retention"]


@dataclass(frozen=True)
class Retention:
    """Keep at most *max_items* newest items, none older than *ttl*, and always those
    for which ``keep(item)`` is true (pinned).

    :param int max_items: items beyond the newest *max_items* are deleted.
    :param ttl: seconds (or a timedelta); items older than this are deleted.  Like a
        store's ttl it is finite and positive (see :func:`tieredmem.names.ttl_seconds`).
    :param keep: ``keep(item) -> bool``; a true answer pins the item for ever.

    >>> Retention(max_items=1000, ttl=3600).horizon(now=10_000.0)
    6400.0
    """

    max_items: int | None = None
    ttl: float | timedelta | None = None
    keep: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        if self.max_items is not None and (
            not isinstance(self.max_items, int) or self.max_items < 0
        ):
            raise ValueError(f"max_items must be an int >= 0, not {self.max_items!r}")
        ttl_seconds(self.ttl)  # raises InvalidTTLError for nan, infinities, <= 0

    @property
    def ttl_seconds(self) -> float | None:
        """The ttl in seconds, or ``None``."""
        if self.ttl is None:
            return None
        if isinstance(self.ttl, timedelta):
            return self.ttl.total_seconds()
        return float(self.ttl)

    @property
    def active(self) -> bool:
        """True if this policy ever deletes anything."""
        return self.max_items is not None or self.ttl is not None

    def horizon(self, now: float) -> float | None:
        """Items written before this time are past the ttl (``None`` without a ttl)."""
        seconds = self.ttl_seconds
        return None if seconds is None else now - seconds

    def pinned(self, item: Any) -> bool:
        """True if *item* must be kept whatever its age or position."""
        return bool(self.keep is not None and self.keep(item))

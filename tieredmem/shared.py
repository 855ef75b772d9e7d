"""One live object per (store, namespace) in a process: the registry that histories and
states use so that every user of a store shares them."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from .errors import SharingError

if TYPE_CHECKING:
    from .store import Store

__all__ = ["AlreadyOpen", "SharedObjects"]


class AlreadyOpen(SharingError):
    """A constructor found a live object for its namespace (:meth:`SharedObjects.open`
    then returns that one)."""


_T = TypeVar("_T")


class SharedObjects(Generic[_T]):
    """The live objects of one kind (histories, states) of every store, by joined
    namespace: one object per (store, namespace) in a process, shared by every user of
    the store.

    A store's generation moves only on writes by *other* handles and processes, so two
    objects caching one namespace of one store would never see each other's writes (and
    an append through one would overwrite the other's).  Weak both ways: a store that is
    gone takes its entries with it, and the registry never keeps an object alive (an
    object no user holds is collected; the next user builds a new one from the store).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stores: weakref.WeakKeyDictionary[Store, weakref.WeakValueDictionary[str, _T]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, store: Store, ns: str) -> _T | None:
        """The live object of *ns* on *store*, if any."""
        with self._lock:
            objects = self._stores.get(store)
            return None if objects is None else objects.get(ns)

    def add(self, store: Store, ns: str, obj: _T) -> _T:
        """Register *obj* for *ns* unless a live object is registered; return the one
        registered."""
        with self._lock:
            objects = self._stores.get(store)
            if objects is None:
                objects = self._stores[store] = weakref.WeakValueDictionary()
            live = objects.get(ns)
            if live is None:
                objects[ns] = live = obj
            return live

    def open(self, store: Store, ns: str, build: Callable[[], _T]) -> _T:
        """The live object of *ns* on *store*, else ``build()``: a constructor that
        registers itself with :meth:`add` and raises :class:`AlreadyOpen` when another
        thread registered one first (then that one is returned)."""
        while True:
            live = self.get(store, ns)
            if live is not None:
                return live
            try:
                return build()
            except AlreadyOpen:
                continue  # another thread opened it meanwhile: use that one

    def under(self, store: Store, prefix: str) -> list[_T]:
        """The live objects of *store* whose namespace starts with *prefix*."""
        with self._lock:
            objects = self._stores.get(store)
            if objects is None:
                return []
            return [obj for ns, obj in list(objects.items()) if ns.startswith(prefix)]

"""``tieredmem.cached``: memoize a sync or async function; results survive restarts.

In the spirit of cachetools' ``cached``, with a :class:`tieredmem.Store` as the cache:
results are kept in the store's hot tier and its file (internal namespace
``("tieredmem", "cached", <function name>)``), so a restarted process does not recompute.

>>> import tieredmem
>>> store = tieredmem.open(":memory:")
>>> calls = []
>>> @tieredmem.cached(store)
... def square(x):
...     calls.append(x)
...     return x * x
>>> square(4), square(4), calls
(16, 16, [4])
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar, cast

from .codec import dumps_json
from .store import ColdReadError, Store

__all__ = ["cached", "hashkey"]

F = TypeVar("F", bound=Callable[..., Any])


def hashkey(*args: Any, **kwargs: Any) -> str:
    """The default key: a SHA-256 of the JSON of the arguments (JSON-compatible only).

    :raises SerializationError: an argument cannot be encoded; pass ``key=`` instead.
    """
    import hashlib  # here, not at import: it loads OpenSSL (~4 MB of RSS)

    payload = dumps_json([args, sorted(kwargs.items())], key="cached() arguments")
    return hashlib.sha256(payload).hexdigest()


def cached(
    store: Store,
    ttl: float | timedelta | None = None,
    key: Callable[..., str] = hashkey,
    *,
    name: str | None = None,
) -> Callable[[F], F]:
    """Memoize a function in *store* (results must be JSON-compatible or bytes).

    :param ttl: seconds (or a timedelta) a result stays valid; ``None``: for ever.
    :param key: builds the cache key from the call's arguments.
    :param name: the cache's name (default: the function's module and qualified name);
        change it to invalidate results after changing the function.
    The wrapper gains ``cache_clear()``.
    """

    def decorate(fn: F) -> F:
        ns = store.raw.internal_ns("cached", name or f"{fn.__module__}.{fn.__qualname__}")

        def lookup(k: str) -> tuple[bool, Any]:
            item = store.raw.read(ns, k)
            if item is None:
                return False, None
            return True, item.value["r"]

        def save(k: str, result: Any) -> None:
            store.raw.write([(ns, k, {"r": result})], ttl=ttl)

        def clear() -> None:
            store.raw.write(ranges=[(ns, "", None)])

        if inspect.iscoroutinefunction(fn):
            # asyncio only for async functions: importing it costs ~9 MB of RSS (ssl).
            import asyncio

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                k = key(*args, **kwargs)
                try:
                    with store.raw.memory_only():
                        hit, value = lookup(k)
                except ColdReadError:
                    hit, value = await asyncio.to_thread(lookup, k)
                if hit:
                    return value
                result = await fn(*args, **kwargs)
                await asyncio.to_thread(save, k, result)
                return result

            awrapper.cache_clear = clear  # type: ignore[attr-defined]
            return cast(F, awrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            k = key(*args, **kwargs)
            hit, value = lookup(k)
            if hit:
                return value
            result = fn(*args, **kwargs)
            save(k, result)
            return result

        wrapper.cache_clear = clear  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorate

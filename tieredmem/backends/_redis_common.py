"""What the Redis backends share: one Redis server (:mod:`tieredmem.backends.redis`) and
a Redis Cluster (:mod:`tieredmem.backends.redis_cluster`).

Both store an item as the same hash (``v`` frame, ``c`` created, ``u`` updated, ``e``
expires, ``t`` ttl) and a namespace's keys as one sorted set (all scores 0), and both
write a batch with a Lua script that takes the same operation arguments.  This module
holds those parts once: URL options, row decoding, the operations' script arguments and
the Lua that applies them, error text with the password scrubbed, and the reads that
follow from ``keys``/``get_many``/``namespaces`` (:class:`RedisBase`).  Each backend
keeps its own key layout, hash tags, retries and coherence.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit, urlunsplit

from ..errors import BackendUnavailableError, TieredMemError, UnsupportedURLError
from . import Delete, DeleteRange, Op, Put, Row, Touch, redact_url

__all__ = [
    "HK",
    "TOP",
    "WRITE_OPS",
    "RedisBase",
    "RedisURL",
    "coherence_mode",
    "cold_stats",
    "decode_row",
    "encode_ops",
    "operation_error",
    "parse_url",
    "scrub",
]

#: Separates a namespace from a key in a Redis key or member.
HK = b"\x1e"
#: The upper bound :func:`~tieredmem.backends.sqlite.prefix_bounds` gives the empty prefix.
TOP = "\U0010ffff"


# -- URLs --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RedisURL:
    """A Redis URL taken apart: its parts, its query and what both backends read of it."""

    #: ``urlsplit`` of the URL.
    parts: SplitResult
    #: The query, parsed (each name to its values).
    query: dict[str, list[str]]
    #: The URL without its query (password included: only for the connection).
    bare: str
    #: :attr:`bare` as it may be shown: its password replaced by ``***``.
    shown: str
    #: The key prefix (``prefix=``, ``tm:`` by default).
    prefix: str
    #: The password in the URL, ``""`` without one (only for :func:`scrub`).
    password: str

    def option(self, name: str, default: str) -> str:
        """The first value of query parameter *name*, else *default*."""
        return self.query.get(name, [default])[0]


def parse_url(url: str) -> RedisURL:
    """Take *url* apart (nothing is checked here beyond what ``urlsplit`` refuses).

    >>> u = parse_url("redis://:pw@h:6379/0?prefix=app:")
    >>> (u.shown, u.prefix, u.password)
    ('redis://:***@h:6379/0', 'app:', 'pw')
    """
    parts = urlsplit(url)
    try:
        password = parts.password or ""
    except ValueError:
        password = ""
    query = parse_qs(parts.query)
    bare = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return RedisURL(
        parts=parts,
        query=query,
        bare=bare,
        shown=redact_url(bare),
        prefix=query.get("prefix", ["tm:"])[0],
        password=password,
    )


def coherence_mode(mode: str) -> str:
    """*mode* if it is a coherence mode (``strict`` or ``tracking``).

    :raises UnsupportedURLError: it is not.
    """
    if mode not in ("strict", "tracking"):
        raise UnsupportedURLError(
            f"coherence must be 'strict' or 'tracking' in a Redis URL, not {mode!r}"
        )
    return mode


# -- errors ------------------------------------------------------------------------------
def scrub(exc: BaseException, password: str) -> str:
    """*exc*'s message without *password* (in case a library echoed it).

    >>> scrub(ValueError("bad pw in pw"), "pw")
    'bad *** in ***'
    """
    text = str(exc)
    return text.replace(password, "***") if password else text


def operation_error(where: str, reason: str, down: str | None) -> TieredMemError:
    """The error of a call that failed at *where* (``Redis at <url>``) for *reason*.

    :param down: what to do if the server is unavailable (the call may succeed later),
        ``None`` for any other error.
    """
    if down is not None:
        return BackendUnavailableError(
            f"{where}: {reason} (the operation did not complete; {down})"
        )
    return TieredMemError(f"{where}: {reason} (the operation did not complete)")


# -- rows and writes ---------------------------------------------------------------------
def _num(v: bytes | None) -> float | None:
    return None if v is None else float(v)


def decode_row(ns: str, key: str, h: dict[bytes, bytes]) -> Row | None:
    """The row an item's hash *h* holds, ``None`` for an empty hash (no such item)."""
    if not h:
        return None
    return Row(
        ns, key, h[b"v"], float(h[b"c"]), float(h[b"u"]), _num(h.get(b"e")), _num(h.get(b"t"))
    )


def encode_ops(ops: Sequence[Op]) -> list[Any]:
    """The script arguments of *ops*, as :data:`WRITE_OPS` reads them::

    "P" ns key frame now expires|"" created|"" ttl|""
    "D" ns key | "R" ns start stop|"" | "T" ns key now
    """
    args: list[Any] = []
    for op in ops:
        if isinstance(op, Put):
            args += [
                "P",
                op.ns,
                op.key,
                op.frame,
                repr(op.now),
                "" if op.expires_at is None else repr(op.expires_at),
                "" if op.created is None else repr(op.created),
                "" if op.ttl is None else repr(op.ttl),
            ]
        elif isinstance(op, Delete):
            args += ["D", op.ns, op.key]
        elif isinstance(op, DeleteRange):
            args += ["R", op.ns, op.start, "" if op.stop is None else op.stop]
        elif isinstance(op, Touch):
            args += ["T", op.ns, op.key, repr(op.now)]
    return args


#: The Lua that applies the operations of :func:`encode_ops`, from ``ARGV[4]`` on.  The
#: script it ends defines before it: ``base`` (the prefix of the ``r:`` and ``k:`` keys),
#: ``created`` (a table: each put's created time is appended) and the layout's functions
#: ``seen(ns)`` (before each operation), ``drop(ns, key)``, ``expiring(ns, key, exp)``,
#: ``lasting(ns, key)`` (the item has no expiry) and ``filled(ns)`` (after a put).
WRITE_OPS = r"""
local t = redis.call('TIME')
local server_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Native expiry reclaims memory even if no sweep runs; logical expiry (the store's clock,
-- which tests inject) stays authoritative, so a time in the server's past is left to the
-- sweep instead of deleting at once.
local function native_expiry(r, exp)
  local ms = math.floor(tonumber(exp) * 1000) + 60000
  if ms > server_ms then redis.call('PEXPIREAT', r, ms) else redis.call('PERSIST', r) end
end
local i = 4
while i <= #ARGV do
  local op, ns = ARGV[i], ARGV[i+1]
  seen(ns)
  if op == 'P' then
    local key, frame, now = ARGV[i+2], ARGV[i+3], ARGV[i+4]
    local exp, c, ttl = ARGV[i+5], ARGV[i+6], ARGV[i+7]
    local r = base .. 'r:' .. ns .. '\30' .. key
    local old = redis.call('HGET', r, 'c')
    if c == '' then c = old or now end
    redis.call('HSET', r, 'v', frame, 'c', c, 'u', now)
    if exp == '' then
      redis.call('HDEL', r, 'e', 't')
      redis.call('PERSIST', r)
      lasting(ns, key)
    else
      redis.call('HSET', r, 'e', exp)
      native_expiry(r, exp)
      if ttl ~= '' then redis.call('HSET', r, 't', ttl) else redis.call('HDEL', r, 't') end
      expiring(ns, key, exp)
    end
    redis.call('ZADD', base .. 'k:' .. ns, 0, key)
    filled(ns)
    table.insert(created, c)
    i = i + 8
  elseif op == 'D' then
    drop(ns, ARGV[i+2])
    i = i + 3
  elseif op == 'R' then
    local start, stop = ARGV[i+2], ARGV[i+3]
    local hi = '+'
    if stop ~= '' then hi = '(' .. stop end
    local keys = redis.call('ZRANGEBYLEX', base .. 'k:' .. ns, '[' .. start, hi)
    for _, key in ipairs(keys) do drop(ns, key) end
    i = i + 4
  elseif op == 'T' then
    local key, now = ARGV[i+2], ARGV[i+3]
    local r = base .. 'r:' .. ns .. '\30' .. key
    local ttl = redis.call('HGET', r, 't')
    if ttl then
      local exp = tonumber(now) + tonumber(ttl)
      redis.call('HSET', r, 'e', tostring(exp))
      native_expiry(r, exp)
      expiring(ns, key, exp)
    end
    i = i + 4
  else
    return redis.error_reply('unknown op ' .. op)
  end
end
"""


def cold_stats(used_memory: int, rows: int) -> dict[str, Any]:
    """A Redis backend's ``stats()``: the server's memory as the cold tier's bytes."""
    return {
        "cold_bytes": used_memory,
        "cold_free_bytes": 0,
        "wal_bytes": 0,
        "cold_rows": rows,
        "format_version": 1,
    }


# -- reads -------------------------------------------------------------------------------
class RedisBase(ABC):
    """The reads and dictionaries both Redis backends build the same way on their own
    key layout and round trips."""

    #: Every call is a network round trip (the store keeps them off event loops).
    remote = True
    #: No full-text index: TieredStore's hybrid search is a vector search here.
    has_text_search = False

    _client: Any

    @abstractmethod
    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run *fn* (one or more commands) on an open backend, its errors typed."""

    @abstractmethod
    def _index(self, ns: str) -> bytes:
        """The key of *ns*'s sorted set of keys."""

    @abstractmethod
    def _dict_keys(self) -> tuple[str, str]:
        """The keys of the zstd dictionaries hash and of their id counter."""

    @abstractmethod
    def get_many(self, keys: Sequence[tuple[str, str]]) -> list[Row | None]:
        """The rows of *keys*, in order (``None`` for a missing item)."""

    @abstractmethod
    def namespaces(
        self,
        ns_prefix: str,
        *,
        after: str | None = None,
        limit: int = 1000,
        skip_prefix: str | None = None,
    ) -> list[str]:
        """Namespaces holding items under *ns_prefix*, in order."""

    def keys(self, ns: str, start: str = "", stop: str | None = None) -> list[str]:
        """The keys of *ns* from *start* up to (not including) *stop*, in order."""

        def run() -> Any:
            hi = b"+" if stop is None else b"(" + stop.encode()
            return self._client.zrangebylex(self._index(ns), b"[" + start.encode(), hi)

        found = self._call(run)
        return [k.decode() for k in found]

    def range(
        self,
        ns: str,
        start: str | None = None,
        stop: str | None = None,
        *,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Row]:
        """The rows of *ns* from *start* up to *stop*, at most *limit*."""
        keys = self.keys(ns, start or "", stop)
        if reverse:
            keys.reverse()
        if limit is not None:
            keys = keys[:limit]
        return [r for r in self.get_many([(ns, k) for k in keys]) if r is not None]

    def scan(
        self,
        ns_prefix: str,
        *,
        after: tuple[str, str] | None = None,
        limit: int = 1000,
        skip_prefix: str | None = None,
    ) -> list[Row]:
        """Rows of the namespaces under *ns_prefix*, in order, strictly after *after*."""
        out: list[Row] = []
        start_ns = after[0] if after is not None else None
        spaces = self.namespaces(ns_prefix, limit=10**9, skip_prefix=skip_prefix)
        for ns in spaces:
            if start_ns is not None and ns < start_ns:
                continue
            first = ""
            if after is not None and ns == start_ns:
                first = after[1] + "\x00"  # strictly after
            out += self.range(ns, first, limit=limit - len(out))
            if len(out) >= limit:
                break
        return out

    def text_search(
        self, ns_prefix: str, query: str, *, limit: int, skip_prefix: str | None = None
    ) -> list[tuple[Row, float]]:
        """Refused: plain Redis has no text index.

        :raises TieredMemError: always, saying what to use instead."""
        raise TieredMemError(
            "full-text search (query=) is not available on the Redis backend: plain Redis "
            "has no text index; use filter=, or the SQLite backend for text search"
        )

    # -- zstd dictionaries ---------------------------------------------------------------
    def dictionaries(self) -> dict[int, bytes]:
        """Every zstd dictionary, by id."""
        dicts, _ = self._dict_keys()
        found = self._call(lambda: self._client.hgetall(dicts))
        return {int(k): bytes(v) for k, v in found.items()}

    def dictionary(self, dict_id: int) -> bytes | None:
        """The zstd dictionary *dict_id*, ``None`` if there is none."""
        dicts, _ = self._dict_keys()
        data = self._call(lambda: self._client.hget(dicts, str(dict_id)))
        return None if data is None else bytes(data)

    def add_dictionary(self, data: bytes) -> int:
        """Store zstd dictionary *data* under a new id, returned."""
        dicts, counter = self._dict_keys()
        dict_id = int(self._call(lambda: self._client.incr(counter)))
        self._call(lambda: self._client.hset(dicts, str(dict_id), data))
        return dict_id

    def maintain(self) -> dict[str, Any]:
        """Nothing to do: Redis reclaims memory itself."""
        return {}

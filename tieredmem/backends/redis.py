"""The Redis backend: the cold tier on a plain Redis 7 server (no modules).

``tieredmem.open("redis://localhost:6379/0")`` — same API, the hot tier still in front.

URL parameters: ``prefix`` (``tm:`` by default), ``coherence``: ``strict`` (default, one
version check before each read) or ``tracking`` (pushed invalidations, see
:mod:`tieredmem.backends._redis_tracking` for its guarantee), ``tracking_bound``: seconds,
the tracking mode's staleness bound (default 1).

Layout (all keys under the prefix):

- ``<p>r:<ns>\\x1e<key>``: a hash per item: ``v`` frame, ``c`` created, ``u`` updated,
  ``e`` expires (absent: never), ``t`` ttl;
- ``<p>k:<ns>``: a sorted set of the namespace's keys (all scores 0: ordered by bytes), for
  range reads;
- ``<p>ns``: a sorted set of namespaces holding items, for prefix scans;
- ``<p>exp``: expiry times (score) of items with a ttl (the sweep's index; the item's hash
  also gets a native ``PEXPIREAT`` a minute after its expiry, so memory comes back even if
  no sweep runs);
- ``<p>ver``: incremented by every write batch (and every expiry sweep that deletes
  something), and ``<p>vid``: a fresh random 64-bit id, chosen by the writing client, set by
  every such increment in the same script;
- ``<p>w:<writer>``: set and deleted by every write batch's script (and ``<p>w:sweep`` by
  every sweep that deletes something), so tracking clients are signalled; never left behind;
- ``<p>dicts``: a hash of zstd dictionaries by id (see :mod:`tieredmem.codec`), ids from
  ``<p>dictid``.

Every write batch is one Lua script, so it is atomic, and it returns the previous and the
new ``(ver, vid)``.

Coherence across hosts: the hot tier is trusted only while the server still reports the
``(ver, vid)`` pair this client last saw (one round trip before a read; the value itself
still comes from memory).  Every change to the items (a write batch, a sweep that expires
something; not Redis's own native expiry of an already expired item, nor a new dictionary)
sets a new random ``vid`` in the same atomic script as the change (and RDB snapshots, the
AOF and replicas carry a script whole),
so a pair names one state of the data, however ``ver`` got there: after a restore from a
snapshot or AOF that lost its tail, a failover to a lagging replica or a flush, ``ver`` can
climb back to a value a client saw, but not with the same ``vid`` (but for a 2**-64 chance
per change).  A pair that does come back (a rollback to exactly a state a client saw)
comes back with the very data it named, so a hot tier filled at it is still right.  A
writer takes the new pair as seen only if the script's previous pair is the one it had
seen, i.e. nothing but its own batch happened since it last looked; anything else (another
process's write, a rollback, its own expiry sweep) drops its hot tier at its next check.
Full-text search is refused with a clear error (plain Redis has no index to do it with
bounded memory); filters work.  Connection errors are retried with exponential backoff,
each retry logged; a write that could not be committed raises, never silently drops.  A
refused password fails at once.  The URL's password is only handed to redis-py:
:attr:`RedisBackend.url`, errors and logs show it as ``***``.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit, urlunsplit

from ..errors import (
    BackendUnavailableError,
    StoreClosedError,
    TieredMemError,
    UnsupportedURLError,
)
from . import Delete, DeleteRange, Op, Put, Row, Touch, redact_url
from ._redis_tracking import FORKS, Tracker
from .sqlite import prefix_bounds

__all__ = ["RedisBackend"]

log = logging.getLogger(__name__)

_HK = b"\x1e"
_TOP = "\U0010ffff"

# KEYS: none (all keys derive from the prefix, passed as ARGV[1]).
# ARGV: prefix, a random id for <p>vid, the writer's id, then ops:
#       "P" ns key frame now expires|"" created|"" ttl|""
#       "D" ns key | "R" ns start stop|"" | "T" ns key now
_BUMP = r"""
-- Returns the previous and the new (ver, vid): {prev_ver, prev_vid, ver, vid}.
-- Setting and deleting <p>w:<writer> signals the change to tracking clients (see
-- tieredmem.backends._redis_tracking) and leaves no key behind.
local function bump(p, vid, writer)
  local prev = redis.call('GET', p .. 'vid') or ''
  local ver = redis.call('INCR', p .. 'ver')
  redis.call('SET', p .. 'vid', vid)
  redis.call('SET', p .. 'w:' .. writer, vid)
  redis.call('DEL', p .. 'w:' .. writer)
  return {ver - 1, prev, ver, vid}
end
"""

_WRITE = (
    _BUMP
    + r"""
local p = ARGV[1]
local created = {}
local i = 4
local t = redis.call('TIME')
local server_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Native expiry reclaims memory even if no sweep runs; logical expiry (the store's clock,
-- which tests inject) stays authoritative, so a time in the server's past is left to the
-- sweep instead of deleting at once.
local function native_expiry(r, exp)
  local ms = math.floor(tonumber(exp) * 1000) + 60000
  if ms > server_ms then redis.call('PEXPIREAT', r, ms) else redis.call('PERSIST', r) end
end
local function drop(ns, key)
  local r = p .. 'r:' .. ns .. '\30' .. key
  if redis.call('DEL', r) == 1 then
    redis.call('ZREM', p .. 'k:' .. ns, key)
    redis.call('ZREM', p .. 'exp', ns .. '\30' .. key)
    if redis.call('ZCARD', p .. 'k:' .. ns) == 0 then redis.call('ZREM', p .. 'ns', ns) end
  end
end
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'P' then
    local ns, key, frame, now = ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4]
    local exp, c, ttl = ARGV[i+5], ARGV[i+6], ARGV[i+7]
    local r = p .. 'r:' .. ns .. '\30' .. key
    local old = redis.call('HGET', r, 'c')
    if c == '' then c = old or now end
    redis.call('HSET', r, 'v', frame, 'c', c, 'u', now)
    if exp == '' then
      redis.call('HDEL', r, 'e', 't')
      redis.call('PERSIST', r)
      redis.call('ZREM', p .. 'exp', ns .. '\30' .. key)
    else
      redis.call('HSET', r, 'e', exp)
      native_expiry(r, exp)
      if ttl ~= '' then redis.call('HSET', r, 't', ttl) else redis.call('HDEL', r, 't') end
      redis.call('ZADD', p .. 'exp', exp, ns .. '\30' .. key)
    end
    redis.call('ZADD', p .. 'k:' .. ns, 0, key)
    redis.call('ZADD', p .. 'ns', 0, ns)
    table.insert(created, c)
    i = i + 8
  elseif op == 'D' then
    drop(ARGV[i+1], ARGV[i+2])
    i = i + 3
  elseif op == 'R' then
    local ns, start, stop = ARGV[i+1], ARGV[i+2], ARGV[i+3]
    local hi = '+'
    if stop ~= '' then hi = '(' .. stop end
    local keys = redis.call('ZRANGEBYLEX', p .. 'k:' .. ns, '[' .. start, hi)
    for _, key in ipairs(keys) do drop(ns, key) end
    i = i + 4
  elseif op == 'T' then
    local ns, key, now = ARGV[i+1], ARGV[i+2], ARGV[i+3]
    local r = p .. 'r:' .. ns .. '\30' .. key
    local ttl = redis.call('HGET', r, 't')
    if ttl then
      local exp = tonumber(now) + tonumber(ttl)
      redis.call('HSET', r, 'e', tostring(exp))
      native_expiry(r, exp)
      redis.call('ZADD', p .. 'exp', exp, ns .. '\30' .. key)
    end
    i = i + 4
  else
    return redis.error_reply('unknown op ' .. op)
  end
end
return {bump(p, ARGV[2], ARGV[3]), created}
"""
)

# ARGV: prefix, now, limit, a random id for <p>vid
_EXPIRE = (
    _BUMP
    + r"""
local p = ARGV[1]
local due = redis.call('ZRANGEBYSCORE', p .. 'exp', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  local cut = string.find(member, '\30', 1, true)
  local ns, key = string.sub(member, 1, cut - 1), string.sub(member, cut + 1)
  local r = p .. 'r:' .. member
  redis.call('DEL', r)
  redis.call('ZREM', p .. 'k:' .. ns, key)
  redis.call('ZREM', p .. 'exp', member)
  if redis.call('ZCARD', p .. 'k:' .. ns) == 0 then redis.call('ZREM', p .. 'ns', ns) end
end
local v = {}
if #due > 0 then v = bump(p, ARGV[4], 'sweep') end
return {due, v}
"""
)


#: Retries of an operation whose connection failed, with exponential backoff.
_RETRIES = 6
_BACKOFF_BASE, _BACKOFF_CAP = 0.05, 2.0


def _backoff(failures: int) -> float:
    """Seconds to wait before retry *failures* (1-based): 0.1, 0.2, 0.4, ... up to 2."""
    return float(min(_BACKOFF_CAP, _BACKOFF_BASE * 2**failures))


_RETRY_SECONDS = sum(_backoff(n) for n in range(1, _RETRIES + 1))


class _RetryLog:
    """An exponential backoff for redis-py's ``Retry`` (its ``compute``/``reset``
    interface) that logs each retry with the redacted URL, so a server that went away is
    visible in the logs while the client waits for it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def reset(self) -> None:
        """Nothing to reset (the delay depends only on the failure count)."""

    def compute(self, failures: int) -> float:
        """The delay before retry *failures* (1-based), logged."""
        delay = _backoff(failures)
        log.warning(
            "connection to Redis at %s failed; retry %d of %d in %.2f s",
            self.url,
            failures,
            _RETRIES,
            delay,
        )
        return delay


def _refused(redis: Any, exc: BaseException) -> bool:
    """True if *exc* says the server refused the credentials (retrying cannot help)."""
    if isinstance(exc, redis.AuthenticationError):
        return True
    text = str(exc)
    return any(word in text for word in ("NOAUTH", "WRONGPASS", "authenticat", "AUTH <user>"))


def _num(v: bytes | None) -> float | None:
    return None if v is None else float(v)


class RedisBackend:
    """Cold tier on Redis.  ``url`` is ``redis://[:password@]host:port/db[?prefix=tm:]``."""

    #: Every call is a network round trip (the store keeps them off event loops).
    remote = True

    def __init__(self, url: str, **_: Any) -> None:
        try:
            import redis
            from redis.retry import Retry
        except ImportError:
            raise TieredMemError(
                "the Redis backend needs redis-py: pip install 'tieredmem[redis]'"
            ) from None
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self.prefix = query.get("prefix", ["tm:"])[0]
        mode = query.get("coherence", ["strict"])[0]
        if mode not in ("strict", "tracking"):
            raise UnsupportedURLError(
                f"coherence must be 'strict' or 'tracking' in a Redis URL, not {mode!r}"
            )
        #: ``strict`` (a version check before each read) or ``tracking`` (pushed signals).
        self.coherence = mode
        try:
            bound = float(query.get("tracking_bound", ["1"])[0])
        except ValueError:
            bound = -1.0
        if not bound > 0:
            raise UnsupportedURLError(
                "tracking_bound must be a positive number of seconds in a Redis URL"
            )
        secret = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        #: The URL as it may be shown: its password replaced by ``***``.
        self.url = redact_url(secret)
        try:
            self._password = parts.password or ""
        except ValueError:
            self._password = ""
        self._redis = redis
        options: dict[str, Any] = {"socket_timeout": 10, "health_check_interval": 30}
        try:
            # A client without retries of its own for the first contact (see _first_ping).
            probe = redis.Redis.from_url(
                secret, retry=Retry(cast(Any, _RetryLog(self.url)), 0), **options
            )
        except ValueError as exc:  # e.g. "Port could not be cast to integer value"
            raise UnsupportedURLError(
                f"malformed Redis URL {self.url}: {self._scrub(exc)}; expected "
                "redis://[[user]:password@]host[:port][/db][?prefix=tm:]"
            ) from None
        try:
            self._first_ping(probe)
        finally:
            probe.close()
        self._client: Any = redis.Redis.from_url(
            secret,
            retry=Retry(cast(Any, _RetryLog(self.url)), _RETRIES),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            **options,
        )
        try:
            self._client.ping()
            clustered = int(self._client.info("cluster").get("cluster_enabled", 0))
        except redis.RedisError as exc:
            self._client.close()
            raise self._unavailable(exc) from None
        if clustered:
            self._client.close()
            # Every write batch is one Lua script over keys of many slots, and the
            # coherence version is one key: a cluster would refuse them (CROSSSLOT).
            raise UnsupportedURLError(
                f"Redis at {self.url} is a Redis Cluster node (cluster_enabled:1); the "
                "Redis backend runs on one Redis server (with replicas and Sentinel if you "
                "need failover), not on a cluster: point the URL at a standalone server"
            )
        self._write_script = self._client.register_script(_WRITE)
        self._expire_script = self._client.register_script(_EXPIRE)
        self._secret = secret
        self._seen_ver: tuple[int, bytes] | None = None
        self._seen_lock = threading.Lock()
        self._closed = False
        self._forks = FORKS[0]
        self._writer = secrets.token_hex(8)
        self._tracker: Tracker | None = None
        self.foreign_change()
        if mode == "tracking":
            self._tracker = self._track(bound)

    def _track(self, bound: float) -> Tracker:
        """Start the tracking thread (see :mod:`tieredmem.backends._redis_tracking`)."""
        from redis import connection

        kwargs: dict[str, Any] = cast(Any, connection).parse_url(self._secret)
        Connection = connection.Connection
        kind = kwargs.pop("connection_class", Connection)  # SSLConnection for rediss://
        kwargs.update(protocol=2, socket_timeout=10)  # RESP2: signals arrive as messages
        connect = lambda: kind(**kwargs)  # noqa: E731
        return Tracker(connect, self.prefix.encode(), self._writer.encode(), bound=bound)

    def _forked(self) -> None:
        """In a child process: a writer id of its own, and a tracking thread (threads do
        not survive a fork)."""
        if self._forks == FORKS[0]:
            return
        self._forks = FORKS[0]
        self._writer = secrets.token_hex(8)
        if self._tracker is not None:
            self._tracker = self._track(self._tracker.bound)

    def _first_ping(self, probe: Any) -> None:
        """Reach the server, retrying an unanswered connection with backoff (each retry
        logged) whatever redis-py's version does at connect; a refused password or any
        other answer fails at once.

        :raises BackendUnavailableError: no answer after the retries, or refused.
        """
        redis = self._redis
        for failures in range(_RETRIES + 1):
            try:
                probe.ping()
                return
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if _refused(redis, exc) or failures == _RETRIES:
                    raise self._unavailable(exc) from None
                delay = _backoff(failures + 1)
                log.warning(
                    "cannot reach Redis at %s (%s); retry %d of %d in %.2f s",
                    self.url,
                    self._scrub(exc).rstrip(". "),
                    failures + 1,
                    _RETRIES,
                    delay,
                )
                time.sleep(delay)
            except redis.RedisError as exc:
                raise self._unavailable(exc) from None

    # -- helpers ----------------------------------------------------------------------
    def _k(self, kind: str, *parts: str) -> bytes:
        return (self.prefix + kind + ":").encode() + _HK.join(p.encode() for p in parts)

    def _row(self, ns: str, key: str, h: dict[bytes, bytes]) -> Row | None:
        if not h:
            return None
        return Row(
            ns, key, h[b"v"], float(h[b"c"]), float(h[b"u"]), _num(h.get(b"e")), _num(h.get(b"t"))
        )

    def _check(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{self.url} is closed; open the store again to use it")

    def _scrub(self, exc: BaseException) -> str:
        """*exc*'s message without the password (in case a library echoed it)."""
        text = str(exc)
        return text.replace(self._password, "***") if self._password else text

    def _unavailable(self, exc: Exception) -> BackendUnavailableError:
        """The error of a server that cannot be reached or refused us, saying what to do."""
        if _refused(self._redis, exc):
            advice = (
                "the server refused the credentials: check the password (and user) in the "
                "URL, redis://[user]:password@host:port/db"
            )
        else:
            advice = (
                f"no answer after {_RETRIES} retries (about {_RETRY_SECONDS:.0f} s): check "
                "that redis-server is running and that the host, port and TLS scheme "
                "(rediss://) are right"
            )
        reason = self._scrub(exc).rstrip(". ")
        return BackendUnavailableError(f"cannot use Redis at {self.url}: {reason}; {advice}")

    def _error(self, exc: Exception) -> TieredMemError:
        if isinstance(exc, (self._redis.ConnectionError, self._redis.TimeoutError)):
            return BackendUnavailableError(
                f"Redis at {self.url}: {self._scrub(exc)} (the operation did not complete; "
                "check that the server is running and reachable)"
            )
        return TieredMemError(
            f"Redis at {self.url}: {self._scrub(exc)} (the operation did not complete)"
        )

    # -- reads -------------------------------------------------------------------------
    def get(self, ns: str, key: str) -> Row | None:
        self._check()
        try:
            return self._row(ns, key, self._client.hgetall(self._k("r", ns, key)))
        except self._redis.RedisError as exc:
            raise self._error(exc) from exc

    def get_many(self, keys: Sequence[tuple[str, str]]) -> list[Row | None]:
        self._check()
        try:
            pipe = self._client.pipeline(transaction=True)
            for ns, key in keys:
                pipe.hgetall(self._k("r", ns, key))
            return [self._row(ns, key, h) for (ns, key), h in zip(keys, pipe.execute())]
        except self._redis.RedisError as exc:
            raise self._error(exc) from exc

    def keys(self, ns: str, start: str = "", stop: str | None = None) -> list[str]:
        self._check()
        hi = b"+" if stop is None else b"(" + stop.encode()
        try:
            found = self._client.zrangebylex(self._k("k", ns), b"[" + start.encode(), hi)
        except self._redis.RedisError as exc:
            raise self._error(exc) from exc
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
        keys = self.keys(ns, start or "", stop)
        if reverse:
            keys.reverse()
        if limit is not None:
            keys = keys[:limit]
        return [r for r in self.get_many([(ns, k) for k in keys]) if r is not None]

    def namespaces(
        self,
        ns_prefix: str,
        *,
        after: str | None = None,
        limit: int = 1000,
        skip_prefix: str | None = None,
    ) -> list[str]:
        self._check()
        lo, hi = prefix_bounds(ns_prefix)
        low = b"(" + after.encode() if after is not None else b"[" + lo.encode()
        high = b"+" if hi == _TOP else b"(" + hi.encode()
        s_lo, s_hi = prefix_bounds(skip_prefix) if skip_prefix else ("", "")
        out: list[str] = []
        try:
            offset = 0
            while len(out) < limit:
                page = self._client.zrangebylex(
                    self.prefix.encode() + b"ns", low, high, offset, 500
                )
                for raw in page:
                    ns = raw.decode()
                    if not (s_lo <= ns < s_hi):
                        out.append(ns)
                if len(page) < 500:
                    break
                offset += 500
        except self._redis.RedisError as exc:
            raise self._error(exc) from exc
        return out[:limit]

    def scan(
        self,
        ns_prefix: str,
        *,
        after: tuple[str, str] | None = None,
        limit: int = 1000,
        skip_prefix: str | None = None,
    ) -> list[Row]:
        out: list[Row] = []
        start_ns = after[0] if after is not None else None
        spaces = self.namespaces(ns_prefix, limit=10**9, skip_prefix=skip_prefix)
        for ns in spaces:
            if start_ns is not None and ns < start_ns:
                continue
            first = ""
            if after is not None and ns == start_ns:
                first = after[1] + "\x00"  # strictly after
            for row in self.range(ns, first, limit=limit - len(out)):
                out.append(row)
            if len(out) >= limit:
                break
        return out

    #: No full-text index: TieredStore's hybrid search is a vector search here.
    has_text_search = False

    def text_search(
        self, ns_prefix: str, query: str, *, limit: int, skip_prefix: str | None = None
    ) -> list[tuple[Row, float]]:
        raise TieredMemError(
            "full-text search (query=) is not available on the Redis backend: plain Redis "
            "has no text index; use filter=, or the SQLite backend for text search"
        )

    # -- writes ------------------------------------------------------------------------
    def write(self, ops: Sequence[Op]) -> list[float]:
        self._check()
        self._forked()
        args: list[Any] = [self.prefix, secrets.token_hex(8), self._writer]
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
        try:
            (prev_ver, prev_vid, ver, vid), created = self._write_script(args=args)
        except self._redis.RedisError as exc:
            raise self._error(exc) from exc
        with self._seen_lock:
            if (int(prev_ver), bytes(prev_vid)) == self._seen_ver:
                self._seen_ver = (int(ver), bytes(vid))  # only our batch since we last looked
        return [float(c) for c in created]

    def expire(self, now: float, *, limit: int = 10_000) -> list[tuple[str, str]]:
        self._check()
        try:
            # A sweep's own bump is not taken as seen: it drops this client's hot tier too.
            due, _ = self._expire_script(args=[self.prefix, repr(now), limit, secrets.token_hex(8)])
        except self._redis.RedisError as exc:
            raise self._error(exc) from exc
        out = []
        for member in due:
            ns, _, key = member.partition(_HK)
            out.append((ns.decode(), key.decode()))
        return out

    # -- zstd dictionaries -------------------------------------------------------------
    def dictionaries(self) -> dict[int, bytes]:
        self._check()
        try:
            found = self._client.hgetall(self.prefix.encode() + b"dicts")
        except self._redis.RedisError as exc:
            raise self._error(exc) from exc
        return {int(k): bytes(v) for k, v in found.items()}

    def dictionary(self, dict_id: int) -> bytes | None:
        self._check()
        try:
            data = self._client.hget(self.prefix.encode() + b"dicts", str(dict_id))
        except self._redis.RedisError as exc:
            raise self._error(exc) from exc
        return None if data is None else bytes(data)

    def add_dictionary(self, data: bytes) -> int:
        self._check()
        try:
            dict_id = int(self._client.incr(self.prefix.encode() + b"dictid"))
            self._client.hset(self.prefix.encode() + b"dicts", str(dict_id), data)
        except self._redis.RedisError as exc:
            raise self._error(exc) from exc
        return dict_id

    # -- coherence, maintenance, stats -------------------------------------------------
    def unchanged(self) -> bool:
        """Tracking mode: True while the tracking connection reports nothing new (see
        :mod:`tieredmem.backends._redis_tracking`); strict mode: always ``False`` ("ask")."""
        if self._forks != FORKS[0]:
            self._forked()
        tracker = self._tracker
        return tracker is not None and tracker.quiet()

    def foreign_change(self) -> bool:
        """One round trip: has ``(ver, vid)`` moved since we last looked (beyond our writes)?

        Every change sets a new random ``vid``, so a ``ver`` that climbs back to the value we
        saw (after a rollback of the server's data) cannot pass for it.  In tracking mode
        also ``True`` when the tracking connection was (re)established since the last
        check: signals may have been lost while it was down."""
        if self._closed:
            return False
        tracker = self._tracker
        if tracker is not None:
            tracker.before_check()
        p = self.prefix.encode()
        try:
            raw, vid = self._client.mget([p + b"ver", p + b"vid"])
        except self._redis.RedisError as exc:
            raise self._error(exc) from exc
        reset = tracker is not None and tracker.after_check()
        ver = (int(raw or 0), bytes(vid or b""))
        with self._seen_lock:
            changed = self._seen_ver is not None and ver != self._seen_ver
            self._seen_ver = ver
        return changed or reset

    def maintain(self) -> dict[str, Any]:
        return {}

    def stats(self) -> dict[str, Any]:
        self._check()
        try:
            rows = 0
            for ns in self.namespaces("", limit=10**9):
                rows += int(self._client.zcard(self._k("k", ns)))
            memory = int(self._client.info("memory").get("used_memory", 0))
        except self._redis.RedisError as exc:
            raise self._error(exc) from exc
        return {
            "cold_bytes": memory,
            "cold_free_bytes": 0,
            "wal_bytes": 0,
            "cold_rows": rows,
            "format_version": 1,
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None
        self._client.close()

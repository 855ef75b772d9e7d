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
from collections.abc import Callable, Sequence
from typing import Any, cast

from ..errors import (
    BackendUnavailableError,
    StoreClosedError,
    TieredMemError,
    UnsupportedURLError,
)
from . import Op, Row
from ._redis_common import (
    HK,
    TOP,
    WRITE_OPS,
    RedisBase,
    coherence_mode,
    cold_stats,
    decode_row,
    encode_ops,
    operation_error,
    parse_url,
    scrub,
)
from ._redis_tracking import FORKS, Tracker, connector
from .sqlite import prefix_bounds

__all__ = ["RedisBackend"]

log = logging.getLogger(__name__)

# KEYS: none (all keys derive from the prefix, passed as ARGV[1]).
# ARGV: prefix, a random id for <p>vid, the writer's id, then ops (see encode_ops).
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
local base = ARGV[1]
local created = {}
local function seen(ns) end
local function drop(ns, key)
  local r = base .. 'r:' .. ns .. '\30' .. key
  if redis.call('DEL', r) == 1 then
    redis.call('ZREM', base .. 'k:' .. ns, key)
    redis.call('ZREM', base .. 'exp', ns .. '\30' .. key)
    if redis.call('ZCARD', base .. 'k:' .. ns) == 0 then redis.call('ZREM', base .. 'ns', ns) end
  end
end
local function expiring(ns, key, exp) redis.call('ZADD', base .. 'exp', exp, ns .. '\30' .. key) end
local function lasting(ns, key) redis.call('ZREM', base .. 'exp', ns .. '\30' .. key) end
local function filled(ns) redis.call('ZADD', base .. 'ns', 0, ns) end
"""
    + WRITE_OPS
    + r"""
return {bump(base, ARGV[2], ARGV[3]), created}
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


class RedisBackend(RedisBase):
    """Cold tier on Redis.  ``url`` is ``redis://[:password@]host:port/db[?prefix=tm:]``."""

    def __init__(self, url: str, **_: Any) -> None:
        try:
            import redis
            from redis.retry import Retry
        except ImportError:
            raise TieredMemError(
                "the Redis backend needs redis-py: pip install 'tieredmem[redis]'"
            ) from None
        parsed = parse_url(url)
        self.prefix = parsed.prefix
        mode = coherence_mode(parsed.option("coherence", "strict"))
        #: ``strict`` (a version check before each read) or ``tracking`` (pushed signals).
        self.coherence = mode
        try:
            bound = float(parsed.option("tracking_bound", "1"))
        except ValueError:
            bound = -1.0
        if not bound > 0:
            raise UnsupportedURLError(
                "tracking_bound must be a positive number of seconds in a Redis URL"
            )
        secret = parsed.bare
        #: The URL as it may be shown: its password replaced by ``***``.
        self.url = parsed.shown
        self._password = parsed.password
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
        connect = connector(self._secret)
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
        return (self.prefix + kind + ":").encode() + HK.join(p.encode() for p in parts)

    def _check(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{self.url} is closed; open the store again to use it")

    def _index(self, ns: str) -> bytes:
        return self._k("k", ns)

    def _dict_keys(self) -> tuple[str, str]:
        return f"{self.prefix}dicts", f"{self.prefix}dictid"

    def _call(self, fn: Callable[[], Any]) -> Any:
        self._check()
        try:
            return fn()
        except self._redis.RedisError as exc:
            raise self._error(exc) from exc

    def _scrub(self, exc: BaseException) -> str:
        """*exc*'s message without the password (in case a library echoed it)."""
        return scrub(exc, self._password)

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
        down = isinstance(exc, (self._redis.ConnectionError, self._redis.TimeoutError))
        return operation_error(
            f"Redis at {self.url}",
            self._scrub(exc),
            "check that the server is running and reachable" if down else None,
        )

    # -- reads -------------------------------------------------------------------------
    def get(self, ns: str, key: str) -> Row | None:
        return decode_row(ns, key, self._call(lambda: self._client.hgetall(self._k("r", ns, key))))

    def get_many(self, keys: Sequence[tuple[str, str]]) -> list[Row | None]:
        self._check()
        try:
            pipe = self._client.pipeline(transaction=True)
            for ns, key in keys:
                pipe.hgetall(self._k("r", ns, key))
            return [decode_row(ns, key, h) for (ns, key), h in zip(keys, pipe.execute())]
        except self._redis.RedisError as exc:
            raise self._error(exc) from exc

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
        high = b"+" if hi == TOP else b"(" + hi.encode()
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

    # -- writes ------------------------------------------------------------------------
    def write(self, ops: Sequence[Op]) -> list[float]:
        self._check()
        self._forked()
        args: list[Any] = [self.prefix, secrets.token_hex(8), self._writer, *encode_ops(ops)]
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
            ns, _, key = member.partition(HK)
            out.append((ns.decode(), key.decode()))
        return out

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

    def stats(self) -> dict[str, Any]:
        self._check()
        try:
            rows = 0
            for ns in self.namespaces("", limit=10**9):
                rows += int(self._client.zcard(self._k("k", ns)))
            memory = int(self._client.info("memory").get("used_memory", 0))
        except self._redis.RedisError as exc:
            raise self._error(exc) from exc
        return cold_stats(memory, rows)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None
        self._client.close()

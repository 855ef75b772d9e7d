"""The Redis Cluster backend: the cold tier spread over the masters of a Redis Cluster.

``tieredmem.open("redis+cluster://host:port/?prefix=tm:")`` (``rediss+cluster://`` for
TLS): any node of the cluster; the others are discovered.  URL parameters: ``prefix``
(``tm:``), ``coherence`` (``strict``, the default, or ``tracking``), ``tracking_bound``
(seconds, default 1), ``wait`` (replicas each write batch waits for, default 0) and
``wait_timeout`` (milliseconds, default 2000).

Units and hash tags.  A *unit* is what must change atomically: an item, a namespace's
key index, a history, a ``State``, a LangGraph thread.  Its keys share one hash tag, so
they live in one slot.  The unit of a namespace is its first two labels (three under
tieredmem's own ``tieredmem`` root: ``tieredmem/history/<name>``,
``tieredmem/lg/<thread>``, ...); its tag is a 64-bit hash of them.  Keys (``<p>`` the
prefix, ``<t>`` the tag):

- ``<p>{<t>}r:<ns>\\x1e<key>``: a hash per item, as on one server;
- ``<p>{<t>}k:<ns>``: the namespace's keys; ``<p>{<t>}x:<ns>``: its keys with an expiry;
- ``<p>w:{<t>}<writer>``: set and deleted by every write script, the tracking signal;
- ``<p>{n<i>}ns`` and ``<p>{e<i>}exp`` (``i`` < 16): the namespaces holding items and
  those holding items with an expiry, spread by hash over 16 sorted sets (on several
  masters), for listing, scans and the expiry sweep;
- ``<p>{d}dicts``, ``<p>{d}dictid``: zstd dictionaries.

Writes.  The operations of a batch on one unit are one Lua script (atomic).  A batch over
several units is split into one script per unit, run in order; each part is atomic, the
batch as a whole is not: a failure (or a crash) part-way leaves the earlier parts written
and raises.  :meth:`RedisClusterBackend.check_atomic` refuses a ``transaction()`` over
several units with :class:`~tieredmem.errors.CrossSlotError` before anything is written.
A namespace is added to its registry before the first script of this client that puts
into it, and again right after any script that gave it its first key (or that had to be
retried); one that lost its last key is removed, then checked again.  So a failure or a
crash between a script and its registry update leaves at most an empty namespace listed
(listings skip those), never one holding items missing.

Durability.  Redis replicates asynchronously: a master that dies right after answering
may take a write with it when its replica is promoted.  ``wait=1`` sends ``WAIT 1`` after
each script on the same connection: a batch is acknowledged only once one replica has it
(else it raises :class:`~tieredmem.errors.BackendUnavailableError`, the batch written on
the master but not confirmed).  Redis's own documentation notes that even then a failover
may, in rare cases, elect a replica without it; tieredmem's failover test kills a master
under ``wait=1`` writes and finds every acknowledged write.

Coherence.  There is no one version key a reader could check in one round trip: each
master signals the writes of its slots on a tracking connection this client keeps to it
(:mod:`tieredmem.backends._redis_tracking`).  ``strict``: before each read, a PING goes
through every tracking connection; once all are answered, every signal of a write
acknowledged before the read began has arrived, and any such signal (or a connection
down, or a master new or gone) drops the hot tier.  A write acknowledged by another
client is therefore seen by every read that starts after it, at one round trip to each
master (sent together).  ``tracking``: reads skip those pings while no signal arrived and
the last check is younger than ``tracking_bound``, as on one server.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast
from urllib.parse import urlunsplit

from ..errors import (
    BackendUnavailableError,
    CrossSlotError,
    StoreClosedError,
    TieredMemError,
    UnsupportedURLError,
)
from ..names import INTERNAL_ROOT, owner
from . import SEP, Op, Put, Row
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

__all__ = ["RedisClusterBackend"]

log = logging.getLogger(__name__)

#: Sorted sets each registry (namespaces, namespaces with expiring items) is spread over.
_SHARDS = 16
_RETRY_SECONDS = 8.0

# KEYS[1]: the unit's key index of the first op (routes the script to its slot).
# ARGV: base "<p>{<t>}", signal key, signal value, then ops as on one server (encode_ops).
# Returns {created..., "|", ns flags...}: per namespace touched, "+k" (gained its first
# key), "-k" (lost its last), "+x"/"-x" the same for expiring keys.
_WRITE = (
    r"""
local base = ARGV[1]
local created = {}
local cards = {}
local function seen(ns)
  if cards[ns] == nil then
    cards[ns] = {redis.call('ZCARD', base .. 'k:' .. ns), redis.call('ZCARD', base .. 'x:' .. ns)}
  end
end
local function drop(ns, key)
  local r = base .. 'r:' .. ns .. '\30' .. key
  redis.call('DEL', r)
  redis.call('ZREM', base .. 'k:' .. ns, key)
  redis.call('ZREM', base .. 'x:' .. ns, key)
end
local function expiring(ns, key, exp) redis.call('ZADD', base .. 'x:' .. ns, exp, key) end
local function lasting(ns, key) redis.call('ZREM', base .. 'x:' .. ns, key) end
local function filled(ns) end
"""
    + WRITE_OPS
    + r"""
redis.call('SET', ARGV[2], ARGV[3])
redis.call('DEL', ARGV[2])
table.insert(created, '|')
for ns, before in pairs(cards) do
  local k = redis.call('ZCARD', base .. 'k:' .. ns)
  local x = redis.call('ZCARD', base .. 'x:' .. ns)
  if before[1] == 0 and k > 0 then table.insert(created, '+k' .. ns) end
  if before[1] > 0 and k == 0 then table.insert(created, '-k' .. ns) end
  if before[2] == 0 and x > 0 then table.insert(created, '+x' .. ns) end
  if before[2] > 0 and x == 0 then table.insert(created, '-x' .. ns) end
end
return created
"""
)

# KEYS[1]: the namespace's expiry index.  ARGV: base, ns, now, limit, signal key.
_EXPIRE = r"""
local base, ns = ARGV[1], ARGV[2]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
for _, key in ipairs(due) do
  redis.call('DEL', base .. 'r:' .. ns .. '\30' .. key)
  redis.call('ZREM', base .. 'k:' .. ns, key)
  redis.call('ZREM', KEYS[1], key)
end
if #due > 0 then
  redis.call('SET', ARGV[5], '1')
  redis.call('DEL', ARGV[5])
end
return {due, redis.call('ZCARD', base .. 'k:' .. ns), redis.call('ZCARD', KEYS[1])}
"""


def unit_of(ns: str) -> str:
    """The unit a joined namespace belongs to: its first two labels (three under the
    ``tieredmem`` root); a shadow namespace (TieredStore's vectors of *ns*) belongs to the
    unit of *ns* (see :func:`tieredmem.names.owner`), so an item and its vector commit
    together.

    >>> unit_of("users\\x1falice\\x1fprefs")
    'users\\x1falice'
    >>> unit_of("tieredmem\\x1flg\\x1fthread-1\\x1f~")
    'tieredmem\\x1flg\\x1fthread-1'
    >>> unit_of("tieredmem\\x1fvec\\x1fusers\\x1falice\\x1fprefs")
    'users\\x1falice'
    """
    labels = owner(ns).split(SEP)
    return SEP.join(labels[: 3 if labels[0] == INTERNAL_ROOT else 2])


def _tag(ns: str) -> str:
    return hashlib.blake2b(unit_of(ns).encode(), digest_size=8).hexdigest()


def _shard(ns: str) -> int:
    return hashlib.blake2b(ns.encode(), digest_size=2).digest()[0] % _SHARDS


class RedisClusterBackend(RedisBase):
    """Cold tier on a Redis Cluster.  ``url`` is
    ``redis+cluster://[:password@]host:port/[?prefix=tm:&coherence=strict&wait=0]``."""

    def __init__(self, url: str, **_: Any) -> None:
        try:
            import redis
            from redis.cluster import RedisCluster
        except ImportError:
            raise TieredMemError(
                "the Redis backend needs redis-py: pip install 'tieredmem[redis]'"
            ) from None
        parsed = parse_url(url)
        parts = parsed.parts
        #: The URL as it may be shown: its password replaced by ``***``.
        self.url = parsed.shown
        self.prefix = parsed.prefix
        if "{" in self.prefix or "}" in self.prefix:
            raise UnsupportedURLError("a Redis Cluster prefix may not contain '{' or '}'")
        self.coherence = coherence_mode(parsed.option("coherence", "strict"))
        try:
            self._bound = float(parsed.option("tracking_bound", "1"))
            self._wait = int(parsed.option("wait", "0"))
            self._wait_ms = int(parsed.option("wait_timeout", "2000"))
        except ValueError:
            raise UnsupportedURLError(
                "tracking_bound, wait and wait_timeout must be numbers in a Redis URL"
            ) from None
        if not self._bound > 0 or self._wait < 0 or self._wait_ms <= 0:
            raise UnsupportedURLError(
                "tracking_bound and wait_timeout must be positive and wait >= 0 in a Redis URL"
            )
        self._password = parsed.password
        scheme = "rediss" if parts.scheme.lower().startswith("rediss") else "redis"
        self._secret = urlunsplit((scheme, parts.netloc, "", "", ""))
        self._redis = redis
        try:
            self._client: Any = RedisCluster.from_url(
                self._secret, socket_timeout=5, socket_connect_timeout=2
            )
        except (
            ValueError,
            IndexError,
            redis.RedisError,
            redis.exceptions.RedisClusterException,
        ) as exc:
            raise self._unavailable(exc) from None
        self._writer = secrets.token_hex(8)
        self._forks = FORKS[0]
        self._closed = False
        self._lock = threading.Lock()
        self._trackers: dict[str, Tracker] = {}
        #: Namespaces this client registered (see :meth:`_write_unit`).
        self._registered: set[str] = set()
        self._topology_at = 0.0
        self._refresh_trackers(force=False)

    # -- helpers ----------------------------------------------------------------------
    def _scrub(self, exc: BaseException) -> str:
        return scrub(exc, self._password)

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        reason = self._scrub(exc).rstrip(". ")
        return BackendUnavailableError(
            f"cannot use the Redis Cluster at {self.url}: {reason}; check that its nodes "
            "are running and reachable and that the cluster reports cluster_state:ok "
            "(after a master failed, its replica takes over within the cluster's node "
            "timeout; retry then)"
        )

    def _error(self, exc: BaseException) -> TieredMemError:
        """The typed error of a failed call: unavailable (connection, timeout, cluster
        down or failing over) or any other server error."""
        unavailable = isinstance(exc, self._transient()) or "CLUSTERDOWN" in str(exc)
        return operation_error(
            f"Redis Cluster at {self.url}",
            self._scrub(exc),
            "check that the cluster is up, then retry" if unavailable else None,
        )

    def _check(self) -> None:
        if self._closed:
            raise StoreClosedError(f"{self.url} is closed; open the store again to use it")
        if self._forks != FORKS[0]:
            self._forked()

    def _forked(self) -> None:
        with self._lock:
            if self._forks == FORKS[0]:
                return
            self._forks = FORKS[0]
            self._writer = secrets.token_hex(8)
            self._trackers = {}  # their threads did not survive the fork
        self._refresh_trackers(force=True)

    def _base(self, ns: str) -> str:
        return f"{self.prefix}{{{_tag(ns)}}}"

    def _r(self, ns: str, key: str) -> bytes:
        return f"{self._base(ns)}r:".encode() + ns.encode() + HK + key.encode()

    def _k(self, ns: str) -> bytes:
        return f"{self._base(ns)}k:{ns}".encode()

    def _index(self, ns: str) -> bytes:
        return self._k(ns)

    def _dict_keys(self) -> tuple[str, str]:
        return f"{self.prefix}{{d}}dicts", f"{self.prefix}{{d}}dictid"

    def _registry(self, kind: str, ns: str) -> str:
        return f"{self.prefix}{{{kind}{_shard(ns)}}}{'ns' if kind == 'n' else 'exp'}"

    def _registries(self, kind: str) -> list[str]:
        return [
            f"{self.prefix}{{{kind}{i}}}{'ns' if kind == 'n' else 'exp'}" for i in range(_SHARDS)
        ]

    def _transient(self) -> tuple[type[BaseException], ...]:
        """What a failover or a slot move answers: the cluster is unavailable for now."""
        errors = self._redis.exceptions
        return (
            errors.ConnectionError,  # BusyLoadingError (LOADING) among them
            errors.TimeoutError,
            errors.ClusterError,  # CLUSTERDOWN, MASTERDOWN
            errors.RedisClusterException,
            errors.AskError,  # MOVED too
            errors.TryAgainError,
            errors.ReadOnlyError,
        )

    def _retrying(self, fn: Any) -> Any:
        """Run *fn* until it succeeds, retrying what a failover or a slot move answers
        (connection errors, ``MOVED``/``ASK``, ``TRYAGAIN``, ``CLUSTERDOWN``,
        ``READONLY`` from a master turned replica, ``LOADING``) with backoff, the
        topology refreshed before each retry, for up to a few seconds."""
        transient = self._transient()
        deadline = time.monotonic() + _RETRY_SECONDS
        delay = 0.05
        while True:
            try:
                return fn()
            except transient as exc:
                failure: BaseException = exc
            if time.monotonic() + delay > deadline:
                raise self._error(failure) from None
            log.warning(
                "Redis Cluster at %s: %s; retrying in %.2f s",
                self.url,
                self._scrub(failure),
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
            try:
                self._client.nodes_manager.initialize()
            except Exception:  # still failing over: the next attempt tells
                pass

    def _call(self, fn: Callable[[], Any]) -> Any:
        self._check()
        try:
            return self._retrying(fn)
        except TieredMemError:
            raise
        except self._redis.RedisError as exc:
            raise self._error(exc) from exc

    # -- reads -------------------------------------------------------------------------
    def get(self, ns: str, key: str) -> Row | None:
        return decode_row(ns, key, self._call(lambda: self._client.hgetall(self._r(ns, key))))

    def get_many(self, keys: Sequence[tuple[str, str]]) -> list[Row | None]:
        if not keys:
            return []

        def run() -> list[Any]:
            pipe = self._client.pipeline()
            for ns, key in keys:
                pipe.hgetall(self._r(ns, key))
            return cast(list[Any], pipe.execute())

        found = self._call(run)
        return [decode_row(ns, key, h) for (ns, key), h in zip(keys, found)]

    def namespaces(
        self,
        ns_prefix: str,
        *,
        after: str | None = None,
        limit: int = 1000,
        skip_prefix: str | None = None,
    ) -> list[str]:
        """Namespaces holding items, in order: a merge of the 16 registry shards, each
        read a page at a time, so the work is bounded by what is returned (and skipped)."""
        lo, hi = prefix_bounds(ns_prefix)
        high = b"+" if hi == TOP else b"(" + hi.encode()
        s_lo, s_hi = prefix_bounds(skip_prefix) if skip_prefix else ("", "")
        page = max(16, min(500, limit))
        cursors: dict[str, bytes] = {
            name: (b"(" + after.encode() if after is not None else b"[" + lo.encode())
            for name in self._registries("n")
        }
        pending: list[str] = []
        done: set[str] = set()
        out: list[str] = []
        while len(out) < limit and len(done) < len(cursors):
            active = [n for n in cursors if n not in done]

            def fetch(active: list[str] = active) -> list[Any]:
                pipe = self._client.pipeline()
                for name in active:
                    pipe.zrangebylex(name, cursors[name], high, 0, page)
                return cast(list[Any], pipe.execute())

            bound: str | None = None
            for name, found in zip(active, self._call(fetch)):
                got = [raw.decode() for raw in found]
                if len(got) < page:
                    done.add(name)
                else:
                    cursors[name] = b"(" + got[-1].encode()
                    bound = got[-1] if bound is None else min(bound, got[-1])
                pending += [n for n in got if not (s_lo <= n < s_hi)]
            pending.sort()
            # Everything below the smallest last name of an unfinished shard is final.
            ready = [n for n in pending if bound is None or n <= bound]
            pending = pending[len(ready) :]
            out += self._holding_items(ready)
        return out[:limit]

    def _holding_items(self, names: list[str]) -> list[str]:
        """*names* whose key index is not empty (a registry may briefly list an emptied
        namespace: removal comes after the script that emptied it)."""
        if not names:
            return []

        def run() -> list[Any]:
            pipe = self._client.pipeline()
            for ns in names:
                pipe.zcard(self._k(ns))
            return cast(list[Any], pipe.execute())

        return [ns for ns, n in zip(names, self._call(run)) if int(n) > 0]

    # -- writes ------------------------------------------------------------------------
    def check_atomic(self, ops: Sequence[Op]) -> None:
        """Refuse a batch that must be atomic (a ``transaction()``) but spans units.

        :raises CrossSlotError: the batch writes namespaces of more than one unit."""
        units = {unit_of(op.ns) for op in ops}
        if len(units) > 1:
            shown = ", ".join(sorted(repr(u.replace(SEP, "/")) for u in units)[:4])
            raise CrossSlotError(
                f"a transaction on the Redis Cluster at {self.url} writes {len(units)} "
                f"units ({shown}), which live in different hash slots and cannot commit "
                "atomically: keep a transaction within one unit (namespaces sharing their "
                "first two labels), or write without transaction() (each unit is then "
                "atomic on its own)"
            )

    def write(self, ops: Sequence[Op]) -> list[float]:
        self._check()
        groups: dict[str, list[Op]] = {}
        for op in ops:
            groups.setdefault(_tag(op.ns), []).append(op)
        created: dict[int, float] = {}
        order = {id(op): i for i, op in enumerate(ops)}
        for group in groups.values():
            for op, c in zip([o for o in group if isinstance(o, Put)], self._write_unit(group)):
                created[order[id(op)]] = c
        return [created[i] for i in sorted(created)]

    def _write_unit(self, ops: list[Op]) -> list[float]:
        base = self._base(ops[0].ns)
        signal = f"{self.prefix}w:{{{_tag(ops[0].ns)}}}{self._writer}"
        args: list[Any] = [base, signal, "1", *encode_ops(ops)]
        # A namespace is registered before the script that may give it its first key, so
        # a failure between the two (a WAIT that times out, a reply lost to a failover, a
        # crash) can leave the registry listing an empty namespace (listings skip it),
        # never missing one that holds items.
        filled = {op.ns for op in ops if isinstance(op, Put)}
        self._register(filled - self._registered)
        attempts = 0

        def run() -> Any:
            nonlocal attempts
            attempts += 1
            return self._run_script(_WRITE, self._k(ops[0].ns), args)

        try:
            result = self._call(run)
            cut = result.index(b"|")
            flags = [bytes(f).decode() for f in result[cut + 1 :]]
            if attempts > 1:  # an earlier attempt may have run and taken the "+k" flags
                flags += ["+k" + ns for ns in filled]
            self._registry_changes(flags)
        except TieredMemError:
            self._registered -= filled  # the next write registers them again
            raise
        return [float(c) for c in result[:cut]]

    def _register(self, names: set[str]) -> None:
        """Add *names* to their namespace registries (one pipelined round trip)."""
        if not names:
            return

        def run() -> None:
            pipe = self._client.pipeline()
            for ns in sorted(names):
                pipe.zadd(self._registry("n", ns), {ns: 0})
            pipe.execute()

        self._call(run)
        self._registered |= names

    def _run_script(self, script: str, key: bytes, args: list[Any]) -> Any:
        """Run *script* on the master of *key*'s slot (with ``WAIT`` on the same
        connection when asked)."""
        redis = self._redis
        node = self._client.get_node_from_key(key)
        conn = self._client.get_redis_connection(node)
        sha = hashlib.sha1(script.encode()).hexdigest()
        for _ in range(2):
            pipe = conn.pipeline(transaction=False)
            pipe.execute_command("EVALSHA", sha, 1, key, *args)
            if self._wait:
                pipe.execute_command("WAIT", self._wait, self._wait_ms)
            results = pipe.execute(raise_on_error=False)
            if isinstance(results[0], redis.exceptions.NoScriptError):
                conn.script_load(script)
                continue
            if isinstance(results[0], Exception):
                raise results[0]
            if self._wait and int(results[1]) < self._wait:
                raise BackendUnavailableError(
                    f"Redis Cluster at {self.url}: a write batch reached its master but "
                    f"not {self._wait} replica(s) within {self._wait_ms} ms (wait=); it "
                    "may or may not survive a failover: check the replicas, then retry"
                )
            return results[0]
        raise TieredMemError(f"Redis Cluster at {self.url}: cannot load the write script")

    def _registry_changes(self, flags: list[str]) -> None:
        """Add namespaces that gained their first key (or expiring key) to their registry;
        remove those that lost their last, then look again (a writer adding one back
        right then re-adds it after its own script)."""
        if not flags:
            return
        for flag in flags:
            sign, kind, ns = flag[0], flag[1], flag[2:]
            name = self._registry("n" if kind == "k" else "e", ns)
            index = self._k(ns) if kind == "k" else f"{self._base(ns)}x:{ns}".encode()
            client = self._client
            if sign == "+":
                self._call(partial(client.zadd, name, {ns: 0}))
            else:
                if kind == "k":
                    self._registered.discard(ns)
                self._call(partial(client.zrem, name, ns))
                if int(self._call(partial(client.zcard, index))) > 0:
                    self._call(partial(client.zadd, name, {ns: 0}))

    def expire(self, now: float, *, limit: int = 10_000) -> list[tuple[str, str]]:
        self._check()
        out: list[tuple[str, str]] = []
        for name in self._registries("e"):
            for raw in self._call(partial(self._client.zrange, name, 0, -1)):
                ns = raw.decode()
                base = self._base(ns)
                index = f"{base}x:{ns}".encode()
                signal = f"{self.prefix}w:{{{_tag(ns)}}}sweep"
                args = [base, ns, repr(now), limit - len(out), signal]
                due, keys_left, exp_left = self._call(
                    partial(self._run_script, _EXPIRE, index, args)
                )
                out += [(ns, k.decode()) for k in due]
                flags = ([] if int(keys_left) else ["-k" + ns]) if due else []
                if due and not int(exp_left):
                    flags.append("-x" + ns)
                self._registry_changes(flags)
                if len(out) >= limit:
                    return out
        return out

    # -- coherence ---------------------------------------------------------------------
    def _refresh_trackers(self, *, force: bool) -> bool:
        """Keep one tracking connection per master; True if the set changed."""
        now = time.monotonic()
        if force or now - self._topology_at > self._bound:
            self._topology_at = now
            try:
                self._client.nodes_manager.initialize()
            except Exception:  # failing over: the trackers of the old masters say so
                log.debug("cannot refresh the cluster's topology", exc_info=True)
        masters = {f"{n.host}:{n.port}": n for n in self._client.get_primaries()}
        changed = False
        with self._lock:
            for name in [n for n in self._trackers if n not in masters]:
                self._trackers.pop(name).close()
                changed = True
            for name, node in masters.items():
                if name not in self._trackers:
                    self._trackers[name] = self._track(node.host, node.port)
                    changed = True
        return changed

    def _track(self, host: str, port: int) -> Tracker:
        connect = connector(self._secret, (host, port))
        return Tracker(connect, self.prefix.encode(), self._writer.encode(), bound=self._bound)

    def unchanged(self) -> bool:
        """Tracking mode: True while every master's tracking connection reports nothing
        new; strict mode: always ``False`` (each read syncs with every master)."""
        if self.coherence != "tracking" or self._forks != FORKS[0]:
            return False
        trackers = list(self._trackers.values())
        return bool(trackers) and all(t.quiet() for t in trackers)

    def foreign_change(self) -> bool:
        """A PING through every master's tracking connection (sent together): True if a
        signal of another writer arrived since the last check, a connection is or was
        down, or the masters changed."""
        if self._closed:
            return False
        self._check()
        trackers = list(self._trackers.values())
        seen = []
        for t in trackers:
            seen.append(t.dirty())
            t.before_check()
        targets = [t.ping() for t in trackers]
        down = not trackers or any(x is None for x in targets)
        if not down:
            down = not all(t.answered(cast(int, x)) for t, x in zip(trackers, targets))
        resets = [t.after_check() for t in trackers]  # every one, not up to the first
        reset = any(resets)
        moved = self._refresh_trackers(force=down)
        return down or reset or moved or any(seen)

    # -- stats -------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        self._check()
        spaces = self.namespaces("", limit=10**9)

        def run() -> list[Any]:
            pipe = self._client.pipeline()
            for ns in spaces:
                pipe.zcard(self._k(ns))
            return cast(list[Any], pipe.execute())

        rows = sum(int(n) for n in self._call(run)) if spaces else 0
        memory = self._call(
            lambda: self._client.info("memory", target_nodes=self._client.PRIMARIES)
        )
        used = sum(int(v.get("used_memory", 0)) for v in memory.values()) if memory else 0
        return cold_stats(used, rows)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            trackers, self._trackers = list(self._trackers.values()), {}
        for t in trackers:
            t.close()
        self._client.close()

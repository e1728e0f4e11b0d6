"""Shards on many processes and hosts, coordinated through Redis (``pip install gateway[redis]``).

- :class:`RedisQueue`: the cluster-wide identify queue (the :class:`~gateway.queue.Queue`
  protocol). One IDENTIFY per bucket (``shard_id % max_concurrency``) per ``interval``
  across every process sharing the Redis and the token, lowest waiting shard first, one
  daily session-start budget. Every decision is one Lua script, timed by the Redis server's
  clock (``TIME``), never a host's.
- :class:`RedisSessionStore`: per shard, the session id, the last sequence delivered and the
  resume URL (the :class:`~gateway.session.SessionStore` protocol), expiring after the
  resumable window.
- :class:`Publisher` and :func:`consume`: dispatches fanned out to a Redis Stream, the
  sequence checkpoint committed in the same script as the ``XADD`` (a resumed worker never
  publishes a duplicate), and a consumer-group reader that reclaims a dead consumer's
  entries (``XAUTOCLAIM``).

Keys live under ``{prefix}:{<token hash>}:``: the token itself never reaches Redis, a log or a
repr. The stream's name is chosen by the user (default :data:`DEFAULT_STREAM`). One Redis
server (or a primary); Redis Cluster is not supported, as the publish script touches the
stream and the checkpoint together.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import re
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ReadOnlyError, RedisError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "gateway.redis needs redis-py's asyncio client: pip install 'gateway[redis]'"
    ) from exc

from . import codec
from ._speedups import scan
from .close import CloseFrame
from .config import Config, normalize_token
from .errors import ReceiveMessageError, ReceiveMessageErrorKind
from .events import EventType, EventTypeFlags
from .message import Close
from .queue import DAY, IDENTIFY_INTERVAL, IDENTIFY_MARGIN, session_budget
from .session import SavedSession, Session
from .shard import Shard
from .shard_id import ShardId
from .state import ShardState
from .stream import ShardEventStream

if TYPE_CHECKING:
    from .http import GatewayBot
    from .runner import RedisOptions, ShardSpec

__all__ = [
    "Client",
    "LimitSource",
    "DEFAULT_PREFIX",
    "DEFAULT_STREAM",
    "RESUMABLE_WINDOW",
    "Publisher",
    "RedisQueue",
    "RedisSessionStore",
    "StreamEntry",
    "connect",
    "consume",
    "token_namespace",
]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "gateway"
#: The stream ``python -m gateway run --publish`` writes to unless ``--stream`` says.
DEFAULT_STREAM = "gateway:events"
#: Seconds a saved session is kept after its last save. Discord keeps a dropped session
#: resumable for "a few minutes" (protocol.md 5.2): past that, a resume fails anyway.
RESUMABLE_WINDOW = 180.0

#: Errors that mean "Redis cannot serve us right now" (down, loading, a replica during a
#: failover): retried with backoff.
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)

#: redis-py's asyncio client (``redis.asyncio.Redis``): what every class here takes, or a URL.
Client = aioredis.Redis


def connect(url: str, **options: Any) -> Client:
    """A redis-py asyncio client for ``url`` (``redis://host:port/db``), bytes replies.

    A command that fails on a connection is retried once on a new one: after a Redis
    restart every pooled connection is dead, which is no outage.
    """
    options.setdefault("socket_connect_timeout", 2.0)
    options.setdefault("socket_timeout", 5.0)
    options.setdefault("retry", Retry(NoBackoff(), 1))
    options.setdefault("retry_on_error", [RedisConnectionError, RedisTimeoutError])
    return aioredis.Redis.from_url(url, **options)


def token_namespace(token: str, prefix: str = DEFAULT_PREFIX) -> str:
    """``prefix:{hash}``: the key namespace of one bot. The hash (not the token) names it,
    and the braces keep a bot's keys in one Redis Cluster slot.
    """
    digest = hashlib.sha256(normalize_token(token).encode()).hexdigest()[:16]
    return f"{prefix}:{{{digest}}}"


def _describe(client: Client) -> str:
    """Where ``client`` points, for logs (host, port, db; never a password)."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    return f"redis://{host}:{port}/{kwargs.get('db', 0)}"


class _Outage:
    """Backoff, logs and state while Redis cannot serve us. Two kinds of failure:

    - unreachable (down, restarting, timing out, a replica): one error when it becomes
      unreachable, one notice when it is back. A single failure is retried at once,
      quietly: after a Redis restart, each pooled connection fails once before it
      reconnects.
    - refusing (a reply error: ``OOM`` under ``maxmemory``, ``MISCONF`` after a failed
      save, ``READONLY``): one warning at the first refusal, retried with backoff, one
      notice when a call succeeds again. Nothing is retried at once: the same call would
      be refused the same way.

    ``failures`` counts every failed call, ``last_error`` names the latest and ``healthy``
    is False from a failure until the next success: the state a health check or a
    metrics exporter reads.
    """

    def __init__(
        self, client: Client, what: str, retry_min: float = 0.05, retry_max: float = 5.0
    ) -> None:
        self._client = client
        self._what = what
        self._range = (retry_min, retry_max)
        self._backoff = retry_min
        self._strikes = 0
        self._since: float | None = None
        self._refused = False
        self.failures = 0
        self.last_error: str | None = None

    @property
    def healthy(self) -> bool:
        """False from a failed call until the next one succeeds."""
        return self._strikes == 0

    def failed(self, exc: BaseException) -> float:
        """Seconds to wait before retrying."""
        self._strikes += 1
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        refused = not isinstance(exc, _UNREACHABLE)
        if self._strikes == 1 and not refused:
            log.debug("Redis call failed (%s); retrying at once", self.last_error)
            return 0.0
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self._range[1])
        if self._since is None:
            self._since = time.monotonic()
            self._refused = refused
            if refused:
                log.warning(
                    "Redis at %s refuses the call (%s); %s, retrying with backoff "
                    "(next in %.2f s)",
                    _describe(self._client), self.last_error, self._what, delay,
                )  # fmt: skip
            else:
                log.error(
                    "Redis unreachable at %s (%s); %s, retrying with backoff (next in %.2f s)",
                    _describe(self._client), self.last_error, self._what, delay,
                )  # fmt: skip
        else:
            still = "refuses" if refused else "unreachable"
            log.debug("Redis still %s (%s); retrying in %.2f s", still, self.last_error, delay)
        return delay

    def ok(self) -> None:
        self._strikes = 0
        self._backoff = self._range[0]
        if self._since is not None:
            log.warning(
                "Redis at %s %s again after %.1f s",
                _describe(self._client),
                "serves" if self._refused else "reachable",
                time.monotonic() - self._since,
            )
            self._since = None


# ---- the identify queue ------------------------------------------------------------------

# Server time in ms, from the Redis server's own clock (one clock for every host).
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: waiters (zset waiter -> shard), leases (zset waiter -> expiry ms), next (hash at/by),
#       budget (hash total/remaining/reset_at), hold (string ms)
# ARGV: waiter, shard, lease ms, interval ms, period ms
# Returns {1, now} granted; {0, wait ms, why} (why 0: window, 1: budget, 2: not first);
# {-1} the budget is unknown (first use, or Redis lost its data): seed it, then retry.
_ACQUIRE = (
    _NOW
    + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, w in ipairs(expired) do
  redis.call('ZREM', KEYS[1], w)
  redis.call('ZREM', KEYS[2], w)
end
if redis.call('EXISTS', KEYS[4]) == 0 then return {-1} end
local lease = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]), ARGV[1])
redis.call('ZADD', KEYS[2], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease * 4)
redis.call('PEXPIRE', KEYS[2], lease * 4)
local reset_at = tonumber(redis.call('HGET', KEYS[4], 'reset_at'))
if now >= reset_at then
  reset_at = now + tonumber(ARGV[5])
  redis.call('HSET', KEYS[4], 'remaining', redis.call('HGET', KEYS[4], 'total'),
             'reset_at', reset_at)
end
if tonumber(redis.call('HGET', KEYS[4], 'remaining')) <= 0 then
  return {0, reset_at - now, 1}
end
local next_at = tonumber(redis.call('HGET', KEYS[3], 'at') or '0')
local hold = tonumber(redis.call('GET', KEYS[5]) or '0')
if hold > next_at then next_at = hold end
local first = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
if first ~= ARGV[1] then
  local wait = next_at - now
  if wait < 0 then wait = 0 end
  return {0, wait, 2}
end
if now < next_at then return {0, next_at - now, 0} end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[4], 'remaining', -1)
local interval = tonumber(ARGV[4])
redis.call('HSET', KEYS[3], 'at', now + interval, 'by', ARGV[1])
redis.call('PEXPIRE', KEYS[3], interval + 60000)
return {1, now}
"""
)

# A granted permit whose shard never identified (cancelled in between): free the window if
# no later grant took it, and give the session start back if the budget window is the same.
# KEYS: next, budget. ARGV: waiter, granted at (ms).
_REFUND = """
if redis.call('HGET', KEYS[1], 'by') == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
local reset_at = tonumber(redis.call('HGET', KEYS[2], 'reset_at') or '0')
local total = tonumber(redis.call('HGET', KEYS[2], 'total') or '0')
local remaining = tonumber(redis.call('HGET', KEYS[2], 'remaining') or '0')
if reset_at > tonumber(ARGV[2]) and remaining < total then
  redis.call('HINCRBY', KEYS[2], 'remaining', 1)
end
return 1
"""

# Merge a /gateway/bot reading into the shared budget. A reset_after pointing past the stored
# window (by more than the tolerance) is a new window: take it whole. Otherwise the lowest
# remaining wins (each host's reading may predate the others' identifies).
# A budget created here means nobody knows what identified just before (first use, or
# Redis lost its data): hold every bucket for ``settle`` ms.
# KEYS: budget, hold. ARGV: total, remaining, reset_after ms, settle ms, tolerance ms.
_SEED = (
    _NOW
    + """
local total, remaining = tonumber(ARGV[1]), tonumber(ARGV[2])
local reset_at = now + tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'total', total, 'remaining', remaining, 'reset_at', reset_at)
  local settle = tonumber(ARGV[4])
  if settle > 0 then redis.call('SET', KEYS[2], now + settle, 'PX', settle + 1000) end
  return {1, remaining}
end
local stored_reset = tonumber(redis.call('HGET', KEYS[1], 'reset_at'))
local stored = tonumber(redis.call('HGET', KEYS[1], 'remaining'))
if now >= stored_reset or reset_at > stored_reset + tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'total', total, 'remaining', remaining, 'reset_at', reset_at)
  return {0, remaining}
end
if remaining < stored then stored = remaining end
redis.call('HSET', KEYS[1], 'total', total, 'remaining', stored)
return {0, stored}
"""
)

#: What a budget refresher returns: ``/gateway/bot``'s ``session_start_limit`` (``total``,
#: ``remaining``, ``reset_after`` in ms, ``max_concurrency``).
LimitSource = Callable[[], Awaitable[Mapping[str, Any]]]


class RedisQueue:
    """The identify queue of every process and host that shares the Redis and the token.

    Same contract as :class:`~gateway.queue.InMemoryQueue`, across processes: one permit per
    bucket per ``interval`` seconds plus the same :data:`~gateway.queue.IDENTIFY_MARGIN`
    (5.25 s by default), to the lowest waiting shard of the bucket; one shared
    daily budget (``total``/``remaining``/``reset_after`` seconds, from ``/gateway/bot``;
    when spent, identifies wait for the reset). Each waiter holds a lease of one ``interval``
    that it renews while it waits: a waiter cancelled, or whose process died, stops blocking
    its bucket within one window and never consumes a permit. A permit granted to a waiter
    cancelled before it could identify is given back.

    When Redis cannot be reached, ``acquire`` logs one error and retries with exponential
    backoff (``retry_min`` to ``retry_max`` seconds): no permit is ever granted without
    Redis. When Redis comes back without its data (restarted, flushed), the budget is read
    again from ``refresh`` (e.g. ``/gateway/bot``) or, without one, from the last known
    values, and every bucket waits one window first, since what identified just before the
    loss is unknown. The first process to use a fresh Redis pays the same wait (``settle``
    seconds, default ``interval``; it also lets every worker started meanwhile queue, so
    the buckets start in shard order). ``settle=0`` is safe only when nothing can have
    identified in the last window.
    """

    def __init__(
        self,
        client: Client | str,
        token: str,
        max_concurrency: int = 1,
        total: int = 1000,
        remaining: int | None = None,
        reset_after: float = DAY,
        *,
        interval: float = IDENTIFY_INTERVAL,
        settle: float | None = None,
        refresh: LimitSource | None = None,
        prefix: str = DEFAULT_PREFIX,
        retry_min: float = 0.05,
        retry_max: float = 5.0,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        remaining = session_budget(total, remaining)
        if interval <= 0 or reset_after < 0:
            raise ValueError("interval must be > 0 and reset_after >= 0")
        self.redis = connect(client) if isinstance(client, str) else client
        self.max_concurrency = max_concurrency
        self.total = total
        self.interval = interval
        self.settle = interval if settle is None else settle
        self._remaining = remaining
        self._reset_at = time.monotonic() + reset_after
        self._refresh = refresh
        self._ns = token_namespace(token, prefix)
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._refund = self.redis.register_script(_REFUND)
        self._seed = self.redis.register_script(_SEED)
        self._outage = _Outage(
            self.redis, "identifies wait (none is sent without Redis)", retry_min, retry_max
        )
        self._budget_warned = False
        self._seeded = False
        self._reseeding: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.waiting = 0

    @classmethod
    def from_session_start_limit(
        cls, client: Client | str, token: str, limit: Mapping[str, Any], **options: Any
    ) -> RedisQueue:
        """A queue from ``/gateway/bot``'s ``session_start_limit`` (``reset_after`` in ms)."""
        return cls(
            client,
            token,
            int(limit["max_concurrency"]),
            int(limit["total"]),
            min(int(limit["remaining"]), int(limit["total"])),
            int(limit["reset_after"]) / 1000,
            **options,
        )

    def __repr__(self) -> str:
        return (
            f"RedisQueue({_describe(self.redis)}, max_concurrency={self.max_concurrency}, "
            f"interval={self.interval})"
        )

    def _keys(self, bucket: int) -> list[str]:
        q = f"{self._ns}:queue"
        return [
            f"{q}:{bucket}:waiters",
            f"{q}:{bucket}:leases",
            f"{q}:{bucket}:next",
            f"{q}:budget",
            f"{q}:hold",
        ]

    async def remaining(self) -> int | None:
        """Session starts left in the shared budget (None before the first use)."""
        value = await self.redis.hget(f"{self._ns}:queue:budget", "remaining")
        return None if value is None else int(value)

    async def sync_budget(self, limit: Mapping[str, Any] | None = None) -> int:
        """Merge a ``session_start_limit`` reading (default: ``refresh()`` if given, else the
        values this queue was built with) into the shared budget; the remaining count.
        """
        if limit is None and self._refresh is not None:
            limit = await self._refresh()
        if limit is not None:
            total, remaining = int(limit["total"]), int(limit["remaining"])
            reset_after_ms = int(limit["reset_after"])
        else:
            total, remaining = self.total, self._remaining
            reset_after_ms = max(0, int((self._reset_at - time.monotonic()) * 1000))
        # Seen before, now gone: Redis lost it, maybe right after a grant. Hold a full window
        # whatever ``settle`` says.
        hold = max(self.settle, self.interval) if self._seeded else self.settle
        keys = self._keys(0)
        created, left = await self._seed(
            keys=[keys[3], keys[4]],
            args=[total, min(remaining, total), reset_after_ms, int(hold * 1000), 60_000],
        )
        if created:
            log.info("identify budget: %d of %d session starts left", left, total)
        self._seeded = True
        return int(left)

    async def acquire(self, shard_id: int) -> None:
        """Return when shard ``shard_id`` may IDENTIFY (cancellable; see the class doc)."""
        keys = self._keys(shard_id % self.max_concurrency)
        waiter = f"{shard_id}:{secrets.token_hex(6)}"
        lease = max(1, int(self.interval * 1000))
        spacing = int(self.interval * (1 + IDENTIFY_MARGIN) * 1000)
        args: list[str | int] = [waiter, shard_id, lease, spacing, int(DAY * 1000)]
        self.waiting += 1
        in_call = False
        try:
            while True:
                call = asyncio.ensure_future(self._acquire(keys=keys, args=args))
                try:
                    reply = await asyncio.shield(call)
                except asyncio.CancelledError:
                    # The script may still run (and register or grant): clean up after it.
                    in_call = True
                    call.add_done_callback(lambda c: self._after_cancel(c, keys, waiter))
                    raise
                except _UNREACHABLE as exc:
                    await asyncio.sleep(self._outage.failed(exc))
                    continue
                self._outage.ok()
                if reply[0] == 1:
                    self._remaining = max(0, self._remaining - 1)
                    log.debug("shard %d: identify permit (server time %d ms)", shard_id, reply[1])
                    return
                if reply[0] == -1:
                    try:
                        await self._reseed()
                    except _UNREACHABLE as exc:
                        await asyncio.sleep(self._outage.failed(exc))
                    continue
                wait, why = int(reply[1]) / 1000, int(reply[2])
                if why == 1:
                    if not self._budget_warned:
                        log.warning(
                            "daily session-start limit used up: identifies wait %.0f s "
                            "for the reset",
                            wait,
                        )
                        self._budget_warned = True
                else:
                    self._budget_warned = False
                # Renew the lease well before it lapses. Not first, with the window open: the
                # first waiter is about to take it (or its lease to lapse); look again soon.
                cap = self.interval / 3
                floor = min(cap, max(0.02, self.interval / 20)) if why == 2 else 0.0
                await asyncio.sleep(min(max(wait, floor), cap))
        except asyncio.CancelledError:
            if not in_call:
                self._spawn(self._forget(keys, waiter))
            raise
        finally:
            self.waiting -= 1

    async def _reseed(self) -> None:
        # Every waiter learns of the loss at once: one of them reads the budget, the rest wait.
        if self._reseeding is None or self._reseeding.done():
            self._reseeding = asyncio.ensure_future(self._reseed_once())
        await asyncio.shield(self._reseeding)

    async def _reseed_once(self) -> None:
        try:
            if self._seeded:
                log.warning(
                    "the identify queue's state is gone from Redis (restarted or flushed): "
                    "reading the budget again; buckets wait one window"
                )
            await self.sync_budget()
        except _UNREACHABLE:
            raise
        except Exception as exc:  # refresh() failed (e.g. /gateway/bot): last known values
            log.warning("reading the session-start budget failed (%s); using the last known", exc)
            refresh, self._refresh = self._refresh, None
            try:
                await self.sync_budget()
            finally:
                self._refresh = refresh

    def _after_cancel(self, call: asyncio.Future[Any], keys: list[str], waiter: str) -> None:
        if call.cancelled() or call.exception() is not None:
            self._spawn(self._forget(keys, waiter))
        elif call.result()[0] == 1:
            self._spawn(self._give_back(keys, waiter, int(call.result()[1])))
        else:
            self._spawn(self._forget(keys, waiter))

    async def _give_back(self, keys: list[str], waiter: str, granted_at: int) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._refund(keys=[keys[2], keys[3]], args=[waiter, granted_at])
            self._remaining = min(self.total, self._remaining + 1)

    async def _forget(self, keys: list[str], waiter: str) -> None:
        # Best effort: if Redis is down, the lease expires within one window anyway.
        with contextlib.suppress(RedisError, OSError):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(keys[0], waiter)
                pipe.zrem(keys[1], waiter)
                await pipe.execute()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Finish pending refunds and clean-ups, then close the client."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.redis.aclose()


# ---- sessions ------------------------------------------------------------------------------


class RedisSessionStore:
    """Each shard's session in a Redis hash (``session_id``, ``sequence``, ``resume_url``),
    expiring ``ttl`` seconds after its last save (default: the resumable window).

    ``namespace`` separates shard sets of different totals (``"64"`` for shard 3 of 64), so
    that a reshard never resumes a session of the other set. Implements
    :class:`~gateway.session.SessionStore`; the publish path writes the same hashes
    (:class:`Publisher`).
    """

    def __init__(
        self,
        client: Client | str,
        token: str,
        *,
        namespace: str = "",
        ttl: float = RESUMABLE_WINDOW,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.redis = connect(client) if isinstance(client, str) else client
        self.ttl = ttl
        base = token_namespace(token, prefix) + ":session"
        self._base = f"{base}:{namespace}" if namespace else base

    def __repr__(self) -> str:
        return f"RedisSessionStore({_describe(self.redis)}, ttl={self.ttl})"

    def key(self, shard: int) -> str:
        """The hash holding shard ``shard``'s session."""
        return f"{self._base}:{shard}"

    async def load(self, shard: int) -> SavedSession | None:
        reply: Any = await self.redis.hgetall(self.key(shard))
        return _saved(reply)

    async def load_many(self, shards: range | list[int]) -> dict[int, SavedSession]:
        """The saved sessions of ``shards`` in one round trip (shards without one left out)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in shards:
                pipe.hgetall(self.key(shard))
            replies = await pipe.execute()
        found = {shard: _saved(reply) for shard, reply in zip(shards, replies, strict=True)}
        return {shard: saved for shard, saved in found.items() if saved is not None}

    async def save(self, shard: int, saved: SavedSession) -> None:
        key = self.key(shard)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=_fields(saved))  # type: ignore[arg-type]
            pipe.pexpire(key, int(self.ttl * 1000))
            await pipe.execute()

    async def delete(self, shard: int) -> None:
        await self.redis.delete(self.key(shard))

    async def touch(self, shards: list[int]) -> None:
        """Restart the TTL of these shards' saved sessions (a quiet shard's checkpoint must
        not expire while its session lives).
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in shards:
                pipe.pexpire(self.key(shard), int(self.ttl * 1000))
            await pipe.execute()


def _fields(saved: SavedSession) -> dict[str, str | int]:
    return {
        "session_id": saved.session.session_id,
        "sequence": saved.session.sequence,
        "resume_url": saved.resume_url or "",
    }


def _saved(reply: Mapping[bytes, bytes]) -> SavedSession | None:
    try:
        session = Session(reply[b"session_id"].decode(), int(reply[b"sequence"]))
    except (KeyError, ValueError):
        return None
    url = reply.get(b"resume_url", b"").decode() or None
    return SavedSession(session, url)


# ---- fan-out to Redis Streams -------------------------------------------------------------

# One batch of one shard's dispatches: XADD each one newer than the checkpoint, then move the
# checkpoint, all in one script, so a resumed worker (which resumes from the checkpoint)
# never adds a (session, sequence) twice. An entry with an empty name only moves the
# checkpoint (a dispatch not wanted on the stream).
# KEYS: stream, checkpoint hash. ARGV: maxlen (0: none), ttl ms, shard, resume_url,
# then session_id, s, t, d per dispatch.
_PUBLISH = """
local sid = redis.call('HGET', KEYS[2], 'session_id')
local seq = tonumber(redis.call('HGET', KEYS[2], 'sequence') or '0')
local maxlen = tonumber(ARGV[1])
local url = ARGV[4]
local added = 0
for i = 5, #ARGV, 4 do
  local s = tonumber(ARGV[i + 1])
  if ARGV[i] ~= sid or s > seq then
    if ARGV[i + 2] ~= '' then
      local fields = {'t', ARGV[i + 2], 's', ARGV[i + 1], 'shard', ARGV[3],
                      'session', ARGV[i], 'd', ARGV[i + 3]}
      if maxlen > 0 then
        redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(fields))
      else
        redis.call('XADD', KEYS[1], '*', unpack(fields))
      end
      added = added + 1
    end
    sid, seq = ARGV[i], s
  end
end
if sid then
  redis.call('HSET', KEYS[2], 'session_id', sid, 'sequence', seq, 'resume_url', url)
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
end
return added
"""

# Discord's layout puts d last: {"t":"NAME","s":N,"op":0,"d":...}; d is the rest.
_DISPATCH_HEAD = re.compile(rb'\{"t":"([A-Za-z0-9_]+)","s":([0-9]+),"op":0,"d":')


def split_dispatch(payload: bytes) -> tuple[str, int, bytes] | None:
    """``(t, s, raw d)`` of a dispatch payload, or None for any other payload.

    In Discord's key order the raw ``d`` is sliced out without decoding; any other layout
    is decoded and ``d`` encoded again.
    """
    head = _DISPATCH_HEAD.match(payload)
    if head is not None and payload.endswith(b"}"):
        return head[1].decode(), int(head[2]), payload[head.end() : -1]
    op, s, t = scan(payload)
    if op != 0 or s is None or t is None:
        return None
    body = codec.loads(payload)
    return t, s, codec.dumps(body.get("d")).encode()


#: A dispatch waiting to be committed: session id, sequence, name ("" when only the
#: checkpoint moves), raw d. A plain tuple: the publish script's arguments, in order.
_Pending = tuple[str, int, str, bytes]


class Publisher:
    """Reads one shard's raw messages and adds each wanted dispatch to a Redis Stream.

    Entries hold ``t``, ``s``, ``shard``, ``session`` and ``d`` (the raw JSON bytes of the
    payload's ``d``). The shard's checkpoint (its :class:`RedisSessionStore` hash:
    ``session_id``, ``sequence`` of the last dispatch committed, ``resume_url``) moves in
    the same script as the ``XADD``s, so resuming from it neither loses nor repeats an event.
    The session is tracked from the messages themselves (READY's ``session_id`` and
    ``resume_gateway_url``), not from the shard's bookkeeping, which may run ahead.

    One commit is in flight per shard; what arrives meanwhile goes in the next batch (so a
    busy shard commits in batches, a quiet one at once). A dispatch stays held until its
    batch is committed, and batches commit in order: when Redis fails a commit, whether
    unreachable (down, restarting) or refusing writes (``OOM`` under ``maxmemory``,
    ``MISCONF``, ``READONLY``), the same batch is retried with backoff (``retry_min`` to
    ``retry_max`` seconds) and everything after it waits. Retrying is safe: the script skips
    what a commit whose reply was lost already added. The checkpoint therefore never runs
    ahead of the stream.

    What it holds is capped: at most ``max_pending`` dispatches and ``max_pending_bytes``
    bytes of ``d`` (plus the one dispatch that crossed the cap). At the cap, :meth:`run`
    stops taking messages from the shard until a commit makes room, so the shard pauses
    reading its socket (its ``Config.read_high_water``) and the gateway holds the rest for
    a resume: backpressure, never a drop.

    A failure is logged once per outage (an error if unreachable, a warning if refused; a
    notice when commits succeed again) and readable as state: :attr:`healthy`,
    :attr:`failures` (failed commit attempts so far), :attr:`last_error` and
    :attr:`pending`.
    """

    def __init__(
        self,
        shard: Shard,
        client: Client,
        store: RedisSessionStore,
        *,
        stream: str = DEFAULT_STREAM,
        maxlen: int = 0,
        wanted: EventTypeFlags | None = None,
        saved: SavedSession | None = None,
        max_batch: int = 2048,
        max_pending: int = 10_000,
        max_pending_bytes: int = 64 * 1024 * 1024,
        retry_min: float = 0.05,
        retry_max: float = 5.0,
    ) -> None:
        if max_batch < 1 or max_pending < 1 or max_pending_bytes < 1:
            raise ValueError("max_batch, max_pending and max_pending_bytes must be >= 1")
        self.shard = shard
        self.redis = client
        self.stream = stream
        self.maxlen = maxlen
        self.published = 0
        self._store = store
        self._script = client.register_script(_PUBLISH)
        self._wanted = wanted
        self._names: dict[str, bool] = {}
        self._session_id = saved.session.session_id if saved else None
        self._resume_url = saved.resume_url if saved else None
        self._batch: list[_Pending] = []  # held, oldest first; removed once committed
        self._bytes = 0
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._max_pending_bytes = max_pending_bytes
        self._committing = asyncio.Lock()
        self._kick = asyncio.Event()  # the committer: something to commit
        self._room = asyncio.Event()  # run(): below the caps again (or the committer died)
        self._committer: asyncio.Task[None] | None = None
        self._outage = _Outage(
            client, f"shard {shard.id.number}'s events wait to be published", retry_min, retry_max
        )

    @property
    def healthy(self) -> bool:
        """False from a failed commit until the next one succeeds."""
        return self._outage.healthy

    @property
    def failures(self) -> int:
        """Failed commit attempts so far (each retry of an outage counts)."""
        return self._outage.failures

    @property
    def last_error(self) -> str | None:
        """The latest commit failure (``"ResponseError: OOM ..."``), None if none yet."""
        return self._outage.last_error

    @property
    def pending(self) -> int:
        """Dispatches held, not committed yet."""
        return len(self._batch)

    def _is_wanted(self, name: str) -> bool:
        wanted = self._names.get(name)
        if wanted is None:
            try:
                wanted = self._wanted is None or EventType(name) in self._wanted
            except ValueError:
                wanted = True  # names this library does not know yet pass through
            self._names[name] = wanted
        return wanted

    def _full(self) -> bool:
        return len(self._batch) >= self._max_pending or self._bytes >= self._max_pending_bytes

    async def run(self) -> None:
        """Publish until the shard closes or fails fatally (cancel to stop; then :meth:`flush`).

        Raises what stopped the committer if it was not Redis (a bug): never silently.
        """
        committer = self._committer = asyncio.create_task(self._commit_loop())
        committer.add_done_callback(lambda _: self._room.set())
        try:
            await self._read()
        finally:
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            self._committer = None

    async def _read(self) -> None:
        shard = self.shard
        while True:
            try:
                message = await shard.next_message()
            except ReceiveMessageError as exc:
                if exc.is_fatal() or exc.kind is ReceiveMessageErrorKind.CLOSED:
                    return
                log.warning("shard %s: %s", shard.id, exc)
                continue
            if isinstance(message, Close):
                continue
            payload = message.text.encode()
            parts = split_dispatch(payload)
            if parts is None:
                continue
            name, seq, data = parts
            if name == "READY":
                ready = codec.loads(data)
                if isinstance(ready, dict) and isinstance(ready.get("session_id"), str):
                    self._session_id = ready["session_id"]
                    self._resume_url = ready.get("resume_gateway_url") or None
            if self._session_id is None:
                continue  # cannot happen with a well-behaved gateway
            if self._is_wanted(name):
                self._batch.append((self._session_id, seq, name, data))
                self._bytes += len(data)
            else:
                self._batch.append((self._session_id, seq, "", b""))
            self._kick.set()
            self._raise_if_dead()
            while self._full():
                # Redis is slow or failing: stop reading the shard until a commit makes room.
                self._room.clear()
                await self._room.wait()
                self._raise_if_dead()

    def _raise_if_dead(self) -> None:
        committer = self._committer
        if committer is not None and committer.done() and not committer.cancelled():
            exc = committer.exception()
            if exc is not None:
                raise exc

    async def _commit_loop(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            await self._commit_held()

    async def flush(self) -> None:
        """Commit what is still held (call after cancelling :meth:`run`). Waits through a
        Redis outage, retrying with backoff: cancel it to give up (what is held is then
        lost to the stream; the checkpoint still names the last dispatch committed).
        """
        await self._commit_held()

    async def _commit_held(self) -> None:
        # One committer at a time (the loop, or flush): a batch leaves ``_batch`` only once
        # committed, so two at once would commit it twice and drop the next one.
        async with self._committing:
            while self._batch:
                batch = self._batch[: self._max_batch]
                await self._commit(batch)
                del self._batch[: len(batch)]
                self._bytes -= sum(len(item[3]) for item in batch)
                if not self._full():
                    self._room.set()

    async def _commit(self, batch: list[_Pending]) -> None:
        args: list[Any] = [
            self.maxlen,
            int(self._store.ttl * 1000),
            self.shard.id.number,
            self._resume_url or "",
        ]
        for item in batch:
            args += item
        keys = [self.stream, self._store.key(self.shard.id.number)]
        while True:
            try:
                added = await self._script(keys=keys, args=args)
            except (RedisError, OSError) as exc:
                # The script is atomic (a refused write fails at its first XADD, before any
                # change) and skips what is committed: retrying the same batch is safe.
                await asyncio.sleep(self._outage.failed(exc))
                continue
            self._outage.ok()
            self.published += int(added)
            return


async def close_for_handover(
    shards: list[Shard],
    store: RedisSessionStore,
    publishers: list[Publisher] | None = None,
) -> None:
    """Stop a worker so that another resumes its shards: flush the publishers, close every
    shard with ``CloseFrame.RESUME`` and save its session, unless the shard's own
    ``Config.session_store`` hook does, or a publisher's checkpoint (exact by construction)
    already holds it.
    """
    if publishers:
        await asyncio.gather(*(p.flush() for p in publishers))
    sessions = await asyncio.gather(*(s.close(CloseFrame.RESUME) for s in shards))
    if publishers:
        return
    for shard, session in zip(shards, sessions, strict=True):
        if session is not None and shard.config.session_store is None:
            await store.save(shard.id.number, SavedSession(session, shard.resume_url))


# ---- consuming -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One published dispatch: the stream entry ``id``, ``t``, ``s``, the shard number, the
    session id, and ``d`` (raw JSON bytes; :meth:`data` decodes it).
    """

    id: str
    name: str
    sequence: int
    shard: int
    session_id: str
    raw: bytes

    def data(self) -> Any:
        """``d``, decoded. Raises :class:`~gateway.errors.ReceiveMessageError` (kind
        ``DESERIALIZING``) if it is not valid JSON (or not UTF-8): decoding is left to the
        consumer, so a bad ``d`` surfaces here, typed.
        """
        try:
            return codec.loads(self.raw)
        except (ValueError, TypeError, RecursionError, OverflowError) as exc:
            raise ReceiveMessageError(
                ReceiveMessageErrorKind.DESERIALIZING,
                f"stream entry id {self.id}: d is not valid JSON ({type(exc).__name__})",
            ) from None


def _entry(entry_id: bytes, fields: Mapping[bytes, bytes]) -> StreamEntry | ReceiveMessageError:
    """The entry, or a typed error naming it if a field is missing or malformed (written by
    something other than :class:`Publisher`, or damaged).
    """
    try:
        raw = fields[b"d"]
        if not isinstance(raw, bytes):
            raise TypeError("d is not a string")
        return StreamEntry(
            entry_id.decode("ascii"),
            fields[b"t"].decode(),
            int(fields[b"s"]),
            int(fields[b"shard"]),
            fields[b"session"].decode(),
            raw,
        )
    except KeyError as exc:
        why = f"the field {exc.args[0]!r} is missing"
    except (ValueError, TypeError, AttributeError) as exc:  # UnicodeDecodeError included
        why = f"a field is malformed ({type(exc).__name__})"
    name = entry_id.decode("ascii", "replace") if isinstance(entry_id, bytes) else repr(entry_id)
    return ReceiveMessageError(
        ReceiveMessageErrorKind.STREAM_ENTRY, f"stream entry id {name}: {why}; skipped"
    )


def _live(
    entries: list[tuple[bytes, Mapping[bytes, bytes] | None]], done: list[bytes]
) -> list[tuple[bytes, Mapping[bytes, bytes]]]:
    # An entry trimmed away (MAXLEN) while pending comes back without fields: ack it unseen.
    live = []
    for entry_id, fields in entries:
        if fields:
            live.append((entry_id, fields))
        else:
            done.append(entry_id)
    return live


async def consume(
    client: Client | str,
    group: str,
    consumer: str,
    *,
    stream: str = DEFAULT_STREAM,
    count: int = 100,
    block: float = 1.0,
    claim_idle: float = 30.0,
    start: str = "0",
) -> AsyncIterator[StreamEntry | ReceiveMessageError]:
    """``async for entry in consume(url, group, consumer)``: the stream's entries through a
    consumer group, each acknowledged once the loop body that got it has finished (when the
    next entry is asked for; acknowledgements go in one ``XACK`` per batch, and at
    ``aclose()``: use ``contextlib.aclosing`` to stop early).

    The group is created (at ``start``, default the stream's beginning) if missing, and
    created again if it vanishes (the stream deleted, Redis restarted empty). This consumer
    first takes back its own unacknowledged entries (a restart under the same name), then
    reads new ones; every ``claim_idle`` seconds it also claims entries another consumer
    left unacknowledged for that long (``XAUTOCLAIM``: that consumer died), so every entry
    is processed at least once. A body that raises leaves its entry unacknowledged, for a
    later claim.

    Bad input never ends the iteration: an entry with a field missing or malformed comes
    as a :class:`~gateway.errors.ReceiveMessageError` of kind ``STREAM_ENTRY`` naming its
    id (and is acknowledged like the rest), a ``d`` that is not JSON raises one of kind
    ``DESERIALIZING`` from :meth:`StreamEntry.data`. While Redis is unreachable or refuses
    (``OOM``, ``MISCONF``, ``READONLY``: reading through a group is a write), the consumer
    logs once and retries with backoff.
    """
    redis_client = connect(client) if isinstance(client, str) else client
    outage = _Outage(redis_client, f"consumer {consumer} waits")
    done: list[bytes] = []
    own: bytes | None = b"0"  # our own pending entries first (None once they are drained)
    next_claim = 0.0
    grouped = False
    try:
        while True:
            try:
                if not grouped:
                    await _create_group(redis_client, stream, group, start)
                    grouped = True
                if done:
                    await redis_client.xack(stream, group, *done)
                    done.clear()
                batch: list[tuple[bytes, Mapping[bytes, bytes]]] = []
                now = time.monotonic()
                if now >= next_claim:
                    next_claim = now + claim_idle / 2
                    reply: Any = await redis_client.xautoclaim(
                        stream, group, consumer, int(claim_idle * 1000), start_id="0-0",
                        count=count,
                    )  # fmt: skip
                    batch = _live(reply[1], done)
                    if batch:
                        log.info("consumer %s claimed %d idle entries", consumer, len(batch))
                if not batch:
                    last = own if own is not None else b">"
                    streams: Any = await redis_client.xreadgroup(
                        group, consumer, {stream: last}, count=count,
                        block=None if own is not None else int(block * 1000),
                    )  # fmt: skip
                    entries = [e for _, part in streams or () for e in part]
                    if own is not None:
                        own = entries[-1][0] if entries else None
                    batch = _live(entries, done)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    # The stream and its group are gone (deleted, or Redis restarted empty):
                    # what was acknowledged went with them.
                    log.warning("consumer %s: the group %s is gone; creating it", consumer, group)
                    grouped, own, next_claim = False, b"0", 0.0
                    done.clear()
                    continue
                await asyncio.sleep(outage.failed(exc))
                continue
            except (RedisError, OSError) as exc:
                await asyncio.sleep(outage.failed(exc))
                continue
            outage.ok()
            for entry_id, fields in batch:
                yield _entry(entry_id, fields)
                done.append(entry_id)
    finally:
        # Stopped (aclose, or a break then aclose): acknowledge what was finished. The entry
        # in hand when it stopped stays pending, for a claim.
        if done:
            with contextlib.suppress(RedisError, OSError):
                await redis_client.xack(stream, group, *done)
        if isinstance(client, str):
            await redis_client.aclose()


async def _create_group(client: Client, stream: str, group: str, start: str) -> None:
    try:
        await client.xgroup_create(stream, group, id=start, mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


# ---- the worker (python -m gateway run --redis URL) ------------------------------------------


async def _retrying(what: str, client: Client, call: Callable[[], Awaitable[Any]]) -> Any:
    outage = _Outage(client, what)
    while True:
        try:
            result = await call()
        except _UNREACHABLE as exc:
            await asyncio.sleep(outage.failed(exc))
            continue
        outage.ok()
        return result


async def _keep_alive(shards: list[Shard], store: RedisSessionStore, every: float) -> None:
    """Restart the TTL of every live shard's saved session on a cadence: the checkpoint of a
    quiet shard (no event, so no save) must not expire while its session lives.
    """
    while True:
        await asyncio.sleep(every)
        try:
            await store.touch([s.id.number for s in shards if s.session is not None])
        except (RedisError, OSError) as exc:
            log.warning("refreshing the saved sessions failed (retried in %.0f s): %s", every, exc)


def _limit(bot: GatewayBot) -> dict[str, int]:
    lim = bot.session_start_limit
    return {
        "total": lim.total,
        "remaining": lim.remaining,
        "reset_after": int(lim.reset_after * 1000),
        "max_concurrency": lim.max_concurrency,
    }


async def run_worker(
    config: Config,
    spec: ShardSpec,
    wanted: EventTypeFlags | None,
    fmt: str,
    limit: int | None,
    api_url: str | None,
    out: TextIO,
    options: RedisOptions,
) -> int:
    """``python -m gateway run --redis URL [--publish]``: one worker of a cluster."""
    from . import runner
    from .http import DEFAULT_API_BASE_URL, get_gateway_bot

    client = connect(options.url)
    config, bot = await runner._discover(config, wanted, api_url)
    token = config.token

    async def refresh() -> Mapping[str, Any]:
        fresh = await get_gateway_bot(token, api_base_url=api_url or DEFAULT_API_BASE_URL)
        return _limit(fresh)

    if bot is not None:
        lim = bot.session_start_limit
        queue = RedisQueue(
            client, token, max(1, lim.max_concurrency), lim.total,
            min(lim.remaining, lim.total), lim.reset_after,
            interval=options.identify_interval, refresh=refresh,
        )  # fmt: skip
    else:
        queue = RedisQueue(client, token, 1, interval=options.identify_interval)
    if bot is not None:  # this host's reading of the budget, merged into the shared one
        reading = _limit(bot)
        await _retrying(
            "reading the identify budget waits", client, lambda: queue.sync_budget(reading)
        )
    numbers, total = runner.shard_numbers(spec, bot)
    store = RedisSessionStore(client, token, namespace=str(total), ttl=options.session_ttl)
    saved: dict[int, SavedSession] = await _retrying(
        "loading the saved sessions waits", client, lambda: store.load_many(numbers)
    )
    config = dataclasses.replace(config, queue=queue)
    if not options.publish:
        # The shard's own hook saves (on a cadence, on close(RESUME)) and deletes (when the
        # session ends). Not with --publish: the publisher's checkpoint, committed with
        # the XADDs, is the one to resume from; the shard's view can run ahead of it.
        config = dataclasses.replace(
            config, session_store=store, session_save_interval=options.save_every
        )
    shards = [
        Shard(ShardId(n, total), config=runner.with_sessions(config, saved.get(n))) for n in numbers
    ]
    log.info(
        "worker: shards %d-%d of %d: %d resume a saved session, %d identify",
        numbers.start, numbers.stop - 1, total, len(saved), len(numbers) - len(saved),
    )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.create_task(stop.wait())
    fatal: tuple[ShardId, str] | None = None
    try:
        if options.publish:
            publishers = [
                Publisher(
                    shard,
                    client,
                    store,
                    stream=options.stream,
                    maxlen=options.maxlen,
                    wanted=wanted,
                    saved=saved.get(shard.id.number),
                )
                for shard in shards
            ]
            tasks = [asyncio.create_task(p.run()) for p in publishers]
            everything = asyncio.gather(*tasks)
            keeper = asyncio.create_task(_keep_alive(shards, store, options.save_every))
            await asyncio.wait((everything, stopper), return_when=asyncio.FIRST_COMPLETED)
            keeper.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(everything, return_exceptions=True)
            for task in tasks:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            await close_for_handover(shards, store, publishers)
            log.info("worker: published %d events", sum(p.published for p in publishers))
        else:
            stream = ShardEventStream(shards)
            consumer = asyncio.create_task(runner.write_events(stream, fmt, limit, out))
            saver = asyncio.create_task(_keep_alive(shards, store, options.save_every))
            try:
                await asyncio.wait((consumer, stopper), return_when=asyncio.FIRST_COMPLETED)
            finally:
                saver.cancel()
                consumer.cancel()
                # It hands over the lines it holds (bounded) before it ends.
                await asyncio.gather(consumer, return_exceptions=True)
                await stream.aclose()
            await close_for_handover(shards, store)
            if not consumer.cancelled():
                fatal = consumer.result()
        for shard in shards:
            if shard.state is ShardState.FATALLY_CLOSED:
                await store.delete(shard.id.number)  # that session is gone for good
                fatal = fatal or (shard.id, "fatally closed")
    finally:
        stopper.cancel()
        # A crash above (a bug, or Redis refusing writes) still leaves resumable sessions.
        left = [s for s in shards if s.state not in (ShardState.CLOSED, ShardState.FATALLY_CLOSED)]
        await asyncio.gather(*(s.close(CloseFrame.RESUME) for s in left), return_exceptions=True)
        await queue.aclose()
    if fatal is not None:
        print(f"error: shard {fatal[0]}: {fatal[1]}", file=sys.stderr)
        return 1
    return 0

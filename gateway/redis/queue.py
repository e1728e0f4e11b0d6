"""The cluster-wide identify queue: :class:`RedisQueue`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from redis.exceptions import RedisError

from ..queue import DAY, IDENTIFY_INTERVAL, IDENTIFY_MARGIN, session_budget
from .client import (
    _UNREACHABLE,
    DEFAULT_PREFIX,
    Client,
    _describe,
    _Outage,
    connect,
    token_namespace,
)

__all__ = ["LimitSource", "RedisQueue"]

log = logging.getLogger("gateway.redis")  # one logger for the package, as before the split

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

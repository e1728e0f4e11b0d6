"""Identify queues: one IDENTIFY per bucket per 5 s, and the daily session-start budget.

Discord's bucket of shard N is ``N % max_concurrency``; buckets are started in order and the
whole bot has a daily budget of session starts (protocol.md 4.3, 4.4). Every shard of an
event loop must share one queue; :func:`default_queue` is that queue unless ``Config.queue``
names another (for instance one built by :func:`gateway.stream.create_recommended`). A
process running shards on several event loops (threads) has one default queue per loop;
when those shards must share the bot's identify windows and budget, give each loop a
:class:`gateway.redis.RedisQueue` on the same Redis (or a queue of your own).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import weakref
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Queue",
    "session_budget",
    "InMemoryQueue",
    "default_queue",
    "IDENTIFY_INTERVAL",
    "IDENTIFY_MARGIN",
    "DAY",
]

log = logging.getLogger(__name__)

#: Seconds between two identifies of one bucket (Discord's window).
IDENTIFY_INTERVAL = 5.0
#: Extra spacing, as a share of the interval, so that two IDENTIFYs of one bucket never
#: reach the gateway less than the window apart even when the first one's send was
#: delayed after its grant (an independent gateway saw 5.00 s - epsilon without it).
IDENTIFY_MARGIN = 0.05
#: The session-start budget's window, in seconds.
DAY = 86400.0


@runtime_checkable
class Queue(Protocol):
    """Grants permission to IDENTIFY.

    ``acquire`` returns when shard ``shard_id`` may send IDENTIFY. It is cancellable, and a
    cancelled wait must not consume a permit (a shard closed while queued leaves no ghost).
    """

    async def acquire(self, shard_id: int) -> None:
        """Return when shard ``shard_id`` may send IDENTIFY."""
        ...


class _Bucket:
    """The waiters of one rate-limit bucket, lowest shard id first."""

    __slots__ = ("next_at", "timer", "timer_at", "waiters")

    def __init__(self) -> None:
        self.waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self.next_at = float("-inf")
        self.timer: asyncio.Handle | None = None
        # The timer's time, kept here: uvloop's call_at returns a plain Handle (no when())
        # for a time already past.
        self.timer_at = 0.0


def session_budget(total: int, remaining: int | None) -> int:
    """The session starts left of a daily budget of ``total`` (None: all of them), checked
    (the identify queues share it).
    """
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    remaining = total if remaining is None else remaining
    if not 0 <= remaining <= total:
        raise ValueError(f"remaining must be 0-{total}, got {remaining}")
    return remaining


class InMemoryQueue:
    """The identify queue of one process: buckets of ``max_concurrency``, budget per day.

    Each bucket grants one permit per ``interval`` seconds (plus
    :data:`IDENTIFY_MARGIN` of it: 5.25 s by default), to the lowest waiting shard id
    first, so that buckets start in order (shards 0..mc-1, then mc..2mc-1, ...).
    ``remaining`` permits are left of ``total`` until ``reset_after`` seconds from the first
    use; once spent, the queue waits for the reset instead of burning the token (Discord
    resets a token that exceeds the budget). ``max_concurrency=0`` disables all waiting, for
    a gateway proxy that queues itself.

    A queue belongs to the event loop that first uses it.
    """

    def __init__(
        self,
        max_concurrency: int = 1,
        total: int = 1000,
        remaining: int | None = None,
        reset_after: float = DAY,
        *,
        interval: float = IDENTIFY_INTERVAL,
    ) -> None:
        if max_concurrency < 0:
            raise ValueError(f"max_concurrency must be >= 0, got {max_concurrency}")
        remaining = session_budget(total, remaining)
        if reset_after < 0 or interval < 0:
            raise ValueError("reset_after and interval must be >= 0")
        self.max_concurrency = max_concurrency
        self.total = total
        self.remaining = remaining
        self.interval = interval
        self._reset_after = reset_after
        self._reset_at: float | None = None
        self._buckets: dict[int, _Bucket] = {}
        self._seq = itertools.count()
        self._budget_warned = False

    @classmethod
    def from_session_start_limit(
        cls, limit: Mapping[str, Any], *, interval: float = IDENTIFY_INTERVAL
    ) -> InMemoryQueue:
        """A queue from ``/gateway/bot``'s ``session_start_limit`` (``reset_after`` in ms)."""
        return cls(
            int(limit["max_concurrency"]),
            int(limit["total"]),
            int(limit["remaining"]),
            int(limit["reset_after"]) / 1000,
            interval=interval,
        )

    def __repr__(self) -> str:
        return (
            f"InMemoryQueue(max_concurrency={self.max_concurrency}, "
            f"remaining={self.remaining}/{self.total}, waiting={self.waiting})"
        )

    @property
    def waiting(self) -> int:
        """How many shards wait for a permit now."""
        return sum(
            not fut.done() for bucket in self._buckets.values() for *_, fut in bucket.waiters
        )

    async def acquire(self, shard_id: int) -> None:
        if self.max_concurrency == 0:
            return
        loop = asyncio.get_running_loop()
        if self._reset_at is None:
            self._reset_at = loop.time() + self._reset_after
        bucket = self._buckets.setdefault(shard_id % self.max_concurrency, _Bucket())
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(bucket.waiters, (shard_id, next(self._seq), fut))
        # Grant on the next loop turn, so shards queued in the same turn go in id order.
        self._arm(loop, bucket, loop.time())
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._refund(loop, bucket)  # granted, but the shard never identified
            raise

    def _refund(self, loop: asyncio.AbstractEventLoop, bucket: _Bucket) -> None:
        # The grant was the bucket's latest (it blocks others), so its window is free again.
        bucket.next_at = float("-inf")
        self.remaining = min(self.total, self.remaining + 1)
        self._arm(loop, bucket, loop.time())

    def _arm(self, loop: asyncio.AbstractEventLoop, bucket: _Bucket, when: float) -> None:
        if bucket.timer is not None:
            if bucket.timer_at <= when:
                return
            bucket.timer.cancel()
        bucket.timer = loop.call_at(when, self._grant, loop, bucket)
        bucket.timer_at = when

    def _grant(self, loop: asyncio.AbstractEventLoop, bucket: _Bucket) -> None:
        bucket.timer = None
        waiters = bucket.waiters
        while waiters and waiters[0][2].done():  # cancelled while waiting
            heapq.heappop(waiters)
        if not waiters:
            return
        now = loop.time()
        if now < bucket.next_at:
            self._arm(loop, bucket, bucket.next_at)
            return
        assert self._reset_at is not None
        if now >= self._reset_at:
            self.remaining = self.total
            self._reset_at = now + self._reset_after
            self._budget_warned = False
        if self.remaining <= 0:
            if not self._budget_warned:
                log.warning(
                    "daily session-start limit used up: identifies wait %.0f s for the reset",
                    self._reset_at - now,
                )
                self._budget_warned = True
            self._arm(loop, bucket, self._reset_at)
            return
        *_, fut = heapq.heappop(waiters)
        self.remaining -= 1
        bucket.next_at = now + self.interval * (1 + IDENTIFY_MARGIN)
        fut.set_result(None)
        if waiters:
            self._arm(loop, bucket, bucket.next_at)


_DEFAULT: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, InMemoryQueue] = (
    weakref.WeakKeyDictionary()
)


def default_queue() -> InMemoryQueue:
    """The running event loop's queue, shared by that loop's shards without ``Config.queue``.

    One per event loop, not per process: an :class:`InMemoryQueue` holds futures and timers
    of the loop that uses it, so shards on another loop (another thread, or a later
    ``asyncio.run``) get their own, and a closed loop's queue goes with it.
    """
    loop = asyncio.get_running_loop()
    queue = _DEFAULT.get(loop)
    if queue is None:
        queue = _DEFAULT[loop] = InMemoryQueue()
    return queue

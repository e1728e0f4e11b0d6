"""Identify queues: one IDENTIFY per bucket per 5 s, and the daily session-start budget.

Discord's bucket of shard N is ``N % max_concurrency`` (protocol.md 4.4). Every shard of a
process must share one queue; :func:`default_queue` is that queue unless
``Config.queue`` names another (a Redis queue for many processes, later).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol, runtime_checkable

__all__ = ["Queue", "InMemoryQueue", "default_queue", "IDENTIFY_INTERVAL"]

log = logging.getLogger(__name__)

#: Seconds between two identifies of one bucket.
IDENTIFY_INTERVAL = 5.0


@runtime_checkable
class Queue(Protocol):
    """Grants permission to IDENTIFY. Cancelling the wait must not consume a permit."""

    async def acquire(self, shard_id: int) -> None:
        """Return when shard ``shard_id`` may send IDENTIFY."""
        ...


class InMemoryQueue:
    """A per-process identify queue: one FIFO per bucket, ``interval`` apart, daily budget.

    ``max_concurrency=0`` disables all waiting (for a gateway proxy). When ``remaining``
    reaches 0 the queue waits for ``reset_after`` seconds instead of burning the token.
    """

    def __init__(
        self,
        max_concurrency: int = 1,
        total: int = 1000,
        remaining: int = 1000,
        reset_after: float = 86400.0,
        *,
        interval: float = IDENTIFY_INTERVAL,
    ) -> None:
        if max_concurrency < 0:
            raise ValueError("max_concurrency must be >= 0")
        self.max_concurrency = max_concurrency
        self.total = total
        self.remaining = remaining
        self.interval = interval
        self._reset_after = reset_after
        self._reset_at: float | None = None
        self._locks: dict[int, asyncio.Lock] = {}
        self._last: dict[int, float] = {}
        self._budget_lock: asyncio.Lock | None = None

    async def acquire(self, shard_id: int) -> None:
        if self.max_concurrency == 0:
            return
        loop = asyncio.get_running_loop()
        if self._reset_at is None:
            self._reset_at = loop.time() + self._reset_after
            self._budget_lock = asyncio.Lock()
        bucket = shard_id % self.max_concurrency
        lock = self._locks.setdefault(bucket, asyncio.Lock())
        async with lock:  # FIFO per bucket; a cancelled waiter leaves without a permit
            last = self._last.get(bucket)
            if last is not None:
                await asyncio.sleep(max(0.0, last + self.interval - loop.time()))
            assert self._budget_lock is not None
            async with self._budget_lock:
                await self._take_budget(loop)
            self._last[bucket] = loop.time()

    async def _take_budget(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._reset_at is not None
        if loop.time() >= self._reset_at:
            self.remaining = self.total
            self._reset_at = loop.time() + self._reset_after
        if self.remaining <= 0:
            wait = self._reset_at - loop.time()
            log.warning("daily session-start limit used up: waiting %.0f s for the reset", wait)
            await asyncio.sleep(max(0.0, wait))
            self.remaining = self.total
            self._reset_at = loop.time() + self._reset_after
        self.remaining -= 1


_DEFAULT: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, InMemoryQueue] = (
    weakref.WeakKeyDictionary()
)


def default_queue() -> InMemoryQueue:
    """The process-wide queue (one per event loop) shared by shards without ``Config.queue``."""
    loop = asyncio.get_running_loop()
    queue = _DEFAULT.get(loop)
    if queue is None:
        queue = _DEFAULT[loop] = InMemoryQueue()
    return queue

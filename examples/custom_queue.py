"""A custom identify queue: any object with ``async acquire(shard_id)`` is a ``Queue``.

    DISCORD_TOKEN=... python examples/custom_queue.py
    python examples/custom_queue.py --emulator

Discord allows one IDENTIFY per bucket (``shard_id % max_concurrency``) per 5 s. Every
shard awaits ``queue.acquire(shard_id)`` before it identifies (never before it resumes).
The built-in ``InMemoryQueue`` does this for one process (and keeps the daily budget);
write your own to coordinate shards elsewhere: a lock service, a database, an HTTP queue
shared by several machines. The rules: return when the shard may identify, and if the wait
is cancelled (the shard was closed meanwhile), do not use up a permit.
"""

from __future__ import annotations

import asyncio

from target import target

from gateway import Config, EventType, Intents, ShardEventStream, ShardId, create_range


class BucketQueue:
    """One IDENTIFY per bucket per ``interval`` seconds, in the order the shards ask."""

    def __init__(self, max_concurrency: int, interval: float = 5.0) -> None:
        self.max_concurrency = max_concurrency
        self.interval = interval
        self._locks: dict[int, asyncio.Lock] = {}
        self._next: dict[int, float] = {}

    async def acquire(self, shard_id: int) -> None:
        bucket = shard_id % self.max_concurrency
        loop = asyncio.get_running_loop()
        async with self._locks.setdefault(bucket, asyncio.Lock()):
            # Cancelled while waiting: the lock is released and _next is untouched.
            await asyncio.sleep(max(0.0, self._next.get(bucket, 0.0) - loop.time()))
            self._next[bucket] = loop.time() + self.interval
        print(f"shard {shard_id} may identify (bucket {bucket})")


async def main() -> None:
    # The emulator's window is shorter than Discord's 5 s, to keep the example quick.
    async with target(shards=4, max_concurrency=2, identify_window=0.1) as t:
        queue = BucketQueue(max_concurrency=2, interval=0.3 if t.emulator else 5.0)

        def configure(shard_id: ShardId) -> Config:
            return Config(t.token, Intents.GUILDS, queue=queue, gateway_url=t.gateway_url)

        # On Discord, use get_gateway_bot() for the shard count and max_concurrency.
        shards = create_range(range(0, 4), 4, configure)
        ready = 0
        async for shard, event in ShardEventStream(shards):
            if not isinstance(event, Exception) and event.type is EventType.READY:
                print(f"shard {shard.id.number} is ready")
                ready += 1
                if t.enough(ready, len(shards)):
                    break
        await asyncio.gather(*(shard.close() for shard in shards))
        if t.emulator is not None:
            assert not t.emulator.violations, t.emulator.violations  # no identify too early


if __name__ == "__main__":
    asyncio.run(main())

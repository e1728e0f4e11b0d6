"""Discord's recommended number of shards, merged into one stream of (shard, event).

    DISCORD_TOKEN=... python examples/many_shards.py
    python examples/many_shards.py --emulator

``create_recommended`` asks ``GET /gateway/bot`` for the shard count, the gateway URL and
the identify limits, and gives every shard one shared identify queue: shards start one
bucket (``shard_id % max_concurrency``) at a time, 5 s apart. To split shards over several
machines, give each machine ``create_range(range(a, b), total, ...)`` or
``create_bucket(k, max_concurrency, total, ...)`` instead (see the docs' how-to guide).
"""

from __future__ import annotations

import asyncio
from collections import Counter

from target import target

from gateway import (
    Config,
    EventType,
    Intents,
    ReceiveMessageError,
    ShardEventStream,
    ShardId,
    create_recommended,
)
from gateway.payloads import typed

GUILDS = 8  # the emulator's


def configure(shard_id: ShardId, token: str) -> Config:
    """Each shard's configuration (here the same for all)."""
    return Config(token, Intents.GUILDS | Intents.GUILD_MESSAGES)


async def main() -> None:
    async with target(shards=4, max_concurrency=4, guilds=GUILDS) as t:
        shards = await create_recommended(
            t.token, lambda shard_id: configure(shard_id, t.token), api_base_url=t.api_url
        )
        print(f"{len(shards)} shards")
        guilds: Counter[int] = Counter()
        async for shard, event in ShardEventStream(shards):
            if isinstance(event, ReceiveMessageError):
                # Errors arrive as values: a fatal one (bad token) takes the shard out of
                # the stream; after any other, the shard reconnects by itself.
                print(f"shard {shard.id.number}: {event!r}")
                continue
            event = typed(event)
            if event.type is EventType.READY:
                print(f"shard {shard.id.number} ready: {len(event.data['guilds'])} guilds")
            elif event.type is EventType.GUILD_CREATE:
                guilds[shard.id.number] += 1
                if t.enough(guilds.total(), GUILDS):
                    break
        print("guilds per shard:", dict(sorted(guilds.items())))
        await asyncio.gather(*(shard.close() for shard in shards))


if __name__ == "__main__":
    asyncio.run(main())

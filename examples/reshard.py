"""Reshard with no downtime: start the new set of shards beside the old one, swap when
every new shard is READY, then close the old set.

    DISCORD_TOKEN=... python examples/reshard.py     # reshards every 8 hours
    python examples/reshard.py --emulator            # the emulator recommends 2, then 4

A growing bot must move to more shards before Discord closes its shards with 4011
(sharding required). While the new shards identify (5 s per bucket), the old ones keep
serving; events the new shards receive before the swap are dropped, as the old shards
handle them. Both sets share one identify queue, so no bucket identifies twice in 5 s.
"""

from __future__ import annotations

import asyncio

from target import Target, target

from gateway import (
    Config,
    EventType,
    InMemoryQueue,
    Intents,
    Queue,
    ReceiveMessageError,
    Shard,
    ShardEventStream,
    create_recommended,
    get_gateway_bot,
)

INTENTS = Intents.GUILDS | Intents.GUILD_MESSAGES
RESHARD_EVERY = 8 * 3600.0


async def start(t: Target, queue: Queue) -> tuple[list[Shard], ShardEventStream]:
    """A new set of Discord's recommended size, returned once every shard is READY."""
    shards = await create_recommended(
        t.token, lambda _: Config(t.token, INTENTS, queue=queue), api_base_url=t.api_url
    )
    stream = ShardEventStream(shards)
    waiting = {shard.id.number for shard in shards}
    async for shard, event in stream:  # meanwhile, the old set keeps serving
        if isinstance(event, ReceiveMessageError):
            if event.is_fatal():
                raise event
        elif event.type is EventType.READY:
            waiting.discard(shard.id.number)
            if not waiting:
                break
    print(f"{len(shards)} shards ready")
    return shards, stream  # the stream goes on where this loop stopped


async def serve(stream: ShardEventStream, messages: int | None = None) -> None:
    """Handle the events of one set (your bot's work goes here); return after
    ``messages`` messages (None: never).
    """
    seen = 0
    async for shard, event in stream:
        if isinstance(event, ReceiveMessageError):
            print(f"shard {shard.id}: {event!r}")
        elif event.type is EventType.MESSAGE_CREATE:
            print(f"shard {shard.id}: message {event.data['id']}")
            seen += 1
            if messages is not None and seen >= messages:
                return


async def main() -> None:
    async with target(shards=2, max_concurrency=4, guilds=8, events_per_second=20,
                      identify_window=0.1) as t:  # fmt: skip
        limit = (await get_gateway_bot(t.token, api_base_url=t.api_url)).session_start_limit
        queue = InMemoryQueue(
            limit.max_concurrency, limit.total, limit.remaining, limit.reset_after,
            interval=0.3 if t.emulator else 5.0,  # the emulator's window is 0.1 s
        )  # fmt: skip
        shards, stream = await start(t, queue)
        while True:
            if t.emulator is not None:
                await serve(stream, messages=3)
                t.emulator.recommended_shards = 4  # "Discord now recommends 4 shards"
            else:
                try:
                    async with asyncio.timeout(RESHARD_EVERY):
                        await serve(stream)
                except TimeoutError:
                    pass
            # Zero downtime: the old set serves while the new one starts.
            serving = asyncio.create_task(serve(stream))
            try:
                new_shards, new_stream = await start(t, queue)
            finally:
                serving.cancel()
                await asyncio.gather(serving, return_exceptions=True)
            await stream.aclose()
            await asyncio.gather(*(shard.close() for shard in shards))
            print(f"swapped {len(shards)} shards for {len(new_shards)}")
            shards, stream = new_shards, new_stream
            if t.emulator is not None:
                await serve(stream, messages=3)
                break
        await stream.aclose()
        await asyncio.gather(*(shard.close() for shard in shards))


if __name__ == "__main__":
    asyncio.run(main())

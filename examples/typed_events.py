"""Typed events: ``event.data`` as msgspec Structs, decoded straight from the wire.

    pip install 'gateway[msgspec]'
    DISCORD_TOKEN=... python examples/typed_events.py
    python examples/typed_events.py --emulator

``Config(models=...)`` chooses, per event type, what ``event.data`` is: a shipped model of
:mod:`gateway.models` (here READY and GUILD_CREATE, with every documented field), your own slimmer
Struct (here MESSAGE_CREATE: only the fields this bot reads are decoded, which is faster
than building the whole ``dict``), or, for every type not named, the ``dict`` as before.
Snowflakes are ``int``. A payload that does not fit its model is a typed error and a
resume, like bad JSON.
"""

from __future__ import annotations

import asyncio

import msgspec
from target import target

from gateway import Config, EventType, Intents, Shard, ShardId
from gateway.models import GuildCreate, Ready

INTENTS = Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.MESSAGE_CONTENT


class Author(msgspec.Struct, frozen=True):
    id: int
    username: str


class Message(msgspec.Struct, frozen=True):
    """The fields this bot reads of a MESSAGE_CREATE; the rest is skipped, never built."""

    id: int
    channel_id: int
    author: Author
    content: str
    guild_id: int | None = None


MODELS = {
    EventType.READY: Ready,
    EventType.GUILD_CREATE: GuildCreate,
    EventType.MESSAGE_CREATE: Message,
}


async def main() -> None:
    async with target(guilds=2, events_per_second=200, mix="messages") as t:
        config = Config(t.token, INTENTS, gateway_url=t.gateway_url, models=MODELS)
        shard = Shard(ShardId.ONE, config=config)
        messages = 0
        async for event in shard:
            if event.type is EventType.GUILD_CREATE:
                guild: GuildCreate = event.data  # the shipped model: typed attributes
                if not guild.unavailable:
                    print(f"guild {guild.name}: {len(guild.channels or ())} channels")
            elif event.type is EventType.MESSAGE_CREATE:
                message: Message = event.data  # the bot's own Struct
                print(f"{message.author.username} in {message.channel_id}: {message.content[:30]}")
                messages += 1
                if t.enough(messages, 3):
                    break
            elif event.type is EventType.READY:
                ready: Ready = event.data
                print(f"ready as {ready.user.username}, {len(ready.guilds)} guilds")
        await shard.close()


if __name__ == "__main__":
    asyncio.run(main())

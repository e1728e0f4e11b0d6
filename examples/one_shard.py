"""One shard: connect, identify, and print every message's content.

    DISCORD_TOKEN=... python examples/one_shard.py     # Discord, until Ctrl-C
    python examples/one_shard.py --emulator            # the local emulator, a few seconds

MESSAGE_CONTENT is a privileged intent: enable it for your bot in the developer portal, or
``content`` arrives empty (except in DMs and messages that mention the bot).
"""

from __future__ import annotations

import asyncio

from target import target

from gateway import EventType, Intents, Shard, ShardId
from gateway.payloads import typed

INTENTS = Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.MESSAGE_CONTENT


async def main() -> None:
    async with target(guilds=2, events_per_second=200, mix="messages") as t:
        shard = Shard(ShardId.ONE, t.token, INTENTS, gateway_url=t.gateway_url)
        messages = 0
        # `async for` reconnects and resumes by itself; it ends after a fatal close
        # (a bad token or intents) or once the shard is closed.
        async for event in shard:
            event = typed(event)  # the same event, typed: event.data narrows on event.type
            if event.type is EventType.READY:
                print(f"ready as {event.data['user']['username']}, shard {shard.id}")
            elif event.type is EventType.MESSAGE_CREATE:
                author, content = event.data["author"]["username"], event.data["content"]
                print(f"{author}: {content[:40]}")
                messages += 1
                if t.enough(messages, 3):
                    break
        await shard.close()


if __name__ == "__main__":
    asyncio.run(main())

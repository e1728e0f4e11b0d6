"""Decode only the events you handle, with ``Config(event_types=...)``.

    DISCORD_TOKEN=... python examples/event_filtering.py
    python examples/event_filtering.py --emulator

Intents decide what Discord sends; ``event_types`` decides what the shard decodes and
returns. Every other payload is only scanned for its opcode, sequence and name (enough to
keep the session and resume it), never JSON-decoded: on a busy shard that is most of the
CPU saved. Gateway-level events (``GATEWAY_*``) are filtered the same way.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from target import target

from gateway import Config, EventType, EventTypeFlags, Intents, Shard, ShardId
from gateway.payloads import typed

# Typing, presences, reactions and voice states still arrive (the intents ask for them),
# but are skipped without being decoded.
INTENTS = (
    Intents.GUILDS
    | Intents.GUILD_MESSAGES
    | Intents.MESSAGE_CONTENT
    | Intents.GUILD_MESSAGE_TYPING
    | Intents.GUILD_MESSAGE_REACTIONS
    | Intents.GUILD_VOICE_STATES
)
WANTED = EventTypeFlags.READY | EventTypeFlags.MESSAGE_CREATE | EventTypeFlags.MESSAGE_DELETE


async def main() -> None:
    async with target(guilds=2, events_per_second=500) as t:
        config = Config(t.token, INTENTS, event_types=WANTED, gateway_url=t.gateway_url)
        shard = Shard(ShardId.ONE, config=config)
        seen: Counter[str] = Counter()
        async for event in shard:
            assert event.type is not None and event.type in WANTED
            seen[str(event.type)] += 1
            event = typed(event)
            if event.type is EventType.MESSAGE_CREATE:
                print(f"{event.data['author']['username']}: {event.data['content'][:30]}")
                if t.enough(seen["MESSAGE_CREATE"], 5):
                    break
        # The session's sequence counts every dispatch, decoded or not.
        sequence = shard.session.sequence if shard.session else 0
        print(f"decoded {dict(seen)} of {sequence} dispatches")
        await shard.close()


if __name__ == "__main__":
    asyncio.run(main())

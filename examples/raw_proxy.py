"""Raw messages for a proxy: forward every payload as the gateway sent it, never decoded.

    DISCORD_TOKEN=... python examples/raw_proxy.py > events.jsonl
    python examples/raw_proxy.py --emulator

``next_message()`` (here through ``ShardMessageStream``) returns ``Text`` (one whole
payload, decompressed) or ``Close`` (the connection closed; the shard reconnects by
itself). The shard still reads ``op``, ``s`` and ``t`` for its own bookkeeping
(heartbeats, sequence, resume) but never JSON-decodes the payload: the consumer behind the
proxy does. Send commands the other way with ``shard.send(json_text)``.
"""

from __future__ import annotations

import asyncio
import sys

from target import target

from gateway import (
    Close,
    Config,
    Intents,
    ReceiveMessageError,
    ShardMessageStream,
    create_recommended,
)


async def forward(lines: asyncio.Queue[str]) -> None:
    """The downstream: here stdout; in a real proxy a socket, a broker or workers."""
    while True:
        line = await lines.get()
        sys.stdout.write(line + "\n")
        lines.task_done()


async def main() -> None:
    async with target(shards=2, max_concurrency=2, guilds=4, events_per_second=100) as t:
        intents = Intents.GUILDS | Intents.GUILD_MESSAGES
        shards = await create_recommended(
            t.token, lambda _: Config(t.token, intents), api_base_url=t.api_url
        )
        lines: asyncio.Queue[str] = asyncio.Queue(maxsize=10_000)
        writer = asyncio.create_task(forward(lines))
        forwarded = 0
        async for shard, message in ShardMessageStream(shards):
            if isinstance(message, ReceiveMessageError):
                print(f"shard {shard.id}: {message!r}", file=sys.stderr)
            elif isinstance(message, Close):
                print(f"shard {shard.id}: closed {message.frame}", file=sys.stderr)
            else:
                # The text as received: one JSON object per line, tagged with its shard.
                await lines.put(f'{{"shard":{shard.id.number},"payload":{message.text}}}')
                forwarded += 1
                if t.enough(forwarded, 10):
                    break
        await asyncio.gather(*(shard.close() for shard in shards))
        await lines.join()  # everything forwarded
        writer.cancel()


if __name__ == "__main__":
    asyncio.run(main())

"""Test your own bot against the local gateway emulator, in pytest.

    pytest examples/test_your_bot.py        # needs pytest and pytest-asyncio

``GatewayEmulator`` is a real websocket server on loopback: the bot under test connects,
identifies and heartbeats exactly as with Discord. The test scripts what Discord sends
(``emulator.dispatch``), injects faults (``connection.reconnect()``, ``drop()``...) and
asserts on what the bot sent (``emulator.records_of("command")``, ``emulator.violations``).
No token, no network, and no sleeps: the test steps the bot one event at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from gateway import Event, EventType, Intents, Shard, ShardId, UpdateVoiceState
from gateway.payloads import typed
from gateway.testing import GatewayEmulator, load_payload

# ---- the bot under test (in your project: import it) -------------------------------------


class VoiceBot:
    """Joins the voice channel named by "!join <channel id>", leaves on "!leave", and
    remembers where it is from its own VOICE_STATE_UPDATEs.
    """

    INTENTS = Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.MESSAGE_CONTENT

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.user_id: str | None = None
        self.voice: dict[str, str | None] = {}  # guild -> channel (None: not connected)

    def handle(self, event: Event) -> None:
        event = typed(event)
        if event.type is EventType.READY:
            self.user_id = event.data["user"]["id"]
        elif event.type is EventType.MESSAGE_CREATE and "guild_id" in event.data:
            guild, words = event.data["guild_id"], event.data["content"].split()
            if len(words) == 2 and words[0] == "!join" and words[1].isdigit():
                self.shard.command(UpdateVoiceState(guild, words[1]))
            elif words == ["!leave"]:
                self.shard.command(UpdateVoiceState(guild, None))
        elif event.type is EventType.VOICE_STATE_UPDATE and "guild_id" in event.data:
            if event.data["user_id"] == self.user_id:
                self.voice[event.data["guild_id"]] = event.data["channel_id"]

    async def run(self) -> None:
        async for event in self.shard:
            self.handle(event)


# ---- the tests --------------------------------------------------------------------------------

pytestmark = pytest.mark.asyncio
CHANNEL = "157733188964188161"


@pytest_asyncio.fixture
async def emulator() -> AsyncIterator[GatewayEmulator]:
    async with GatewayEmulator(heartbeat_interval=1.0, guilds=2) as emulator:
        yield emulator
        assert not emulator.violations  # the bot kept to the protocol


@pytest_asyncio.fixture
async def bot(emulator: GatewayEmulator) -> AsyncIterator[VoiceBot]:
    shard = Shard(ShardId.ONE, "test-token", VoiceBot.INTENTS, gateway_url=emulator.url)
    bot = VoiceBot(shard)
    await step_until(bot, lambda: bot.user_id is not None)  # READY handled
    yield bot
    await shard.close()


async def step_until(bot: VoiceBot, done: Callable[[], object], timeout: float = 5) -> None:
    """Feed the bot events one at a time until ``done()``: no sleeps, no polling."""
    async with asyncio.timeout(timeout):
        while not done():
            bot.handle(await bot.shard.next_event())


def message(guild: int, content: str) -> dict[str, Any]:
    """A MESSAGE_CREATE from a user, built on the emulator's example message."""
    d: dict[str, Any] = load_payload("message_create")["d"]
    return {**d, "guild_id": str(guild), "content": content}


async def test_joins_and_leaves_voice_when_asked(emulator: GatewayEmulator, bot: VoiceBot) -> None:
    guild = emulator.guild_ids[0]
    await emulator.dispatch("MESSAGE_CREATE", message(guild, f"!join {CHANNEL}"))
    await step_until(bot, lambda: bot.voice.get(str(guild)) == CHANNEL)

    await emulator.dispatch("MESSAGE_CREATE", message(guild, "!leave"))
    await step_until(bot, lambda: str(guild) in bot.voice and bot.voice[str(guild)] is None)

    sent = [r.data for r in emulator.records_of("command") if r.data["op"] == 4]
    assert [d["d"]["channel_id"] for d in sent] == [CHANNEL, None]


async def test_ignores_other_messages(emulator: GatewayEmulator, bot: VoiceBot) -> None:
    guild = emulator.guild_ids[0]
    for text in ("hello", "!join", "!join not-a-channel", f"!join {CHANNEL} now"):
        await emulator.dispatch("MESSAGE_CREATE", message(guild, text))
    await emulator.dispatch("MESSAGE_CREATE", message(guild, "!leave"))  # a marker
    await step_until(bot, lambda: str(guild) in bot.voice)
    assert [r.data["d"]["channel_id"] for r in emulator.records_of("command")] == [None]


async def test_keeps_working_across_a_reconnect(emulator: GatewayEmulator, bot: VoiceBot) -> None:
    await emulator.live_connections()[0].reconnect()  # op 7: the bot must resume
    guild = emulator.guild_ids[1]
    # Sent to the session whatever the connection: replayed on resume if need be.
    await emulator.dispatch("MESSAGE_CREATE", message(guild, f"!join {CHANNEL}"))
    await step_until(bot, lambda: bot.voice.get(str(guild)) == CHANNEL)
    assert len(emulator.resumes) == 1
    assert len(emulator.identifies) == 1  # resumed, not identified again


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q"]))

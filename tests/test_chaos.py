"""Seeded chaos: 100+ faults over one continuous stream, against the emulator.

Faults: op 7; op 9 true and false; a zombie (ACKs withheld); TCP drops; every resumable
close code and the two that end the session (4007, 4009); server heartbeat requests;
messages split over frames; unknown events; and consumer pauses of 5 heartbeat
intervals. Every event is checked: within each session, sequences run 1, 2, 3, ... with no
gap, duplicate or reordering, and the final session is live and delivers a marker sent
after the last fault.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import websockets

from gateway import (
    Event,
    EventType,
    EventTypeFlags,
    InMemoryQueue,
    Intents,
    Shard,
    ShardEventStream,
    ShardId,
)
from gateway.testing import EmulatedConnection, GatewayEmulator

TOKEN = "chaos-token"
INTERVAL = 0.1
RESUMABLE_CODES = [4000, 4001, 4002, 4003, 4005, 4008, 1000, 1001, 1011]


def _faults() -> list[tuple[str, int, Callable[[EmulatedConnection], Awaitable[Any]]]]:
    def close(code: int) -> Callable[[EmulatedConnection], Awaitable[None]]:
        return lambda c: c.close(code)

    async def drop(c: EmulatedConnection) -> None:
        c.drop()

    async def zombie(c: EmulatedConnection) -> None:
        c.ack_heartbeats = False

    async def unknown(c: EmulatedConnection) -> None:
        await c.emulator.dispatch("GUILD_APPLICATION_COMMAND_INDEX_UPDATE", {"n": 1})

    faults: list[tuple[str, int, Callable[[EmulatedConnection], Awaitable[Any]]]] = [
        ("op7", 10, lambda c: c.reconnect()),
        ("op9-true", 6, lambda c: c.invalidate_session(True)),
        ("op9-false", 2, lambda c: c.invalidate_session(False)),
        ("zombie", 4, zombie),
        ("drop", 10, drop),
        ("op1", 10, lambda c: c.request_heartbeat()),
        ("unknown", 6, unknown),
        ("pause", 4, lambda c: asyncio.sleep(0)),  # the consumer's own pause, below
        ("close-4007", 1, close(4007)),
        ("close-4009", 1, close(4009)),
    ]
    faults += [(f"close-{code}", 2, close(code)) for code in RESUMABLE_CODES]
    return faults


@pytest.mark.parametrize("reader", ["shard", "stream"])
async def test_chaos_loses_duplicates_and_reorders_nothing(reader: str) -> None:
    """``reader``: ``shard.next_event()``, or a ``ShardEventStream`` over the shard. A low
    high-water mark makes the consumer's pauses stop reading, so resuming is tested too."""
    rng = random.Random(20261129)
    faults = _faults()
    weights = [w for _, w, _ in faults]
    async with GatewayEmulator(
        heartbeat_interval=INTERVAL, guilds=3, events_per_second=400, split_frames=2,
        unknown_every=97, identify_window=0, identify_timeout=10, heartbeat_grace=1.0, seed=7,
    ) as emu:  # fmt: skip
        shard = Shard(
            ShardId.ONE, TOKEN, Intents.GUILDS | Intents.GUILD_MESSAGES,
            gateway_url=emu.url, queue=InMemoryQueue(max_concurrency=0),
            event_types=EventTypeFlags.ALL, rng=lambda: 0.0,
            backoff_base=0.01, backoff_max=0.05, read_high_water=32 * 1024,
        )  # fmt: skip
        stream = aiter(ShardEventStream([shard]))

        async def next_event() -> Event:
            if reader == "shard":
                return await shard.next_event()
            while True:  # errors come as values in a stream (none is expected here)
                _, item = await anext(stream)
                assert isinstance(item, Event), item
                return item

        sessions: list[list[int]] = []
        injected: dict[str, int] = {}
        unknown_seen = 0
        paused_seen = 0

        def record(event: Any) -> None:
            nonlocal unknown_seen
            if event.type is EventType.READY:
                sessions.append([])
            if event.sequence is not None:
                sessions[-1].append(event.sequence)
            unknown_seen += event.type is EventType.UNKNOWN

        async def consume(count: int) -> None:
            got = 0
            while got < count:
                event = await next_event()
                record(event)
                got += event.sequence is not None

        async with asyncio.timeout(120):
            await consume(5)
            while sum(injected.values()) < 110:
                await consume(rng.randint(3, 25))
                name, _, fault = rng.choices(faults, weights)[0]
                live = emu.live_connections()
                if not live or live[0].session is None or live[0].closed_by is not None:
                    continue  # between connections, or closing: the next round injects
                try:
                    await fault(live[0])
                except websockets.ConnectionClosed:
                    if name != "op9-false":  # that one destroys the session before sending
                        continue  # it was closing already: not a fault we made
                injected[name] = injected.get(name, 0) + 1
                if name == "pause":
                    await asyncio.sleep(5 * INTERVAL)
                    paused_seen += shard._paused
            # The last fault is behind us: a marker must arrive in the live session.
            live = await emu.wait_for(
                lambda: [c for c in emu.live_connections() if c.state == "LIVE"], timeout=10
            )
            (marker,) = await emu.dispatch(
                "MESSAGE_CREATE", {"guild_id": str(emu.guild_ids[0]), "content": "marker"},
                session=live[0].session,
            )  # fmt: skip
            while not sessions[-1] or sessions[-1][-1] < marker:
                record(await next_event())

        assert sum(injected.values()) >= 100, injected
        assert {"op7", "op9-true", "op9-false", "zombie", "drop", "op1", "pause"} <= set(injected)
        for seqs in sessions:  # per session: 1, 2, 3, ... exactly once, in order
            assert seqs == list(range(1, len(seqs) + 1))
        assert sessions[-1][-1] == marker
        assert len(sessions) == 1 + sum(
            injected.get(k, 0) for k in ("op9-false", "close-4007", "close-4009")
        ), injected
        assert unknown_seen > 0
        assert not emu.violations
        assert paused_seen, "the pauses never reached the high-water mark"
        await shard.close()

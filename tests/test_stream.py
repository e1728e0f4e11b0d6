"""Many shards: create_range/bucket/recommended, and the merged streams, against the emulator."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest

from gateway import (
    Config,
    Event,
    EventType,
    InMemoryQueue,
    Intents,
    ReceiveMessageError,
    Shard,
    ShardEventStream,
    ShardId,
    ShardMessageStream,
    Text,
    create_bucket,
    create_range,
    create_recommended,
)
from gateway.testing import GatewayEmulator

TOKEN = "stream-test-token"
NO_WAIT = InMemoryQueue(0)


def config_for(emu: GatewayEmulator, **options: Any) -> Any:
    options.setdefault("queue", NO_WAIT)

    def config(sid: ShardId) -> Config:
        return Config(TOKEN, Intents.GUILDS, gateway_url=emu.url, **options)

    return config


def dummy(sid: ShardId) -> Config:
    return Config(TOKEN)


def test_create_range_builds_ids_of_the_total() -> None:
    shards = create_range(range(2, 5), 8, dummy)
    assert [s.id for s in shards] == [ShardId(2, 8), ShardId(3, 8), ShardId(4, 8)]
    assert [s.id.number for s in create_range((0, 2), 2, dummy)] == [0, 1]


@pytest.mark.parametrize("args", [(range(0, 9), 8), (range(0, 8, 2), 8), (range(-1, 2), 8)])
def test_create_range_rejects_bad_ranges(args: tuple[range, int]) -> None:
    with pytest.raises(ValueError):
        create_range(*args, dummy)


def test_create_bucket_takes_every_concurrency_th_shard() -> None:
    assert [s.id.number for s in create_bucket(1, 4, 16, dummy)] == [1, 5, 9, 13]
    with pytest.raises(ValueError):
        create_bucket(4, 4, 16, dummy)


async def test_create_recommended_uses_gateway_bot() -> None:
    async with GatewayEmulator(shards=5, max_concurrency=2, guilds=20) as emu:
        shards = await create_recommended(
            TOKEN, lambda sid: Config(TOKEN, Intents.GUILDS), api_base_url=emu.api_url
        )
    assert [s.id for s in shards] == [ShardId(n, 5) for n in range(5)]
    queue = shards[0].config.queue
    assert isinstance(queue, InMemoryQueue) and queue.max_concurrency == 2
    assert all(s.config.queue is queue for s in shards)  # one queue for every shard
    assert {s.config.gateway_url for s in shards} == {emu.url}


async def test_merged_stream_routes_every_guild_to_its_shard() -> None:
    async with GatewayEmulator(shards=4, max_concurrency=4, guilds=24) as emu:
        shards = await create_recommended(
            TOKEN,
            lambda sid: Config(TOKEN, Intents.GUILDS),
            api_base_url=emu.api_url,
            identify_interval=0,
        )
        creates: dict[int, int] = {}
        ready = set()
        async with ShardEventStream(shards) as stream:
            async with asyncio.timeout(10):
                async for shard, event in stream:
                    assert isinstance(event, Event)
                    if event.type is EventType.READY:
                        ready.add(shard.id.number)
                    if event.type is EventType.GUILD_CREATE:
                        creates[int(event.data["id"])] = shard.id.number
                    if len(creates) == 24:
                        break
        assert ready == {0, 1, 2, 3}
        assert creates == {g: (g >> 22) % 4 for g in emu.guild_ids}
        await asyncio.gather(*(s.close() for s in shards))
        assert not emu.violations


async def test_errors_arrive_as_values_and_the_shard_stays() -> None:
    async with GatewayEmulator(shards=2, guilds=0, identify_window=0) as emu:
        shards = create_range(range(2), 2, config_for(emu))
        stream = ShardEventStream(shards)
        seen: dict[int, list[Any]] = defaultdict(list)

        async def until(predicate: Any) -> None:
            async for shard, item in stream:
                seen[shard.id.number].append(item)
                if predicate():
                    return

        def types(n: int) -> list[Any]:
            return [getattr(i, "type", type(i)) for i in seen[n]]

        await asyncio.wait_for(until(lambda: len(emu.live_connections()) == 2 and all(
            EventType.READY in types(n) for n in (0, 1))), 10)  # fmt: skip
        victim = next(c for c in emu.live_connections() if c.session.shard[0] == 1)
        await victim.send_corrupt_zlib()
        await asyncio.wait_for(until(lambda: ReceiveMessageError in types(1)), 10)
        assert not seen[1][-1].is_fatal()
        await asyncio.wait_for(until(lambda: EventType.RESUMED in types(1)), 10)
        assert stream.shards == shards
        await stream.aclose()
        await asyncio.gather(*(s.close() for s in shards))


async def test_fatally_closed_shard_leaves_and_the_rest_go_on() -> None:
    async with GatewayEmulator(shards=2, guilds=0, identify_window=0) as emu:
        shards = create_range(range(2), 2, config_for(emu))
        stream = ShardEventStream(shards)
        iterator = aiter(stream)
        ready = set()
        while len(ready) < 2:
            shard, item = await asyncio.wait_for(anext(iterator), 10)
            if isinstance(item, Event) and item.type is EventType.READY:
                ready.add(shard.id.number)
        zero = next(c for c in emu.live_connections() if c.session.shard[0] == 0)
        await zero.close(4004, "authentication failed")
        while True:
            shard, item = await asyncio.wait_for(anext(iterator), 10)
            if isinstance(item, ReceiveMessageError):
                break
            assert shard is shards[0] and item.type is EventType.GATEWAY_CLOSE
        assert shard is shards[0] and item.is_fatal() and item.close_code == 4004
        assert stream.shards == [shards[1]]
        await shards[1].close()
        while not isinstance(item := (await asyncio.wait_for(anext(iterator), 10))[1], Exception):
            assert item.type is EventType.GATEWAY_CLOSE
        with pytest.raises(StopAsyncIteration):  # no shard left: the stream ends
            await asyncio.wait_for(anext(iterator), 10)
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(iterator), 10)


async def test_message_stream_yields_raw_text() -> None:
    async with GatewayEmulator(shards=2, guilds=0, identify_window=0) as emu:
        shards = create_range(range(2), 2, config_for(emu))
        texts: dict[int, list[str]] = defaultdict(list)
        async with ShardMessageStream(shards) as stream:
            async with asyncio.timeout(10):
                async for shard, message in stream:
                    assert isinstance(message, Text)
                    texts[shard.id.number].append(message.text)
                    if all(any('"READY"' in t for t in texts[n]) for n in (0, 1)):
                        break
        assert all('"op":10' in texts[n][0].replace(" ", "") for n in (0, 1))
        await asyncio.gather(*(s.close() for s in shards))


async def test_a_bug_in_one_shard_is_raised_not_swallowed() -> None:
    class Broken(Shard):
        def poll_event(self) -> Event | None:
            raise RuntimeError("boom")

    stream = ShardEventStream([Broken(ShardId(0, 1), TOKEN, gateway_url="ws://127.0.0.1:9")])
    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(anext(aiter(stream)), 5)
    await stream.shards[0].close()


async def test_a_reader_that_falls_behind_gets_every_event_once_it_is_back() -> None:
    """The reader is away: its shard processes ahead, stops reading at the high-water mark
    and holds the rest. The reader comes back and takes what was held; the shard must then
    read again (it is polled once more, not dropped as having nothing) until the end."""
    total, high_water = 600, 8 * 1024  # a trickle: the mark is crossed with nothing unread
    async with GatewayEmulator(guilds=1, events_per_second=200, total_events=total,
                               mix="messages", identify_window=0) as emu:  # fmt: skip
        config = Config(TOKEN, Intents.GUILDS | Intents.GUILD_MESSAGES, gateway_url=emu.url,
                        queue=NO_WAIT, read_high_water=high_water)  # fmt: skip
        shard = Shard(ShardId.ONE, config=config)
        stream = ShardEventStream([shard])
        iterator = aiter(stream)
        await asyncio.wait_for(anext(iterator), 10)  # HELLO: the shard is connected
        async with asyncio.timeout(10):
            while not shard._paused:  # the reader is away: the shard pauses by itself
                await asyncio.sleep(0.01)
        sequences: list[int] = []
        async with asyncio.timeout(20):
            while not sequences or sequences[-1] < total:
                _, event = await anext(iterator)
                assert isinstance(event, Event)
                if event.sequence is not None:
                    sequences.append(event.sequence)
        assert sequences == list(range(1, total + 1))
        await stream.aclose()
        await shard.close()


def test_an_empty_stream_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one shard"):
        ShardEventStream([])


async def test_500_shards_under_trickle_load_deliver_every_event_once_in_order() -> None:
    """500 shards, each receiving ~10 events/s, through one ShardEventStream: every event
    of every shard arrives exactly once, in order per shard."""
    shards_n, per_session = 500, 20
    async with GatewayEmulator(shards=shards_n, guilds=2 * shards_n, max_concurrency=shards_n,
                               identify_window=0, events_per_second=10,
                               total_events=per_session, heartbeat_interval=30) as emu:  # fmt: skip
        intents = Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.GUILD_MESSAGE_TYPING
        config = Config(TOKEN, intents, gateway_url=emu.url, queue=NO_WAIT)
        shards = create_range(range(shards_n), shards_n, lambda sid: config)
        seen: dict[int, list[int]] = defaultdict(list)

        def finished() -> bool:
            sessions = {s.shard[0]: s for s in emu.sessions.values()}
            return len(sessions) == shards_n and all(
                (s.seq >= per_session or not s.guilds) and seen[n] and seen[n][-1] == s.seq
                for n, s in sessions.items()
            )

        async with asyncio.timeout(60):
            async for shard, item in ShardEventStream(shards):
                assert isinstance(item, Event), item
                if item.sequence is not None:
                    seen[shard.id.number].append(item.sequence)
                    if item.sequence == per_session and finished():
                        break
        traffic = sum(len(seqs) > 2 for seqs in seen.values())
        assert traffic > shards_n * 0.8  # most shards had guilds, so traffic
        for number, seqs in seen.items():
            assert seqs == list(range(1, len(seqs) + 1)), number
        assert not emu.violations
        await asyncio.gather(*(s.close() for s in shards))

"""Identify queues: InMemoryQueue alone (real loop, short windows) and against the emulator,
which enforces Discord's identify rules and records every violation."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import pytest

from conftest import LOOPS
from gateway import (
    Config,
    EventType,
    InMemoryQueue,
    Intents,
    Queue,
    Shard,
    ShardEventStream,
    ShardId,
    create_range,
)
from gateway.queue import default_queue
from gateway.testing import GatewayEmulator

TOKEN = "queue-test-token"
# The queue's window is a little longer than the emulator's: the identify leaves the client
# after the grant, and loopback latency varies by a few ms between identifies.
WINDOW = 0.2
INTERVAL = 0.25


async def ready_all(emu: GatewayEmulator, queue: Queue, total: int) -> list[Shard]:
    """Start ``total`` shards through one stream and wait until every one is READY."""

    def config(sid: ShardId) -> Config:
        return Config(TOKEN, Intents.GUILDS, gateway_url=emu.url, queue=queue)

    shards = create_range(range(total), total, config)
    ready: set[int] = set()
    async with ShardEventStream(shards) as stream:
        async with asyncio.timeout(30):
            async for shard, event in stream:
                assert not isinstance(event, Exception), event
                if event.type is EventType.READY:
                    ready.add(shard.id.number)
                    if len(ready) == total:
                        break
    await asyncio.gather(*(s.close() for s in shards))
    return shards


def windows(emu: GatewayEmulator, gap: float) -> list[list[int]]:
    """The identifies' shard numbers, grouped where consecutive identifies are < gap apart."""
    groups: list[list[int]] = []
    last = None
    for record in emu.identifies:
        if last is None or record.time - last >= gap:
            groups.append([])
        groups[-1].append(record.data["shard"][0])
        last = record.time
    return [sorted(g) for g in groups]


async def test_32_shards_max_concurrency_4_start_in_8_ordered_windows() -> None:
    async with GatewayEmulator(max_concurrency=4, identify_window=WINDOW, shards=32) as emu:
        await ready_all(emu, InMemoryQueue(4, interval=INTERVAL), 32)
        assert windows(emu, WINDOW / 2) == [list(range(k * 4, k * 4 + 4)) for k in range(8)]
        assert not emu.violations
        assert not emu.records_of("identify_ratelimited")
        assert not emu.records_of("invalid_session")


async def test_max_concurrency_1_spaces_identifies_by_the_window() -> None:
    async with GatewayEmulator(max_concurrency=1, identify_window=WINDOW, shards=4) as emu:
        await ready_all(emu, InMemoryQueue(1, interval=INTERVAL), 4)
        times = [r.time for r in emu.identifies]
        assert [r.data["shard"][0] for r in emu.identifies] == [0, 1, 2, 3]
        assert all(b - a >= WINDOW for a, b in itertools.pairwise(times))
        assert not emu.violations


async def test_without_a_queue_the_emulator_catches_the_violation() -> None:
    # The test above can fail: with no spacing the emulator answers op 9 and records it.
    async with GatewayEmulator(max_concurrency=1, identify_window=WINDOW, shards=2) as emu:
        await ready_all(emu, InMemoryQueue(0), 2)
        assert emu.violations and emu.records_of("identify_ratelimited")


async def test_daily_budget_spent_waits_for_reset(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "gateway.queue")
    queue = InMemoryQueue(4, total=3, remaining=3, reset_after=0.6, interval=0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    granted: list[float] = []
    for number in range(4):
        await asyncio.wait_for(queue.acquire(number), 5)
        granted.append(loop.time() - start)
    assert max(granted[:3]) < 0.3 <= 0.6 <= granted[3] + 0.01
    assert queue.remaining == 2  # reset to 3, then one used
    assert "daily session-start limit used up" in caplog.text


async def test_daily_budget_against_the_emulator() -> None:
    queue = InMemoryQueue(4, total=3, remaining=3, reset_after=0.8, interval=0)
    async with GatewayEmulator(max_concurrency=4, identify_window=0, shards=4) as emu:
        start = asyncio.get_running_loop().time()
        await ready_all(emu, queue, 4)
        times = sorted(r.time - start for r in emu.identifies)
        assert len(times) == 4 and times[2] < 0.6 and times[3] >= 0.79
        assert not emu.violations and not emu.revoked_tokens


async def test_cancelled_waiter_does_not_consume_a_permit() -> None:
    queue = InMemoryQueue(1, total=10, interval=0.4)
    loop = asyncio.get_running_loop()
    await queue.acquire(0)
    first = loop.time()
    waiter = asyncio.create_task(queue.acquire(1))
    await asyncio.wait_for(_until(lambda: queue.waiting == 1), 2)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert queue.waiting == 0
    await asyncio.wait_for(queue.acquire(2), 2)
    assert 0.39 <= loop.time() - first < 0.7  # the next window, not the one after
    assert queue.remaining == 8


async def test_granted_but_cancelled_before_use_is_refunded() -> None:
    # The race: the permit is granted and, before the waiter resumes, its shard is closed.
    queue = InMemoryQueue(1, total=10, interval=5)
    grant = queue._grant

    def grant_then_cancel(*args: Any) -> None:
        grant(*args)
        assert queue.remaining == 9
        waiter.cancel()

    queue._grant = grant_then_cancel  # type: ignore[method-assign]
    waiter = asyncio.create_task(queue.acquire(0))
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert queue.remaining == 10
    queue._grant = grant  # type: ignore[method-assign]
    await asyncio.wait_for(queue.acquire(1), 1)  # no 5 s wait: the window was never used


async def test_shard_closed_while_queued_leaves_no_ghost_permit() -> None:
    async with GatewayEmulator(max_concurrency=1, identify_window=WINDOW, shards=3) as emu:
        queue = InMemoryQueue(1, interval=0.5)
        first, second, third = (
            Shard(ShardId(n, 3), config=Config(TOKEN, gateway_url=emu.url, queue=queue))
            for n in range(3)
        )
        await asyncio.wait_for(_next_of(first, EventType.READY), 5)
        pending = asyncio.create_task(_next_of(second, EventType.READY))
        await asyncio.wait_for(_until(lambda: queue.waiting == 1), 5)
        await second.close()
        with pytest.raises(Exception, match="closed"):
            await asyncio.wait_for(pending, 5)
        await asyncio.wait_for(_next_of(third, EventType.READY), 5)
        times = [r.time for r in emu.identifies]
        assert [r.data["shard"][0] for r in emu.identifies] == [0, 2]
        assert 0.45 <= times[1] - times[0] < 0.9
        assert queue.remaining == 998 and not emu.violations
        await asyncio.gather(first.close(), third.close())


async def test_max_concurrency_0_never_waits() -> None:
    queue = InMemoryQueue(0)
    await asyncio.wait_for(asyncio.gather(*(queue.acquire(0) for _ in range(100))), 0.5)


@pytest.mark.asyncio(loop_factories=LOOPS)  # uvloop: call_at in the past gives a Handle
async def test_lowest_shard_first_within_a_bucket() -> None:
    queue = InMemoryQueue(2, interval=0.05)
    order: list[int] = []

    async def take(number: int) -> None:
        await queue.acquire(number)
        order.append(number)

    await asyncio.wait_for(asyncio.gather(*(take(n) for n in (6, 2, 4, 0, 5, 1, 3))), 5)
    assert [n for n in order if n % 2 == 0] == [0, 2, 4, 6]
    assert [n for n in order if n % 2 == 1] == [1, 3, 5]


async def test_shards_share_one_default_queue_per_loop() -> None:
    assert default_queue() is default_queue()
    assert isinstance(default_queue(), Queue)


def test_default_queue_is_per_event_loop_not_per_process() -> None:
    """As documented: each loop (here two in turn, as two ``asyncio.run`` would) gets its own
    queue, since a queue's futures and timers belong to one loop.
    """

    async def get() -> tuple[InMemoryQueue, InMemoryQueue]:
        return default_queue(), default_queue()

    loops = [asyncio.new_event_loop() for _ in range(2)]
    try:
        (a1, a2), (b1, b2) = (loop.run_until_complete(get()) for loop in loops)
    finally:
        for loop in loops:
            loop.close()
    assert a1 is a2 and b1 is b2
    assert a1 is not b1
    doc = " ".join((default_queue.__doc__ or "").split()).lower()
    assert "per event loop" in doc and "process-wide" not in doc


def test_from_session_start_limit_reads_milliseconds() -> None:
    limit = {"total": 1000, "remaining": 7, "reset_after": 1500, "max_concurrency": 16}
    queue = InMemoryQueue.from_session_start_limit(limit)
    assert (queue.max_concurrency, queue.total, queue.remaining) == (16, 1000, 7)
    assert queue._reset_after == 1.5


@pytest.mark.parametrize(
    "kwargs", [{"max_concurrency": -1}, {"total": 0}, {"remaining": 5, "total": 4}]
)
def test_bad_arguments_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        InMemoryQueue(**kwargs)


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0)


async def _next_of(shard: Shard, wanted: EventType) -> None:
    while (await shard.next_event()).type is not wanted:
        pass


async def test_identifies_of_one_bucket_reach_the_gateway_a_full_window_apart() -> None:
    """A shard's IDENTIFY leaves a little after its grant (here 30 ms late, as under load);
    the queue's margin still keeps every pair of a bucket's IDENTIFYs at least the
    gateway's window apart (8 shards at mc 4). Without the margin this fails."""
    window = 1.0

    class LateSender(InMemoryQueue):
        async def acquire(self, shard_id: int) -> None:
            await super().acquire(shard_id)
            if shard_id < 4:
                await asyncio.sleep(0.03)

    async with GatewayEmulator(max_concurrency=4, identify_window=window, shards=8) as emu:
        await ready_all(emu, LateSender(4, interval=window), 8)
        by_bucket: dict[int, list[float]] = {}
        for record in emu.identifies:
            by_bucket.setdefault(record.data["shard"][0] % 4, []).append(record.time)
        gaps = [b - a for times in by_bucket.values() for a, b in itertools.pairwise(times)]
        assert len(gaps) == 4 and min(gaps) >= window
        assert not emu.violations

"""``read_interval="auto"`` (the default): the rule, the group's switching, and shards that
switch between the two reading modes mid-stream without losing or reordering an event."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections import defaultdict
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

import gateway.autoread as autoread
import gateway.shard
from conftest import LOOPS
from gateway import Config, Event, InMemoryQueue, Intents, ShardEventStream, create_range
from gateway.autoread import (
    AUTO_INTERVAL,
    AUTO_START_RATE,
    AUTO_STOP_RATE,
    AutoReading,
    auto_reading,
    should_batch,
)
from gateway.testing import GatewayEmulator
from gateway.transport import Connection

pytestmark = pytest.mark.asyncio(loop_factories=LOOPS)

TOKEN = "autoread-token"


@pytest.fixture(autouse=True)
def short_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Count every 0.2 s instead of every second: the same rule, five times faster."""
    monkeypatch.setattr(autoread, "AUTO_WINDOW", 0.2)


async def test_the_rule() -> None:
    assert not should_batch(False, 1, 10 * AUTO_START_RATE)  # one socket gains nothing
    assert not should_batch(False, 2, AUTO_START_RATE - 1)
    assert should_batch(False, 2, AUTO_START_RATE)
    assert should_batch(True, 2, AUTO_STOP_RATE)  # the gap: no flipping near the line
    assert not should_batch(True, 2, AUTO_STOP_RATE - 1)
    assert not should_batch(True, 1, 10 * AUTO_START_RATE)
    assert AUTO_STOP_RATE < AUTO_START_RATE


async def test_read_interval_accepts_auto_and_seconds_only() -> None:
    assert Config(TOKEN).read_interval == "auto"
    assert Config(TOKEN, read_interval=0).read_interval == 0
    for bad in ("fast", None, True, -1, 0.5, float("nan")):
        with pytest.raises(ValueError, match="read_interval"):
            Config(TOKEN, read_interval=bad)  # type: ignore[arg-type]


class Member:
    """A connection as the group sees it (holding its loop, as a Connection does)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, fail: bool = False) -> None:
        self.received = 0
        self.intervals: list[float] = []
        self.loop = loop
        self.fail = fail

    def batch(self, interval: float) -> None:
        if self.fail:
            raise OSError("EMFILE")
        self.intervals.append(interval)


WINDOW = int(AUTO_START_RATE * autoread.AUTO_WINDOW)  # a window's worth at the start rate


async def test_the_group_switches_its_members_on_the_rate_and_the_count() -> None:
    """Driven by hand (the counts as the timer would make them)."""
    group = AutoReading(asyncio.get_running_loop())
    a, b = Member(), Member()
    group.join(a)
    group._count()  # one member: no count, no switch
    assert not group.batching and not group.counting
    group.join(b)
    assert group.counting  # two: counting
    a.received += WINDOW
    b.received += WINDOW
    group._count()
    assert group.batching and a.intervals == [AUTO_INTERVAL] and b.intervals == [AUTO_INTERVAL]
    c = Member()
    group.join(c)  # joins batching
    assert c.intervals == [AUTO_INTERVAL]
    b.received += AUTO_STOP_RATE  # in the gap: stays (the busiest, a, left out)
    a.received += AUTO_STOP_RATE
    group._count()
    assert group.batching
    group._count()  # nothing received
    assert not group.batching and a.intervals == [AUTO_INTERVAL, 0.0]
    a.received += 10**6
    group.leave(a)  # what a member that left received is not counted
    group._count()
    assert not group.batching and group.rate == 0
    b.received += WINDOW
    c.received += WINDOW
    group._count()
    assert group.batching
    group.leave(c)  # one left: back to reading as data arrives, counting stops
    assert not group.batching and b.intervals[-1] == 0.0 and not group.counting


async def test_one_firehose_beside_idle_shards_does_not_batch() -> None:
    """A tick would find one socket with data: the busiest member is left out of the rate."""
    group = AutoReading(asyncio.get_running_loop())
    hose, idle, quiet = Member(), Member(), Member()
    for member in (hose, idle, quiet):
        group.join(member)
    hose.received += 50 * WINDOW
    quiet.received += 10
    group._count()
    assert not group.batching and group.rate == 10 / autoread.AUTO_WINDOW


async def test_what_a_member_received_before_counting_started_is_no_burst() -> None:
    """Alone for a long time (nobody counts), then a second connection: the first count
    covers only the window since counting started."""
    group = AutoReading(asyncio.get_running_loop())
    old, new = Member(), Member()
    group.join(old)
    old.received += 3600 * 100  # an hour at 100 messages/s
    group.join(new)
    assert group._members[old] == old.received  # its window starts now
    new.received += 5
    old.received += 100
    group._count()
    assert not group.batching and group.rate == 5 / autoread.AUTO_WINDOW
    group.leave(new)  # and again after the other left and came back
    old.received += 10 * WINDOW
    group.join(new)
    group._count()
    assert not group.batching and group.rate == 0


async def test_a_member_that_fails_to_switch_leaves_the_others_and_the_counting_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    group = auto_reading(asyncio.get_running_loop())
    broken, a, b = Member(fail=True), Member(), Member()
    for member in (broken, a, b):
        group.join(member)
    for member in (broken, a, b):
        member.received += WINDOW
    async with asyncio.timeout(5):  # the scheduled counts (0.2 s windows) switch them
        while not a.intervals:
            await asyncio.sleep(0.05)
    assert group.batching and a.intervals == b.intervals == [AUTO_INTERVAL]
    assert "switching a connection's reading mode failed" in caplog.text
    async with asyncio.timeout(5):  # counting went on: quiet switches them back
        while group.batching:
            await asyncio.sleep(0.05)
    assert a.intervals == [AUTO_INTERVAL, 0.0]
    for member in (broken, a, b):
        group.leave(member)


async def test_connections_batch_under_traffic_and_stop_when_it_ends() -> None:
    """Three raw connections: a burst of traffic moves their sockets to the poller, quiet
    moves them back; every message arrives once, in order, across both switches."""
    total, go = 600, asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        await go.wait()
        for n in range(total):
            await ws.send(str(n))
            if n % 10 == 9:
                await asyncio.sleep(0.01)  # ~1,000 messages/s per connection
        await ws.wait_closed()

    got: dict[int, list[int]] = defaultdict(list)
    changed = asyncio.Event()
    async with serve(handler, "127.0.0.1", 0, compression=None) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        conns = [
            await Connection.open(
                f"ws://127.0.0.1:{port}", timeout=5, on_data=changed.set, read_interval="auto"
            )
            for _ in range(3)
        ]
        group = auto_reading(asyncio.get_running_loop())
        assert len(group) == 3 and not group.batching
        assert not any(c._polled for c in conns)
        go.set()
        switched = False

        def take() -> bool:
            nonlocal switched
            for i, conn in enumerate(conns):
                while conn.messages:
                    item = conn.messages.popleft()
                    assert isinstance(item, bytes)
                    got[i].append(int(item))
            switched = switched or all(c._polled for c in conns)
            return all(len(got[i]) == total for i in range(3))

        async with asyncio.timeout(20):
            while not take():
                changed.clear()
                await changed.wait()
        assert switched  # the traffic was batched
        for i in range(3):
            assert got[i] == list(range(total))
        async with asyncio.timeout(5):  # quiet: back to reading as data arrives
            while group.batching or any(c._polled for c in conns):
                await asyncio.sleep(0.05)
        for conn in conns:
            await conn.close(1000)
        assert len(group) == 0


async def test_default_shards_batch_under_traffic_and_lose_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Shards with the default config, under enough traffic to batch: every event once,
    in order, while their connections move to the poller and back."""
    monkeypatch.setattr(gateway.shard, "Connection", Connection)  # auto, whatever the env says
    async with GatewayEmulator(shards=4, guilds=8, identify_window=0, max_concurrency=4,
                               events_per_second=600, total_events=600) as emu:  # fmt: skip
        intents = Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.GUILD_MESSAGE_TYPING
        config = Config(TOKEN, intents, gateway_url=emu.url, queue=InMemoryQueue(0))
        assert config.read_interval == "auto"
        shards = create_range(range(4), 4, lambda sid: config)
        stream = ShardEventStream(shards)
        seen: dict[int, list[int]] = defaultdict(list)
        polled: set[int] = set()
        async with asyncio.timeout(30):
            async for shard, item in stream:
                assert isinstance(item, Event), item
                conn: Any = shard._conn
                if conn is not None and conn._polled:
                    polled.add(shard.id.number)
                if item.sequence is not None:
                    seen[shard.id.number].append(item.sequence)
                sessions = list(emu.sessions.values())
                if len(sessions) == 4 and all(
                    (s.seq >= 600 or not s.guilds) and seen[s.shard[0]][-1:] == [s.seq]
                    for s in sessions
                ):
                    break
        assert polled  # some shards were read by the poller
        for seqs in seen.values():
            assert seqs == list(range(1, len(seqs) + 1))
        group = auto_reading(asyncio.get_running_loop())
        async with asyncio.timeout(5):  # traffic over: back to reading as data arrives
            while group.batching:
                await asyncio.sleep(0.05)
        await stream.aclose()
        await asyncio.gather(*(s.close() for s in shards))
        assert len(group) == 0
        assert not emu.violations


@pytest.mark.asyncio(loop_factories=None)
async def test_the_registry_does_not_keep_a_loop_alive() -> None:
    """A loop that is gone takes its group with it (the registry maps loops weakly; a group
    holding its loop strongly would keep every finished loop, and its group, forever)."""

    members: list[Member] = []  # kept: like connections a bot never closed

    def make() -> weakref.ref[asyncio.AbstractEventLoop]:
        loop = asyncio.new_event_loop()
        group = auto_reading(loop)
        for _ in range(2):
            members.append(Member(loop))
            group.join(members[-1])  # two: counting, a timer on that loop
        loop.close()  # with its connections still members (no connection_lost)
        return weakref.ref(loop)

    gone = make()
    members.clear()
    gc.collect()
    assert gone() is None

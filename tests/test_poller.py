"""Batched reading (``Config.read_interval``): gateway.poller.ReadPoller on real sockets, and
shards read by it against the emulator, on asyncio's loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import LOOPS
from gateway import Config, Event, InMemoryQueue, Intents, ShardEventStream, create_range
from gateway.poller import _pollers, poller_for
from gateway.testing import GatewayEmulator

pytestmark = pytest.mark.asyncio(loop_factories=LOOPS)

TOKEN = "poller-test-token"
INTERVAL = 0.02


@pytest.fixture
def pairs() -> Iterator[Callable[[], tuple[socket.socket, socket.socket]]]:
    """Connected non-blocking socket pairs, closed at the end."""
    made: list[socket.socket] = []

    def pair() -> tuple[socket.socket, socket.socket]:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        made.extend((ours, theirs))
        return ours, theirs

    yield pair
    for sock in made:
        sock.close()


def reader(sock: socket.socket, into: list[bytes], changed: asyncio.Event) -> Callable[[], bool]:
    def read() -> bool:
        into.append(os.read(sock.fileno(), 65536))
        changed.set()
        return False

    return read


async def until(changed: asyncio.Event, predicate: Callable[[], Any], timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            changed.clear()
            await changed.wait()


async def test_one_tick_reads_every_socket_that_has_data_then_the_poller_sleeps(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    loop = asyncio.get_running_loop()
    poller = poller_for(loop, INTERVAL)
    assert poller is not None and poller is poller_for(loop, INTERVAL)  # one per loop
    ticks = 0
    real_tick = poller._tick

    def counted() -> None:
        nonlocal ticks
        ticks += 1
        real_tick()
        changed.set()

    poller._tick = counted  # type: ignore[method-assign]
    changed = asyncio.Event()
    got: dict[int, list[bytes]] = defaultdict(list)
    socks = [pairs() for _ in range(5)]
    for n, (ours, _) in enumerate(socks):
        poller.add(ours.fileno(), reader(ours, got[n], changed))
    assert poller.idle and len(poller) == 5
    for n, (_, theirs) in enumerate(socks):
        theirs.send(b"x%d" % n)
    await until(changed, lambda: all(got[n] for n in range(5)))
    assert ticks == 1  # all five in one batch, one interval after the first byte
    assert {n: b"".join(v) for n, v in got.items()} == {n: b"x%d" % n for n in range(5)}
    # Nothing more arrives: the next tick finds nothing and the poller stops ticking.
    await until(changed, lambda: poller.idle and poller._watching)
    settled = ticks
    await asyncio.sleep(5 * INTERVAL)  # idle: no tick at all (what is asserted is absence)
    assert ticks == settled
    socks[3][1].send(b"again")  # data wakes it
    await until(changed, lambda: got[3][-1:] == [b"again"])
    keys = list(poller._selector.get_map().values())
    poller.remove(keys[0].fd, lambda: False)  # not its reader: nothing happens
    assert len(poller) == 5
    for key in keys:
        poller.remove(key.fd, key.data)
    assert len(poller) == 0


async def test_a_removed_socket_is_not_read_and_the_last_removal_closes_the_poller(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    loop = asyncio.get_running_loop()
    poller = poller_for(loop, INTERVAL)
    assert poller is not None
    changed = asyncio.Event()
    first: list[bytes] = []
    second: list[bytes] = []
    (a, a_peer), (b, b_peer) = pairs(), pairs()
    read_a, read_b = reader(a, first, changed), reader(b, second, changed)
    poller.add(a.fileno(), read_a)
    poller.add(b.fileno(), read_b)
    poller.remove(a.fileno(), read_a)
    a_peer.send(b"unread")
    b_peer.send(b"read")
    await until(changed, lambda: second)
    assert first == [] and second == [b"read"]
    poller.add(a.fileno(), read_a)  # added again: what waited is read
    await until(changed, lambda: first)
    assert first == [b"unread"]
    poller.remove(a.fileno(), read_a)
    poller.remove(b.fileno(), read_b)
    assert len(poller) == 0 and poller._selector.get_map() is None  # closed
    assert poller_for(loop, INTERVAL) is not poller  # a new one on next use
    with pytest.raises(RuntimeError, match="closed"):
        poller.add(a.fileno(), read_a)
    new = poller_for(loop, INTERVAL)
    assert new is not None
    new.add(a.fileno(), read_a)  # so that the new poller's selector is closed again
    new.remove(a.fileno(), read_a)


async def test_a_descriptor_closed_without_removal_and_reused_goes_to_its_new_reader(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    poller = poller_for(asyncio.get_running_loop(), INTERVAL)
    assert poller is not None
    changed = asyncio.Event()
    old: list[bytes] = []
    new: list[bytes] = []
    keep, _keep_peer = pairs()  # keeps the poller open throughout
    poller.add(keep.fileno(), reader(keep, [], changed))
    a, _ = socket.socketpair()
    fd = a.fileno()
    read_old = reader(a, old, changed)
    poller.add(fd, read_old)
    a.close()  # closed under the poller (epoll forgets it; the selector's map does not)
    b, b_peer = pairs()
    assert b.fileno() == fd  # the lowest free number: reused
    poller.add(fd, reader(b, new, changed))
    poller.remove(fd, read_old)  # the old owner's late removal leaves the new one be
    b_peer.send(b"mine")
    await until(changed, lambda: new)
    assert new == [b"mine"] and old == []
    poller.remove(keep.fileno(), poller._selector.get_map()[keep.fileno()].data)
    poller.remove(fd, poller._selector.get_map()[fd].data)


async def test_a_reader_that_raises_is_logged_and_removed_and_the_others_go_on(
    pairs: Callable[[], tuple[socket.socket, socket.socket]], caplog: pytest.LogCaptureFixture
) -> None:
    poller = poller_for(asyncio.get_running_loop(), INTERVAL)
    assert poller is not None
    changed = asyncio.Event()
    got: list[bytes] = []
    (bad, bad_peer), (good, good_peer) = pairs(), pairs()

    def broken() -> bool:
        raise ValueError("a bug in one connection")

    poller.add(bad.fileno(), broken)
    read_good = reader(good, got, changed)
    poller.add(good.fileno(), read_good)
    with caplog.at_level(logging.ERROR, logger="gateway.poller"):
        bad_peer.send(b"boom")
        good_peer.send(b"fine")
        await until(changed, lambda: got)
        good_peer.send(b"still")
        await until(changed, lambda: len(got) == 2)
    assert got == [b"fine", b"still"]
    assert "reading a polled socket failed" in caplog.text
    assert bad.fileno() not in poller._selector.get_map()
    poller.remove(good.fileno(), read_good)


async def test_read_interval_is_validated() -> None:
    for bad in (-0.001, 0.2, float("nan")):
        with pytest.raises(ValueError, match="read_interval"):
            Config(TOKEN, read_interval=bad)
    assert Config(TOKEN, read_interval=0.005).read_interval == 0.005


async def test_batched_shards_deliver_every_event_once_in_order_with_one_wake_per_batch() -> None:
    async with GatewayEmulator(shards=4, guilds=8, identify_window=0, max_concurrency=4,
                               events_per_second=200, total_events=60) as emu:  # fmt: skip
        intents = Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.GUILD_MESSAGE_TYPING
        config = Config(
            TOKEN, intents, gateway_url=emu.url, queue=InMemoryQueue(0), read_interval=INTERVAL
        )
        shards = create_range(range(4), 4, lambda sid: config)
        stream = ShardEventStream(shards)
        seen: dict[int, list[int]] = defaultdict(list)
        wakes = 0
        real_notify = stream._notify

        def counted(shard: Any) -> bool:
            nonlocal wakes
            waiter = stream._waiter
            wakes += waiter is not None and not waiter.done()  # this call wakes the reader
            return real_notify(shard)

        stream._notify = counted  # type: ignore[method-assign]
        async with asyncio.timeout(20):
            async for shard, item in stream:
                assert isinstance(item, Event), item
                conn = shard._conn
                assert conn is not None and conn._polled  # read by the poller
                if item.sequence is not None:
                    seen[shard.id.number].append(item.sequence)
                sessions = list(emu.sessions.values())
                if len(sessions) == 4 and all(
                    (s.seq >= 60 or not s.guilds) and seen[s.shard[0]][-1:] == [s.seq]
                    for s in sessions
                ):
                    break
        events = sum(map(len, seen.values()))
        assert events >= 60
        for seqs in seen.values():
            assert seqs == list(range(1, len(seqs) + 1))
        assert wakes < events / 3  # several events (of several shards) per wake-up
        await stream.aclose()
        await asyncio.gather(*(s.close() for s in shards))
        assert not _pollers.get(asyncio.get_running_loop())  # closed with its last socket
        assert not emu.violations


async def test_a_batched_shard_whose_server_vanishes_resumes_and_loses_nothing() -> None:
    async with GatewayEmulator(guilds=2, events_per_second=100, total_events=80) as emu:
        config = Config(
            TOKEN,
            Intents.GUILDS | Intents.GUILD_MESSAGES,
            gateway_url=emu.url,
            read_interval=INTERVAL,
            backoff_base=0.01,
        )
        shards = create_range(range(1), 1, lambda sid: config)
        shard = shards[0]
        seqs: list[int] = []
        dropped = False
        async with asyncio.timeout(20):
            while not seqs or seqs[-1] < 80:
                event = await shard.next_event()
                if event.sequence is None:
                    continue
                seqs.append(event.sequence)
                assert shard._conn is not None and shard._conn._polled
                if event.sequence == 20 and not dropped:
                    dropped = True
                    emu.live_connections()[0].drop()  # no close frame: the poller reads EOF
        assert seqs == list(range(1, 81))
        assert len(emu.resumes) == 1
        await shard.close()


async def test_a_socket_removed_by_an_earlier_reader_of_the_same_tick_is_not_read(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    poller = poller_for(asyncio.get_running_loop(), INTERVAL)
    assert poller is not None
    changed = asyncio.Event()
    (a, a_peer), (b, b_peer) = pairs(), pairs()
    called: list[str] = []
    readers: dict[str, Callable[[], bool]] = {}

    def make(name: str, sock: socket.socket, other: str, other_sock: socket.socket) -> None:
        def read() -> bool:  # whichever runs first removes the other
            called.append(name)
            os.read(sock.fileno(), 100)
            poller.remove(other_sock.fileno(), readers[other])
            changed.set()
            return False

        readers[name] = read

    make("a", a, "b", b)
    make("b", b, "a", a)
    poller.add(a.fileno(), readers["a"])
    poller.add(b.fileno(), readers["b"])
    keep, _keep_peer = pairs()  # so that the poller stays open whatever is removed
    poller.add(keep.fileno(), readers.setdefault("keep", lambda: False))
    a_peer.send(b"1")
    b_peer.send(b"2")  # both readable in the same tick
    await until(changed, lambda: called)
    assert len(called) == 1, called
    assert len(poller) == 2
    for sock, name in ((a, "a"), (b, "b"), (keep, "keep")):
        poller.remove(sock.fileno(), readers[name])
    assert len(poller) == 0

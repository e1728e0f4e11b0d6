"""The asyncio driver against faults (issue 21), end to end over loopback, on both loops.

Each test names the defect it guards; each failed before its fix.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from test_session_store import MemoryStore

from conftest import LOOPS
from gateway import (
    CloseFrame,
    EventType,
    InMemoryQueue,
    Intents,
    ReceiveMessageError,
    ReceiveMessageErrorKind,
    Shard,
    ShardId,
)
from gateway.testing import GatewayEmulator, HostileConnection, HostileServer
from gateway.transport import Connection

TOKEN = "faults-token"
INTENTS = Intents.GUILDS | Intents.GUILD_MESSAGES
pytestmark = pytest.mark.asyncio(loop_factories=LOOPS)


def shard_for(emu: GatewayEmulator, **options: Any) -> Shard:
    options.setdefault("queue", InMemoryQueue(max_concurrency=0))
    options.setdefault("backoff_base", 0.05)
    options.setdefault("min_reconnect_interval", 0.05)
    return Shard(ShardId.ONE, TOKEN, INTENTS, gateway_url=emu.url, **options)


async def take_until(shard: Shard, wanted: EventType, timeout: float = 10.0) -> list[Any]:
    seen: list[Any] = []
    async with asyncio.timeout(timeout):
        while True:
            event = await shard.next_event()
            seen.append(event)
            if event.type is wanted:
                return seen


async def until(predicate: Any, timeout: float = 5.0) -> None:
    """Wait for a condition on the shard's side (the emulator's wait_for only wakes on its
    own changes)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


class GateQueue:
    """Grants the first ``free`` permits, then holds every later one until opened."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.acquires = 0
        self.gate = asyncio.Event()

    async def acquire(self, shard_id: int) -> None:
        self.acquires += 1
        if self.acquires > self.free:
            await self.gate.wait()


# ---- 1: waiting for the identify permit costs no CPU -----------------------------------------


async def test_waiting_for_a_permit_after_op9_does_not_spin() -> None:
    queue = GateQueue(free=1)
    async with GatewayEmulator(heartbeat_interval=5.0, guilds=1) as emu:
        shard = shard_for(emu, queue=queue, rng=lambda: 0.0)
        await take_until(shard, EventType.READY)
        await emu.live_connections()[0].invalidate_session(False)
        await take_until(shard, EventType.GATEWAY_INVALIDATE_SESSION)
        # 1 s after the op 9 the shard asks for a permit, which does not come.
        await until(lambda: queue.acquires == 2)
        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.sleep(1.0)
        used = time.process_time() - cpu
        assert used < 0.3 * (time.monotonic() - wall), f"{used:.2f} s of CPU while waiting"
        queue.gate.set()
        await emu.wait_for(lambda: len(emu.identifies) == 2, timeout=5)
        await take_until(shard, EventType.READY)
        await shard.close()


# ---- 2: a consumer that is behind keeps its session across a reconnect -----------------------


async def test_a_consumer_behind_keeps_its_session_across_a_reconnect() -> None:
    total = 3000
    async with GatewayEmulator(heartbeat_interval=0.3, guilds=1, events_per_second=0,
                               total_events=total, mix="messages") as emu:  # fmt: skip
        shard = shard_for(emu, rng=lambda: 0.0, read_high_water=16 * 1024)
        await take_until(shard, EventType.GUILD_CREATE)
        await until(lambda: shard._paused)  # behind: reading paused
        if hasattr(socket, "TCP_USER_TIMEOUT"):  # a dead network is bounded meanwhile
            assert shard._conn is not None and shard._conn._transport is not None
            sock = shard._conn._transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 10_000
        emu.live_connections()[0].drop()
        # Nobody takes events, yet the new connection sees HELLO, beats and resumes.
        await emu.wait_for(lambda: emu.resumes, timeout=5)
        await emu.wait_for(
            lambda: any(
                r.data["op"] == 1 and r.connection == 2 for r in emu.records_of("received")
            ),
            timeout=5,
        )
        sequences: list[int] = []
        async with asyncio.timeout(30):
            while not sequences or sequences[-1] < total:
                event = await shard.next_event()
                if event.sequence is not None:
                    sequences.append(event.sequence)
        assert sequences == list(range(sequences[0], sequences[-1] + 1))  # once, in order
        assert len(emu.identifies) == 1
        await shard.close()


# ---- 4: an unexpected error never wedges the shard -------------------------------------------


async def test_an_unexpected_error_in_the_driver_heals_by_resuming() -> None:
    async with GatewayEmulator(heartbeat_interval=0.5, guilds=1) as emu:
        shard = shard_for(emu)
        await take_until(shard, EventType.READY)
        real_close = Connection.close
        calls = 0

        async def broken_close(self: Connection, code: int, reason: str = "") -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("a bug in closing")
            await real_close(self, code, reason)

        Connection.close = broken_close  # type: ignore[method-assign]
        try:
            await emu.live_connections()[0].reconnect()  # op 7: the shard closes, which raises
            with pytest.raises(ReceiveMessageError) as caught:
                await take_until(shard, EventType.RESUMED)
            assert caught.value.kind is ReceiveMessageErrorKind.RECONNECT
            await take_until(shard, EventType.RESUMED)
        finally:
            Connection.close = real_close  # type: ignore[method-assign]
        assert len(emu.identifies) == 1 and len(emu.resumes) == 1
        assert shard.reconnect_attempts == 0  # op 7 on a live session: prompt, not a failure
        await shard.close()


async def test_an_unexpected_error_on_a_payload_is_typed_and_heals() -> None:
    async with GatewayEmulator(heartbeat_interval=0.3, guilds=1) as emu:
        shard = shard_for(emu)
        await take_until(shard, EventType.READY)
        protocol = shard._protocol
        real = protocol.receive
        armed = True

        def receive(payload: bytes, now: float) -> Any:
            nonlocal armed
            if armed and b'"op":11' in payload.replace(b" ", b""):
                armed = False
                raise KeyError("a bug")
            return real(payload, now)

        protocol.receive = receive  # type: ignore[method-assign]
        with pytest.raises(ReceiveMessageError) as caught:
            await take_until(shard, EventType.RESUMED)
        assert caught.value.kind is ReceiveMessageErrorKind.RECONNECT
        await take_until(shard, EventType.RESUMED)
        assert len(emu.identifies) == 1
        await shard.close()


# ---- 13: sessions are saved on their own cadence and right after READY ------------------------


async def test_session_is_saved_right_after_ready_and_on_its_cadence() -> None:
    store = MemoryStore()
    async with GatewayEmulator(heartbeat_interval=30.0, guilds=1) as emu:
        shard = shard_for(
            emu, session_store=store, session_save_interval=0.2, rng=lambda: 1.0
        )  # the first heartbeat is 30 s away
        await take_until(shard, EventType.GUILD_CREATE)
        await until(lambda: 0 in store.saved, timeout=1.0)
        first = store.saved[0].session
        await emu.dispatch("FUTURE_EVENT", {})
        await take_until(shard, EventType.UNKNOWN)
        await until(lambda: store.saved[0].session.sequence > first.sequence, timeout=2.0)
        await shard.close(CloseFrame.RESUME)


async def test_session_is_saved_right_after_ready_whatever_the_cadence() -> None:
    store = MemoryStore()
    async with GatewayEmulator(heartbeat_interval=30.0, guilds=1) as emu:
        shard = shard_for(emu, session_store=store, session_save_interval=600.0)
        await take_until(shard, EventType.READY)
        await until(lambda: 0 in store.saved, timeout=1.0)  # not 600 s later
        saved = store.saved[0].session
        assert shard.session is not None and saved.session_id == shard.session.session_id
        await shard.close(CloseFrame.RESUME)


# ---- 21: a cancelled close() still finishes its work -------------------------------------------


async def test_a_cancelled_close_still_aborts_and_saves() -> None:
    store = MemoryStore()
    async with GatewayEmulator(heartbeat_interval=0.5, guilds=1) as emu:
        shard = shard_for(emu, session_store=store, session_save_interval=600.0)
        await take_until(shard, EventType.GUILD_CREATE)
        await until(lambda: 0 in store.saved)  # the save right after READY
        store.saved.clear()
        conn = shard._conn
        assert conn is not None and conn._transport is not None
        transport = conn._transport
        closing = asyncio.ensure_future(shard.close(CloseFrame.RESUME))
        await asyncio.sleep(0)  # close() sent its close frame and waits for the echo
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        assert transport.is_closing()  # aborted, not left waiting
        assert 0 in store.saved and store.saved[0].session.session_id  # the final save


# ---- 20: a storm of op 7 does not grow the wait --------------------------------------------------


async def test_an_op7_storm_reconnects_promptly_every_time() -> None:
    async with GatewayEmulator(heartbeat_interval=1.0, guilds=1) as emu:
        shard = shard_for(emu, backoff_base=1.0, min_reconnect_interval=0.2)
        await take_until(shard, EventType.READY)
        for n in range(1, 7):
            before = time.monotonic()
            await emu.live_connections()[-1].reconnect()
            await emu.wait_for(lambda n=n: len(emu.resumes) == n, timeout=5)
            waited = time.monotonic() - before
            # Doubling from 1 s would reach 32 s; the floor keeps each near 0.2 s.
            assert waited < 1.5, f"reconnect {n} took {waited:.2f} s"
            await take_until(shard, EventType.RESUMED)
        assert len(emu.identifies) == 1
        await shard.close()


# ---- 5: a compressed payload that is not UTF-8 through next_message() ----------------------


async def test_next_message_with_invalid_utf8_is_typed_and_heals() -> None:
    async with GatewayEmulator(heartbeat_interval=0.5, guilds=1) as emu:
        shard = shard_for(emu)
        async with asyncio.timeout(10):
            while "GUILD_CREATE" not in (await shard.next_message()).text:  # type: ignore[union-attr]
                pass
            # Not a dispatch (no sequence is taken), so the resume misses nothing.
            await emu.live_connections()[0].send_payload(b'{"op":11,"d":"\xff\xfe"}')
            with pytest.raises(ReceiveMessageError) as caught:
                while True:
                    await shard.next_message()
            assert caught.value.kind is ReceiveMessageErrorKind.DESERIALIZING
            await emu.wait_for(lambda: emu.resumes, timeout=5)
        await shard.close()


# ---- review: nothing before HELLO can grow without bound -----------------------------------


async def test_a_flood_before_hello_is_capped_and_the_shard_reconnects() -> None:
    async def flood(conn: HostileConnection) -> None:
        conn.accept()
        for _ in range(4000):  # ~100 KiB of ACKs, and never a HELLO
            if conn.closed:
                return
            conn.send_op(11)
            await asyncio.sleep(0)
        await conn.wait_closed(timeout=10)

    async with HostileServer([flood], heartbeat_interval=100) as server:
        shard = Shard(ShardId.ONE, TOKEN, INTENTS, gateway_url=server.url,
                      read_high_water=16 * 1024, backoff_base=0.05,
                      queue=InMemoryQueue(max_concurrency=0))  # fmt: skip
        shard.start()  # nobody consumes: the shard holds what it reads
        await server.wait_for(lambda: server.identifies, timeout=10)
        assert len(server.connections) == 2
        assert shard._held < 64 * 1024  # capped near the mark, then failed (not 100 KiB)
        with pytest.raises(ReceiveMessageError) as caught:
            await take_until(shard, EventType.READY)
        assert caught.value.kind is ReceiveMessageErrorKind.DESERIALIZING
        await shard.close()


async def test_a_dispatch_before_hello_is_bad_data_and_the_shard_reconnects() -> None:
    async def early(conn: HostileConnection) -> None:
        conn.accept()
        conn.send_dispatch("MESSAGE_CREATE", {"n": 0}, s=50)
        await conn.wait_closed(timeout=10)

    async with HostileServer([early], heartbeat_interval=100) as server:
        shard = Shard(ShardId.ONE, TOKEN, INTENTS, gateway_url=server.url, backoff_base=0.05,
                      queue=InMemoryQueue(max_concurrency=0))  # fmt: skip
        with pytest.raises(ReceiveMessageError) as caught:
            await take_until(shard, EventType.READY)
        assert caught.value.kind is ReceiveMessageErrorKind.DESERIALIZING
        await take_until(shard, EventType.READY)
        assert shard._protocol.sequence == 1
        await shard.close()

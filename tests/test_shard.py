"""The asyncio Shard against the emulator over a real loopback socket."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest

from gateway import (
    Close,
    CloseFrame,
    EventType,
    EventTypeFlags,
    InMemoryQueue,
    Intents,
    ReceiveMessageError,
    Shard,
    ShardId,
    ShardState,
    Text,
    UpdatePresence,
)
from gateway.testing import GatewayEmulator

TOKEN = "test-token-do-not-log"
INTENTS = Intents.GUILDS | Intents.GUILD_MESSAGES


def shard_for(emu: GatewayEmulator, **options: Any) -> Shard:
    options.setdefault("queue", InMemoryQueue(max_concurrency=0))
    return Shard(ShardId.ONE, TOKEN, INTENTS, gateway_url=emu.url, **options)


async def events_until(shard: Shard, wanted: EventType, timeout: float = 10.0) -> list[Any]:
    seen: list[Any] = []

    async def run() -> None:
        while True:
            event = await shard.next_event()
            seen.append(event)
            if event.type is wanted:
                return

    await asyncio.wait_for(run(), timeout)
    return seen


async def test_identify_ready_and_guilds(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with GatewayEmulator(heartbeat_interval=0.5, guilds=3) as emu:
        shard = shard_for(emu)
        seen = await events_until(shard, EventType.READY)
        assert seen[0].type is EventType.GATEWAY_HELLO
        assert shard.state is ShardState.ACTIVE and shard.session is not None
        assert shard.resume_url == emu.resume_url
        creates = [await shard.next_event() for _ in range(3)]
        assert [e.type for e in creates] == [EventType.GUILD_CREATE] * 3
        identify = emu.identifies[0].data
        assert identify["intents"] == int(INTENTS) and identify["shard"] == [0, 1]
        assert (
            emu.connections[0].path == "/"
            and "compress=zlib-stream" in emu.records[0].data["query"]
        )
        await shard.close()
        await emu.wait_for(lambda: emu.closes)
        assert emu.closes[0].data == {"code": 1000, "by": "client"}
        assert not emu.sessions  # 1000 ended the session
        assert not emu.violations
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(shard.config)


async def test_first_heartbeat_is_jittered() -> None:
    async with GatewayEmulator(heartbeat_interval=0.4) as emu:
        shard = shard_for(emu, rng=lambda: 0.5)
        task = asyncio.create_task(events_until(shard, EventType.GATEWAY_HEARTBEAT_ACK))
        await emu.wait_for(lambda: emu.connections and emu.connections[0].heartbeats)
        connected = emu.records_of("connect")[0].time
        first_beat = next(r for r in emu.records_of("received") if r.data["op"] == 1).time
        assert 0.15 <= first_beat - connected < 0.4  # 0.4 * 0.5, not immediately
        await task
        await shard.close()
        assert not emu.violations


async def test_zombie_connection_resumes_at_resume_url() -> None:
    async with GatewayEmulator(heartbeat_interval=0.2, ack_heartbeats=False) as emu:
        shard = shard_for(emu, rng=lambda: 0.0)
        await events_until(shard, EventType.READY)
        emu.ack_heartbeats = True  # the next connection is healthy
        seen = await events_until(shard, EventType.RESUMED)
        close = next(e for e in seen if e.type is EventType.GATEWAY_CLOSE)
        assert close.data.code not in (1000, 1001)
        assert emu.closes[0].data["by"] == "client"
        assert emu.resumes[0].data["path"] == "/resume"
        await shard.close()
        assert not emu.violations


async def test_op7_reconnect_resumes() -> None:
    async with GatewayEmulator(heartbeat_interval=1.0) as emu:
        shard = shard_for(emu)
        await events_until(shard, EventType.READY)
        await emu.live_connections()[0].reconnect()
        seen = await events_until(shard, EventType.RESUMED)
        assert EventType.GATEWAY_RECONNECT in [e.type for e in seen]
        assert emu.closes[0].data["code"] == 4000
        assert len(emu.identifies) == 1
        await shard.close()


async def test_invalid_session_false_identifies_again() -> None:
    async with GatewayEmulator(heartbeat_interval=1.0, identify_window=0) as emu:
        shard = shard_for(emu, rng=lambda: 0.0)  # 1 s wait before the new identify
        await events_until(shard, EventType.READY)
        await emu.live_connections()[0].invalidate_session(resumable=False)
        seen = await events_until(shard, EventType.READY)
        assert EventType.GATEWAY_INVALIDATE_SESSION in [e.type for e in seen]
        assert len(emu.identifies) == 2
        await shard.close()
        assert not emu.violations


@pytest.mark.parametrize("code", [4004, 4010, 4011, 4012, 4013, 4014])
async def test_fatal_close_stops_the_shard(code: int) -> None:
    async with GatewayEmulator(heartbeat_interval=1.0) as emu:
        shard = shard_for(emu)
        await events_until(shard, EventType.READY)
        await emu.live_connections()[0].close(code)
        with pytest.raises(ReceiveMessageError) as info:
            await events_until(shard, EventType.RESUMED)
        assert info.value.is_fatal() and info.value.close_code == code
        assert shard.state is ShardState.FATALLY_CLOSED
        assert [e async for e in shard] == []  # iteration ends
        assert len(emu.connections) == 1  # no new connection


async def test_bad_token_is_fatal_and_iteration_ends() -> None:
    async with GatewayEmulator(tokens=["other"]) as emu:
        shard = shard_for(emu)
        events = [e async for e in shard]
        assert [e.type for e in events] == [EventType.GATEWAY_HELLO, EventType.GATEWAY_CLOSE]
        assert events[-1].data.code == 4004
        assert shard.state is ShardState.FATALLY_CLOSED
        assert emu.violations[0].code == 4004


@pytest.mark.parametrize(
    ("code", "new_session"), [(4007, True), (4009, True), (4000, False), (1000, False)]
)
async def test_server_close_codes(code: int, new_session: bool) -> None:
    async with GatewayEmulator(heartbeat_interval=1.0, identify_window=0) as emu:
        shard = shard_for(emu)
        await events_until(shard, EventType.READY)
        await emu.live_connections()[0].close(code)
        await events_until(shard, EventType.READY if new_session else EventType.RESUMED)
        assert len(emu.identifies) == (2 if new_session else 1)
        await shard.close()


async def test_tcp_drop_resumes_without_losing_events() -> None:
    async with GatewayEmulator(heartbeat_interval=1.0) as emu:
        shard = shard_for(emu)
        await events_until(shard, EventType.READY)
        await asyncio.wait_for(shard.next_event(), 5)
        emu.live_connections()[0].drop()
        guild = str(emu.guild_ids[0])
        await emu.wait_for(lambda: emu.closes)
        await emu.dispatch("MESSAGE_CREATE", {"guild_id": guild, "content": "while away"})
        seen = await events_until(shard, EventType.RESUMED)
        messages = [e for e in seen if e.type is EventType.MESSAGE_CREATE]
        assert len(messages) == 1 and seen[-1].type is EventType.RESUMED
        await shard.close()


async def test_close_resume_returns_session_for_another_process() -> None:
    async with GatewayEmulator(heartbeat_interval=1.0) as emu:
        shard = shard_for(emu)
        await events_until(shard, EventType.READY)
        session = await shard.close(CloseFrame.RESUME)
        assert session is not None
        await emu.wait_for(lambda: emu.closes)
        assert emu.closes[0].data["code"] == 4000
        again = shard_for(emu, session=session, resume_url=shard.resume_url)
        await events_until(again, EventType.RESUMED)
        assert emu.resumes[0].data["session_id"] == session.session_id
        await again.close()


async def test_commands_are_sent_after_ready() -> None:
    async with GatewayEmulator(heartbeat_interval=1.0) as emu:
        shard = shard_for(emu)
        shard.command(UpdatePresence(status="idle"))
        await events_until(shard, EventType.READY)
        await asyncio.wait_for(shard.next_event(), 5)
        cmds = await emu.wait_for(lambda: emu.records_of("command"))
        assert cmds[0].data["op"] == 3 and cmds[0].data["d"]["status"] == "idle"
        await shard.close()
        assert not emu.violations


async def test_corrupt_zlib_is_a_typed_error_then_resume() -> None:
    async with GatewayEmulator(heartbeat_interval=1.0) as emu:
        shard = shard_for(emu)
        await events_until(shard, EventType.READY)
        await emu.live_connections()[0].send_corrupt_zlib()
        with pytest.raises(ReceiveMessageError) as info:
            await events_until(shard, EventType.RESUMED)
        assert info.value.kind.value == "compression" and not info.value.is_fatal()
        await events_until(shard, EventType.RESUMED)
        await shard.close()


@pytest.mark.parametrize("compression", [None, "zstd-stream"])
async def test_other_compressions(compression: str | None) -> None:
    if compression == "zstd-stream":
        pytest.importorskip("zstandard")
    async with GatewayEmulator(heartbeat_interval=1.0, split_frames=1) as emu:
        shard = shard_for(emu, compression=compression)
        await events_until(shard, EventType.READY)
        await shard.close()


async def test_zlib_message_split_over_frames() -> None:
    async with GatewayEmulator(heartbeat_interval=1.0, split_frames=3, guilds=2) as emu:
        shard = shard_for(emu)
        await events_until(shard, EventType.GUILD_CREATE)
        await shard.close()


async def test_next_message_gives_raw_text_and_close() -> None:
    async with GatewayEmulator(heartbeat_interval=1.0) as emu:
        shard = shard_for(emu, event_types=EventTypeFlags.MESSAGE_CREATE)
        first = await asyncio.wait_for(shard.next_message(), 5)
        assert isinstance(first, Text) and '"op":10' in first.text
        while not (emu.live_connections()):
            await asyncio.wait_for(shard.next_message(), 5)
        emu.live_connections()[0].drop()
        while not isinstance(message := await asyncio.wait_for(shard.next_message(), 5), Close):
            pass
        assert message.frame is None
        await shard.close()


async def test_event_storm_delivers_every_sequence_exactly_once() -> None:
    total = 20_000
    async with GatewayEmulator(heartbeat_interval=0.5, events_per_second=0, total_events=total,
                               guilds=4) as emu:  # fmt: skip
        shard = shard_for(
            emu, rng=lambda: 0.5, event_types=EventTypeFlags.ALL, backoff_base=0.01, backoff_max=0.1
        )
        sequences: list[int] = []
        faults = 0

        async def inject(n: int) -> None:
            conns = emu.live_connections()
            if not conns:
                return
            conn = conns[0]
            kind = n % 4
            if kind == 0:
                conn.drop()
            elif kind == 1:
                await conn.close(4000)
            elif kind == 2:
                await conn.reconnect()
            else:
                await conn.close(1001)

        async def run() -> None:
            nonlocal faults
            while not sequences or sequences[-1] < total:
                event = await shard.next_event()
                if event.sequence is not None:
                    sequences.append(event.sequence)
                    if len(sequences) % 900 == 0 and faults < 20:
                        faults += 1
                        await inject(faults)

        await asyncio.wait_for(run(), 120)
        assert faults == 20
        assert sequences == list(range(1, len(sequences) + 1))
        assert len(emu.identifies) == 1
        assert not emu.violations
        await shard.close()


@pytest.mark.parametrize("compression", ["zlib-stream", None])
async def test_firehose_burst_then_live_traffic(compression: str | None) -> None:
    total = 5000
    async with GatewayEmulator(
        guilds=2, events_per_second=0, total_events=total, firehose=True, large_every=500
    ) as emu:
        shard = shard_for(emu, compression=compression)
        seqs: list[int] = []
        async with asyncio.timeout(20):
            while len(seqs) < total:
                event = await shard.next_event()
                if event.sequence is not None:
                    seqs.append(event.sequence)
            assert seqs == list(range(1, total + 1))
            # The connection's compressor continues correctly after the raw burst.
            (s,) = await emu.dispatch("GUILD_CREATE", {"id": "5", "name": "after"})
            event = await shard.next_event()
        assert event.sequence == s == total + 1 and event.data["name"] == "after"
        assert not emu.violations and not emu.closes
        await shard.close()


async def test_tls_connection_with_the_configured_context() -> None:
    import ssl
    from pathlib import Path

    from gateway.transport import Connection

    tls = Path(__file__).resolve().parent / "tls"
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tls / "cert.pem", tls / "key.pem")
    async with GatewayEmulator(ssl=server, guilds=1) as emu:
        assert emu.url.startswith("wss://")
        trusting = ssl.create_default_context(cafile=str(tls / "cert.pem"))
        shard = shard_for(emu, ssl=trusting)
        await events_until(shard, EventType.GUILD_CREATE)
        assert emu.resumes == [] and not emu.violations
        await shard.close()
        with pytest.raises(ssl.SSLCertVerificationError):  # the shard logs it and retries
            await Connection.open(emu.url, ssl=ssl.create_default_context(), timeout=2)


async def ready_shard_and_messages(emu: GatewayEmulator, count: int) -> tuple[Shard, list[int]]:
    """A shard past its GUILD_CREATE, then ``count`` MESSAGE_CREATEs sent (their sequences);
    all buffered before the shard reads again.
    """
    shard = shard_for(emu)
    await events_until(shard, EventType.GUILD_CREATE)
    guild = str(emu.guild_ids[0])
    sent = [
        (await emu.dispatch("MESSAGE_CREATE", {"id": str(n), "guild_id": guild}))[0]
        for n in range(count)
    ]
    return shard, sent


async def test_events_before_corrupt_data_are_delivered_first() -> None:
    async with GatewayEmulator(guilds=1, heartbeat_interval=5) as emu:
        shard, sent = await ready_shard_and_messages(emu, 100)  # more than one batch
        await emu.live_connections()[0].send_corrupt_zlib()
        got: list[int | None] = []
        with pytest.raises(ReceiveMessageError) as info:
            async with asyncio.timeout(10):
                while True:
                    got.append((await shard.next_event()).sequence)
        assert got == sent and info.value.kind.value == "compression"
        event = await asyncio.wait_for(shard.next_event(), 10)  # then it resumes
        assert event.type in (EventType.GATEWAY_CLOSE, EventType.GATEWAY_HELLO)
        await events_until(shard, EventType.RESUMED)
        await shard.close()


async def test_mixing_next_event_and_next_message_loses_nothing() -> None:
    async with GatewayEmulator(guilds=1, heartbeat_interval=5) as emu:
        shard, sent = await ready_shard_and_messages(emu, 150)  # more than two batches
        guild = str(emu.guild_ids[0])
        got: list[int] = []
        async with asyncio.timeout(10):
            while len(got) < len(sent):
                if len(got) % 3 == 0:
                    message = await shard.next_message()
                    assert isinstance(message, Text)
                    payload = json.loads(message.text)
                    if payload["op"] == 0:
                        got.append(payload["s"])
                else:
                    event = await shard.next_event()
                    if event.type is EventType.MESSAGE_CREATE:
                        assert event.data["guild_id"] == guild
                        got.append(event.sequence)
        assert got == sent
        await shard.close()


async def test_a_dispatch_with_damaged_data() -> None:
    """The envelope scans, so the payload is processed; its decode fails when taken: a
    typed error, then a resume, and the events after it come once each."""
    async with GatewayEmulator(guilds=1, heartbeat_interval=5) as emu:
        shard = shard_for(emu)
        await events_until(shard, EventType.GUILD_CREATE)
        guild = str(emu.guild_ids[0])
        conn = emu.live_connections()[0]
        before = (await emu.dispatch("MESSAGE_CREATE", {"id": "1", "guild_id": guild}))[0]
        await conn.send_payload(b'{"t":"MESSAGE_CREATE","s":%d,"op":0,"d":{"id":' % before)
        after = (await emu.dispatch("MESSAGE_CREATE", {"id": "2", "guild_id": guild}))[0]
        assert (await asyncio.wait_for(shard.next_event(), 10)).sequence == before
        with pytest.raises(ReceiveMessageError) as info:
            await asyncio.wait_for(shard.next_event(), 10)
        assert info.value.kind.value == "deserializing" and not info.value.is_fatal()
        seen = await events_until(shard, EventType.RESUMED)
        late = (await emu.dispatch("MESSAGE_CREATE", {"id": "3", "guild_id": guild}))[0]
        seen += await events_until(shard, EventType.MESSAGE_CREATE)
        sequences = [e.sequence for e in seen if e.type is EventType.MESSAGE_CREATE]
        assert sequences.count(after) == 1 and sequences[-1] == late
        await shard.close()


async def test_next_message_does_not_decode_dispatches() -> None:
    async with GatewayEmulator(guilds=1, heartbeat_interval=5) as emu:
        shard = shard_for(emu)
        await events_until(shard, EventType.GUILD_CREATE)
        seq = next(iter(emu.sessions.values())).seq
        damaged = b'{"t":"MESSAGE_CREATE","s":%d,"op":0,"d":{"id":' % seq
        await emu.live_connections()[0].send_payload(damaged)
        message = await asyncio.wait_for(shard.next_message(), 10)
        assert message == Text(damaged.decode())  # raw, as received: no error
        assert shard.session is not None and shard.session.sequence == seq
        await shard.close()


async def test_an_ack_behind_a_backlog_is_not_a_zombie() -> None:
    """A consumer slower than the traffic: the ACK waits behind thousands of events it has
    not taken yet. The shard processes what was received before calling it a zombie."""
    async with GatewayEmulator(guilds=1, heartbeat_interval=0.25) as emu:
        shard, sent = await ready_shard_and_messages(emu, 2500)
        got: list[int | None] = []
        async with asyncio.timeout(30):
            while len(got) < len(sent):
                event = await shard.next_event()
                if event.type is EventType.MESSAGE_CREATE:
                    got.append(event.sequence)
                    time.sleep(0.0005)  # the consumer's own (blocking) work per event
                    await asyncio.sleep(0)  # and its awaits: the loop reads meanwhile
        assert got == sent
        assert len(emu.connections) == 1 and not emu.resumes  # no false zombie
        assert len(emu.connections[0].heartbeats) >= 4  # beats were due during the backlog
        await shard.close()

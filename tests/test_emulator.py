"""The emulator, judged with a bare websockets client: every rule, close code and fault."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from bare_client import BareClient

from gateway.testing import GatewayEmulator


@pytest.fixture
async def emulator() -> AsyncIterator[GatewayEmulator]:
    async with GatewayEmulator(heartbeat_interval=1.0, identify_window=0.2, guilds=3) as emu:
        yield emu


async def ready_client(emu: GatewayEmulator, transport: str | None = None, **kw: Any) -> BareClient:
    client = await BareClient.open(emu.url, transport)
    hello = await client.recv()
    assert hello["op"] == 10
    await client.identify(**kw)
    return client


# ---- connection and HELLO ----------------------------------------------------------------


async def test_hello_first_with_interval_and_trace(emulator: GatewayEmulator) -> None:
    client = await BareClient.open(emulator.url)
    hello = await client.recv()
    assert list(hello) == ["t", "s", "op", "d"]
    assert hello["op"] == 10 and hello["s"] is None and hello["t"] is None
    assert hello["d"]["heartbeat_interval"] == 1000
    assert isinstance(hello["d"]["_trace"], list)


async def test_heartbeat_acked_in_any_state(emulator: GatewayEmulator) -> None:
    client = await BareClient.open(emulator.url)
    await client.recv()
    await client.send({"op": 1, "d": None})
    assert (await client.recv())["op"] == 11
    assert emulator.connections[0].heartbeats == [None]


async def test_bad_version_closes_4012(emulator: GatewayEmulator) -> None:
    client = await BareClient.open(emulator.url, query="v=8&encoding=json")
    assert await client.closed_code() == 4012


@pytest.mark.parametrize("query", ["v=10&encoding=etf", "v=10&encoding=json&compress=gzip"])
async def test_bad_encoding_or_compress_rejected(emulator: GatewayEmulator, query: str) -> None:
    import websockets

    with pytest.raises(websockets.InvalidStatus) as info:
        await BareClient.open(emulator.url, query=query)
    assert info.value.response.status_code == 400


# ---- identify and READY ------------------------------------------------------------------


async def test_identify_ready_and_guild_creates(emulator: GatewayEmulator) -> None:
    client = await ready_client(emulator, intents=1)
    ready = await client.recv()
    assert ready["t"] == "READY" and ready["s"] == 1
    assert ready["d"]["resume_gateway_url"] == emulator.resume_url
    assert len(ready["d"]["session_id"]) == 32
    ids = [g["id"] for g in ready["d"]["guilds"]]
    assert len(ids) == 3
    creates = [await client.recv() for _ in ids]
    assert [c["t"] for c in creates] == ["GUILD_CREATE"] * 3
    assert [c["s"] for c in creates] == [2, 3, 4]
    assert [c["d"]["id"] for c in creates] == ids
    assert "token" not in emulator.identifies[0].data


async def test_guilds_routed_by_shard(emulator: GatewayEmulator) -> None:
    seen: list[str] = []
    for n in range(2):
        client = await ready_client(emulator, shard=[n, 2], intents=1)
        ready = await client.recv()
        for g in ready["d"]["guilds"]:
            assert (int(g["id"]) >> 22) % 2 == n
            seen.append(g["id"])
        await asyncio.sleep(0.25)  # the identify window of this fixture (bucket 0)
    assert sorted(seen) == sorted(map(str, emulator.guild_ids))


async def test_no_guild_creates_without_guilds_intent(emulator: GatewayEmulator) -> None:
    client = await ready_client(emulator, intents=512)
    await client.recv()  # READY
    seq = await emulator.dispatch(
        "MESSAGE_CREATE", {"guild_id": str(emulator.guild_ids[0]), "content": "hi"}
    )
    assert seq == [2]
    nxt = await client.recv()
    assert nxt["t"] == "MESSAGE_CREATE" and nxt["s"] == 2
    assert nxt["d"]["content"] == ""  # no MESSAGE_CONTENT intent


@pytest.mark.parametrize(
    ("kw", "code"),
    [
        ({"token": "wrong"}, 4004),
        ({"shard": [2, 2]}, 4010),
        ({"shard": [0, 0]}, 4010),
        ({"intents": 1 << 17}, 4013),
        ({"intents": -1}, 4013),
        ({"intents": 1 << 1}, 4014),
        ({"large_threshold": 10}, 4001),
    ],
)
async def test_identify_violations(kw: dict[str, Any], code: int) -> None:
    async with GatewayEmulator(tokens=["good"], allowed_privileged=0) as emu:
        kw.setdefault("token", "good")
        client = await ready_client(emu, **kw)
        assert await client.closed_code() == code
        assert [v.code for v in emu.violations] == [code]


async def test_sharding_required_4011() -> None:
    async with GatewayEmulator(guilds=5, max_guilds_per_shard=4) as emu:
        client = await ready_client(emu)
        assert await client.closed_code() == 4011


async def test_second_identify_closes_4005(emulator: GatewayEmulator) -> None:
    client = await ready_client(emulator)
    await client.recv_until(t="READY")
    await client.identify()
    assert await client.closed_code() == 4005


async def test_command_before_identify_closes_4003(emulator: GatewayEmulator) -> None:
    client = await BareClient.open(emulator.url)
    await client.recv()
    await client.send(
        {"op": 3, "d": {"since": None, "activities": [], "status": "online", "afk": False}}
    )
    assert await client.closed_code() == 4003


async def test_identify_timeout_closes_4003() -> None:
    async with GatewayEmulator(heartbeat_interval=0.2, identify_timeout=0.2) as emu:
        client = await BareClient.open(emu.url)
        await client.recv()
        assert await client.closed_code() == 4003


async def test_identify_timeout_restarts_after_invalid_session_false() -> None:
    """After op 9 false the client must wait 1-5 s before it IDENTIFYs again (protocol.md
    8): the identify timeout counts from the op 9, not from the connection's opening."""
    async with GatewayEmulator(
        heartbeat_interval=5.0, identify_timeout=0.2, identify_window=0
    ) as emu:
        client = await BareClient.open(emu.url)
        await client.recv()
        await client.identify()
        await client.recv_until(t="READY")
        await emu.live_connections()[0].invalidate_session(resumable=False)
        assert (await client.recv_until(op=9))["d"] is False
        await asyncio.sleep(1.0)  # the least wait the protocol asks of the client
        await client.identify()
        await client.recv_until(t="READY")
        assert not emu.violations


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ("not json", 4002),
        (json.dumps({"op": 1, "d": "x" * 5000}), 4002),
        (json.dumps({"op": 5, "d": None}), 4001),
        (json.dumps({"op": 11, "d": None}), 4001),
        (json.dumps({"d": None}), 4001),
        (json.dumps({"op": 1, "d": "abc"}), 4001),
    ],
)
async def test_decode_and_opcode_violations(
    emulator: GatewayEmulator, payload: str, code: int
) -> None:
    client = await BareClient.open(emulator.url)
    await client.recv()
    await client.send(payload)
    assert await client.closed_code() == code


async def test_more_than_120_payloads_closes_4008(emulator: GatewayEmulator) -> None:
    client = await BareClient.open(emulator.url)
    await client.recv()
    for _ in range(121):
        await client.send({"op": 1, "d": None})
    assert await client.closed_code() == 4008


async def test_heartbeat_timeout_closes_and_keeps_session() -> None:
    async with GatewayEmulator(heartbeat_interval=0.2, heartbeat_grace=0.1) as emu:
        client = await ready_client(emu)
        ready = await client.recv_until(t="READY")
        assert await client.closed_code() == 4000
        assert emu.records_of("heartbeat_timeout")
        assert ready["d"]["session_id"] in emu.sessions


# ---- identify concurrency and budget -----------------------------------------------------


async def test_identify_over_concurrency_gets_op9_false(emulator: GatewayEmulator) -> None:
    first = await ready_client(emulator)
    await first.recv_until(t="READY")
    second = await ready_client(emulator)
    invalid = await second.recv()
    assert invalid["op"] == 9 and invalid["d"] is False
    await asyncio.sleep(0.25)  # the window is 0.2 s in this fixture: then it is allowed
    await second.identify()
    assert (await second.recv_until(t="READY"))["s"] == 1


async def test_buckets_are_independent() -> None:
    async with GatewayEmulator(max_concurrency=2, identify_window=10) as emu:
        for n in range(2):
            client = await ready_client(emu, shard=[n, 4])
            assert (await client.recv())["t"] == "READY"
        client = await ready_client(emu, shard=[2, 4])
        assert (await client.recv())["op"] == 9


async def test_session_start_budget_and_token_reset() -> None:
    async with GatewayEmulator(session_start_remaining=1, identify_window=0) as emu:
        first = await ready_client(emu)
        await first.recv_until(t="READY")
        second = await ready_client(emu)
        assert await second.closed_code() == 4004
        assert await first.closed_code() == 4000
        third = await ready_client(emu)
        assert await third.closed_code() == 4004
        status = await asyncio.to_thread(http_get, f"{emu.api_url}/gateway/bot", "token")
        assert status[0] == 401


# ---- HTTP --------------------------------------------------------------------------------


def http_get(url: str, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bot {token}"} if token else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_http_gateway_and_gateway_bot() -> None:
    async with GatewayEmulator(
        tokens=["good"], shards=4, max_concurrency=2, identify_window=0
    ) as emu:
        status, body = await asyncio.to_thread(http_get, f"{emu.api_url}/gateway")
        assert status == 200 and body == {"url": emu.url}
        status, body = await asyncio.to_thread(http_get, f"{emu.api_url}/gateway/bot", "good")
        assert status == 200 and body["shards"] == 4
        limit = body["session_start_limit"]
        assert limit["remaining"] == 1000 and limit["max_concurrency"] == 2
        client = await ready_client(emu, token="good")
        await client.recv_until(t="READY")
        _, body = await asyncio.to_thread(http_get, f"{emu.api_url}/gateway/bot", "good")
        assert body["session_start_limit"]["remaining"] == 999
        assert body["session_start_limit"]["reset_after"] <= limit["reset_after"]
        status, body = await asyncio.to_thread(http_get, f"{emu.api_url}/gateway/bot", "bad")
        assert status == 401 and body["message"] == "401: Unauthorized"


# ---- resume ------------------------------------------------------------------------------


async def test_resume_replays_missed_dispatches_then_resumed(emulator: GatewayEmulator) -> None:
    client = await ready_client(emulator, intents=512)
    ready = await client.recv_until(t="READY")
    session_id = ready["d"]["session_id"]
    await client.ws.close(4000)
    guild = str(emulator.guild_ids[0])
    for i in range(3):
        await emulator.dispatch("MESSAGE_CREATE", {"guild_id": guild, "n": i})
    resumed = await BareClient.open(emulator.resume_url)
    await resumed.recv()
    await resumed.send({"op": 6, "d": {"token": "token", "session_id": session_id, "seq": 1}})
    replay = [await resumed.recv() for _ in range(4)]
    assert [p["s"] for p in replay] == [2, 3, 4, 5]
    assert [p["d"].get("n") for p in replay[:3]] == [0, 1, 2]
    assert replay[3]["t"] == "RESUMED"
    assert emulator.resumes[0].data["path"] == "/resume"
    assert emulator.sessions[session_id].delivered == [1, 2, 3, 4, 5]


async def test_resume_unknown_session_gets_op9_false(emulator: GatewayEmulator) -> None:
    client = await BareClient.open(emulator.url)
    await client.recv()
    await client.send({"op": 6, "d": {"token": "token", "session_id": "nope", "seq": 1}})
    invalid = await client.recv()
    assert invalid["op"] == 9 and invalid["d"] is False


async def test_resume_seq_ahead_closes_4007(emulator: GatewayEmulator) -> None:
    client = await ready_client(emulator)
    ready = await client.recv_until(t="READY")
    await client.ws.close(4000)
    again = await BareClient.open(emulator.resume_url)
    await again.recv()
    await again.send(
        {"op": 6, "d": {"token": "token", "session_id": ready["d"]["session_id"], "seq": 99}}
    )
    assert await again.closed_code() == 4007


@pytest.mark.parametrize(
    ("code", "resumable"), [(1000, False), (1001, False), (4000, True), (4900, True)]
)
async def test_client_close_code_decides_session_fate(
    emulator: GatewayEmulator, code: int, resumable: bool
) -> None:
    client = await ready_client(emulator)
    ready = await client.recv_until(t="READY")
    await client.ws.close(code)
    await emulator.wait_for(lambda: emulator.closes)
    assert (ready["d"]["session_id"] in emulator.sessions) == resumable
    assert emulator.closes[0].data == {"code": code, "by": "client"}


async def test_tcp_drop_keeps_session_until_ttl() -> None:
    async with GatewayEmulator(session_ttl=0.2) as emu:
        client = await ready_client(emu)
        ready = await client.recv_until(t="READY")
        client.ws.transport.abort()
        await emu.wait_for(lambda: emu.closes)
        assert emu.closes[0].data["code"] is None
        await asyncio.sleep(0.3)  # the TTL itself is what is under test
        again = await BareClient.open(emu.url)
        await again.recv()
        await again.send(
            {"op": 6, "d": {"token": "token", "session_id": ready["d"]["session_id"], "seq": 1}}
        )
        assert (await again.recv())["op"] == 9


async def test_replay_buffer_overflow_invalidates_session() -> None:
    async with GatewayEmulator(replay_buffer_max=2) as emu:
        client = await ready_client(emu, intents=512)
        ready = await client.recv_until(t="READY")
        await client.ws.close(4000)
        await emu.wait_for(lambda: emu.closes)
        for _ in range(3):
            await emu.dispatch("MESSAGE_CREATE", {"guild_id": str(emu.guild_ids[0])})
        again = await BareClient.open(emu.url)
        await again.recv()
        await again.send(
            {"op": 6, "d": {"token": "token", "session_id": ready["d"]["session_id"], "seq": 1}}
        )
        assert (await again.recv())["op"] == 9


# ---- compression -------------------------------------------------------------------------


@pytest.mark.parametrize("split", [1, 3])
async def test_zlib_stream(split: int) -> None:
    async with GatewayEmulator(split_frames=split) as emu:
        client = await ready_client(emu, transport="zlib-stream", intents=1)
        assert (await client.recv())["t"] == "READY"
        assert (await client.recv())["t"] == "GUILD_CREATE"


async def test_zstd_stream(emulator: GatewayEmulator) -> None:
    pytest.importorskip("zstandard")
    client = await ready_client(emulator, transport="zstd-stream", intents=1)
    assert (await client.recv())["t"] == "READY"
    assert (await client.recv())["t"] == "GUILD_CREATE"


async def test_payload_compression(emulator: GatewayEmulator) -> None:
    client = await ready_client(emulator, intents=1, compress=True)
    frames = []
    for _ in range(2):
        frames.append(await client.ws.recv())
    assert isinstance(frames[0], bytes)  # READY is large: a standalone zlib blob
    assert json.loads(__import__("zlib").decompress(frames[0]))["t"] == "READY"


# ---- traffic -----------------------------------------------------------------------------


async def test_generated_traffic_is_sequenced_and_seeded() -> None:
    async with GatewayEmulator(
        events_per_second=0, total_events=60, guilds=2, unknown_every=10
    ) as emu:
        client = await ready_client(emu, intents=Intents_all())
        payloads = [await client.recv() for _ in range(60)]
        assert [p["s"] for p in payloads] == list(range(1, 61))
        names = {p["t"] for p in payloads}
        assert "MESSAGE_CREATE" in names and "GUILD_APPLICATION_COMMAND_INDEX_UPDATE" in names


def Intents_all() -> int:
    from gateway import Intents

    return int(Intents.all())


async def test_intent_filtering_of_traffic() -> None:
    async with GatewayEmulator(events_per_second=0, total_events=40) as emu:
        client = await ready_client(emu, intents=512)  # GUILD_MESSAGES only
        payloads = [await client.recv() for _ in range(10)]
        assert {p["t"] for p in payloads[1:]} == {"MESSAGE_CREATE"}


# ---- faults ------------------------------------------------------------------------------


async def test_fault_reconnect_and_invalid_session_and_heartbeat_request(
    emulator: GatewayEmulator,
) -> None:
    client = await ready_client(emulator)
    await client.recv_until(t="READY")
    conn = emulator.live_connections()[0]
    await conn.reconnect()
    assert (await client.recv_until(op=7))["d"] is None
    await conn.request_heartbeat()
    assert (await client.recv_until(op=1))["d"] is None
    await conn.invalidate_session(resumable=True)
    assert (await client.recv_until(op=9))["d"] is True


async def test_fault_reconnect_before_hello() -> None:
    async def before(conn: Any) -> None:
        await conn.reconnect()

    async with GatewayEmulator(on_connect=before) as emu:
        client = await BareClient.open(emu.url)
        assert (await client.recv())["op"] == 7
        assert (await client.recv())["op"] == 10


async def test_fault_zombie_close_and_drop(emulator: GatewayEmulator) -> None:
    client = await ready_client(emulator)
    await client.recv_until(t="READY")
    conn = emulator.live_connections()[0]
    conn.ack_heartbeats = False
    await client.send({"op": 1, "d": 1})
    await conn.close(4009)
    assert await client.closed_code() == 4009
    assert not emulator.sessions  # 4009: the session timed out
    emulator.identify_window = 0
    other = await ready_client(emulator)
    await other.recv_until(t="READY")
    emulator.live_connections()[0].drop()
    assert await other.closed_code() is None


async def test_fault_corrupt_zlib_and_invalid_json(emulator: GatewayEmulator) -> None:
    client = await ready_client(emulator, transport="zlib-stream", intents=512)
    await client.recv_until(t="READY")
    conn = emulator.live_connections()[0]
    await conn.send_invalid_json()
    with pytest.raises(ValueError):
        await client.recv()
    await conn.send_corrupt_zlib()
    import zlib

    with pytest.raises(zlib.error):
        await client.recv()


async def test_unavailable_and_dropped_guild_creates() -> None:
    async with GatewayEmulator(guilds=2, unavailable_guilds=[]) as emu:
        emu.unavailable_guilds = {emu.guild_ids[0]}
        client = await ready_client(emu, intents=1)
        await client.recv_until(t="READY")
        first = await client.recv()
        assert first["t"] == "GUILD_DELETE" and first["d"] == {
            "id": str(emu.guild_ids[0]),
            "unavailable": True,
        }
    async with GatewayEmulator(guilds=2, drop_guild_creates=True, identify_window=0) as emu:
        client = await ready_client(emu, intents=513)
        await client.recv_until(t="READY")
        await emu.dispatch("MESSAGE_CREATE", {"guild_id": str(emu.guild_ids[0])})
        assert (await client.recv())["t"] == "MESSAGE_CREATE"


# ---- command line ------------------------------------------------------------------------


async def test_command_line_serves_until_interrupted() -> None:
    import signal
    import sys

    from conftest import child_env

    env, home = child_env()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "emulator", "--port", "0", "--guilds", "1",
        stdout=asyncio.subprocess.PIPE, env=env, cwd=home,
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    url = line.split()[-1]
    assert url.startswith("ws://127.0.0.1:")
    client = await BareClient.open(url)
    assert (await client.recv())["op"] == 10
    await client.ws.close()
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), 20) in (0, 130)


def test_firehose_chunks_accept_messages_between_them() -> None:
    """What lets the emulator ACK heartbeats mid-burst: chunks end with a full flush."""
    from gateway.testing.corpus import Corpus
    from gateway.testing.firehose import build

    hose = build(
        Corpus([1 << 22], seed=1), lambda e: True,
        lambda e, s: b'{"t":"%s","s":%d,"op":0,"d":%s}' % (e.name.encode(), s, e.data),
        1, 30_000, "zlib-stream",
    )  # fmt: skip
    assert len(hose.chunks) > 2
    inflate = zlib.decompressobj()
    start = zlib.compressobj()  # the connection's own stream, before the burst
    out = [inflate.decompress(start.compress(b'{"op":10}') + start.flush(zlib.Z_SYNC_FLUSH))]
    for chunk in hose.chunks:
        out.append(inflate.decompress(_payloads_of(chunk)))
        ack = zlib.compressobj(wbits=-15)  # as the emulator sends between chunks
        out.append(inflate.decompress(ack.compress(b'{"op":11}') + ack.flush(zlib.Z_SYNC_FLUSH)))
    text = b"".join(out)
    assert text.count(b'{"op":11}') == len(hose.chunks)
    assert all(p in text for p in hose.payloads[:: len(hose.payloads) // 50])


def _payloads_of(chunk: bytes) -> bytes:
    """The concatenated payloads of a run of unmasked server frames (7/16/64-bit lengths)."""
    out, pos = bytearray(), 0
    while pos < len(chunk):
        n, head = chunk[pos + 1] & 0x7F, 2
        if n == 126:
            n, head = int.from_bytes(chunk[pos + 2 : pos + 4], "big"), 4
        elif n == 127:
            n, head = int.from_bytes(chunk[pos + 2 : pos + 10], "big"), 10
        out += chunk[pos + head : pos + head + n]
        pos += head + n
    return bytes(out)


async def test_stamp_puts_the_send_time_first_in_every_dispatch() -> None:
    """``stamp``: latency benchmarks read each dispatch's send time (this machine's
    monotonic clock) from ``d.sent_at``; without it, payloads are as Discord sends them."""
    for stamp in (True, False):
        async with GatewayEmulator(guilds=1, stamp=stamp) as emu:
            client = await ready_client(emu, intents=1)
            before = time.monotonic()
            ready = await client.recv()
            d = ready["d"]
            assert ready["t"] == "READY"
            if stamp:
                assert next(iter(d)) == "sent_at" and before - 5 < d["sent_at"] <= time.monotonic()
            else:
                assert "sent_at" not in d

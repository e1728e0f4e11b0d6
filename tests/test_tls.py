"""TLS in our transport (wss://): verified connections, clear typed failures, no hangs, the
shared default context; on asyncio's loop and on uvloop, over loopback only.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from conftest import LOOPS, server_context
from gateway import EventType, InMemoryQueue, Intents, Shard, ShardId, backends
from gateway.testing import GatewayEmulator
from gateway.transport import Connection

pytestmark = pytest.mark.asyncio(loop_factories=LOOPS)

TOKEN = "tls-test-token-do-not-log"


async def open_fails(url: str, context: ssl.SSLContext | None) -> BaseException:
    """Connection.open's error; well before its own timeout (a hang fails the test)."""
    async with asyncio.timeout(5):
        with pytest.raises(Exception) as raised:
            await Connection.open(url, ssl=context, timeout=30)
    return raised.value


async def test_a_shard_over_wss_identifies_gets_events_and_closes_cleanly(
    certs: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    async with GatewayEmulator(ssl=certs.server, guilds=2, heartbeat_interval=0.3) as emu:
        shard = Shard(
            ShardId.ONE, TOKEN, Intents.GUILDS, gateway_url=emu.url, ssl=certs.client,
            queue=InMemoryQueue(max_concurrency=0),
        )  # fmt: skip
        seen = []
        async with asyncio.timeout(10):
            while len([e for e in seen if e.type is EventType.GUILD_CREATE]) < 2:
                seen.append(await shard.next_event())
            while shard.latency.heartbeats < 2:  # heartbeats go out over TLS, ACKs come back
                await shard.next_event()
        await shard.close()
        await emu.wait_for(lambda: emu.closes)
    assert emu.url.startswith("wss://")
    assert emu.closes[0].data == {"code": 1000, "by": "client"}
    assert not emu.violations and emu.resumes == []
    assert TOKEN not in caplog.text


async def test_an_untrusted_certificate_is_a_verification_error(certs: SimpleNamespace) -> None:
    async with GatewayEmulator(ssl=certs.server) as emu:
        exc = await open_fails(emu.url, ssl.create_default_context())  # the system's CAs
    assert isinstance(exc, ssl.SSLCertVerificationError) and isinstance(exc, OSError)
    assert "unable to get local issuer certificate" in exc.verify_message
    assert f"TLS handshake with 127.0.0.1:{emu.port}" in exc.__notes__


async def test_a_certificate_for_another_host_is_a_verification_error(
    certs: SimpleNamespace,
) -> None:
    other = server_context(certs.ca.issue_cert("gateway.example"))
    async with GatewayEmulator(ssl=other) as emu:
        exc = await open_fails(emu.url, certs.client)  # trusted CA, wrong name
    assert isinstance(exc, ssl.SSLCertVerificationError)
    assert "mismatch" in exc.verify_message and "127.0.0.1" in exc.verify_message


async def test_an_expired_certificate_is_a_verification_error(certs: SimpleNamespace) -> None:
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    leaf = certs.ca.issue_cert("127.0.0.1", not_before=past, not_after=past)
    async with GatewayEmulator(ssl=server_context(leaf)) as emu:
        exc = await open_fails(emu.url, certs.client)
    assert isinstance(exc, ssl.SSLCertVerificationError)
    assert "expired" in exc.verify_message


@pytest.mark.skipif(backends.TLS != "system", reason="SSL_CERT_FILE is the system store's")
async def test_wss_without_a_context_uses_the_shared_default_which_verifies(
    certs: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends, "_default_context", None)
    async with GatewayEmulator(ssl=certs.server, guilds=1) as emu:
        exc = await open_fails(emu.url, None)  # the test CA is not a system CA
        assert isinstance(exc, ssl.SSLCertVerificationError)
        shared = backends.default_ssl_context()
        assert backends.default_ssl_context() is shared
        assert shared.verify_mode is ssl.CERT_REQUIRED and shared.check_hostname
        # Trusting the test CA the way a deployment would (SSL_CERT_FILE), the same default
        # path connects: made once, then shared by every connection.
        monkeypatch.setenv("SSL_CERT_FILE", certs.cafile)
        monkeypatch.setattr(backends, "_default_context", None)
        made: list[ssl.SSLContext] = []
        create = backends.create_ssl_context

        def counting() -> ssl.SSLContext:
            made.append(create())
            return made[-1]

        monkeypatch.setattr(backends, "create_ssl_context", counting)
        conns = [await Connection.open(emu.url, ssl=None, timeout=10) for _ in range(3)]
        for conn in conns:
            conn.abort()
    assert len(made) == 1 and backends.default_ssl_context() is made[0]


async def test_a_plain_http_answer_on_a_wss_url_is_a_tls_error(certs: SimpleNamespace) -> None:
    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # the ClientHello
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await reader.read()

    srv = await asyncio.start_server(accept, "127.0.0.1", 0)
    async with srv:
        url = f"wss://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
        exc = await open_fails(url, certs.client)
    assert isinstance(exc, ssl.SSLError) and "WRONG_VERSION_NUMBER" in str(exc)


@pytest.fixture
async def silent_server() -> AsyncIterator[SimpleNamespace]:
    """A TCP server that accepts and says nothing; ``closed`` is set when a client leaves."""
    state = SimpleNamespace(closed=asyncio.Event(), url="")

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client closes
        state.closed.set()
        writer.close()

    srv = await asyncio.start_server(accept, "127.0.0.1", 0)
    state.url = f"wss://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    async with srv:
        yield state


async def test_a_server_silent_during_the_tls_handshake_times_out_and_is_dropped(
    silent_server: SimpleNamespace, certs: SimpleNamespace
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError):
        await Connection.open(silent_server.url, ssl=certs.client, timeout=0.3)
    assert loop.time() - start < 3
    await asyncio.wait_for(silent_server.closed.wait(), 5)  # no socket left behind


async def test_tcp_closed_during_the_tls_handshake_is_a_connection_error(
    certs: SimpleNamespace,
) -> None:
    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    srv = await asyncio.start_server(accept, "127.0.0.1", 0)
    async with srv:
        url = f"wss://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
        exc = await open_fails(url, certs.client)
    assert isinstance(exc, ConnectionError)


async def test_a_server_side_context_fails_open_at_once(certs: SimpleNamespace) -> None:
    # wrap_bio raises inside connection_made: the error must reach open(), not the loop's log.
    async with GatewayEmulator(ssl=certs.server) as emu:
        exc = await open_fails(emu.url, certs.server)
    assert isinstance(exc, ssl.SSLError) and "PROTOCOL_TLS_SERVER" in str(exc)

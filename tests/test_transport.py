"""gateway.transport.Connection against a real websockets server on loopback, over ws:// and
wss:// (our TLS layer), on asyncio's loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
import websockets
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Response

from conftest import LOOPS
from gateway.transport import Connection, ConnectionGone

pytestmark = pytest.mark.asyncio(loop_factories=LOOPS)

Handler = Callable[[ServerConnection], Awaitable[None]]


@pytest.fixture(params=["ws", "wss"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=[0.0, 0.005], ids=["as-it-arrives", "batched"])
def read_interval(request: pytest.FixtureRequest) -> float:
    """How the connections of a test read: as data arrives, or in batches (the poller)."""
    return float(request.param)


def reading(conn: Connection) -> bool:
    """Whether the socket is being read (by the transport, or by the poller)."""
    if conn._polled:
        return conn._poller is not None
    assert conn._transport is not None
    return bool(conn._transport.is_reading())


@contextlib.asynccontextmanager
async def server(
    handler: Handler, scheme: str, certs: SimpleNamespace, **options: Any
) -> AsyncIterator[str]:
    """A websockets server on 127.0.0.1; yields its URL."""
    tls = certs.server if scheme == "wss" else None
    async with serve(
        handler, "127.0.0.1", 0, ssl=tls, compression=None, max_size=None, ping_interval=None,
        **options,
    ) as srv:  # fmt: skip
        port = next(iter(srv.sockets)).getsockname()[1]
        yield f"{scheme}://127.0.0.1:{port}"


class Client:
    """A Connection plus a way to await conditions on it (on_data wakes the waiter)."""

    def __init__(self, read_interval: float = 0.0) -> None:
        self.changed = asyncio.Event()
        self.conn: Connection | None = None
        self.read_interval = read_interval

    def on_data(self) -> None:
        self.changed.set()

    async def open(self, url: str, certs: SimpleNamespace, **kw: Any) -> Connection:
        kw.setdefault("timeout", 10)
        kw.setdefault("read_interval", self.read_interval)
        self.conn = await Connection.open(url, ssl=certs.client, on_data=self.on_data, **kw)
        batched = kw["read_interval"] not in (0, "auto")  # auto: not until the group says
        assert self.conn._polled is batched  # the poller reads, if asked
        return self.conn

    async def until(self, predicate: Callable[[], Any], timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def take(self) -> list[bytes]:
        assert self.conn is not None
        taken: list[bytes] = []
        while self.conn.messages:
            item = self.conn.messages.popleft()
            assert isinstance(item, bytes), item
            taken.append(item)
        return taken


async def test_messages_ping_and_the_servers_close(
    scheme: str, certs: SimpleNamespace, read_interval: float
) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("first")
        await ws.send(b"\x00second")
        await asyncio.wait_for(await ws.ping(b"p"), 5)  # our pong comes back
        await ws.close(4000, "bye")

    client = Client(read_interval)
    async with server(handler, scheme, certs) as url:
        conn = await client.open(url, certs)
        await client.until(lambda: conn.gone is not None or len(conn.messages) >= 2)
        assert client.take() == [b"first", b"\x00second"]
        await client.until(lambda: conn.gone)
    gone = conn.gone
    assert gone is not None and (gone.code, gone.reason) == (4000, "bye")
    with pytest.raises(ConnectionGone):
        conn.send("too late")


async def test_send_and_our_close_handshake(
    scheme: str, certs: SimpleNamespace, read_interval: float
) -> None:
    received: list[str | bytes] = []
    closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            received.append(message)
        closed.set_result(ws.close_code)

    client = Client(read_interval)
    async with server(handler, scheme, certs) as url:
        conn = await client.open(url, certs)
        conn.send('{"op":1,"d":null}')
        conn.send("é" * 3000)
        async with asyncio.timeout(4):  # well under CLOSE_TIMEOUT: the server ended it
            await conn.close(1000)
        assert await asyncio.wait_for(closed, 5) == 1000
    assert received == ['{"op":1,"d":null}', "é" * 3000]
    assert conn.gone is not None


async def test_large_messages_arrive_whole_and_in_order(
    scheme: str, certs: SimpleNamespace, read_interval: float
) -> None:
    # Bigger than one TLS record, than the plaintext buffer and than one socket read.
    sizes = [1, 16_000, 70_000, 1_000_000, 3]
    sent = [bytes([n % 251]) * n for n in sizes]

    async def handler(ws: ServerConnection) -> None:
        for payload in sent:
            await ws.send(payload)
        await ws.wait_closed()

    client = Client(read_interval)
    async with server(handler, scheme, certs) as url:
        conn = await client.open(url, certs)
        got: list[bytes] = []

        def all_in() -> bool:
            got.extend(client.take())
            return len(got) == len(sent)

        await client.until(all_in)
        assert got == sent
        await conn.close(1000)


async def test_a_burst_is_read_at_full_speed_when_batched(certs: SimpleNamespace) -> None:
    """A socket whose read filled the buffer is read again at once, not one interval later:
    at the longest interval, 4 MB at one read (124 KiB) per interval would take >= 3 s.
    """
    payload = bytes(range(256)) * (4 * 1024 * 1024 // 256)

    async def handler(ws: ServerConnection) -> None:
        await ws.send(payload)
        await ws.wait_closed()

    client = Client(read_interval=0.1)
    async with server(handler, "ws", certs) as url:
        conn = await client.open(url, certs)
        started = asyncio.get_running_loop().time()
        await client.until(lambda: conn.messages)
        elapsed = asyncio.get_running_loop().time() - started
        assert client.take() == [payload]
        assert elapsed < 1.5, elapsed
        await conn.close(1000)


async def test_pause_reading_stops_the_socket_and_resume_reads_on(
    scheme: str, certs: SimpleNamespace, read_interval: float
) -> None:
    """The shard pauses a connection whose consumer is behind (its byte high-water mark)."""
    total = 5000

    async def handler(ws: ServerConnection) -> None:
        for n in range(total):
            await ws.send(str(n).rjust(2000))  # 10 MB in all: many socket reads
        await ws.wait_closed()

    client = Client(read_interval)
    async with server(handler, scheme, certs) as url:
        conn = await client.open(url, certs)
        transport = conn._transport
        assert transport is not None
        await client.until(lambda: conn.messages)
        conn.pause_reading()
        assert not reading(conn) and not transport.is_reading()
        got = client.take()
        await asyncio.sleep(0.2)  # a paused connection reads nothing more
        assert len(got) + len(conn.messages) < total
        conn.resume_reading()
        assert reading(conn)
        assert transport.is_reading() is not conn._polled  # the poller reads, if batched

        def all_in() -> bool:
            got.extend(client.take())
            return len(got) >= total

        await client.until(all_in)
        assert got == [str(n).rjust(2000).encode() for n in range(total)]
        await conn.close(1000)


async def test_closing_a_paused_connection_reads_the_servers_close_frame(
    scheme: str, certs: SimpleNamespace, read_interval: float
) -> None:
    """close() reads on, even while paused, to take the server's echo of the close frame."""
    closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        await ws.send("one")
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.recv()
        closed.set_result(ws.close_code)

    client = Client(read_interval)
    async with server(handler, scheme, certs) as url:
        conn = await client.open(url, certs)
        await client.until(lambda: conn.messages)
        conn.pause_reading()
        assert not reading(conn)
        async with asyncio.timeout(4):  # well under CLOSE_TIMEOUT: the echo was read
            await conn.close(1000)
        assert await asyncio.wait_for(closed, 5) == 1000
    gone = conn.gone
    assert gone is not None and gone.code == 1000


async def test_a_dropped_tcp_connection_ends_without_a_code(
    scheme: str, certs: SimpleNamespace, read_interval: float
) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("hello")
        ws.transport.abort()

    client = Client(read_interval)
    async with server(handler, scheme, certs) as url:
        conn = await client.open(url, certs)
        await client.until(lambda: conn._lost.done())
    assert client.take() == [b"hello"]
    gone = conn.gone
    assert gone is not None and gone.code is None


async def test_the_server_ending_tls_or_tcp_without_a_close_frame(
    scheme: str, certs: SimpleNamespace, read_interval: float, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("last words")
        ws.transport.close()  # wss: close_notify, then FIN; ws: FIN

    client = Client(read_interval)
    async with server(handler, scheme, certs) as url:
        conn = await client.open(url, certs)
        await client.until(lambda: conn._lost.done())
    assert client.take() == [b"last words"]
    gone = conn.gone
    assert gone is not None and gone.code is None and gone.__cause__ is None
    assert not [r for r in caplog.records if r.name.startswith("gateway")]


async def test_a_refused_upgrade_is_an_invalid_handshake(
    scheme: str, certs: SimpleNamespace
) -> None:
    def refuse(ws: ServerConnection, request: Any) -> Response:
        return ws.respond(403, "no\n")

    async def handler(ws: ServerConnection) -> None:
        raise AssertionError("not reached")

    async with server(handler, scheme, certs, process_request=refuse) as url:
        async with asyncio.timeout(5):
            with pytest.raises(websockets.InvalidHandshake, match="403"):
                await Client().open(url, certs, timeout=30)


# ---- exceptions inside the transport's callbacks reach the caller -------------------------


async def idle(ws: ServerConnection) -> None:
    await ws.wait_closed()


async def test_an_error_in_connection_made_fails_open(
    scheme: str, certs: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Connection) -> None:
        raise RuntimeError("broken request")

    monkeypatch.setattr(Connection, "_send_request", broken)
    async with server(idle, scheme, certs) as url:
        async with asyncio.timeout(5):  # not the open timeout
            with pytest.raises(RuntimeError, match="broken request"):
                await Client().open(url, certs, timeout=30)


async def test_an_error_in_data_received_during_the_handshake_fails_open(
    scheme: str, certs: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Connection, data: bytes) -> None:
        raise RuntimeError("broken response parser")

    monkeypatch.setattr(Connection, "_handshake_data", broken)
    async with server(idle, scheme, certs) as url:
        async with asyncio.timeout(5):
            with pytest.raises(RuntimeError, match="broken response parser"):
                await Client().open(url, certs, timeout=30)


async def test_an_error_in_a_callback_once_open_ends_the_connection_with_it_as_cause(
    scheme: str, certs: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("boom")
        await ws.wait_closed()

    class Failing(Client):
        def on_data(self) -> None:
            super().on_data()
            raise ValueError("the consumer's callback failed")  # every time, even at the end

    client = Failing()
    async with server(handler, scheme, certs) as url:
        conn = await client.open(url, certs)
        await client.until(lambda: conn._lost.done())
    assert client.take() == [b"boom"]  # what arrived before the failure is kept
    gone = conn.gone
    assert isinstance(gone, ConnectionGone) and isinstance(gone.__cause__, ValueError)
    with pytest.raises(ConnectionGone) as raised:
        conn.send("x")
    assert isinstance(raised.value.__cause__, ValueError)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and all(r.name == "gateway.transport" and r.exc_info for r in errors)


async def test_the_running_loop_is_the_one_asked_for(request: pytest.FixtureRequest) -> None:
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    assert loop == ("uvloop" if "uvloop" in request.node.callspec.id else "asyncio")


# ---- a raw server: handcrafted frames (issue 21) --------------------------------------------

RawScript = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def server_frame(payload: bytes, opcode: int) -> bytes:
    n = len(payload)
    head = bytes([0x80 | opcode, n]) if n < 126 else bytes([0x80 | opcode, 126]) + n.to_bytes(2)
    return head + payload


async def client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One (masked) frame from the client: (opcode, payload)."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2))
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8))
    mask = await reader.readexactly(4)
    data = await reader.readexactly(n)
    return b0 & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


@contextlib.asynccontextmanager
async def raw_server(script: RawScript, **options: Any) -> AsyncIterator[str]:
    """A plain-TCP websocket server on 127.0.0.1 that accepts the upgrade, then runs
    ``script`` on the raw streams (frames written by hand); yields its ws:// URL.
    """
    from websockets.utils import accept_key

    tasks: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            key = next(
                line.split(b":", 1)[1].strip()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = accept_key(key.decode()).encode()
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            await script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # teardown; asyncio's streams would log a cancelled task
            pass
        finally:
            writer.close()

    if "sock" in options:
        srv = await asyncio.start_server(handle, **options)
    else:
        srv = await asyncio.start_server(handle, "127.0.0.1", 0, **options)
    try:
        port = srv.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}"
    finally:
        for task in tasks:
            task.cancel()
        srv.close()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize(
    ("payload", "code", "reason", "echo", "problem"),
    [
        (b"", 1005, "", b"", None),
        (b"\x0f\xa4bye", 4004, "bye", b"\x0f\xa4", None),  # echo: the code only
        (b"\x0f\xa0" + "é".encode(), 4000, "é", b"\x0f\xa0", None),
        (b"\x03", None, "", b"\x03\xea", "1-byte payload"),
        (b"\x03\xed", None, "", b"\x03\xea", "1005 is not allowed"),
        (b"\x03\xee", None, "", b"\x03\xea", "1006 is not allowed"),
        (b"\x03\xf7", None, "", b"\x03\xea", "1015 is not allowed"),
        (b"\x03\xe7", None, "", b"\x03\xea", "999 is not allowed"),
        (b"\x07\xd0", None, "", b"\x03\xea", "2000 is not allowed"),
        (b"\x13\x88", None, "", b"\x03\xea", "5000 is not allowed"),
        (b"\x0f\xa0" + b"\xff" * 42, None, "", b"\x03\xef", "not valid UTF-8"),
        (b"\x0f\xa0" + b"\xed\xa0\x80" * 41, None, "", b"\x03\xef", "not valid UTF-8"),
        (b"\x0f\xa0" + "é".encode() * 61 + b"x", 4000, "é" * 61 + "x", b"\x0f\xa0", None),
    ],
    ids=lambda v: repr(v)[:20],
)
async def test_any_close_payload_gives_a_valid_code_or_none(
    payload: bytes,
    code: int | None,
    reason: str,
    echo: bytes,
    problem: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 21 item 4: a close frame with a 42-byte invalid UTF-8 reason raised out of the
    shard after open (its reason, decoded with replacement characters, passed 123 bytes).
    Now: a valid code (one CloseFrame accepts) with a str reason of at most 123 bytes, or
    None with the protocol error as cause, our close frame 1002/1007, nothing logged.
    """
    from gateway.close import CloseFrame

    echoed: list[tuple[int, bytes]] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(server_frame(b"hello", 1) + server_frame(payload, 8))
        echoed.append(await client_frame(reader))
        await reader.read()  # until the client ends TCP

    client = Client()
    async with raw_server(script) as url:
        conn = await client.open(url, SimpleNamespace(client=None))
        await client.until(lambda: conn.gone is not None and echoed)
        gone = conn.gone
        assert gone is not None
        assert (gone.code, gone.reason) == (code, reason)
        assert client.take() == [b"hello"]
        if code is not None:
            CloseFrame(code, reason)  # what the shard builds from it
        if problem is None:
            assert gone.__cause__ is None
        else:
            assert problem in str(gone.__cause__)
        assert echoed == [(8, echo)]
        await client.until(lambda: conn._lost.done())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# ---- issue 21 item 8: write backpressure ----------------------------------------------------


def _small_receive_buffer_socket() -> Any:
    """A listening socket whose accepted connections have a small receive buffer (set
    before listen, so the window is small from the start).
    """
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    return sock


async def ping_flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Flood 125-byte pings and never read what the client sends back."""
    ping = server_frame(b"p" * 125, 9) * 64
    while True:
        writer.write(ping)
        await writer.drain()


@pytest.mark.parametrize(
    ("options", "cause"),
    [
        ({"drain_timeout": 0.3}, "has not read our data for 0.3 s"),
        ({"drain_timeout": 30.0, "max_outbound": 1}, "over 1 bytes waiting to be sent"),
    ],
    ids=["never-drains", "over-the-cap"],
)
async def test_a_ping_flood_from_a_peer_that_never_reads_is_bounded_and_ends(
    options: dict[str, Any], cause: str
) -> None:
    """Issue 21 item 8: 80-140 MiB of pongs were queued in 3 s. Now pongs are dropped while
    the transport has writing paused, the write buffer stays near its high-water mark, and
    the connection fails (the shard reconnects) once the peer has not drained for
    ``drain_timeout`` or the buffer passes ``max_outbound``.
    """
    peak = 0

    def watch() -> None:
        nonlocal peak
        if conn._transport is not None:
            peak = max(peak, conn._transport.get_write_buffer_size())

    client = Client()
    client.on_data = lambda: (watch(), client.changed.set())  # type: ignore[method-assign]
    async with raw_server(ping_flood, sock=_small_receive_buffer_socket()) as url:
        conn = await client.open(url, SimpleNamespace(client=None), **options)
        original = conn.pause_writing

        def pause_writing() -> None:
            watch()
            original()

        conn.pause_writing = pause_writing  # type: ignore[method-assign]
        await client.until(lambda: conn.gone is not None, timeout=10)
    gone = conn.gone
    assert gone is not None and gone.code is None
    assert cause in str(gone.__cause__)
    assert conn.pongs_dropped > 0 or "max_outbound" in options
    assert peak <= 256 * 1024, peak  # the high-water mark (64 KiB) plus one read's pongs


async def test_pongs_flow_again_once_the_peer_drains() -> None:
    """A pause that ends in time loses nothing but pongs: the next ping is answered."""
    answered: list[tuple[int, bytes]] = []
    got = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(server_frame(b"1", 9))
        answered.append(await client_frame(reader))
        got.set()
        await reader.read()

    client = Client()
    async with raw_server(script) as url:
        conn = await client.open(url, SimpleNamespace(client=None), drain_timeout=5.0)
        conn.pause_writing()
        conn.resume_writing()
        await asyncio.wait_for(got.wait(), 5)
        assert answered == [(10, b"1")]
        assert conn.gone is None
        conn.abort()


async def test_outbound_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        await Connection.open("ws://127.0.0.1:9", timeout=1, max_outbound=0)
    with pytest.raises(ValueError):
        await Connection.open("ws://127.0.0.1:9", timeout=1, drain_timeout=0)


async def test_what_came_before_a_reset_is_read_when_batched(
    scheme: str, certs: SimpleNamespace
) -> None:
    """The server sends, then resets TCP; a write of ours meets the reset before the poller's
    next tick. The transport ends the connection at once, but what the kernel holds came
    before the reset: it is read, as reading as data arrives would have (CI lost a RESUMED
    this way, under batched reading)."""
    reset: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()  # the client's socket is with the poller by now
        await ws.send("x" * 40_000)  # over wss: more than one TLS feed (16 KiB) in a read
        await ws.send("last words")
        sock = ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.transport.abort()
        reset.set_result(None)

    client = Client(read_interval=0.1)  # the longest: the write comes well before a tick
    async with server(handler, scheme, certs) as url:
        conn = await client.open(url, certs)
        conn.send("go")
        await asyncio.wait_for(reset, 5)
        assert not conn.messages  # the poller has not read yet: the case under test
        with contextlib.suppress(ConnectionGone):
            for _ in range(100):  # until the transport sees the reset
                conn.send("ping?")
                await asyncio.sleep(0)
                if conn.closed:
                    break
        await client.until(lambda: conn.closed)
        assert client.take() == [b"x" * 40_000, b"last words"]


async def test_a_broken_stream_is_not_handed_to_the_poller(
    scheme: str, certs: SimpleNamespace
) -> None:
    """After a framing error nothing more is read: switching the connection to batched
    reading (as ``"auto"`` may) must not read the dead stream again."""

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        ws.transport.write(b"\x83\x00")  # opcode 3: reserved (plain TCP only)
        await ws.wait_closed()

    client = Client()
    async with server(handler, scheme, certs) as url:
        conn = await client.open(url, certs, read_interval="auto")
        if scheme == "wss":
            pytest.skip("a raw frame cannot be slipped into the server's TLS stream")
        conn.send("go")
        await client.until(lambda: conn.messages)
        assert [type(m).__name__ for m in conn.messages] == ["FrameError"]
        conn.batch(0.003)
        assert not conn._polled and conn._poller is None  # no poller reads it again
        conn.abort()

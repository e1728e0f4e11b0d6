"""A scriptable hostile gateway server: every byte a server sends, under a test's control.

The :class:`~gateway.testing.GatewayEmulator` is a faithful Discord. This is the opposite:
a real websocket server on loopback whose every connection runs a *script*, an async
function that decides what the server sends, byte by byte if it likes: a HELLO with a
nonsense interval, a frame with reserved bits, a close frame with invalid UTF-8 in its
reason, a zlib bomb, a TCP reset in the middle of READY, a flood of pings to a client it
never reads from. It records everything the client sent, with times, so a test can check
that the client kept its contract (see ``docs/explanation/contract.md``).

Connection *n* (from 0) runs ``scripts[n]``; connections beyond the list run ``default``
(by default :meth:`HostileServer.serve_normally`, a well-behaved Discord: HELLO, ACKs,
READY, RESUME with replay). Sessions and their dispatch logs live on the server, so a
client that comes back resumes and is replayed what it missed::

    from gateway.testing.hostile import HostileConnection, HostileServer

    async def garbage_then_drop(conn: HostileConnection) -> None:
        conn.send_hello(interval_ms=1000)
        await conn.expect_op(2)                # the client identifies
        conn.send_text(b'{"op": 0, "t": "\\xff')  # invalid UTF-8
        conn.drop()                            # and a TCP reset

    async with HostileServer([garbage_then_drop]) as server:
        shard = Shard(ShardId.ONE, "token", Intents(0), gateway_url=server.url)
        ...  # connection 1 is served normally: the shard gets READY there
        await server.emit(10)                  # MESSAGE_CREATE with d.n = 1..10
        await server.wait_for(lambda: server.identifies, timeout=5)

Sends are synchronous (they write to the transport at once, in order), so a script's
sends can never interleave with another task's. The server trusts nothing the client
sends and caps what it reads (:data:`MAX_REQUEST_HEAD`, :data:`MAX_CLIENT_MESSAGE`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import secrets
import socket
import struct
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "ClientClose",
    "HostileConnection",
    "HostileServer",
    "HostileSession",
    "MAX_CLIENT_MESSAGE",
    "MAX_REQUEST_HEAD",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "Received",
    "Script",
    "encode_frame",
]

log = logging.getLogger(__name__)

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
#: The longest request head the server reads from a client (bytes).
MAX_REQUEST_HEAD = 16 * 1024
#: The largest message the server accepts from a client (Discord's limit is 4096 bytes;
#: this only keeps a broken client from filling the test's memory).
MAX_CLIENT_MESSAGE = 1024 * 1024
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_SYNC_FLUSH = b"\x00\x00\xff\xff"

#: What a connection runs: called once the client's request head is read.
Script = Callable[["HostileConnection"], Awaitable[None]]


def encode_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = False,
    length: int | None = None,
) -> bytes:
    """One websocket frame (RFC 6455 5.2), as a server never should if you ask it to:
    ``rsv`` sets the three reserved bits (0-7), ``masked`` masks it (servers must not),
    ``length`` claims a payload length other than the real one.
    """
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)])
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if masked:
        key = secrets.token_bytes(4)
        return head + key + _mask(payload, key)
    return head + payload


def _mask(data: bytes, key: bytes) -> bytes:
    if not data:
        return b""
    n = len(data)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


@dataclass(frozen=True, slots=True)
class Received:
    """One message the client sent: when (the loop's time), its ``op`` and ``d`` (None
    when it is not a JSON object) and the raw bytes.
    """

    time: float
    op: Any
    d: Any
    raw: bytes


@dataclass(frozen=True, slots=True)
class ClientClose:
    """How the client's side ended: its close frame's ``code`` and ``reason`` (code None:
    TCP ended without one), and whether it ``echoed`` a close the server sent first.
    """

    time: float
    code: int | None
    reason: bytes
    echoed: bool


class HostileSession:
    """A session on the server: its id and the log of every dispatch sent in it (for
    replay on RESUME), and the connection it is attached to (None while it has none).
    """

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        #: Every dispatch of the session in order: (s, the whole payload as sent).
        self.log: list[tuple[int, dict[str, Any]]] = []
        self.connection: HostileConnection | None = None

    @property
    def seq(self) -> int:
        """The last sequence number used (0: none yet)."""
        return self.log[-1][0] if self.log else 0

    def dispatch(self, t: str, d: Any) -> dict[str, Any]:
        """Log a dispatch with the next sequence and send it if a connection is attached."""
        payload = {"op": 0, "t": t, "s": self.seq + 1, "d": d}
        self.log.append((self.seq + 1, payload))
        if self.connection is not None and not self.connection.closed:
            self.connection.send_json(payload)
        return payload


class HostileConnection:
    """One client connection: the request it made, the sends a script may make (from
    well-formed payloads down to raw bytes and TCP resets) and a record of what the client
    sent. Sends write at once; they do nothing after the connection is gone.
    """

    def __init__(
        self,
        server: HostileServer,
        number: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        #: 0 for the first connection the server accepted.
        self.number = number
        self._reader = reader
        self._writer = writer
        loop = asyncio.get_running_loop()
        self._loop = loop
        #: The loop's time when the TCP connection was accepted, and when it ended.
        self.opened_at = loop.time()
        self.closed_at: float | None = None
        #: The request line's target and the request headers (lower-case names).
        self.path = ""
        self.headers: dict[str, str] = {}
        #: Transport compression asked for in the query (or forced by the server).
        self.compression: str | None = None
        #: Every message the client sent, in order.
        self.received: list[Received] = []
        #: How the client ended the connection (None while it is open).
        self.client_close: ClientClose | None = None
        #: Pongs received (answers to pings).
        self.pongs = 0
        #: The session attached by :meth:`HostileServer.serve_normally` (None: none).
        self.session: HostileSession | None = None
        self.accepted = False
        self.close_sent = False
        #: Echo the client's close frame (as servers do) and then end TCP.
        self.echo_close = True
        #: Answer the client's pings with pongs.
        self.auto_pong = True
        #: :meth:`HostileServer.serve_normally` ACKs heartbeats (False: a zombie from now on).
        self.ack_heartbeats = True
        self._seq = 0  # the next sequence of send_dispatch outside a session
        self._inbox: asyncio.Queue[Received | ClientClose] = asyncio.Queue()
        self._closed = loop.create_future()
        self._read_task: asyncio.Task[None] | None = None
        self._zlib: Any = None
        self._zstd: _ZstdStream | None = None

    # ---- what the client sent -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the TCP connection has ended or is ending (either side; before the
        handshake is accepted, as soon as the transport notices).
        """
        return self._closed.done() or self._writer.transport.is_closing()

    def of_op(self, op: int) -> list[Received]:
        """The client's messages with this op."""
        return [r for r in self.received if r.op == op]

    @property
    def heartbeats(self) -> list[Received]:
        return self.of_op(1)

    @property
    def identifies(self) -> list[Received]:
        return self.of_op(2)

    @property
    def resumes(self) -> list[Received]:
        return self.of_op(6)

    async def recv(self, timeout: float = 5.0) -> Received | ClientClose:
        """The client's next message (or how it ended; then the same again on every call).
        TimeoutError after ``timeout`` seconds.
        """
        self.accept()
        async with asyncio.timeout(timeout):
            item = await self._inbox.get()
        if isinstance(item, ClientClose):
            self._inbox.put_nowait(item)  # the end stays the end
        return item

    async def expect_op(self, op: int, timeout: float = 5.0) -> Received:
        """The client's next message with this op (others are skipped, still recorded).
        AssertionError if the client ends the connection first, TimeoutError after
        ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while True:
                item = await self.recv(timeout)
                if isinstance(item, ClientClose):
                    raise AssertionError(
                        f"the client ended the connection ({item.code}) before op {op}"
                    )
                if item.op == op:
                    return item

    async def wait_closed(self, timeout: float = 5.0) -> None:
        """Until the TCP connection has ended (TimeoutError after ``timeout`` seconds)."""
        async with asyncio.timeout(timeout):
            await asyncio.shield(self._closed)

    # ---- the handshake --------------------------------------------------------------------

    def accept(self, *, accept_key: str | None = None, extra: bytes = b"") -> None:
        """Complete the websocket handshake (once; every send but :meth:`send_raw` does it
        first). ``accept_key`` replaces the correct ``Sec-WebSocket-Accept``; ``extra`` is
        added to the response head (raw header lines ending in CRLF).
        """
        if self.accepted:
            return
        self.accepted = True
        if accept_key is None:
            key = self.headers.get("sec-websocket-key", "")
            digest = hashlib.sha1((key + _GUID).encode()).digest()
            accept_key = base64.b64encode(digest).decode()
        head = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key}\r\n"
        ).encode()
        self._write(head + extra + b"\r\n")
        self._read_task = self._loop.create_task(self._read_frames())

    # ---- byte level -----------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        """Bytes as they are (no handshake first: a script may send its own response)."""
        self._write(data)

    def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv: int = 0,
        masked: bool = False,
        length: int | None = None,
    ) -> None:
        """One frame, however invalid (see :func:`encode_frame`)."""
        self.accept()
        self._write(encode_frame(opcode, payload, fin=fin, rsv=rsv, masked=masked, length=length))

    def send_close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        """A close frame: ``code`` (any integer 0-65535, or None for none) then ``reason``
        as raw bytes (valid UTF-8 or not, any length).
        """
        payload = (b"" if code is None else struct.pack("!H", code)) + reason
        self.close_sent = True
        self.send_frame(OP_CLOSE, payload)

    async def flood_pings(self, n: int, payload: bytes = b"", *, max_buffer: int = 1 << 20) -> int:
        """Send ``n`` pings (each asks the client for a pong) as fast as the client takes
        them, holding at most ``max_buffer`` unsent bytes on the server's side; stops early
        when the connection ends. Returns how many were sent.
        """
        self.accept()
        frame = encode_frame(OP_PING, payload)
        transport = self._writer.transport
        sent = 0
        while sent < n and not transport.is_closing():
            if transport.get_write_buffer_size() >= max_buffer:
                await asyncio.sleep(0.001)  # a paced sender, not a wait for a condition
                continue
            batch = min(n - sent, 1024)
            self._write(frame * batch)
            sent += batch
            await asyncio.sleep(0)
        return sent

    def drop(self) -> None:
        """End TCP with a reset (SO_LINGER 0): no close frame, no FIN."""
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()

    def half_close(self) -> None:
        """Send FIN (no more data from the server) and keep reading (plain TCP only)."""
        if self._writer.can_write_eof():
            self._writer.write_eof()

    def stop_reading(self) -> None:
        """Never read from the client again: its writes back up into its own buffers."""
        transport: Any = self._writer.transport
        transport.pause_reading()

    # ---- payloads -------------------------------------------------------------------------

    def compress(self, payload: bytes, *, suffix: bool = True) -> bytes:
        """``payload`` as this connection's transport compression sends it (one shared
        compressor per connection). ``suffix=False`` leaves out zlib's ``00 00 ff ff``:
        the client must keep buffering, and the stream is unusable after it.
        """
        if self.compression == "zlib-stream":
            if self._zlib is None:
                self._zlib = zlib.compressobj()
            data: bytes = self._zlib.compress(payload) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
            return data if suffix else data[: -len(_SYNC_FLUSH)]
        if self.compression == "zstd-stream":
            if self._zstd is None:
                self._zstd = _ZstdStream()
            return self._zstd.compress(payload)
        return payload

    def send_payload(self, payload: bytes, *, suffix: bool = True) -> None:
        """A gateway message's bytes (JSON or not, UTF-8 or not): compressed in a binary
        frame when the connection uses transport compression, else a text frame.
        """
        if self.compression is None:
            self.send_frame(OP_TEXT, payload)
        else:
            self.send_frame(OP_BINARY, self.compress(payload, suffix=suffix))

    def send_text(self, text: str | bytes) -> None:
        """An uncompressed text frame holding ``text`` (bytes: as they are, maybe not UTF-8)."""
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_corrupt(self) -> None:
        """A binary frame the connection's inflater cannot inflate (ends with zlib's suffix)."""
        self.send_frame(OP_BINARY, b"\x00\x01garbage, not a compressed stream" + _SYNC_FLUSH)

    def send_json(self, obj: Any) -> None:
        """``obj`` as compact JSON through :meth:`send_payload`."""
        self.send_payload(json.dumps(obj, separators=(",", ":")).encode())

    def send_op(self, op: int, d: Any = None) -> None:
        """A non-dispatch payload."""
        self.send_json({"op": op, "d": d, "s": None, "t": None})

    def send_hello(self, interval_ms: Any = 100) -> None:
        """HELLO with this ``heartbeat_interval`` (any JSON value, valid or not)."""
        self.send_op(10, {"heartbeat_interval": interval_ms, "_trace": ["hostile"]})

    def send_dispatch(self, t: str, d: Any, s: int | None = None) -> None:
        """A dispatch. With ``s`` given: that sequence, not logged anywhere. Otherwise the
        attached session's next sequence (logged for replay), or this connection's own.
        """
        if s is not None:
            self.send_json({"op": 0, "t": t, "s": s, "d": d})
        elif self.session is not None:
            self.session.dispatch(t, d)
        else:
            self._seq += 1
            self.send_json({"op": 0, "t": t, "s": self._seq, "d": d})

    # ---- internals ------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if not self._writer.transport.is_closing():
            self._writer.write(data)

    def _record(self, item: Received | ClientClose) -> None:
        if isinstance(item, Received):
            self.received.append(item)
        else:
            self.client_close = item
        self._inbox.put_nowait(item)
        self.server._changed()

    def _ended(self) -> None:
        if self._closed.done():
            return
        if self.client_close is None:
            self._record(ClientClose(self._loop.time(), None, b"", self.close_sent))
        self.closed_at = self._loop.time()
        self._closed.set_result(None)
        if self.session is not None and self.session.connection is self:
            self.session.connection = None
        self.server._changed()

    async def _read_frames(self) -> None:
        """Read the client's frames until it closes or TCP ends."""
        read = self._reader.readexactly
        fragments: list[bytes] = []
        try:
            while True:
                b0, b1 = await read(2)
                opcode, n = b0 & 0x0F, b1 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", await read(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", await read(8))
                if n > MAX_CLIENT_MESSAGE:
                    log.warning("connection %d: client frame of %d bytes", self.number, n)
                    break
                key = await read(4) if b1 & 0x80 else b""
                data = await read(n)
                payload = _mask(data, key) if key else data
                if opcode == OP_CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    now = self._loop.time()
                    self._record(ClientClose(now, code, payload[2:], self.close_sent))
                    if self.echo_close and not self.close_sent:
                        self.send_close(code, b"" if code is None else payload[2:])
                    with contextlib.suppress(Exception):
                        self._writer.close()
                    break
                if opcode == OP_PING:
                    if self.auto_pong:
                        self._write(encode_frame(OP_PONG, payload))
                    continue
                if opcode == OP_PONG:
                    self.pongs += 1
                    continue
                fragments.append(payload)
                if sum(map(len, fragments)) > MAX_CLIENT_MESSAGE:
                    break
                if b0 & 0x80:
                    self._message(b"".join(fragments))
                    fragments = []
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            if not self._writer.transport.is_closing():
                self._writer.transport.abort()
            self._ended()

    def _message(self, raw: bytes) -> None:
        op: Any = None
        d: Any = None
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            op, d = obj.get("op"), obj.get("d")
        self._record(Received(self._loop.time(), op, d, raw))


class _ZstdStream:
    """zstd-stream, server side: one never-ended frame per connection, flushed per message
    (``zstandard``, else ``backports.zstd``).
    """

    def __init__(self) -> None:
        try:
            import zstandard

            self._c: Any = zstandard.ZstdCompressor().compressobj()
            self._flush: Any = zstandard.COMPRESSOBJ_FLUSH_BLOCK
            self._backports = False
        except ImportError:  # pragma: no cover - depends on what is installed
            from backports.zstd import ZstdCompressor

            self._c = ZstdCompressor()
            self._flush = ZstdCompressor.FLUSH_BLOCK
            self._backports = True

    def compress(self, payload: bytes) -> bytes:
        if self._backports:  # pragma: no cover
            return bytes(self._c.compress(payload, self._flush))
        return bytes(self._c.compress(payload) + self._c.flush(self._flush))


class HostileServer:
    """A websocket server on 127.0.0.1 whose connections run scripts (see the module).

    ``scripts[n]`` runs connection *n*; later ones run ``default`` (None:
    :meth:`serve_normally`). ``ssl`` serves ``wss://``. ``compression`` forces a transport
    compression (default: what the client asks for in its query). ``heartbeat_interval``
    (ms) is what :meth:`serve_normally` sends in HELLO. An exception in a script is kept
    in :attr:`errors` (check it is empty) and ends its connection with a reset.
    """

    def __init__(
        self,
        scripts: Sequence[Script] = (),
        default: Script | None = None,
        *,
        ssl: SSLContext | None = None,
        compression: str | bool | None = True,
        heartbeat_interval: float = 100.0,
    ) -> None:
        self.scripts = list(scripts)
        self.default = default
        self.ssl = ssl
        self.compression = compression
        self.heartbeat_interval = heartbeat_interval
        #: Every connection accepted, in order.
        self.connections: list[HostileConnection] = []
        #: Sessions by id (created by READY in :meth:`serve_normally`).
        self.sessions: dict[str, HostileSession] = {}
        #: The session :meth:`emit` sends to (the latest created).
        self.session: HostileSession | None = None
        #: Numbered dispatches emitted so far.
        self.emitted = 0
        #: Exceptions raised by scripts.
        self.errors: list[BaseException] = []
        #: Where READY tells the client to resume (None: this server's url).
        self.resume_url: str | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._change: asyncio.Event | None = None
        self.port = 0

    async def __aenter__(self) -> HostileServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._change = asyncio.Event()
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", 0, ssl=self.ssl, limit=MAX_REQUEST_HEAD
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and end every connection (with a reset) and script."""
        if self._server is not None:
            self._server.close()
        for conn in self.connections:
            conn._writer.transport.abort()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for conn in self.connections:
            if conn._read_task is not None:
                conn._read_task.cancel()
                await asyncio.gather(conn._read_task, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    @property
    def url(self) -> str:
        return f"{'wss' if self.ssl else 'ws'}://127.0.0.1:{self.port}"

    # ---- records --------------------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        """Everything every client sent, in order of connections."""
        return [r for conn in self.connections for r in conn.received]

    def of_op(self, op: int) -> list[Received]:
        return [r for r in self.received if r.op == op]

    @property
    def heartbeats(self) -> list[Received]:
        return self.of_op(1)

    @property
    def identifies(self) -> list[Received]:
        return self.of_op(2)

    @property
    def resumes(self) -> list[Received]:
        return self.of_op(6)

    @property
    def closes(self) -> list[ClientClose]:
        """How each ended connection ended, in order of connections."""
        return [c.client_close for c in self.connections if c.client_close is not None]

    def _changed(self) -> None:
        if self._change is not None:
            self._change.set()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """``predicate()`` once it is truthy, rechecked on every record (and every 50 ms
        for conditions outside the server). TimeoutError after ``timeout`` seconds.
        """
        assert self._change is not None
        async with asyncio.timeout(timeout):
            while True:
                value = predicate()
                if value:
                    return value
                self._change.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._change.wait()

    # ---- the well-behaved server ----------------------------------------------------------

    def new_session(self) -> HostileSession:
        session = HostileSession(secrets.token_hex(8))
        self.sessions[session.session_id] = session
        self.session = session
        return session

    async def emit(self, n: int, t: str = "MESSAGE_CREATE") -> None:
        """``n`` numbered dispatches (``d.n`` = 1, 2, ... over the server's life) in the
        latest session: sent now if it has a connection, else only logged (a resume
        replays them). Yields to the loop after each.
        """
        for _ in range(n):
            session = self.session
            assert session is not None, "no session yet: wait for READY first"
            self.emitted += 1
            i = self.emitted
            session.dispatch(t, {"n": i, "id": str(i), "channel_id": "1", "content": f"m{i}"})
            await asyncio.sleep(0)

    async def serve_normally(
        self,
        conn: HostileConnection,
        *,
        heartbeat_interval: Any = None,
        ack: bool = True,
        resume: bool = True,
        ready: dict[str, Any] | None = None,
    ) -> None:
        """Behave like Discord until the connection ends: HELLO, an ACK for every
        heartbeat (unless ``ack`` is False), IDENTIFY -> READY of a new session (``ready``
        overrides fields of its ``d``), RESUME of a known session -> its missed dispatches
        in order then RESUMED (unless ``resume`` is False: then RESUME is ignored), an
        unknown one -> op 9 false.
        """
        interval = self.heartbeat_interval if heartbeat_interval is None else heartbeat_interval
        conn.send_hello(interval)
        while True:
            item = await conn.recv(timeout=3600)
            if isinstance(item, ClientClose):
                return
            if item.op == 1 and ack and conn.ack_heartbeats:
                conn.send_op(11)
            elif item.op == 2:
                session = self.new_session()
                self._attach(conn, session)
                d = {
                    "v": 10,
                    "session_id": session.session_id,
                    "resume_gateway_url": self.resume_url or self.url,
                    "user": {"id": "1", "username": "hostile", "bot": True},
                    "guilds": [],
                    "shard": (item.d or {}).get("shard", [0, 1]),
                    "application": {"id": "1", "flags": 0},
                }
                d.update(ready or {})
                session.dispatch("READY", d)
            elif item.op == 6 and resume:
                d = item.d if isinstance(item.d, dict) else {}
                found = self.sessions.get(str(d.get("session_id")))
                if found is None:
                    conn.send_op(9, False)
                    continue
                seq = d.get("seq")
                seq = seq if isinstance(seq, int) else 0
                self._attach(conn, found)
                for s, payload in found.log:
                    if s > seq:
                        conn.send_json(payload)
                conn.send_json({"op": 0, "t": "RESUMED", "s": None, "d": {"_trace": ["hostile"]}})

    def _attach(self, conn: HostileConnection, session: HostileSession) -> None:
        old = session.connection
        if old is not None and old is not conn:
            old.session = None
        session.connection = conn
        conn.session = session

    # ---- connections ----------------------------------------------------------------------

    def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = HostileConnection(self, len(self.connections), reader, writer)
        self.connections.append(conn)
        self._changed()
        task = asyncio.get_running_loop().create_task(self._run(conn))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _run(self, conn: HostileConnection) -> None:
        try:
            if not await self._read_request(conn):
                conn._writer.transport.abort()
                conn._ended()
                return
            number = conn.number
            script = self.scripts[number] if number < len(self.scripts) else self.default
            await (script or self.serve_normally)(conn)
            if conn.accepted:
                await asyncio.shield(conn._closed)  # the script is done: wait for the client
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.warning("hostile server: connection %d: script failed: %r", conn.number, exc)
            self.errors.append(exc)
            conn.drop()
        finally:
            if not conn.accepted:
                conn._writer.transport.abort()
                conn._ended()

    async def _read_request(self, conn: HostileConnection) -> bool:
        try:
            head = await conn._reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return False
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        conn.path = parts[1] if len(parts) > 1 else ""
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                conn.headers[name.strip().lower()] = value.strip()
        if self.compression is True:
            asked = parse_qs(urlsplit(conn.path).query).get("compress", [None])[0]
            conn.compression = asked if asked in ("zlib-stream", "zstd-stream") else None
        else:
            conn.compression = self.compression or None
        return True

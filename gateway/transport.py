"""The websocket connection behind a shard: an ``asyncio.Protocol`` with our own reader.

The opening handshake (HTTP upgrade, key check) and outgoing frames (masked) come from
``websockets``' sans-I/O ``ClientProtocol``. Incoming bytes go through the selected
:class:`~gateway._speedups.FrameReader` (Cython or pure), which appends whole messages
(fragments joined, still compressed) straight to a queue; the shard takes them a batch at a
time without a task or a future per message. Ping gets pong, a close frame gets its echo,
and a TCP drop is a close without a frame (code None, which the shard treats as 1006). A
framing violation is queued as a :class:`FrameError` in the message's place. A close frame
that breaks the RFC (1-byte payload, a code not allowed on the wire, a reason that is not
UTF-8) is treated as a drop with the protocol error as its cause (:func:`parse_close`): the
shard only ever sees a valid close code or None, and a reason that fits a close frame.

TLS (``wss://``) is ours too: an ``ssl.SSLObject`` over two ``MemoryBIO`` inside this
protocol, as asyncio's ``sslproto.py`` does, without its 256 KiB read buffer per
connection: ciphertext goes into the BIO a record's worth at a time and plaintext comes
out through one buffer per thread, so an idle ``wss://`` connection holds little beyond
OpenSSL's own state. The loop only ever sees plain TCP, so any loop works (asyncio's,
uvloop).

With ``read_interval`` (``Config.read_interval``) the socket is read in batches by the
loop's :class:`~gateway.poller.ReadPoller` once the websocket is open, instead of by the
transport as data arrives; the transport still writes (see :mod:`gateway.poller`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl as ssl_module
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import websockets
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import WebSocketURI, parse_uri

from . import backends
from ._speedups import CompressionError, FrameError, FrameReader
from .autoread import AUTO, AutoReading, ReadInterval, auto_reading, check_read_interval
from .config import USER_AGENT
from .poller import ReadPoller, poller_for

__all__ = [
    "Connection",
    "ConnectionGone",
    "CompressionError",
    "FrameError",
    "QuietLogger",
    "parse_close",
]

#: The longest HTTP response head accepted during the handshake.
MAX_HEAD = 64 * 1024
#: What asyncio's selector transport asks of each recv(). Its default, 256 KiB, is above
#: glibc's mmap threshold (128 KiB): every read was an mmap, an mremap (shrink to the bytes
#: received) and a munmap, three syscalls per event when events arrive one at a time
#: (measured with strace -c on 200 quiet shards). Just under the threshold the buffer comes
#: from the heap. uvloop reads into a buffer of its own and has no such attribute.
READ_SIZE = 128 * 1024 - 4096
#: The most reads :meth:`Connection.connection_lost` makes of what a polled socket still
#: holds (64 x ~124 KiB: more than Linux's largest default receive buffer, 6 MiB).
REST_READS = 64
#: Seconds to wait for the server's side of a closing handshake.
CLOSE_TIMEOUT = 5.0
#: Ciphertext written into a connection's incoming BIO at a time. A MemoryBIO keeps the
#: largest size it ever held, so feeding a 256 KiB socket read whole would pin 256 KiB per
#: connection; a slice about one TLS record long (16 KiB + overhead) bounds it near 33 KiB.
TLS_FEED = 16 * 1024
#: Size of the plaintext buffer (one per thread, shared by its connections).
TLS_READ = 64 * 1024
#: The most bytes a connection may have waiting to be sent (the transport's write buffer,
#: TLS records included). A peer that stops reading fills it; past it the connection is
#: failed (the shard reconnects) rather than the buffer growing. Our own traffic is small
#: (heartbeats, rate-limited commands, pongs), so 1 MiB is never reached by a live peer.
MAX_OUTBOUND = 1024 * 1024
#: Seconds the transport may keep writing paused (its buffer over the loop's high-water
#: mark, 64 KiB by default) before the peer is declared dead and the connection failed.
DRAIN_TIMEOUT = 10.0

log = logging.getLogger(__name__)
_local = threading.local()


def _tls_buffer() -> memoryview:
    """This thread's plaintext buffer. Per thread, not per module: ``SSLObject.read``
    releases the GIL, so event loops in two threads would otherwise share one buffer.
    """
    try:
        buffer: memoryview = _local.buffer
    except AttributeError:
        buffer = _local.buffer = memoryview(bytearray(TLS_READ))
    return buffer


class QuietLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets' logger without its DEBUG frame dumps, which would show IDENTIFY's token."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return msg, kwargs


_LOGGER = QuietLogger(logging.getLogger("gateway.transport.websockets"))


def _wire_code(code: int) -> bool:
    """Whether a peer may send close ``code`` (RFC 6455 7.4.1-7.4.2, IANA's registry):
    1004-1006 and 1015 are reserved for local use, below 1000 and 1016-2999 are unassigned.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def parse_close(payload: bytes) -> tuple[int | None, str, FrameError | None]:
    """``(code, reason, problem)`` of a received close frame's payload; never raises.

    An empty payload is code 1005 (RFC 6455 7.1.5). A payload that breaks RFC 6455 5.5.1 /
    7.4 (one byte, a code not allowed on the wire, a reason that is not UTF-8) is a protocol
    error: code None (no valid close frame, as a drop), reason ``""`` and the
    :class:`FrameError` (1002, or 1007 for the reason) we close with. A valid reason is at
    most 123 bytes (a control frame's payload is at most 125), so it always fits a
    :class:`~gateway.close.CloseFrame`.
    """
    if not payload:
        return 1005, "", None
    if len(payload) == 1:
        return None, "", FrameError("close frame with a 1-byte payload", 1002)
    code = int.from_bytes(payload[:2], "big")
    if not _wire_code(code):
        return None, "", FrameError(f"close code {code} is not allowed on the wire", 1002)
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        return None, "", FrameError("close reason is not valid UTF-8", 1007)
    if len(payload) > 125:  # the frame reader refuses longer control frames; say so here too
        return None, "", FrameError("close frame payload over 125 bytes", 1002)
    return code, reason, None


class ConnectionGone(Exception):
    """The websocket is closed; ``code`` is the close code received (None: no frame).

    When the connection failed (a TLS error, or an exception in one of its callbacks) the
    failure is the ``__cause__``.
    """

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"connection closed ({code if code is not None else 'no close frame'})")
        self.code = code
        self.reason = reason


class Connection(asyncio.Protocol):
    """One websocket connection to the gateway (client side), over TCP or TLS."""

    def __init__(
        self,
        uri: WebSocketURI,
        max_size: int | None,
        on_data: Callable[[], None],
        ssl: ssl_module.SSLContext | None = None,
        read_interval: ReadInterval = 0.0,
        max_outbound: int = MAX_OUTBOUND,
        drain_timeout: float = DRAIN_TIMEOUT,
    ) -> None:
        self._client = ClientProtocol(uri, max_size=None, logger=_LOGGER)
        #: Whole messages received and not yet taken, in order (an error in its message's
        #: place). Take from the left. A plain attribute: the shard reads it per event.
        self.messages: deque[bytes | FrameError | CompressionError] = deque()
        #: Whether a close frame arrived or TCP is gone (messages may still be waiting).
        self.closed = False
        self._reader = FrameReader(max_size or 0, None, self.messages)
        self._on_data = on_data
        self._transport: asyncio.Transport | None = None
        self._head = bytearray()
        self._loop = asyncio.get_running_loop()
        self._handshake: asyncio.Future[None] = self._loop.create_future()
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._open = False
        self._paused = False
        self._close_sent = False
        self._close_code: int | None = None
        self._close_reason = ""
        self._close_frame = False  # a close frame arrived (valid or not)
        self._error: BaseException | None = None  # why the connection failed, if it did
        # TLS: the context until connection_made, then the SSLObject and its two BIOs.
        self._ssl_context = ssl
        self._host = uri.host
        self._port = uri.port
        self._tls: ssl_module.SSLObject | None = None
        self._tls_in: ssl_module.MemoryBIO | None = None
        self._tls_out: ssl_module.MemoryBIO | None = None
        self._tls_done = False  # the TLS handshake finished
        self._tls_closing = False  # our close_notify is out
        # Batched reading (read_interval): once the websocket is open, the socket's
        # descriptor (-1 before, and once closing) and the poller reading it now (None
        # while reading is paused).
        # "auto": the loop's AutoReading sets the interval (0 until it batches).
        self._auto: AutoReading | None = None
        self._wants_auto = read_interval == AUTO
        self._read_interval = 0.0 if read_interval == AUTO else float(read_interval)
        self._polled = False  # the poller reads this socket, not the transport
        self._fd = -1
        self._poller: ReadPoller | None = None
        self._read_once = self._poll_read  # one bound method: the poller's key for us
        # Write backpressure: the transport paused our writing (its buffer is over the
        # high-water mark); pongs are dropped meanwhile (RFC 6455 5.5.3 lets an endpoint
        # answer only the latest ping), and a pause longer than drain_timeout, or a buffer
        # past max_outbound, fails the connection.
        self._max_outbound = max_outbound
        self._drain_timeout = drain_timeout
        self._write_paused = False
        self._drain_timer: asyncio.TimerHandle | None = None
        #: Pongs not sent because writing was paused (a ping flood from a peer not reading).
        self.pongs_dropped = 0
        #: Messages received so far (what ``"auto"`` reading counts).
        self.received = 0

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        ssl: ssl_module.SSLContext | None = None,
        timeout: float,
        max_size: int | None = None,
        on_data: Callable[[], None] = lambda: None,
        read_interval: ReadInterval = 0.0,
        max_outbound: int = MAX_OUTBOUND,
        drain_timeout: float = DRAIN_TIMEOUT,
    ) -> Connection:
        """Connect and upgrade; raise OSError/TimeoutError/InvalidHandshake on failure.

        ``wss://`` uses ``ssl``, or the process-wide :func:`gateway.backends.default_ssl_context`
        when it is None; certificates and the hostname are always verified by the context.
        A failed verification raises :class:`ssl.SSLCertVerificationError` (an ``OSError``)
        naming the cause. ``on_data`` is called whenever messages arrive or the connection
        ends. Messages are as received (still compressed, with transport compression): the
        shard inflates them a batch at a time (see ``ShardProtocol.drain``).
        ``read_interval`` > 0: once open, read the socket in batches every that many
        seconds (see :mod:`gateway.poller`); 0 reads as data arrives; ``"auto"`` lets the
        loop's :class:`~gateway.autoread.AutoReading` switch between the two.
        ``max_outbound`` and ``drain_timeout`` bound what a peer that stops reading can make
        us hold (see ``MAX_OUTBOUND``, ``DRAIN_TIMEOUT``).
        """
        if max_outbound <= 0 or not drain_timeout > 0:
            raise ValueError("max_outbound and drain_timeout must be positive")
        check_read_interval(read_interval)
        uri = parse_uri(url)
        context = None
        if uri.secure:
            context = ssl if ssl is not None else backends.default_ssl_context()
        loop = asyncio.get_running_loop()

        async def connect() -> Connection:
            # Plain TCP for the loop: TLS runs inside the protocol (see the module docstring).
            transport, conn = await loop.create_connection(
                lambda: cls(
                    uri, max_size, on_data, context, read_interval, max_outbound, drain_timeout
                ),
                uri.host,
                uri.port,
            )
            try:
                await conn._handshake
            except BaseException:
                transport.abort()
                raise
            return conn

        return await asyncio.wait_for(connect(), timeout)

    # ---- asyncio.Protocol -----------------------------------------------------------------
    # Each callback keeps its exceptions: the loop would only log them (and, for
    # connection_made, leave the connection open), so open() would wait out its timeout.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's transports do not subclass asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)
        if isinstance(getattr(transport, "max_size", None), int):
            transport.max_size = READ_SIZE  # type: ignore[attr-defined]
        try:
            if self._ssl_context is not None:
                self._tls_in, self._tls_out = ssl_module.MemoryBIO(), ssl_module.MemoryBIO()
                self._tls = self._ssl_context.wrap_bio(
                    self._tls_in, self._tls_out, server_side=False, server_hostname=self._host
                )
                self._ssl_context = None  # the SSLObject holds it now
                self._tls_handshake()
            else:
                self._send_request()
        except Exception as exc:
            self._failed(exc)

    def data_received(self, data: bytes) -> None:
        try:
            if self._tls is not None:
                self._tls_received(data)
            elif self._open:
                self._frames(data)
            else:
                self._handshake_data(data)
        except Exception as exc:
            self._failed(exc)

    def pause_writing(self) -> None:
        """The transport's buffer passed its high-water mark: the peer reads slower than we
        write. Pongs wait for :meth:`resume_writing` (dropped meanwhile); a peer that does
        not drain within ``drain_timeout`` is dead.
        """
        self._write_paused = True
        if self._drain_timer is None:
            self._drain_timer = self._loop.call_later(self._drain_timeout, self._not_draining)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None

    def _not_draining(self) -> None:
        self._drain_timer = None
        if self._write_paused:
            self._failed(
                TimeoutError(f"the peer has not read our data for {self._drain_timeout} s")
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self.resume_writing()  # cancels the drain timer
        if self._auto is not None:
            self._auto.leave(self)
            self._auto = None
        if self._poller is not None:
            self._read_rest()
        self._stop_polling()
        if not self._handshake.done():
            message = "TLS handshake" if self._tls is not None and not self._tls_done else ""
            self._handshake.set_exception(
                exc or ConnectionError(f"connection closed during {message or 'handshake'}")
            )
        if self._error is None and exc is not None:
            self._error = exc
        if not self._lost.done():
            self._lost.set_result(None)
        self.closed = True
        try:
            self._on_data()
        except Exception as error:  # the loop would only log it, without our context
            self._failed(error)

    def _failed(self, exc: BaseException) -> None:
        """The connection cannot go on: fail the handshake with ``exc`` (open() raises it),
        or once open, keep it as the ``__cause__`` of :meth:`ended`'s ConnectionGone.
        """
        if self._error is None:
            self._error = exc
        if not self._handshake.done():
            self._handshake.set_exception(exc)
        elif not isinstance(exc, (ssl_module.SSLError, OSError)):
            log.error("connection to %s failed", self._host, exc_info=exc)  # a bug, not I/O
        else:
            log.warning("connection to %s failed: %s", self._host, exc)
        self.abort()
        if not self._lost.done():  # connection_lost tells on_data (again) otherwise
            with contextlib.suppress(Exception):  # it is what failed, maybe
                self._on_data()

    # ---- TLS --------------------------------------------------------------------------------

    def _tls_handshake(self) -> None:
        """One step of the TLS handshake; once done, start the websocket handshake."""
        assert self._tls is not None
        try:
            self._tls.do_handshake()
        except ssl_module.SSLWantReadError:
            self._tls_flush()  # ClientHello, or the next flight
            return
        except ssl_module.SSLError as exc:
            with contextlib.suppress(Exception):
                self._tls_flush()  # the alert, so the server knows why
            exc.add_note(f"TLS handshake with {self._host}:{self._port}")
            raise
        self._tls_done = True
        self._tls_flush()
        self._send_request()

    def _tls_received(self, data: bytes) -> None:
        incoming = self._tls_in
        assert incoming is not None
        if len(data) <= TLS_FEED:
            incoming.write(data)
            self._tls_step()
            return
        view = memoryview(data)
        for start in range(0, len(data), TLS_FEED):
            if self._transport is None or self._done_reading():
                return  # failed or closed by what came before
            incoming.write(view[start : start + TLS_FEED])
            self._tls_step()

    def _done_reading(self) -> bool:
        """Nothing more is to be read: the connection failed, the stream is broken, or a
        close frame came. (Not ``transport.is_closing()``: in ``connection_lost`` the
        transport is closing while what the kernel still holds is read.)
        """
        return self._error is not None or self._reader.error is not None or self._close_frame

    def _tls_step(self) -> None:
        if not self._tls_done:
            self._tls_handshake()
            if not self._tls_done:
                return
        self._tls_decrypt()

    def _tls_decrypt(self) -> None:
        """Read every whole record in the incoming BIO; hand the plaintext on in chunks of up
        to TLS_READ bytes (one call per chunk, not per record).
        """
        tls = self._tls
        assert tls is not None
        # With a buffer, read() returns the byte count (typeshed says bytes).
        read = cast(Callable[[int, memoryview], int], tls.read)
        buffer = _tls_buffer()
        size = len(buffer)
        filled = 0
        eof = False
        error: ssl_module.SSLError | None = None
        try:
            while True:
                n = read(size - filled, buffer[filled:])
                if not n:  # close_notify (read returns 0 rather than raising)
                    eof = True
                    break
                filled += n
                if filled == size:
                    self._plaintext(bytes(buffer))
                    filled = 0
        except ssl_module.SSLWantReadError:
            pass
        except ssl_module.SSLZeroReturnError:
            eof = True
        except ssl_module.SSLError as exc:
            # After our close_notify (sent with the close frame's echo) nothing is left to
            # read; otherwise the stream is broken, after the records that came before.
            error = None if self._tls_closing else exc
        if filled:
            self._plaintext(bytes(buffer[:filled]))
        if error is not None:
            raise error
        self._tls_flush()  # anything reading produced (a KeyUpdate answer)
        if eof:
            self._tls_shutdown()

    def _plaintext(self, data: bytes) -> None:
        if self._open:
            self._frames(data)
        else:
            self._handshake_data(data)

    def _tls_flush(self) -> None:
        """Write what the SSLObject produced (handshake records, encrypted frames)."""
        out = self._tls_out
        if out is not None and out.pending:
            data = out.read()
            if self._transport is not None and not self._transport.is_closing():
                self._transport.write(data)

    def _tls_shutdown(self) -> None:
        """End TLS politely (our close_notify), then TCP."""
        if self._tls is not None and self._tls_done and not self._tls_closing:
            self._tls_closing = True
            with contextlib.suppress(ssl_module.SSLError):
                self._tls.unwrap()  # wants a read when the server has not sent its own yet
            self._tls_flush()
        self._close_transport()

    # ---- handshake ------------------------------------------------------------------------

    def _send_request(self) -> None:
        request = self._client.connect()
        request.headers["User-Agent"] = USER_AGENT
        self._client.send_request(request)
        self._write_pending()

    def _handshake_data(self, data: bytes) -> None:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD:
                self._fail_handshake(websockets.InvalidHandshake("HTTP response head too long"))
            return
        head, rest = bytes(self._head[: end + 4]), bytes(self._head[end + 4 :])
        self._head = bytearray()
        status = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if status.split(" ")[1:2] != ["101"]:
            message = f"server rejected WebSocket connection: {status}"
            self._fail_handshake(websockets.InvalidHandshake(message))
            return
        self._client.receive_data(head)
        self._client.events_received()
        exc = self._client.handshake_exc
        if exc is None and self._client.state is not State.OPEN:
            exc = websockets.InvalidHandshake("incomplete handshake response")
        if exc is not None:
            self._fail_handshake(exc)
            return
        self._open = True
        if self._read_interval:
            self._start_polling()
        elif self._wants_auto:
            self._auto = auto_reading(self._loop)
            self._auto.join(self)  # may batch at once
        self._handshake.set_result(None)
        if rest:
            self._frames(rest)

    def _fail_handshake(self, exc: Exception) -> None:
        if not self._handshake.done():
            self._handshake.set_exception(exc)
        if self._transport is not None:
            self._transport.abort()

    # ---- receiving ------------------------------------------------------------------------

    def _frames(self, data: bytes) -> None:
        reader = self._reader
        messages = self.messages
        before = len(messages)
        for opcode, payload in reader.feed(data):  # the reader queues data messages itself
            if opcode == 9:
                if self._write_paused:
                    self.pongs_dropped += 1  # the peer is not reading: answer a later ping
                    continue
                self._client.send_pong(payload)
                self._write_pending()
            elif opcode == 8:
                self._close_received(payload)
        if reader.error is not None:
            messages.append(reader.error)
            self._stop_reading()  # nothing more can be read from this stream
        if len(messages) != before:
            self.received += len(messages) - before
            self._on_data()

    def _close_received(self, payload: bytes) -> None:
        code, reason, problem = parse_close(payload)
        self._close_code = code
        self._close_reason = reason
        self._close_frame = True
        self.closed = True
        if problem is not None and self._error is None:
            self._error = problem  # the cause of the ConnectionGone (code None: no valid frame)
        if not self._close_sent:  # echo it (or fail with our own code), then the server ends TCP
            self._close_sent = True
            echo = problem.close_code if problem is not None else code
            with contextlib.suppress(websockets.WebSocketException):
                self._client.send_close(None if echo == 1005 else echo)
            self._write_pending()
        if self._transport is not None:
            if self._tls is not None:
                self._tls_shutdown()
            else:
                self._close_transport()

    def limit_unacked(self, seconds: float) -> bool:
        """Let the kernel end the connection when data it sent stays unacknowledged for
        ``seconds`` (``TCP_USER_TIMEOUT``, Linux): a paused reader cannot see heartbeat ACKs,
        so on a dead network this bounds what would otherwise be TCP's own timeout (up to
        about 15 minutes of retransmissions). Whether the platform allows it.
        """
        option = getattr(socket, "TCP_USER_TIMEOUT", None)
        transport = self._transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if option is None or sock is None:
            return False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, option, max(1, int(seconds * 1000)))
        except OSError:
            return False
        return True

    def pause_reading(self) -> None:
        """Stop reading the socket (the shard holds enough for a consumer that is behind)."""
        if not self._paused and self._transport is not None:
            self._paused = True
            self._stop_reading()

    def resume_reading(self) -> None:
        """Read the socket again (see :meth:`pause_reading`)."""
        if self._paused and self._transport is not None:
            self._paused = False
            if self._reader.error is None:  # nothing more can be read after a framing error
                self._start_reading()

    @property
    def gone(self) -> ConnectionGone | None:
        """How the connection ended (a close frame arrived or TCP is gone), even while
        messages are still waiting in :attr:`messages`; None while it is open.
        """
        if self._lost.done() or self._close_frame:
            return self._gone()
        return None

    def _gone(self) -> ConnectionGone:
        gone = ConnectionGone(self._close_code, self._close_reason)
        gone.__cause__ = self._error
        return gone

    # ---- sending --------------------------------------------------------------------------

    def _write_pending(self) -> None:
        data = self._client.data_to_send()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        tls = self._tls
        if tls is None:
            for chunk in data:
                if chunk:
                    transport.write(chunk)
        else:
            try:
                for chunk in data:
                    if chunk:
                        tls.write(chunk)
            except ssl_module.SSLWantReadError:
                # Only TLS 1.2 renegotiation makes a write wait for a read; the default
                # context refuses renegotiation, a context of the user's may allow it.
                exc = ssl_module.SSLError("TLS renegotiation is not supported")
                self._failed(exc)
                return
            except ssl_module.SSLError as exc:
                self._failed(exc)
                return
            self._tls_flush()
        if self._write_paused and transport.get_write_buffer_size() > self._max_outbound:
            self._failed(
                ConnectionError(
                    f"over {self._max_outbound} bytes waiting to be sent: the peer is not reading"
                )
            )

    def send(self, text: str) -> None:
        """Send one text frame; raise :class:`ConnectionGone` if the connection is closing."""
        if self._close_sent or self._lost.done() or self._error is not None:
            raise self._gone()
        self._client.send_text(text.encode())
        self._write_pending()

    def close_now(self, code: int, reason: str = "") -> None:
        """Send a close frame and drop TCP at once, without waiting for the server's echo
        (a zombie or silent connection: waiting would only delay the reconnect).
        """
        if not self._close_sent and not self._lost.done():
            self._close_sent = True
            with contextlib.suppress(websockets.WebSocketException):
                self._client.send_close(code, reason)
            self._write_pending()
        self.abort()

    async def close(self, code: int, reason: str = "") -> None:
        """Close with ``code`` and wait (bounded) for the server to end the connection."""
        if not self._close_sent and not self._lost.done():
            self._close_sent = True
            with contextlib.suppress(websockets.WebSocketException):
                self._client.send_close(code, reason)
            self._write_pending()
            if self._transport is not None:
                if self._reader.error is not None:
                    self._close_transport()  # the stream is unreadable: do not wait for an echo
                else:
                    self._start_reading()  # to read the server's close frame
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), CLOSE_TIMEOUT)
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        self._stop_polling()
        if self._transport is not None:
            self._transport.abort()

    def _close_transport(self) -> None:
        """Close TCP once what is written is sent (the poller lets go of the socket first:
        it must not read a descriptor the transport is about to close).
        """
        self._stop_polling()
        if self._transport is not None:
            self._transport.close()

    # ---- batched reading (read_interval) ----------------------------------------------------

    def _start_polling(self) -> None:
        """Hand the socket's reading from the transport to the loop's poller."""
        transport = self._transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if transport is None or sock is None:
            return
        try:
            if poller_for(self._loop, self._read_interval) is None:
                return  # this platform reads as data arrives
        except OSError as exc:  # its selector needs a descriptor (EMFILE)
            log.warning("batched reading unavailable (%s): reading as data arrives", exc)
            return
        self._fd = sock.fileno()
        try:
            self._poll_on()  # even if paused: a loop that cannot watch the poller says so now
        except NotImplementedError:  # (no add_reader): the transport goes on reading
            self._fd = -1
            return
        except OSError as exc:  # no descriptor for a poller's selector (EMFILE): the same
            log.warning("batched reading unavailable (%s): reading as data arrives", exc)
            self._fd = -1
            return
        transport.pause_reading()
        self._polled = True
        if self._paused:
            self._poll_off()

    def _poll_on(self) -> None:
        if self._poller is None and self._fd >= 0:
            # Asked each time: a poller closes once it reads nothing (all paused).
            poller = poller_for(self._loop, self._read_interval)
            assert poller is not None  # it was at _start_polling, on the same platform
            poller.add(self._fd, self._read_once)
            self._poller = poller

    def _poll_off(self) -> None:
        poller = self._poller
        if poller is not None:
            self._poller = None
            poller.remove(self._fd, self._read_once)

    def _stop_polling(self) -> None:
        """The poller lets go of the socket for good (it is closing or gone)."""
        self._poll_off()
        self._fd = -1

    def batch(self, interval: float) -> None:
        """Read in batches every ``interval`` seconds, or as data arrives (0): the switch
        ``"auto"`` reading makes on an open connection. The kernel holds what arrives
        meanwhile, so nothing is lost; a paused connection switches for when it resumes.
        """
        if not self._open or self.closed or self._close_sent or self._lost.done():
            return  # closing: its reading is settled
        if self._done_reading() or self._transport is None or self._transport.is_closing():
            return  # failed or failing: the poller must not read a dead stream again
        if interval:
            if not self._polled:
                self._read_interval = interval
                self._start_polling()
            return
        if self._polled:
            self._unpoll()

    def _unpoll(self) -> None:
        """Back from the poller to the transport's own reading."""
        self._stop_polling()
        self._polled = False
        self._read_interval = 0.0
        transport = self._transport
        if transport is not None and not self._paused and self._reader.error is None:
            transport.resume_reading()

    def _stop_reading(self) -> None:
        if self._polled:
            self._poll_off()
        elif self._transport is not None:
            self._transport.pause_reading()

    def _start_reading(self) -> None:
        if self._polled:
            try:
                self._poll_on()
            except OSError as exc:  # the poller closed meanwhile and cannot be made again
                log.warning("batched reading unavailable (%s): reading as data arrives", exc)
                self._unpoll()
        elif self._transport is not None:
            self._transport.resume_reading()

    def _read_rest(self) -> None:
        """The transport saw the end first (a write met the server's reset) while the
        poller had not read yet: what the kernel still holds came before the end, as the
        transport would have read it as it arrived. Read it now (at most the socket's
        receive buffer, in ``REST_READS`` reads); a paused socket is left unread.
        """
        transport = self._transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None or sock.fileno() != self._fd:
            return  # the socket is closed already (its number may be another's now)
        for _ in range(REST_READS):
            try:
                data = os.read(self._fd, READ_SIZE)
            except OSError:  # drained (EAGAIN), or the reset itself
                return
            if not data:
                return
            self.data_received(data)
            if len(data) < READ_SIZE or self._done_reading() or self._poller is None:
                return  # drained, failed, or the shard paused reading meanwhile

    def _poll_read(self) -> bool:
        """The poller found the socket readable: read it once, as the transport would;
        whether more may be waiting (the read filled its buffer).
        """
        transport = self._transport
        if self._poller is None or transport is None:
            return False
        try:
            data = os.read(self._fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:  # a reset: the connection is gone, with its cause
            if self._error is None:
                self._error = exc
            self.abort()
            return False
        if not data:  # the server ended TCP
            self._close_transport()
            return False
        self.data_received(data)  # keeps its own errors (it fails the connection)
        return len(data) == READ_SIZE

"""The websocket connection behind a shard: an ``asyncio.Protocol`` with our own reader.

The opening handshake (HTTP upgrade, key check) and outgoing frames (masked) come from
``websockets``' sans-I/O ``ClientProtocol``. Incoming bytes go through the selected
:class:`~gateway._speedups.FrameReader` (Cython or pure), which appends whole messages
(fragments joined, still compressed) straight to a queue; the shard takes them a batch at a
time without a task or a future per message. Ping gets pong, a close frame gets its echo,
and a TCP drop is a close without a frame (code None, which the shard treats as 1006). A
framing violation is queued as a :class:`FrameError` in the message's place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import websockets
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import WebSocketURI, parse_uri

from ._speedups import CompressionError, FrameError, FrameReader
from .config import USER_AGENT

__all__ = ["Connection", "ConnectionGone", "CompressionError", "FrameError", "QuietLogger"]

#: The longest HTTP response head accepted during the handshake.
MAX_HEAD = 64 * 1024
#: Seconds to wait for the server's side of a closing handshake.
CLOSE_TIMEOUT = 5.0


class QuietLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets' logger without its DEBUG frame dumps, which would show IDENTIFY's token."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return msg, kwargs


_LOGGER = QuietLogger(logging.getLogger("gateway.transport.websockets"))


class ConnectionGone(Exception):
    """The websocket is closed; ``code`` is the close code received (None: no frame)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"connection closed ({code if code is not None else 'no close frame'})")
        self.code = code
        self.reason = reason


class Connection(asyncio.Protocol):
    """One websocket connection to the gateway (client side)."""

    def __init__(
        self, uri: WebSocketURI, max_size: int | None, on_data: Callable[[], None]
    ) -> None:
        self._client = ClientProtocol(uri, max_size=None, logger=_LOGGER)
        self._messages: deque[bytes | FrameError | CompressionError] = deque()
        self._reader = FrameReader(max_size or 0, None, self._messages)
        self._on_data = on_data
        self._transport: asyncio.Transport | None = None
        self._head = bytearray()
        self._handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._open = False
        self._paused = False
        self._close_sent = False
        self._close_code: int | None = None
        self._close_reason = ""

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        ssl: ssl_module.SSLContext | None,
        timeout: float,
        max_size: int | None = None,
        on_data: Callable[[], None] = lambda: None,
    ) -> Connection:
        """Connect and upgrade; raise OSError/TimeoutError/InvalidHandshake on failure.

        ``on_data`` is called whenever messages arrive or the connection ends. Messages
        are as received (still compressed, with transport compression): the shard
        inflates them a batch at a time (see ``ShardProtocol.drain``).
        """
        uri = parse_uri(url)
        loop = asyncio.get_running_loop()

        async def connect() -> Connection:
            transport, conn = await loop.create_connection(
                lambda: cls(uri, max_size, on_data),
                uri.host,
                uri.port,
                ssl=ssl if uri.secure else None,
                server_hostname=uri.host if uri.secure else None,
            )
            try:
                await conn._handshake
            except BaseException:
                transport.abort()
                raise
            return conn

        return await asyncio.wait_for(connect(), timeout)

    # ---- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports are not asyncio.Transport subclasses.
        self._transport = cast("asyncio.Transport", transport)
        request = self._client.connect()
        request.headers["User-Agent"] = USER_AGENT
        self._client.send_request(request)
        self._write_pending()

    def data_received(self, data: bytes) -> None:
        if self._open:
            self._frames(data)
        else:
            self._handshake_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._handshake.done():
            self._handshake.set_exception(
                exc or ConnectionError("connection closed during handshake")
            )
        if not self._lost.done():
            self._lost.set_result(None)
        self._on_data()

    # ---- handshake ------------------------------------------------------------------------

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
        messages = self._messages
        before = len(messages)
        for opcode, payload in reader.feed(data):  # the reader queues data messages itself
            if opcode == 9:
                self._client.send_pong(payload)
                self._write_pending()
            elif opcode == 8:
                self._close_received(payload)
        if reader.error is not None:
            messages.append(reader.error)
            if self._transport is not None:
                self._transport.pause_reading()  # nothing more can be read from this stream
        if len(messages) != before:
            self._on_data()

    def _close_received(self, payload: bytes) -> None:
        if len(payload) >= 2:
            self._close_code = int.from_bytes(payload[:2], "big")
            self._close_reason = payload[2:].decode(errors="replace")
        else:
            self._close_code = 1005  # a close frame without a status code (RFC 6455 7.1.5)
        if not self._close_sent:  # echo it, then the server ends TCP
            self._close_sent = True
            with contextlib.suppress(websockets.WebSocketException):
                self._client.send_close(self._close_code if len(payload) >= 2 else None)
            self._write_pending()
        if self._transport is not None:
            self._transport.close()

    @property
    def messages(self) -> deque[bytes | FrameError | CompressionError]:
        """Whole messages received and not yet taken, in order (an error in its message's
        place). Take from the left.
        """
        return self._messages

    def pause_reading(self) -> None:
        """Stop reading the socket (the shard holds enough for a consumer that is behind)."""
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Read the socket again (see :meth:`pause_reading`)."""
        if self._paused and self._transport is not None:
            self._paused = False
            if self._reader.error is None:  # nothing more can be read after a framing error
                self._transport.resume_reading()

    @property
    def gone(self) -> ConnectionGone | None:
        """How the connection ended (a close frame arrived or TCP is gone), even while
        messages are still waiting in :attr:`messages`; None while it is open.
        """
        if self._lost.done() or self._close_code is not None:
            return ConnectionGone(self._close_code, self._close_reason)
        return None

    # ---- sending --------------------------------------------------------------------------

    def _write_pending(self) -> None:
        data = self._client.data_to_send()
        if self._transport is not None and not self._transport.is_closing():
            for chunk in data:
                if chunk:
                    self._transport.write(chunk)

    def send(self, text: str) -> None:
        """Send one text frame; raise :class:`ConnectionGone` if the connection is closing."""
        if self._close_sent or self._lost.done():
            raise ConnectionGone(self._close_code, self._close_reason)
        self._client.send_text(text.encode())
        self._write_pending()

    async def close(self, code: int, reason: str = "") -> None:
        """Close with ``code`` and wait (bounded) for the server to end the connection."""
        if not self._close_sent and not self._lost.done():
            self._close_sent = True
            with contextlib.suppress(websockets.WebSocketException):
                self._client.send_close(code, reason)
            self._write_pending()
            if self._transport is not None:
                if self._reader.error is not None:
                    self._transport.close()  # the stream is unreadable: do not wait for an echo
                else:
                    self._transport.resume_reading()  # to read the server's close frame
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), CLOSE_TIMEOUT)
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        if self._transport is not None:
            self._transport.abort()

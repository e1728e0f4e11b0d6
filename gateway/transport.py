"""The websocket connection behind a shard: a small interface over ``websockets``.

``Connection.open(url, ssl, timeout)``, then ``recv()`` whole messages, ``send(text)``,
``close(code, reason)``. A closed connection raises :class:`ConnectionGone` carrying the
close code received (None for a TCP drop without a close frame, which the shard treats as
1006). The fast-path issue replaces the receive side without touching the shard.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from .config import USER_AGENT

__all__ = ["Connection", "ConnectionGone", "QuietLogger"]


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


class Connection:
    """One websocket connection to the gateway."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        ssl: ssl_module.SSLContext | None,
        timeout: float,
        max_size: int | None = None,
    ) -> Connection:
        """Connect (TLS for ``wss://``); raise OSError/TimeoutError/InvalidHandshake on failure."""
        ws = await connect(
            url,
            ssl=ssl if url.startswith("wss://") else None,
            compression=None,
            max_size=max_size,
            ping_interval=None,
            proxy=None,
            open_timeout=timeout,
            close_timeout=5,
            user_agent_header=USER_AGENT,
            logger=_LOGGER,
        )
        return cls(ws)

    async def recv(self) -> bytes | str:
        """The next whole message: bytes for binary frames and, undecoded, for text frames."""
        try:
            return await self._ws.recv(decode=False)
        except websockets.ConnectionClosed as exc:
            raise self._gone(exc) from None

    def _gone(self, exc: websockets.ConnectionClosed) -> ConnectionGone:
        rcvd = exc.rcvd
        if rcvd is None:
            return ConnectionGone(None)
        return ConnectionGone(rcvd.code, rcvd.reason)

    async def send(self, text: str) -> None:
        """Send one text frame."""
        try:
            await self._ws.send(text)
        except websockets.ConnectionClosed as exc:
            raise self._gone(exc) from None

    async def close(self, code: int, reason: str = "") -> None:
        """Close with ``code`` and wait (bounded) for the closing handshake."""
        try:
            await asyncio.wait_for(self._ws.close(code, reason), 6)
        except (TimeoutError, OSError, websockets.WebSocketException):
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        transport = self._ws.transport
        if transport is not None:
            transport.abort()

    @property
    def close_code(self) -> int | None:
        """The close code received, once closed."""
        rcvd = (
            self._ws.close_rcvd if hasattr(self._ws, "close_rcvd") else self._ws.protocol.close_rcvd
        )
        return rcvd.code if rcvd is not None else None

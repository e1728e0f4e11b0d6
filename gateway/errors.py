"""Typed errors of the shard."""

from __future__ import annotations

import enum

from .close import is_fatal

__all__ = ["ReceiveMessageError", "ReceiveMessageErrorKind", "GatewayError"]


class GatewayError(Exception):
    """Base class of this library's errors."""


class ReceiveMessageErrorKind(enum.Enum):
    """Why receiving failed."""

    #: The transport compression stream is corrupt (the shard reconnects and resumes).
    COMPRESSION = "compression"
    #: A payload is not valid JSON or not a gateway envelope (the shard reconnects).
    DESERIALIZING = "deserializing"
    #: The gateway closed with a fatal code (4004, 4010-4014): the shard has stopped.
    FATALLY_CLOSED = "fatally_closed"
    #: Connecting failed, or the driver met an unexpected error (the shard reconnects).
    RECONNECT = "reconnect"
    #: The shard was closed by the user.
    CLOSED = "closed"
    #: The identify queue failed (for example its Redis is unreachable): the shard logs
    #: it and retries with backoff, heartbeating meanwhile.
    IDENTIFY_QUEUE = "identify_queue"
    #: A Redis stream entry is malformed (a field missing, not a number, not UTF-8):
    #: :func:`gateway.redis.consume` yields this error for it, acknowledges it (it can
    #: never become valid) and goes on with the next entry.
    STREAM_ENTRY = "stream_entry"


class ReceiveMessageError(GatewayError):
    """Receiving the next message failed; ``kind`` says why, ``close_code`` if closed."""

    def __init__(
        self, kind: ReceiveMessageErrorKind, message: str, close_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.close_code = close_code

    def is_fatal(self) -> bool:
        """Whether the shard has stopped for good (no reconnect will be made)."""
        return self.kind is ReceiveMessageErrorKind.FATALLY_CLOSED or is_fatal(self.close_code)

    def __repr__(self) -> str:
        return (
            f"ReceiveMessageError({self.kind.value}, {str(self)!r}, close_code={self.close_code})"
        )

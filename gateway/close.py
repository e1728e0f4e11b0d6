"""Close codes and close frames (protocol.md section 5.3).

The policy is one table: which codes are fatal (never reconnect), which end the session
(reconnect and IDENTIFY), and which allow a resume (every other code, and no code at all).
"""

from __future__ import annotations

import enum
from typing import ClassVar

__all__ = ["CloseCode", "CloseFrame", "describe", "is_fatal", "invalidates_session"]


class CloseCode(enum.IntEnum):
    """Discord gateway close codes (4006 is unused for bots)."""

    UNKNOWN_ERROR = 4000
    UNKNOWN_OPCODE = 4001
    DECODE_ERROR = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004
    ALREADY_AUTHENTICATED = 4005
    INVALID_SEQUENCE = 4007
    RATE_LIMITED = 4008
    SESSION_TIMED_OUT = 4009
    INVALID_SHARD = 4010
    SHARDING_REQUIRED = 4011
    INVALID_API_VERSION = 4012
    INVALID_INTENTS = 4013
    DISALLOWED_INTENTS = 4014

    def is_fatal(self) -> bool:
        """Whether the shard must stop: reconnecting cannot succeed (4004, 4010-4014)."""
        return is_fatal(self.value)

    def can_reconnect(self) -> bool:
        """Whether the docs allow reconnecting after this code."""
        return not is_fatal(self.value)

    def invalidates_session(self) -> bool:
        """Whether the session is gone and the next connection must IDENTIFY (4007, 4009)."""
        return invalidates_session(self.value)


_FATAL = frozenset({4004, 4010, 4011, 4012, 4013, 4014})
_NEW_SESSION = frozenset({4007, 4009})


def describe(code: int | None) -> str:
    """``4004 (authentication failed)`` for a known code, the number otherwise."""
    if code is None:
        return "no close frame"
    try:
        return f"{code} ({CloseCode(code).name.lower().replace('_', ' ')})"
    except ValueError:
        return str(code)


def is_fatal(code: int | None) -> bool:
    """Whether close code ``code`` (``None``: no close frame) ends the shard for good."""
    return code in _FATAL


def invalidates_session(code: int | None) -> bool:
    """Whether close code ``code`` means the session cannot be resumed."""
    return code in _NEW_SESSION


class CloseFrame:
    """A websocket close frame: ``code`` and a ``reason`` of at most 123 UTF-8 bytes.

    ``CloseFrame.NORMAL`` (1000) ends the session for good; ``CloseFrame.RESUME`` (4000)
    closes the connection but keeps the session resumable.
    """

    __slots__ = ("code", "reason")

    NORMAL: ClassVar[CloseFrame]
    RESUME: ClassVar[CloseFrame]

    code: int
    reason: str

    def __init__(self, code: int, reason: str = "") -> None:
        if not (1000 <= code <= 1014 or 3000 <= code <= 4999):
            raise ValueError(f"invalid close code {code}")
        if len(reason.encode()) > 123:
            raise ValueError("close reason is longer than 123 bytes")
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "reason", reason)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("CloseFrame is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CloseFrame):
            return NotImplemented
        return (self.code, self.reason) == (other.code, other.reason)

    def __hash__(self) -> int:
        return hash((self.code, self.reason))

    def __repr__(self) -> str:
        return f"CloseFrame({self.code}, {self.reason!r})"

    @property
    def ends_session(self) -> bool:
        """1000 and 1001 invalidate the session on Discord's side."""
        return self.code in (1000, 1001)


CloseFrame.NORMAL = CloseFrame(1000, "closing")
CloseFrame.RESUME = CloseFrame(4000, "resuming")

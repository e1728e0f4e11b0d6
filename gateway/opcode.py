"""Gateway opcodes (Discord docs: Opcodes and Status Codes; protocol.md section 2.2)."""

from __future__ import annotations

import enum

__all__ = ["OpCode", "SEND_OPCODES", "RECEIVE_OPCODES"]


class OpCode(enum.IntEnum):
    """The ``op`` field of a gateway payload."""

    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11
    REQUEST_SOUNDBOARD_SOUNDS = 31
    REQUEST_CHANNEL_INFO = 43


#: Opcodes a client may send.
SEND_OPCODES = frozenset(
    {
        OpCode.HEARTBEAT,
        OpCode.IDENTIFY,
        OpCode.PRESENCE_UPDATE,
        OpCode.VOICE_STATE_UPDATE,
        OpCode.RESUME,
        OpCode.REQUEST_GUILD_MEMBERS,
        OpCode.REQUEST_SOUNDBOARD_SOUNDS,
        OpCode.REQUEST_CHANNEL_INFO,
    }
)

#: Opcodes the gateway sends.
RECEIVE_OPCODES = frozenset(
    {
        OpCode.DISPATCH,
        OpCode.HEARTBEAT,
        OpCode.RECONNECT,
        OpCode.INVALID_SESSION,
        OpCode.HELLO,
        OpCode.HEARTBEAT_ACK,
    }
)

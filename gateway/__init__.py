"""gateway: keep bots connected to Discord's real-time gateway.

The Python counterpart of twilight-gateway: a sans-I/O shard state machine
(:mod:`gateway.protocol`), an asyncio driver (:class:`Shard`), optional Cython speedups,
helpers for many shards, and a local gateway emulator (:mod:`gateway.testing`).
"""

from __future__ import annotations

__version__ = "0.1.0"

from .close import CloseCode, CloseFrame
from .commands import (
    RequestChannelInfo,
    RequestGuildMembers,
    RequestSoundboardSounds,
    UpdatePresence,
    UpdateVoiceState,
)
from .config import Config
from .errors import GatewayError, ReceiveMessageError, ReceiveMessageErrorKind
from .events import Event, EventType, EventTypeFlags
from .http import GatewayBot, HTTPError, SessionStartLimit, UnauthorizedError, get_gateway_bot
from .intents import Intents
from .latency import Latency
from .message import Close, Message, Text
from .opcode import OpCode
from .protocol import ShardProtocol
from .queue import InMemoryQueue, Queue
from .session import Session
from .shard import Shard
from .shard_id import ShardId
from .state import ShardState
from .stream import (
    ShardEventStream,
    ShardMessageStream,
    create_bucket,
    create_range,
    create_recommended,
)

__all__ = [
    "Close",
    "CloseCode",
    "CloseFrame",
    "Config",
    "Event",
    "EventType",
    "EventTypeFlags",
    "GatewayBot",
    "GatewayError",
    "HTTPError",
    "InMemoryQueue",
    "Intents",
    "Latency",
    "Message",
    "OpCode",
    "Queue",
    "ReceiveMessageError",
    "ReceiveMessageErrorKind",
    "RequestChannelInfo",
    "RequestGuildMembers",
    "RequestSoundboardSounds",
    "Session",
    "SessionStartLimit",
    "Shard",
    "ShardEventStream",
    "ShardId",
    "ShardMessageStream",
    "ShardProtocol",
    "ShardState",
    "Text",
    "UnauthorizedError",
    "UpdatePresence",
    "UpdateVoiceState",
    "create_bucket",
    "create_range",
    "create_recommended",
    "get_gateway_bot",
]

"""gateway: keep bots connected to Discord's real-time gateway.

The Python counterpart of twilight-gateway: a sans-I/O shard state machine
(:mod:`gateway.protocol`), an asyncio driver (:class:`Shard`), optional Cython speedups,
helpers for many shards, and a local gateway emulator (:mod:`gateway.testing`).
"""

from __future__ import annotations

from .close import CloseCode, CloseFrame
from .events import EventType, EventTypeFlags
from .intents import Intents
from .opcode import OpCode
from .shard_id import ShardId

__all__ = [
    "CloseCode",
    "CloseFrame",
    "EventType",
    "EventTypeFlags",
    "Intents",
    "OpCode",
    "ShardId",
]

__version__ = "0.1.0"

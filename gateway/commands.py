"""Commands a shard sends (protocol.md 2.3), validated before they are queued.

Each command is a frozen dataclass with ``OP`` and :meth:`Command.payload`; invalid values raise
``ValueError`` at construction, so a bad command never reaches the socket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from .opcode import OpCode

__all__ = [
    "Command",
    "UpdatePresence",
    "UpdateVoiceState",
    "RequestGuildMembers",
    "RequestSoundboardSounds",
    "RequestChannelInfo",
    "MAX_PAYLOAD_BYTES",
]

#: The gateway closes with 4002 on a larger payload.
MAX_PAYLOAD_BYTES = 4096

Status = Literal["online", "dnd", "idle", "invisible", "offline"]
_ACTIVITY_KEYS = {"name", "state", "type", "url"}


def _snowflake(value: int | str, what: str) -> str:
    text = str(value)
    if not text.isdigit() or int(text) >= 1 << 64:
        raise ValueError(f"{what} must be a snowflake, got {value!r}")
    return text


class Command:
    """Base of every command: ``OP`` and the ``d`` object."""

    OP: ClassVar[OpCode]

    def payload(self) -> dict[str, Any]:
        """The whole payload, ``{"op": OP, "d": ...}``."""
        return {"op": int(self.OP), "d": self.data()}

    def data(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class UpdatePresence(Command):
    """op 3: the bot's status and activities (at most 5 per 20 s on Discord's side)."""

    OP: ClassVar[OpCode] = OpCode.PRESENCE_UPDATE
    status: Status = "online"
    activities: Sequence[dict[str, Any]] = ()
    afk: bool = False
    since: int | None = None

    def __post_init__(self) -> None:
        if self.status not in ("online", "dnd", "idle", "invisible", "offline"):
            raise ValueError(f"unknown status {self.status!r}")
        for activity in self.activities:
            extra = set(activity) - _ACTIVITY_KEYS
            if extra:
                raise ValueError(f"bots may only set name, state, type, url; got {sorted(extra)}")
            if not 0 <= int(activity.get("type", 0)) <= 5:
                raise ValueError("activity type must be 0-5")

    def data(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "activities": [dict(a) for a in self.activities],
            "status": self.status,
            "afk": self.afk,
        }


@dataclass(frozen=True)
class UpdateVoiceState(Command):
    """op 4: join (``channel_id``), move, or leave (``channel_id=None``) a voice channel."""

    OP: ClassVar[OpCode] = OpCode.VOICE_STATE_UPDATE
    guild_id: int | str
    channel_id: int | str | None
    self_mute: bool = False
    self_deaf: bool = False

    def __post_init__(self) -> None:
        _snowflake(self.guild_id, "guild_id")
        if self.channel_id is not None:
            _snowflake(self.channel_id, "channel_id")

    def data(self) -> dict[str, Any]:
        return {
            "guild_id": str(self.guild_id),
            "channel_id": None if self.channel_id is None else str(self.channel_id),
            "self_mute": self.self_mute,
            "self_deaf": self.self_deaf,
        }


@dataclass(frozen=True)
class RequestGuildMembers(Command):
    """op 8: members of one guild, by ``query`` prefix or by ``user_ids`` (not both)."""

    OP: ClassVar[OpCode] = OpCode.REQUEST_GUILD_MEMBERS
    guild_id: int | str
    query: str | None = None
    limit: int = 0
    presences: bool = False
    user_ids: Sequence[int | str] | None = None
    nonce: str | None = None

    def __post_init__(self) -> None:
        _snowflake(self.guild_id, "guild_id")
        if (self.query is None) == (self.user_ids is None):
            raise ValueError("give exactly one of query or user_ids")
        if self.user_ids is not None:
            if not 1 <= len(self.user_ids) <= 100:
                raise ValueError("user_ids takes 1 to 100 ids")
            for uid in self.user_ids:
                _snowflake(uid, "user_ids")
        if self.limit < 0:
            raise ValueError("limit must be >= 0")
        if self.nonce is not None and len(self.nonce.encode()) > 32:
            raise ValueError("nonce is longer than 32 bytes")

    def data(self) -> dict[str, Any]:
        d: dict[str, Any] = {"guild_id": str(self.guild_id), "presences": self.presences}
        if self.query is not None:
            d.update(query=self.query, limit=self.limit)
        else:
            d.update(user_ids=[str(u) for u in self.user_ids or ()])
            if self.limit:
                d["limit"] = self.limit
        if self.nonce is not None:
            d["nonce"] = self.nonce
        return d


@dataclass(frozen=True)
class RequestSoundboardSounds(Command):
    """op 31: the soundboard sounds of some guilds."""

    OP: ClassVar[OpCode] = OpCode.REQUEST_SOUNDBOARD_SOUNDS
    guild_ids: Sequence[int | str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.guild_ids:
            raise ValueError("guild_ids must not be empty")
        for gid in self.guild_ids:
            _snowflake(gid, "guild_ids")

    def data(self) -> dict[str, Any]:
        return {"guild_ids": [str(g) for g in self.guild_ids]}


@dataclass(frozen=True)
class RequestChannelInfo(Command):
    """op 43: ephemeral channel fields (``status``, ``voice_start_time``) of one guild."""

    OP: ClassVar[OpCode] = OpCode.REQUEST_CHANNEL_INFO
    guild_id: int | str
    fields: Sequence[Literal["status", "voice_start_time"]] = ("status", "voice_start_time")

    def __post_init__(self) -> None:
        _snowflake(self.guild_id, "guild_id")
        bad = set(self.fields) - {"status", "voice_start_time"}
        if bad or not self.fields:
            raise ValueError(f"fields must be status and/or voice_start_time, got {bad or 'none'}")

    def data(self) -> dict[str, Any]:
        return {"guild_id": str(self.guild_id), "fields": list(self.fields)}

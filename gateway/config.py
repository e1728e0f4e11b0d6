"""Shard configuration: frozen, validated, and never showing the token."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import __version__
from .commands import UpdatePresence
from .events import EventTypeFlags
from .intents import Intents
from .session import Session, SessionStore

if TYPE_CHECKING:
    from ssl import SSLContext

    from .queue import Queue

__all__ = ["Config", "DEFAULT_GATEWAY_URL", "Compression", "USER_AGENT", "normalize_token"]

#: Discord's gateway (``create_recommended`` uses the URL ``/gateway/bot`` gives instead).
DEFAULT_GATEWAY_URL = "wss://gateway.discord.gg"
API_VERSION = 10
#: Sent on every connection and HTTP request, as Discord asks of bots.
USER_AGENT = f"DiscordBot (https://github.com/gateway, {__version__}) gateway-python"

#: Transport compression: ``"zlib-stream"``, ``"zstd-stream"`` or None.
Compression = str | None


def _default_os() -> str:
    if sys.platform.startswith("win"):
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    return "linux"


def _default_properties() -> Mapping[str, str]:
    return {"os": _default_os(), "browser": "gateway", "device": "gateway"}


def normalize_token(token: object) -> str:
    """``token`` without surrounding space or the ``Bot`` prefix; ValueError if empty."""
    text = token.strip() if isinstance(token, str) else ""
    if text == "Bot" or text.startswith("Bot "):
        text = text[3:].strip()
    if not text:
        raise ValueError("token must be a non-empty string")
    return text


@dataclass(frozen=True, repr=False)
class Config:
    """How a shard connects and identifies.

    ``token`` may carry the ``Bot`` prefix (it is removed). ``event_types`` limits which
    events are fully decoded and returned by ``next_event``; the rest still advance the
    sequence. ``compression`` is ``"zlib-stream"`` (default), ``"zstd-stream"`` or None.
    ``session`` and ``resume_url`` resume a session from a previous process.
    """

    token: str
    intents: Intents = Intents.GUILDS & 0
    event_types: EventTypeFlags = EventTypeFlags.ALL
    compression: Compression = "zlib-stream"
    gateway_url: str = DEFAULT_GATEWAY_URL
    identify_properties: Mapping[str, str] = field(default_factory=_default_properties)
    large_threshold: int = 50
    presence: UpdatePresence | None = None
    queue: Queue | None = None
    ratelimit_messages: bool = True
    session: Session | None = None
    resume_url: str | None = None
    ssl: SSLContext | None = None
    connect_timeout: float = 10.0
    max_message_size: int | None = None
    session_store: SessionStore | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", normalize_token(self.token))
        object.__setattr__(self, "intents", Intents(int(self.intents)))
        if not 50 <= self.large_threshold <= 250:
            raise ValueError(f"large_threshold must be 50-250, got {self.large_threshold}")
        if self.compression not in ("zlib-stream", "zstd-stream", None):
            raise ValueError(
                f"compression must be zlib-stream, zstd-stream or None, got {self.compression!r}"
            )
        if self.connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive")
        if not self.gateway_url.startswith(("ws://", "wss://")):
            raise ValueError(f"gateway_url must be a ws:// or wss:// URL, got {self.gateway_url!r}")

    def __repr__(self) -> str:
        return (
            f"Config(token=<redacted>, intents={int(self.intents)}, "
            f"compression={self.compression!r}, gateway_url={self.gateway_url!r})"
        )

    def identify_payload(self, shard: list[int]) -> dict[str, Any]:
        """The IDENTIFY payload for shard ``[number, total]``."""
        d: dict[str, Any] = {
            "token": self.token,
            "properties": dict(self.identify_properties),
            "intents": int(self.intents),
            "shard": shard,
            "large_threshold": self.large_threshold,
        }
        if self.presence is not None:
            d["presence"] = self.presence.data()
        return {"op": 2, "d": d}

    def query(self) -> str:
        """The query string every connection (identify and resume) uses."""
        q = f"?v={API_VERSION}&encoding=json"
        return q + f"&compress={self.compression}" if self.compression else q

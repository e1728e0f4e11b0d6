"""Shard configuration: frozen, validated, and never showing the token."""

from __future__ import annotations

import builtins
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from . import __version__
from .autoread import AUTO, ReadInterval, check_read_interval
from .commands import UpdatePresence
from .events import EventType, EventTypeFlags
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

    Limits and timing (all have defaults meant for production):

    - ``max_message_size``: the largest websocket message accepted (bytes; 64 MiB), also
      the most compressed bytes one zlib-stream payload may span before its end, and
      ``max_inflated_size``: the largest payload one message may inflate to (256 MiB; a
      decompression bomb). Exceeding either is a typed error and a reconnect. None: no limit.
    - ``read_high_water``: bytes of received payloads the shard holds for a consumer that
      is behind (4 MiB) before it stops reading the socket; it reads again once the
      consumer has taken them. Heartbeats go on meanwhile.
    - ``read_interval``: ``"auto"`` (default) reads the socket in batches where that pays
      and as data arrives where it does not: the shards of one event loop batch together
      while there are at least two and they receive at least 1,000 messages a second
      between them, the busiest one left out (3 ms batches: under 5 ms of added latency
      at p99; see :mod:`gateway.autoread`), and stop below 600. 0 always reads as data
      arrives. A few milliseconds (``0.005``) always read in batches: every shard of
      the event loop with the same interval is read in one go per interval, for at most
      that much added latency; for many quiet shards in one process this cuts the CPU per
      event by about a third (see :mod:`gateway.poller` and ``tools/bench_trickle.py``).
      At most 0.1. POSIX only (elsewhere: as data arrives).
    - ``hello_timeout``: seconds to wait for HELLO on a new connection (20) before
      reconnecting.
    - ``ready_timeout``: seconds to wait for READY or RESUMED after IDENTIFY or RESUME (30)
      before reconnecting; dispatches arriving meanwhile (a long replay) restart the wait.
    - ``backoff_base`` / ``backoff_max``: reconnect backoff after attempts that fail (no
      connection, no HELLO, closed before READY/RESUMED): full jitter in
      ``[0, base * 2**n]`` capped at ``backoff_max`` seconds. READY or RESUMED resets it.
    - ``min_reconnect_interval``: a reconnect the server asked for on a live session (op 7,
      op 9 true, a resumable close frame after READY/RESUMED) is not a failure and happens
      promptly, with a small jitter, but at least this many seconds after the previous
      attempt (1), so a storm of them cannot make the shard hammer the gateway
      (protocol.md 5.3).
    - ``backoff_reset_after``: a connection closed with 4008 within this many seconds (5) of
      READY/RESUMED counts as a failure (a 4008 loop backs off); any other end of a
      connection that reached READY/RESUMED reconnects promptly.
    - ``loop_watchdog``: warn (once per stall, with the loop thread's stack) when the event
      loop has not run for this many seconds (10); None turns the watchdog off.
    - ``session_store``: a :class:`~gateway.session.SessionStore` the shard loads its session from
      (when ``session`` is None) and saves it to every ``session_save_interval`` seconds
      and on ``close(CloseFrame.RESUME)``.

    Typed events (optional, needs msgspec: ``pip install 'gateway[msgspec]'``):

    - ``models``: what ``event.data`` is, per event type: a :class:`msgspec.Struct` (one of
      :mod:`gateway.models` or a bot's own, slimmer one: only the fields it declares are
      decoded) instead of a ``dict``. ``models=gateway.models.DEFAULT`` takes every shipped
      model. Keys are dispatch types (READY too; not RESUMED or UNKNOWN); event types missing
      from it keep the ``dict``, and ``next_message()`` stays raw. A payload that does not
      fit its model is a :class:`~gateway.ReceiveMessageError` (``DESERIALIZING``) and a
      resume, like bad JSON. Empty (the default): msgspec is never imported.
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
    max_message_size: int | None = 64 * 1024 * 1024
    max_inflated_size: int | None = 256 * 1024 * 1024
    read_high_water: int = 4 * 1024 * 1024
    read_interval: ReadInterval = AUTO
    hello_timeout: float = 20.0
    backoff_base: float = 1.0
    backoff_max: float = 128.0
    backoff_reset_after: float = 5.0
    ready_timeout: float = 30.0
    min_reconnect_interval: float = 1.0
    loop_watchdog: float | None = 10.0
    session_store: SessionStore | None = None
    session_save_interval: float = 5.0
    # builtins.type: a bare ``type`` is ambiguous in the docs (models have ``type`` fields).
    models: Mapping[EventType, builtins.type[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", normalize_token(self.token))
        object.__setattr__(self, "intents", Intents(int(self.intents)))
        if not 50 <= self.large_threshold <= 250:
            raise ValueError(f"large_threshold must be 50-250, got {self.large_threshold}")
        if self.compression not in ("zlib-stream", "zstd-stream", None):
            raise ValueError(
                f"compression must be zlib-stream, zstd-stream or None, got {self.compression!r}"
            )
        for name in (
            "connect_timeout", "hello_timeout", "ready_timeout", "read_high_water", "backoff_max",
        ):  # fmt: skip
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        check_read_interval(self.read_interval)
        if self.backoff_base < 0 or self.backoff_reset_after < 0 or self.min_reconnect_interval < 0:
            raise ValueError(
                "backoff_base, backoff_reset_after and min_reconnect_interval must be >= 0"
            )
        if self.loop_watchdog is not None and not self.loop_watchdog > 0:
            raise ValueError(f"loop_watchdog must be positive or None, got {self.loop_watchdog!r}")
        if not self.gateway_url.startswith(("ws://", "wss://")):
            raise ValueError(f"gateway_url must be a ws:// or wss:// URL, got {self.gateway_url!r}")
        object.__setattr__(self, "models", _check_models(self.models))

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


_NO_MODELS: Mapping[EventType, type[Any]] = MappingProxyType({})


def _check_models(models: object) -> Mapping[EventType, builtins.type[Any]]:
    """``Config.models`` validated and frozen; msgspec is imported only when it names a
    model (the library works without it).
    """
    if not isinstance(models, Mapping):
        raise TypeError(f"models must be a mapping, not {type(models).__name__}")
    if not models:
        return _NO_MODELS
    try:
        from .models import check_models
    except ImportError as exc:
        raise ImportError("Config.models needs msgspec: pip install 'gateway[msgspec]'") from exc
    return check_models(models)

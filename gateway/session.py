"""A gateway session: what is needed to resume it, possibly in another process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Session", "SavedSession", "SessionStore"]


@dataclass(frozen=True, slots=True)
class Session:
    """``session_id`` from READY and the last ``sequence`` received.

    Pass it back with ``Config(session=..., resume_url=...)`` to resume after a restart.
    """

    session_id: str
    sequence: int

    def __repr__(self) -> str:
        return f"Session(session_id={self.session_id!r}, sequence={self.sequence})"


@dataclass(frozen=True, slots=True)
class SavedSession:
    """What a :class:`SessionStore` keeps per shard: the session (its ``sequence`` is the
    last one *delivered* to the caller) and READY's ``resume_gateway_url``.
    """

    session: Session
    resume_url: str | None


@runtime_checkable
class SessionStore(Protocol):
    """Where shards keep their sessions, so that a restarted process resumes them.

    ``Config(session_store=...)``: a shard with no ``Config.session`` loads its session
    from the store before its first connection, saves it on a cadence and when closed with
    ``CloseFrame.RESUME``, and deletes it when the session ends. ``shard`` is the shard
    number. Implementations: :class:`gateway.redis.RedisSessionStore`, or your own.
    """

    async def load(self, shard: int) -> SavedSession | None:
        """The saved session of shard ``shard``, or None."""
        ...

    async def save(self, shard: int, saved: SavedSession) -> None:
        """Keep ``saved`` for shard ``shard`` (replacing what was there)."""
        ...

    async def delete(self, shard: int) -> None:
        """Forget shard ``shard``'s session (it ended: resuming it would fail)."""
        ...

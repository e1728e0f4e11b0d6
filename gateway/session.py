"""A gateway session: what is needed to resume it, possibly in another process."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Session"]


@dataclass(frozen=True, slots=True)
class Session:
    """``session_id`` from READY and the last ``sequence`` received.

    Pass it back with ``Config(session=..., resume_url=...)`` to resume after a restart.
    """

    session_id: str
    sequence: int

    def __repr__(self) -> str:
        return f"Session(session_id={self.session_id!r}, sequence={self.sequence})"

"""Raw messages from :meth:`gateway.Shard.next_message`: payload text, or a close."""

from __future__ import annotations

from dataclasses import dataclass

from .close import CloseFrame

__all__ = ["Message", "Text", "Close"]


@dataclass(frozen=True, slots=True)
class Text:
    """One whole gateway payload as JSON text (already decompressed)."""

    text: str


@dataclass(frozen=True, slots=True)
class Close:
    """The connection closed; ``frame`` is None when it dropped without a close frame."""

    frame: CloseFrame | None


Message = Text | Close

"""Errors shared by the pure and compiled speedup twins, so both raise the same types."""

from __future__ import annotations

__all__ = ["ScanError", "FrameError", "CompressionError"]


class ScanError(ValueError):
    """The payload's envelope (``op``, ``s``, ``t``) could not be read.

    ``args`` is ``(message, position)``, identical in both implementations.
    """


class FrameError(ValueError):
    """The server broke the websocket framing rules (RFC 6455 5.2).

    ``args`` is ``(message, close_code)``: 1002 protocol error, 1009 message too big.
    """

    @property
    def close_code(self) -> int:
        code: int = self.args[1]
        return code


class CompressionError(ValueError):
    """The compressed transport stream is corrupt."""

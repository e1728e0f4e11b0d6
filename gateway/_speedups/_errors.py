"""Errors shared by the pure and compiled speedup twins, so both raise the same types."""

from __future__ import annotations

__all__ = ["ScanError"]


class ScanError(ValueError):
    """The payload's envelope (``op``, ``s``, ``t``) could not be read.

    ``args`` is ``(message, position)``, identical in both implementations.
    """

"""JSON encoding and decoding over the backend chosen in :mod:`gateway.backends`.

``loads`` accepts bytes or str; ``dumps`` returns compact text (no spaces, non-ASCII kept
as is), byte for byte the same whichever backend is in use.
"""

from __future__ import annotations

from typing import Any

from . import backends

__all__ = ["loads", "dumps", "DecodeError", "fast_loads"]


class DecodeError(ValueError):
    """The text is not valid JSON (raised whatever the backend)."""


_loads = backends.json_loads
dumps = backends.json_dumps
#: The backend's own ``loads`` for the per-event path: bad input raises a ValueError
#: subclass of the backend (callers map ValueError), without the cost of re-wrapping it.
fast_loads = _loads


def loads(data: bytes | str) -> Any:
    """Decode JSON text; raise :class:`DecodeError` (a ValueError) if it is not valid."""
    try:
        return _loads(data)
    except ValueError as exc:  # orjson, ujson and json all raise ValueError subclasses
        raise DecodeError(str(exc)) from None

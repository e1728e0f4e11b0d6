"""Argument checks and conversions shared by the pure and compiled twins.

Both twins call these same functions (the compiled ones only off the hot path, when a
value is not already of the expected exact type), so they accept and reject the same
inputs with the same exception types and messages. What each entry point accepts:

- ``scan(data)``, ``ZlibStream.feed(frame)``, ``Dispatcher.event(payload)``: ``bytes``
  exactly (TypeError otherwise; these sit behind the frame reader, which only makes bytes).
- ``FrameReader.feed(data)``: any bytes-like object (the socket boundary: a buffered
  protocol may hand a memoryview); anything but ``bytes`` is copied first, so the caller
  may reuse its buffer and the reader never points into memory it does not own.
- sizes (``FrameReader(max_size)``, ``ZlibStream(keep_buffer, max_size, max_pending)``):
  an int >= 0 (``max_size`` and ``max_pending`` may also be None: no limit, like 0); any
  size, however large.
- ``Dispatcher.drain``: ``frames``, ``payloads``, ``ready`` are ``collections.deque``;
  ``limit`` is an int (any size; <= 0 takes nothing).
- ``Dispatcher(table)``: a mapping of ``str`` names, copied (see :func:`frozen_table`);
  ``Dispatcher(decoders=...)``: None or a mapping of ``str`` names to callables, copied.
- An inflater's ``feed`` returns bytes-like or None; bytes-like output is copied to bytes,
  anything else is a :class:`CompressionError` (reading stops as on corrupt data).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

from ._errors import CompressionError

__all__ = ["bytes_like", "decoders", "frozen_table", "inflated", "index", "not_bytes", "size"]


def not_bytes(name: str, value: object) -> TypeError:
    """The error for a value that should have been ``bytes`` (for ``raise``)."""
    return TypeError(f"{name} must be bytes, not {type(value).__name__}")


def bytes_like(name: str, value: object) -> bytes:
    """A copy of any bytes-like ``value`` as bytes; TypeError for anything else."""
    if isinstance(value, str):  # memoryview() rejects it too; say what was wrong
        raise TypeError(f"{name} must be a bytes-like object, not str")
    try:
        view = memoryview(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be a bytes-like object, not {type(value).__name__}") from None
    with view:
        return view.tobytes()


def index(name: str, value: object) -> int:
    """``value`` as an int (``operator.index``); TypeError naming the argument."""
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None


def size(name: str, value: object, none: bool = False) -> int:
    """A size argument: an int >= 0 (None is 0 when ``none``)."""
    if value is None and none:
        return 0
    n = index(name, value)
    if n < 0:
        raise ValueError(f"{name} must be >= 0, not {n}")
    return n


def inflated(out: object) -> bytes:
    """An inflater's non-bytes output as bytes; CompressionError when it is not bytes-like."""
    try:
        return bytes_like("inflater output", out)
    except TypeError as exc:
        raise CompressionError(f"the inflater returned {type(out).__name__}, not bytes") from exc


# Frozen copies by content, so the shards of one process that filter alike share one dict
# (a copy each would add ~4 KiB per idle shard). The dicts are never handed out mutable.
# Values are keyed by identity: the cached dict keeps them alive, so an id cannot be reused
# while its entry exists, and no user __eq__/__hash__ runs (1 and True stay apart).
_FROZEN: dict[tuple[tuple[str, int], ...], dict[str, Any]] = {}
_FROZEN_MAX = 64


def decoders(decoders: object) -> dict[str, Any]:
    """A private copy of a Dispatcher's typed decoders: ``str`` keys (as for the table),
    callable values.
    """
    if not isinstance(decoders, Mapping):
        raise TypeError(f"decoders must be a mapping, not {type(decoders).__name__}")
    copy = dict(decoders)
    for key, value in copy.items():
        if type(key) is not str:
            raise TypeError(f"decoders keys must be str, not {type(key).__name__}")
        if not callable(value):
            raise TypeError(f"decoders[{key!r}] must be callable")
    return copy


def frozen_table(table: object) -> dict[str, Any]:
    """A private copy of a dispatch-name table: later changes to ``table`` are not seen.

    The compiled twin caches lookups in it and reads it as a ``dict`` in C; copying makes
    both twins see the same table whatever mapping type the caller passes. Keys must be
    ``str`` exactly (a str subclass could run Python code inside a C dict lookup).
    """
    if not isinstance(table, Mapping):
        raise TypeError(f"table must be a mapping, not {type(table).__name__}")
    copy = dict(table)
    for key in copy:
        if type(key) is not str:
            raise TypeError(f"table keys must be str, not {type(key).__name__}")
    key = tuple((name, id(value)) for name, value in copy.items())
    shared = _FROZEN.get(key)
    if shared is None:
        if len(_FROZEN) >= _FROZEN_MAX:
            _FROZEN.clear()
        shared = _FROZEN[key] = copy
    return shared

"""JSON encoding and decoding over the backend chosen in :mod:`gateway.backends`.

``loads`` accepts bytes or str; ``dumps`` returns compact text (no spaces, non-ASCII kept
as is), byte for byte the same whichever backend is in use.

Decoding has one contract whatever the backend: a value, or :class:`DecodeError` (a
ValueError). Nothing else escapes for any input: not the stdlib's ``RecursionError`` on deep
nesting, not ``UnicodeDecodeError`` on invalid UTF-8, not an ``OverflowError``. The backends
also accept the same language, which is JSON (RFC 8259) and nothing more:

- ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON and are rejected (the stdlib and
  ujson accept them; a NaN heartbeat interval or sequence would then reach the shard).
- A lone surrogate escape (``"\\ud800"`` without its pair) is rejected (orjson does; the
  stdlib and ujson would hand out a ``str`` that cannot be encoded again, so it would fail
  later, far from here, e.g. when the event is published).
- Invalid UTF-8 is rejected (the stdlib's bytes path would accept encoded surrogates).
- Nesting deeper than the backend's limit is rejected (orjson 1024, ujson 1024, the stdlib
  the interpreter's recursion limit).
- Numbers are as the backend reads them: an integer too large for a 64-bit value decodes
  to an ``int`` with the stdlib and ujson (up to ``sys.get_int_max_str_digits()`` digits)
  and is rejected by orjson; ``1e400`` is ``inf`` with the stdlib and ujson and rejected by
  orjson. Callers bound the numbers they use (the protocol bounds every one it reads).

The checks cost nothing on orjson (it enforces all of the above itself) and a substring
search or two per payload on the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NoReturn

from . import backends

__all__ = ["loads", "dumps", "DecodeError", "fast_loads"]


class DecodeError(ValueError):
    """The text is not valid JSON (raised whatever the backend)."""


#: Everything a backend may raise on bad input (RecursionError: the stdlib's C scanner on
#: deep nesting; OverflowError: number conversions). Mapped to DecodeError.
_BAD_INPUT = (ValueError, RecursionError, OverflowError)


def _constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


_strict = json.JSONDecoder(parse_constant=_constant)


def _stdlib_loads(data: bytes | str) -> Any:
    """The stdlib decoder without NaN/Infinity, strict UTF-8 for bytes."""
    if isinstance(data, str):
        text = data
        if not text.isascii():
            text.encode("utf-8")  # a raw lone surrogate: UnicodeEncodeError, a ValueError
    else:
        text = bytes(data).decode("utf-8")
    value = _strict.decode(text)
    if "\\u" in text:
        _check_surrogates(value)
    return value


def _check_surrogates(value: Any) -> None:
    """DecodeError when a decoded string holds a lone surrogate (the rare path: only
    payloads with a ``\\u`` escape come here). Iterative: no depth limit of its own.
    """
    stack = [value]
    try:
        while stack:
            item = stack.pop()
            kind = type(item)
            if kind is str:
                item.encode("utf-8")
            elif kind is dict:
                for key, inner in item.items():
                    key.encode("utf-8")
                    stack.append(inner)
            elif kind is list:
                stack.extend(item)
    except UnicodeEncodeError:
        raise DecodeError("lone surrogate escape in a string") from None


def _ujson_loads(raw: Callable[[bytes | str], Any]) -> Callable[[bytes | str], Any]:
    def loads(data: bytes | str) -> Any:
        # ujson takes encoded (bytes) or raw (str) surrogates: 0xED leads every encoded
        # one, so only payloads with it (or with non-ASCII text) pay the strict check.
        if isinstance(data, str):
            if not data.isascii():
                data.encode("utf-8")  # UnicodeEncodeError (a ValueError) on a surrogate
            constant = "NaN" in data or "Infinity" in data
            escaped = "\\u" in data
        else:
            if b"\xed" in data:
                bytes(data).decode("utf-8")  # UnicodeDecodeError (a ValueError)
            constant = b"NaN" in data or b"Infinity" in data
            escaped = b"\\u" in data
        if constant:  # rare (maybe inside a string): the stdlib's strict path decides
            return _stdlib_loads(data)
        value = raw(data)
        if escaped:
            _check_surrogates(value)
        return value

    return loads


def _select(name: str, raw: Callable[[bytes | str], Any]) -> Callable[[bytes | str], Any]:
    """The backend's ``loads`` with the checks it lacks (see the module docstring)."""
    if name == "orjson":
        return raw
    if name == "ujson":
        return _ujson_loads(raw)
    return _stdlib_loads


def decoder(name: str) -> Callable[[bytes | str], Any]:
    """The ``loads`` of JSON backend ``name`` under this module's contract (the one in use
    is :func:`loads`; the tests check every installed backend through this).
    """
    inner = _select(name, backends._load_json(name)[0])

    def loads(data: bytes | str) -> Any:
        """Decode JSON text; raise :class:`DecodeError` (a ValueError) if it is not valid."""
        try:
            return inner(data)
        except DecodeError:
            raise
        except _BAD_INPUT as exc:
            raise DecodeError(f"{type(exc).__name__}: {exc}") from None

    return loads


#: Decode JSON text (bytes or str); raise :class:`DecodeError` (a ValueError) if it is not
#: valid, whatever the backend and whatever the input (see the module docstring).
loads = decoder(backends.JSON)
dumps = backends.json_dumps
#: The per-event path (the Dispatcher's ``loads``): the same function, so the same
#: contract; the wrapper costs one call (~40 ns) next to a decode of microseconds.
fast_loads = loads

"""Pure-Python envelope scanner: read ``op``, ``s`` and ``t`` without decoding ``d``.

Twin of ``_scan_c.pyx`` (same function, same results, same errors). The scan stops as soon
as the three keys are seen, so in Discord's key order (``t``, ``s``, ``op``, ``d``) the
event body is never touched. It is a peek, not a validator: a payload that is kept is
decoded in full afterwards, and that decode reports any damage behind the keys.
"""

from __future__ import annotations

import json
import re

from . import _args
from ._errors import ScanError

__all__ = ["scan", "ScanError"]

_WS = re.compile(rb"[ \t\n\r]*")
_KEY = re.compile(rb'"((?:[^"\\]|\\.)*)"[ \t\n\r]*:[ \t\n\r]*', re.DOTALL)
_STRING_REST = re.compile(rb'(?:[^"\\]|\\.)*"', re.DOTALL)
_INT = re.compile(rb"-?[0-9]+")
_SCALAR = re.compile(rb"[^,}\] \t\n\r]+")
_STRUCT = re.compile(rb'["{}\[\]]')
# Discord's own layout: t, s and op first, compact. One match instead of a walk; anything
# else (spaces, other orders, escapes, negative numbers) takes the general scan.
_DISCORD = re.compile(rb'\{"t":(?:"([A-Za-z0-9_]*)"|null),"s":(?:([0-9]+)|null),"op":([0-9]+)')


def scan(data: bytes) -> tuple[int | None, int | None, str | None]:
    """Return ``(op, s, t)`` of the gateway payload ``data`` (UTF-8 JSON bytes).

    Keys may come in any order and may be missing (``None``). Raises :class:`ScanError`
    when the text is not a JSON object, when ``op``/``s``/``t`` have the wrong type, or when
    an integer has more digits than ``int()`` converts (``sys.get_int_max_str_digits``).
    Integers are converted after the walk, ``op`` then ``s``, as the compiled twin does;
    ``s`` outside [0, 2**63) is a ScanError ("sequence out of range").

    A second ``op``, ``s`` or ``t`` among the keys read is a :class:`ScanError` ("duplicate
    key"): the JSON decoders keep the last of duplicate keys, the scan would keep the first,
    and an event would be sequenced as one thing and delivered as another. The scan stops
    once it has all three, so a duplicate after them is caught where the payload is
    decoded (``Dispatcher.event`` compares the decoded envelope with this one).
    """
    if type(data) is not bytes:
        raise _args.not_bytes("data", data)
    fast = _DISCORD.match(data)
    if fast is not None:
        t, s, o = fast.groups()
        try:
            op, seq = int(o), None if s is None else int(s)
        except ValueError:  # past the digit limit: the ScanError the compiled twin raises
            _int(o, fast.start(3))
            _int(s, fast.start(2))
            raise
        if seq is not None and seq >= MAX_SEQUENCE:
            raise ScanError("sequence out of range", fast.start(2))
        return op, seq, None if t is None else t.decode()
    op_span, seq_span, name = _walk(data)
    walked_op = None if op_span is None else _int(*op_span)
    if seq_span is None:
        return walked_op, None, name
    walked_seq = _int(*seq_span)
    if not 0 <= walked_seq < MAX_SEQUENCE:
        raise ScanError("sequence out of range", seq_span[1])
    return walked_op, walked_seq, name


#: ``s`` must be in [0, 2**63): a sequence beyond what any encoder writes back in RESUME
#: or a heartbeat (orjson: 64-bit) would wedge the shard, and Discord's never comes near.
MAX_SEQUENCE = 2**63


def _int(digits: bytes, pos: int) -> int:
    try:
        return int(digits)
    except ValueError:  # over the interpreter's digit limit (4300 by default)
        raise ScanError("integer too long", pos) from None


_Span = tuple[bytes, int] | None  # an integer's digits and where they start


def _walk(data: bytes) -> tuple[_Span, _Span, str | None]:
    n = len(data)
    pos = _WS.match(data, 0).end()  # type: ignore[union-attr]
    if pos >= n or data[pos] != 0x7B:  # "{"
        raise ScanError("payload is not a JSON object", pos)
    pos = _WS.match(data, pos + 1).end()  # type: ignore[union-attr]
    op: _Span = None
    seq: _Span = None
    name: str | None = None
    seen = 0
    if pos < n and data[pos] == 0x7D:  # "}"
        return op, seq, name
    while True:
        m = _KEY.match(data, pos)
        if m is None:
            raise ScanError("expected an object key", pos)
        key = m.group(1)
        pos = m.end()
        if key == b"op":
            if seen & 1:
                raise ScanError("duplicate key", m.start())
            op, pos = _int_or_null(data, pos)
            seen |= 1
        elif key == b"s":
            if seen & 2:
                raise ScanError("duplicate key", m.start())
            seq, pos = _int_or_null(data, pos)
            seen |= 2
        elif key == b"t":
            if seen & 4:
                raise ScanError("duplicate key", m.start())
            name, pos = _str_or_null(data, pos)
            seen |= 4
        else:
            pos = _skip_value(data, pos)
        if seen == 7:
            return op, seq, name
        pos = _WS.match(data, pos).end()  # type: ignore[union-attr]
        if pos >= n:
            raise ScanError("unterminated object", pos)
        c = data[pos]
        if c == 0x2C:  # ","
            pos = _WS.match(data, pos + 1).end()  # type: ignore[union-attr]
        elif c == 0x7D:
            return op, seq, name
        else:
            raise ScanError("expected ',' or '}'", pos)


def _int_or_null(data: bytes, pos: int) -> tuple[_Span, int]:
    if data.startswith(b"null", pos):
        return None, pos + 4
    m = _INT.match(data, pos)
    if m is None:
        raise ScanError("expected an integer or null", pos)
    return (m.group(), pos), m.end()


def _str_or_null(data: bytes, pos: int) -> tuple[str | None, int]:
    if data.startswith(b"null", pos):
        return None, pos + 4
    if pos >= len(data) or data[pos] != 0x22:
        raise ScanError("expected a string or null", pos)
    m = _STRING_REST.match(data, pos + 1)
    if m is None:
        raise ScanError("unterminated string", pos)
    raw = data[pos + 1 : m.end() - 1]
    if b"\\" in raw:
        try:
            return json.loads(data[pos : m.end()]), m.end()
        except ValueError:
            raise ScanError("invalid string escape", pos) from None
    try:
        return raw.decode(), m.end()
    except UnicodeDecodeError:
        raise ScanError("invalid UTF-8 in string", pos) from None


def _skip_value(data: bytes, pos: int) -> int:
    n = len(data)
    if pos >= n:
        raise ScanError("expected a value", pos)
    c = data[pos]
    if c == 0x22:
        m = _STRING_REST.match(data, pos + 1)
        if m is None:
            raise ScanError("unterminated string", pos)
        return m.end()
    if c == 0x7B or c == 0x5B:  # "{" or "["
        start = pos
        depth = 0
        while True:
            m = _STRUCT.search(data, pos)
            if m is None:
                raise ScanError("unterminated container", start)
            pos = m.start()
            c = data[pos]
            if c == 0x22:
                s = _STRING_REST.match(data, pos + 1)
                if s is None:
                    raise ScanError("unterminated string", pos)
                pos = s.end()
                continue
            depth += 1 if c in (0x7B, 0x5B) else -1
            pos += 1
            if depth == 0:
                return pos
    m = _SCALAR.match(data, pos)
    if m is None:
        raise ScanError("expected a value", pos)
    return m.end()

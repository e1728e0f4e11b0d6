# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled envelope scanner: twin of ``_scan_py.py`` (same results, same errors).

:func:`envelope` is the C core: it records where ``op``, ``s`` and ``t`` are without making
Python objects, so ``_dispatch_c`` can scan a payload and build only what it keeps.
"""

import json

from . import _args
from ._errors import ScanError

__all__ = ["scan", "ScanError"]


cdef inline Py_ssize_t _ws(const unsigned char* b, Py_ssize_t pos, Py_ssize_t n) noexcept:
    while pos < n and (b[pos] == 32 or b[pos] == 9 or b[pos] == 10 or b[pos] == 13):
        pos += 1
    return pos


cdef Py_ssize_t _string_end(const unsigned char* b, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t start) except -1:
    # pos is just after the opening quote; returns the index after the closing quote.
    while pos < n:
        if b[pos] == 92:  # backslash
            pos += 2
            continue
        if b[pos] == 34:
            return pos + 1
        pos += 1
    raise ScanError("unterminated string", start)


cdef inline bint _is_null(const unsigned char* b, Py_ssize_t pos, Py_ssize_t n) noexcept:
    return pos + 4 <= n and b[pos] == 110 and b[pos + 1] == 117 and b[pos + 2] == 108 and b[pos + 3] == 108


cdef int envelope(const unsigned char* b, Py_ssize_t n, Envelope* e) except -1:
    """Fill ``e`` with the spans of op, s and t; raise ScanError as :func:`scan` does."""
    cdef Py_ssize_t pos, kstart, klen, start
    cdef int seen = 0
    cdef unsigned char c
    cdef bint escaped
    e.op_start = e.s_start = e.t_start = -1
    e.op_end = e.s_end = e.t_end = -1
    e.t_escaped = False
    pos = _ws(b, 0, n)
    if pos >= n or b[pos] != 123:
        raise ScanError("payload is not a JSON object", pos)
    pos = _ws(b, pos + 1, n)
    if pos < n and b[pos] == 125:
        return 0
    while True:
        if pos >= n or b[pos] != 34:
            raise ScanError("expected an object key", pos)
        start = pos
        kstart = pos + 1
        escaped = False
        pos = kstart
        while pos < n and b[pos] != 34:
            if b[pos] == 92:
                escaped = True
                pos += 1
            pos += 1
        if pos >= n:
            raise ScanError("expected an object key", start)
        klen = pos - kstart
        pos = _ws(b, pos + 1, n)
        if pos >= n or b[pos] != 58:
            raise ScanError("expected an object key", start)
        pos = _ws(b, pos + 1, n)
        if not escaped and klen == 2 and b[kstart] == 111 and b[kstart + 1] == 112:
            if seen & 1:
                raise ScanError("duplicate key", start)
            pos = _int_or_null(b, pos, n, &e.op_start, &e.op_end)
            seen |= 1
        elif not escaped and klen == 1 and b[kstart] == 115:
            if seen & 2:
                raise ScanError("duplicate key", start)
            pos = _int_or_null(b, pos, n, &e.s_start, &e.s_end)
            seen |= 2
        elif not escaped and klen == 1 and b[kstart] == 116:
            if seen & 4:
                raise ScanError("duplicate key", start)
            pos = _str_or_null(b, pos, n, e)
            seen |= 4
        else:
            pos = _skip_value(b, pos, n)
        if seen == 7:
            return 0
        pos = _ws(b, pos, n)
        if pos >= n:
            raise ScanError("unterminated object", pos)
        c = b[pos]
        if c == 44:
            pos = _ws(b, pos + 1, n)
        elif c == 125:
            return 0
        else:
            raise ScanError("expected ',' or '}'", pos)


cdef object span_int(const unsigned char* b, Py_ssize_t start, Py_ssize_t end):
    """The integer of an op/s span (None for a missing or null key); ScanError when it has
    more digits than int() converts, as in the pure twin.
    """
    cdef long long small = 0
    cdef Py_ssize_t i = start
    cdef bint neg
    if start < 0:
        return None
    if end - start > 18:
        try:
            return int((<const char*> b)[start:end])
        except ValueError:  # over the interpreter's digit limit (4300 by default)
            raise ScanError("integer too long", start) from None
    neg = b[i] == 45
    if neg:
        i += 1
    while i < end:
        small = small * 10 + (b[i] - 48)
        i += 1
    return -small if neg else small


def scan(data):
    """Return ``(op, s, t)`` of the gateway payload ``data`` (UTF-8 JSON bytes)."""
    cdef bytes raw
    cdef const unsigned char* b
    cdef Envelope e
    if type(data) is not bytes:
        raise _args.not_bytes("data", data)
    raw = data
    b = <const unsigned char*> raw
    envelope(b, len(raw), &e)
    op = span_int(b, e.op_start, e.op_end)
    seq = span_seq(b, e.s_start, e.s_end)
    return op, seq, _name(raw, b, &e)


cdef object span_seq(const unsigned char* b, Py_ssize_t start, Py_ssize_t end):
    """:func:`span_int` for ``s``, which must lie in [0, 2**63) as in the pure twin (only a
    sign or 19+ digits can be outside): ScanError "sequence out of range".
    """
    seq = span_int(b, start, end)
    if start >= 0 and (b[start] == 45 or end - start > 18):
        if not 0 <= seq < 2**63:
            raise ScanError("sequence out of range", start)
    return seq


cdef object _name(bytes data, const unsigned char* b, Envelope* e):
    if e.t_start < 0:
        return None
    if e.t_escaped:
        return _name_of(data[e.t_start - 1:e.t_end + 1], True, e.t_start - 1)
    return (<const char*> b)[e.t_start:e.t_end].decode("utf-8")  # checked by envelope()


cdef object _name_of(bytes quoted, bint escaped, Py_ssize_t pos):
    """The str of a quoted JSON string; ScanError (at ``pos``) as the pure twin raises it."""
    if escaped:
        try:
            return json.loads(quoted)
        except ValueError:
            raise ScanError("invalid string escape", pos) from None
    try:
        return quoted[1:-1].decode("utf-8")
    except UnicodeDecodeError:
        raise ScanError("invalid UTF-8 in string", pos) from None


cdef Py_ssize_t _int_or_null(const unsigned char* b, Py_ssize_t pos, Py_ssize_t n,
                             Py_ssize_t* start, Py_ssize_t* end) except -1:
    cdef Py_ssize_t first = pos
    if _is_null(b, pos, n):
        start[0] = end[0] = -2
        return pos + 4
    if pos < n and b[pos] == 45:
        pos += 1
    if pos >= n or not (48 <= b[pos] <= 57):
        raise ScanError("expected an integer or null", first)
    while pos < n and 48 <= b[pos] <= 57:
        pos += 1
    start[0] = first
    end[0] = pos
    return pos


cdef Py_ssize_t _str_or_null(const unsigned char* b, Py_ssize_t pos, Py_ssize_t n, Envelope* e) except -1:
    cdef Py_ssize_t end, i
    cdef bint high
    if _is_null(b, pos, n):
        e.t_start = e.t_end = -2
        e.t_escaped = False
        return pos + 4
    if pos >= n or b[pos] != 34:
        raise ScanError("expected a string or null", pos)
    end = _string_end(b, pos + 1, n, pos)
    e.t_start = pos + 1
    e.t_end = end - 1
    e.t_escaped = False
    high = False
    for i in range(pos + 1, end - 1):
        if b[i] == 92:
            e.t_escaped = True
        elif b[i] >= 128:
            high = True
    if e.t_escaped or high:  # rare: check it here, so errors come in scan()'s order
        _name_of((<const char*> b)[pos:end], e.t_escaped, pos)
    return end


cdef Py_ssize_t _skip_value(const unsigned char* b, Py_ssize_t pos, Py_ssize_t n) except -1:
    cdef Py_ssize_t depth = 0, start = pos
    cdef unsigned char c
    if pos >= n:
        raise ScanError("expected a value", pos)
    c = b[pos]
    if c == 34:
        return _string_end(b, pos + 1, n, pos)
    if c == 123 or c == 91:
        while True:
            while pos < n and not (b[pos] == 34 or b[pos] == 123 or b[pos] == 125 or b[pos] == 91 or b[pos] == 93):
                pos += 1
            if pos >= n:
                raise ScanError("unterminated container", start)
            c = b[pos]
            if c == 34:
                pos = _string_end(b, pos + 1, n, pos)
                continue
            if c == 123 or c == 91:
                depth += 1
            else:
                depth -= 1
            pos += 1
            if depth == 0:
                return pos
    while pos < n and not (b[pos] == 44 or b[pos] == 125 or b[pos] == 93 or b[pos] == 32 or b[pos] == 9 or b[pos] == 10 or b[pos] == 13):
        pos += 1
    if pos == start:
        raise ScanError("expected a value", pos)
    return pos

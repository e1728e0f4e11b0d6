# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled envelope scanner: twin of ``_scan_py.py`` (same results, same errors)."""

import json

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


def scan(bytes data not None):
    """Return ``(op, s, t)`` of the gateway payload ``data`` (UTF-8 JSON bytes)."""
    cdef const unsigned char* b = <const unsigned char*> data
    cdef Py_ssize_t n = len(data)
    cdef Py_ssize_t pos, kstart, klen, start, depth
    cdef int seen = 0
    cdef unsigned char c
    cdef bint escaped
    op = None
    seq = None
    name = None
    pos = _ws(b, 0, n)
    if pos >= n or b[pos] != 123:
        raise ScanError("payload is not a JSON object", pos)
    pos = _ws(b, pos + 1, n)
    if pos < n and b[pos] == 125:
        return op, seq, name
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
            op, pos = _int_or_null(b, pos, n)
            seen |= 1
        elif not escaped and klen == 1 and b[kstart] == 115:
            seq, pos = _int_or_null(b, pos, n)
            seen |= 2
        elif not escaped and klen == 1 and b[kstart] == 116:
            name, pos = _str_or_null(data, b, pos, n)
            seen |= 4
        else:
            pos = _skip_value(b, pos, n)
        if seen == 7:
            return op, seq, name
        pos = _ws(b, pos, n)
        if pos >= n:
            raise ScanError("unterminated object", pos)
        c = b[pos]
        if c == 44:
            pos = _ws(b, pos + 1, n)
        elif c == 125:
            return op, seq, name
        else:
            raise ScanError("expected ',' or '}'", pos)


cdef tuple _int_or_null(const unsigned char* b, Py_ssize_t pos, Py_ssize_t n):
    cdef Py_ssize_t start = pos
    cdef bint neg = False
    cdef object value
    cdef long long small = 0
    if _is_null(b, pos, n):
        return None, pos + 4
    if pos < n and b[pos] == 45:
        neg = True
        pos += 1
    if pos >= n or not (48 <= b[pos] <= 57):
        raise ScanError("expected an integer or null", start)
    while pos < n and 48 <= b[pos] <= 57:
        pos += 1
    if pos - start <= 18:
        while start < pos:
            if b[start] != 45:
                small = small * 10 + (b[start] - 48)
            start += 1
        return (-small if neg else small), pos
    value = int((<const char*> b)[start:pos])
    return value, pos


cdef tuple _str_or_null(bytes data, const unsigned char* b, Py_ssize_t pos, Py_ssize_t n):
    cdef Py_ssize_t end, i
    cdef bint escaped = False
    if _is_null(b, pos, n):
        return None, pos + 4
    if pos >= n or b[pos] != 34:
        raise ScanError("expected a string or null", pos)
    end = _string_end(b, pos + 1, n, pos)
    for i in range(pos + 1, end - 1):
        if b[i] == 92:
            escaped = True
            break
    if escaped:
        try:
            return json.loads(data[pos:end]), end
        except ValueError:
            raise ScanError("invalid string escape", pos) from None
    try:
        return (<const char*> b)[pos + 1:end - 1].decode("utf-8"), end
    except UnicodeDecodeError:
        raise ScanError("invalid UTF-8 in string", pos) from None


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

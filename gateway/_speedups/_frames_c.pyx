# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled frame reader: twin of ``_frames_py.py`` (same messages, same errors).

Text messages are checked for UTF-8 in C (:func:`_utf8_valid`: ASCII eight bytes at a
time, then the RFC 3629 table), the same verdict as ``bytes.decode("utf-8")``.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.bytearray cimport PyByteArray_AS_STRING
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

from . import _args
from ._errors import CompressionError, FrameError
from ._inflate_c cimport ZlibStream

__all__ = ["FrameReader", "FrameError"]


cdef bint _utf8_valid(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """Whether ``s[:n]`` is UTF-8 as RFC 3629 defines it (no overlong forms, no surrogates,
    nothing past U+10FFFF): what Python's strict decoder accepts.
    """
    cdef Py_ssize_t i = 0
    cdef uint64_t word
    cdef unsigned char c, c1
    while i < n:
        while i + 8 <= n:  # the common case: a run of ASCII
            memcpy(&word, s + i, 8)
            if word & 0x8080808080808080ULL:
                break
            i += 8
        if i >= n:
            break
        c = s[i]
        if c < 0x80:
            i += 1
        elif c < 0xC2:  # a continuation byte, or an overlong 2-byte lead
            return False
        elif c < 0xE0:
            if i + 1 >= n or (s[i + 1] & 0xC0) != 0x80:
                return False
            i += 2
        elif c < 0xF0:
            if i + 2 >= n:
                return False
            c1 = s[i + 1]
            if (c1 & 0xC0) != 0x80 or (s[i + 2] & 0xC0) != 0x80:
                return False
            if (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 >= 0xA0):  # overlong, surrogate
                return False
            i += 3
        elif c < 0xF5:
            if i + 3 >= n:
                return False
            c1 = s[i + 1]
            if (c1 & 0xC0) != 0x80 or (s[i + 2] & 0xC0) != 0x80 or (s[i + 3] & 0xC0) != 0x80:
                return False
            if (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 >= 0x90):  # overlong, > U+10FFFF
                return False
            i += 4
        else:
            return False
    return True


cdef class FrameReader:
    """Incremental frame decoder for one connection. ``max_size`` 0 means no limit."""

    cdef public object error
    cdef public bint closed
    cdef bytearray _buf
    cdef int _frag_op
    cdef list _frags
    cdef unsigned long long _frag_size
    cdef unsigned long long _max  # max_size, clamped (no message can be that long anyway)
    cdef object _max_size  # max_size as given (validated), for the property and messages
    cdef object _inflate
    cdef ZlibStream _zlib
    cdef object _sink_append
    cdef bint _feeding  # inside feed(): _parse holds a pointer into _buf or data
    cdef object _failure

    def __init__(self, max_size=0, inflater=None, sink=None):
        self.max_size = max_size
        # Bound once: a missing method fails here, not mid-stream (as in the pure twin).
        self._inflate = inflater.feed if inflater is not None else None
        self._sink_append = sink.append if sink is not None else None
        self._zlib = inflater if type(inflater) is ZlibStream else None
        self.error = None
        self.closed = False
        self._buf = bytearray()
        self._frag_op = 0
        self._frags = []
        self._frag_size = 0
        self._feeding = False
        self._failure = None

    @property
    def max_size(self):
        """The message size limit in bytes (0: none); may be changed between feeds."""
        return self._max_size

    @max_size.setter
    def max_size(self, value):
        value = _args.size("max_size", value, none=True)
        self._max_size = value
        self._max = value if value < 0xFFFFFFFFFFFFFFFF else 0xFFFFFFFFFFFFFFFF

    def feed(self, data):
        cdef list out = []
        cdef Py_ssize_t pos
        cdef bint buffered
        cdef bytes chunk
        if type(data) is not bytes:
            data = _args.bytes_like("data", data)  # a private copy: nobody else can resize it
        chunk = data  # bytes: immutable, and this reference keeps it alive while parsing
        # _parse reads through a raw pointer while the sink and the inflater run Python
        # code; a nested feed would grow (reallocate) _buf under it.
        if self._feeding:
            raise RuntimeError("FrameReader.feed() called from its own sink or inflater")
        if self._failure is not None:
            raise RuntimeError("FrameReader stopped: its sink or inflater raised") from (
                self._failure
            )
        if self.error is not None or self.closed:
            return out
        buffered = len(self._buf) > 0
        if buffered:
            self._buf += chunk
        self._feeding = True
        try:
            if buffered:
                pos = self._parse(<const unsigned char*> PyByteArray_AS_STRING(self._buf),
                                  len(self._buf), out)
            else:
                pos = self._parse(<const unsigned char*> chunk, len(chunk), out)
        except (FrameError, CompressionError) as exc:
            self.error = exc
            self._buf = bytearray()
            return out
        except BaseException as exc:
            self._failure = exc
            self._buf = bytearray()
            raise
        finally:
            self._feeding = False
        if buffered:
            del self._buf[:pos]
        elif pos < len(chunk):
            self._buf = bytearray(chunk[pos:])
        return out

    cdef Py_ssize_t _parse(self, const unsigned char* data, Py_ssize_t end, list out) except -1:
        cdef Py_ssize_t pos = 0, head, start
        cdef unsigned char b0, b1
        cdef int op
        cdef bint fin
        cdef unsigned long long n
        cdef int i
        cdef bytes payload
        while end - pos >= 2 and not self.closed:
            b0 = data[pos]
            b1 = data[pos + 1]
            op = b0 & 0x0F
            fin = (b0 & 0x80) != 0
            if b0 & 0x70:
                raise FrameError("reserved bits set (no extension was negotiated)", 1002)
            if b1 & 0x80:
                raise FrameError("masked frame from the server", 1002)
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = (<unsigned long long> data[pos + 2] << 8) | data[pos + 3]
                head = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = 0
                for i in range(8):
                    n = (n << 8) | data[pos + 2 + i]
                if n >> 63:
                    raise FrameError("frame length has the most significant bit set", 1002)
                head = 10
            self._check(op, fin, n)
            if <unsigned long long> (end - pos - head) < n:
                break
            start = pos + head
            payload = PyBytes_FromStringAndSize(<const char*> data + start, <Py_ssize_t> n)
            pos = start + <Py_ssize_t> n
            if op >= 8:
                out.append((op, payload))
                if op == 8:
                    self.closed = True
            elif op != 0 and fin:
                self._deliver(op, payload, out)
            else:
                if op != 0:
                    self._frag_op = op
                self._frags.append(payload)
                self._frag_size += n
                if fin:
                    self._deliver(self._frag_op, b"".join(self._frags), out)
                    self._frag_op = 0
                    self._frags = []
                    self._frag_size = 0
        return pos

    cdef int _deliver(self, int op, bytes payload, list out) except -1:
        cdef object inflated
        if op == 1 and not _utf8_valid(<const unsigned char*> payload, len(payload)):
            raise FrameError("text message is not valid UTF-8", 1007)
        if self._zlib is not None:
            inflated = self._zlib.feed(payload)  # a C call: no Python frame; bytes or None
        elif self._inflate is not None:
            inflated = self._inflate(payload)
            if inflated is not None and type(inflated) is not bytes:
                inflated = _args.inflated(inflated)
        else:
            inflated = payload
        if inflated is None:
            return 0
        if self._sink_append is not None:
            self._sink_append(inflated)
        else:
            out.append((op, inflated))
        return 0

    cdef int _check(self, int op, bint fin, unsigned long long n) except -1:
        if op >= 8:
            if op > 10:
                raise FrameError(f"unknown opcode {op}", 1002)
            if not fin:
                raise FrameError("fragmented control frame", 1002)
            if n > 125:
                raise FrameError("control frame payload over 125 bytes", 1002)
            return 0
        if op == 0:
            if not self._frag_op:
                raise FrameError("continuation frame outside a fragmented message", 1002)
        elif op > 2:
            raise FrameError(f"unknown opcode {op}", 1002)
        elif self._frag_op:
            raise FrameError("new data frame inside a fragmented message", 1002)
        if self._max and self._frag_size + n > self._max:
            raise FrameError(f"message over the {self._max_size} byte limit", 1009)
        return 0

# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled zlib-stream buffering: twin of ``_inflate_py.py`` (same output, same errors).

``FrameReader`` (``_frames_c``) calls :meth:`ZlibStream.feed` as a C function, so a chunk
of socket data goes through framing and inflating in one compiled call. The caps
(``max_size``, ``max_pending``) are the pure twin's: see its docstring.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING

import sys

from . import _args
from ._errors import CompressionError

__all__ = ["ZlibStream", "CompressionError", "SUFFIX", "KEEP_BUFFER"]

SUFFIX = b"\x00\x00\xff\xff"
KEEP_BUFFER = 64 * 1024


cdef inline bint _ends_with_suffix(const unsigned char* p, Py_ssize_t n) noexcept:
    return n >= 4 and p[n - 4] == 0 and p[n - 3] == 0 and p[n - 2] == 0xFF and p[n - 1] == 0xFF


cdef class ZlibStream:
    """``feed(frame)`` returns the whole inflated message, or None until it is complete."""

    def __init__(self, decompressobj, keep_buffer=KEEP_BUFFER, max_size=0, max_pending=0):
        self._decompress = decompressobj.decompress
        self._buffer = bytearray()
        keep_buffer = _args.size("keep_buffer", keep_buffer)
        # Clamped: no buffer can be longer, so a larger keep_buffer means the same.
        self._keep = min(keep_buffer, sys.maxsize)
        self._max = min(_args.size("max_size", max_size, none=True), sys.maxsize - 1)
        self._max_pending = min(_args.size("max_pending", max_pending, none=True), sys.maxsize)

    @property
    def buffered(self):
        """Bytes of an incomplete message held now."""
        return len(self._buffer)

    cpdef object feed(self, object frame):
        cdef object data
        cdef object out
        cdef Py_ssize_t n
        if type(frame) is not bytes:
            raise _args.not_bytes("frame", frame)
        if self._max_pending and len(self._buffer) + len(<bytes> frame) > self._max_pending:
            self._buffer = bytearray()  # the stream is dead: let go of what it held
            raise CompressionError(
                f"a message's compressed bytes pass the {self._max_pending} byte limit"
            )
        if len(self._buffer) == 0 and _ends_with_suffix(<const unsigned char*> (<bytes> frame),
                                                        len(<bytes> frame)):
            data = frame
        else:
            self._buffer += frame
            n = len(self._buffer)
            if not _ends_with_suffix(<const unsigned char*> PyByteArray_AS_STRING(self._buffer), n):
                return None
            data = self._buffer
        try:
            # A cap of max_size + 1 bytes: a decompression bomb never inflates past it.
            out = self._decompress(data, self._max + 1) if self._max else self._decompress(data)
        except Exception as exc:
            raise CompressionError(f"zlib-stream is corrupt: {exc}") from None
        finally:
            if data is self._buffer:
                if len(self._buffer) > self._keep:
                    self._buffer = bytearray()
                else:
                    del self._buffer[:]
        if type(out) is not bytes:
            out = _args.inflated(out)
        if self._max and len(out) > self._max:
            raise CompressionError(f"a message inflates past the {self._max} byte limit")
        return out

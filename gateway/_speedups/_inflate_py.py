"""zlib-stream buffering (protocol.md 1.4), pure Python; twin of ``_inflate_c.pyx``.

One :class:`ZlibStream` per connection wraps the selected backend's decompressobj. A message
ends with the sync-flush suffix ``00 00 ff ff``; one message may span several frames. The
usual single-frame message is inflated without a copy into the partial buffer, and a
partial buffer grown past ``keep_buffer`` is released after use, so one 5 MB GUILD_CREATE
does not stay pinned per shard.
"""

from __future__ import annotations

import sys
from typing import Any

from . import _args
from ._errors import CompressionError

__all__ = ["ZlibStream", "CompressionError", "SUFFIX", "KEEP_BUFFER"]

SUFFIX = b"\x00\x00\xff\xff"
KEEP_BUFFER = 64 * 1024


class ZlibStream:
    """``feed(frame)`` returns the whole inflated message, or None until it is complete."""

    def __init__(
        self, decompressobj: Any, keep_buffer: int = KEEP_BUFFER, max_size: int | None = 0
    ) -> None:
        self._decompress = decompressobj.decompress
        self._buffer = bytearray()
        self._keep = _args.size("keep_buffer", keep_buffer)
        #: The largest message inflated (0 or None: no limit), against decompression bombs.
        self._max = min(_args.size("max_size", max_size, none=True), sys.maxsize - 1)

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held now."""
        return len(self._buffer)

    def feed(self, frame: bytes) -> bytes | None:
        if type(frame) is not bytes:
            raise _args.not_bytes("frame", frame)
        if self._buffer or frame[-4:] != SUFFIX:
            self._buffer += frame
            if self._buffer[-4:] != SUFFIX:
                return None
            data: bytes | bytearray = self._buffer
        else:
            data = frame  # the usual case: one frame, one message, no copy
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
                    self._buffer.clear()
        if type(out) is not bytes:
            out = _args.inflated(out)
        if self._max and len(out) > self._max:
            raise CompressionError(f"a message inflates past the {self._max} byte limit")
        return out

"""zlib-stream buffering (protocol.md 1.4), pure Python; twin of ``_inflate_c.pyx``.

One :class:`ZlibStream` per connection wraps the selected backend's decompressobj. A message
ends with the sync-flush suffix ``00 00 ff ff``; one message may span several frames. The
usual single-frame message is inflated without a copy into the partial buffer, and a
partial buffer grown past ``keep_buffer`` is released after use, so one 5 MB GUILD_CREATE
does not stay pinned per shard.

Two caps, both a :class:`CompressionError` (the stream cannot go on; the connection is
failed and the shard reconnects):

- ``max_size``: the largest message inflated (0 or None: none), checked while inflating
  (the backend is asked for at most ``max_size + 1`` bytes), so a decompression bomb never
  allocates past it;
- ``max_pending``: the most compressed bytes one message may take, its frames joined
  (0 or None: none). Without it a server that never sends the ``00 00 ff ff`` suffix makes
  the partial buffer grow without end. Checked before the bytes are kept; the partial
  buffer is released on the error.
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
        self,
        decompressobj: Any,
        keep_buffer: int = KEEP_BUFFER,
        max_size: int | None = 0,
        max_pending: int | None = 0,
    ) -> None:
        self._decompress = decompressobj.decompress
        self._buffer = bytearray()
        self._keep = _args.size("keep_buffer", keep_buffer)
        #: The largest message inflated (0 or None: no limit), against decompression bombs.
        self._max = min(_args.size("max_size", max_size, none=True), sys.maxsize - 1)
        #: The most compressed bytes of one message (0 or None: no limit).
        self._max_pending = min(_args.size("max_pending", max_pending, none=True), sys.maxsize)

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held now."""
        return len(self._buffer)

    def feed(self, frame: bytes) -> bytes | None:
        if type(frame) is not bytes:
            raise _args.not_bytes("frame", frame)
        pending = self._max_pending
        if pending and len(self._buffer) + len(frame) > pending:
            self._buffer = bytearray()  # the stream is dead: let go of what it held
            raise CompressionError(f"a message's compressed bytes pass the {pending} byte limit")
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

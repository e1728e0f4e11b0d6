"""Transport decompression: ``zlib-stream`` and ``zstd-stream`` (protocol.md 1.4, 1.5).

One inflater per connection. ``feed(frame)`` returns a whole payload, or None while a
zlib message is still incomplete (one message may span several websocket frames).
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from . import backends

__all__ = ["Inflater", "ZlibInflater", "ZstdInflater", "NoInflater", "CompressionError", "create"]

_SUFFIX = b"\x00\x00\xff\xff"
#: A partial buffer larger than this is released after use instead of kept for reuse.
_KEEP_BUFFER = 64 * 1024


class CompressionError(ValueError):
    """The compressed stream is corrupt."""


class Inflater(Protocol):
    def feed(self, frame: bytes | str) -> bytes | None: ...


class NoInflater:
    """No transport compression: text frames are payloads; binary ones are zlib blobs."""

    def feed(self, frame: bytes | str) -> bytes | None:
        if isinstance(frame, str):
            return frame.encode()
        if frame[:1] == b"{":
            return frame
        try:  # payload compression: a self-contained zlib blob per message (protocol.md 1.6)
            return bytes(backends.zlib.decompress(frame))
        except Exception as exc:
            raise CompressionError(f"payload decompression failed: {exc}") from None


class ZlibInflater:
    """zlib-stream: one decompressobj per connection; messages end with 00 00 ff ff."""

    def __init__(self) -> None:
        self._inflate: Any = backends.zlib.decompressobj()
        self._buffer = bytearray()

    def feed(self, frame: bytes | str) -> bytes | None:
        if isinstance(frame, str):
            raise CompressionError("text frame on a zlib-stream connection")
        if self._buffer or frame[-4:] != _SUFFIX:
            self._buffer += frame
            if self._buffer[-4:] != _SUFFIX:
                return None
            data: bytes | bytearray = self._buffer
        else:
            data = frame  # the usual case: one frame, one message, no copy
        try:
            out = bytes(self._inflate.decompress(data))
        except Exception as exc:
            raise CompressionError(f"zlib-stream is corrupt: {exc}") from None
        finally:
            if data is self._buffer:
                if len(self._buffer) > _KEEP_BUFFER:
                    self._buffer = bytearray()  # do not pin a 5 MB GUILD_CREATE per shard
                else:
                    self._buffer.clear()
        return out


def _zstd_decompressor() -> Any:
    for name in ("compression.zstd", "backports.zstd"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return module.ZstdDecompressor()
    try:
        import zstandard
    except ImportError:
        raise ImportError("zstd-stream needs a zstd backend: pip install 'gateway[zstd]'") from None
    return zstandard.ZstdDecompressor().decompressobj()


class ZstdInflater:
    """zstd-stream: one streaming decompressor per connection; one frame, one message."""

    def __init__(self) -> None:
        self._d = _zstd_decompressor()

    def feed(self, frame: bytes | str) -> bytes | None:
        if isinstance(frame, str):
            raise CompressionError("text frame on a zstd-stream connection")
        try:
            return bytes(self._d.decompress(frame))
        except Exception as exc:
            raise CompressionError(f"zstd-stream is corrupt: {exc}") from None


def create(compression: str | None) -> Inflater:
    """A new inflater for one connection."""
    if compression == "zlib-stream":
        return ZlibInflater()
    if compression == "zstd-stream":
        return ZstdInflater()
    return NoInflater()

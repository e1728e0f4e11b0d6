"""Transport decompression: ``zlib-stream`` and ``zstd-stream`` (protocol.md 1.4, 1.5).

One inflater per connection, handed to the transport's frame reader, so messages come out
of the socket already inflated (for zlib-stream in one compiled pass, see
:mod:`gateway._speedups`). ``feed(frame)`` returns a whole payload, or None while a message
is still incomplete. Without transport compression, :class:`NoInflater` handles the
payload-compression case (a zlib blob per binary message).
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from . import backends
from ._speedups import CompressionError, ZlibStream

__all__ = ["Inflater", "ZstdInflater", "NoInflater", "CompressionError", "create"]


class Inflater(Protocol):
    def feed(self, frame: bytes) -> bytes | None: ...


class NoInflater:
    """No transport compression: JSON payloads as they are; other binary ones are zlib blobs
    (inflated to at most ``max_size`` bytes; None: no limit).
    """

    def __init__(self, max_size: int | None = None) -> None:
        self._max = max_size or 0

    def feed(self, frame: bytes) -> bytes:
        if frame[:1] != b"x":  # every zlib blob starts 0x78; JSON text never does
            return frame
        try:  # payload compression: a self-contained zlib blob per message (protocol.md 1.6)
            if not self._max:
                return bytes(backends.zlib.decompress(frame))
            out = bytes(backends.zlib.decompressobj().decompress(frame, self._max + 1))
        except Exception as exc:
            raise CompressionError(f"payload decompression failed: {exc}") from None
        if len(out) > self._max:
            raise CompressionError(f"a message inflates past the {self._max} byte limit")
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

    def __init__(self, max_size: int | None = None) -> None:
        self._d = _zstd_decompressor()
        self._max = max_size

    def feed(self, frame: bytes) -> bytes | None:
        try:
            out = bytes(self._d.decompress(frame))
        except Exception as exc:
            raise CompressionError(f"zstd-stream is corrupt: {exc}") from None
        if self._max is not None and len(out) > self._max:
            raise CompressionError(f"a message inflates past {self._max} bytes")
        return out


def create(compression: str | None, max_size: int | None = None) -> Inflater | None:
    """A new transport inflater for one connection (None: no transport compression);
    ``max_size`` caps the inflated size of one message (a decompression bomb).
    """
    if compression == "zlib-stream":
        inflater: Inflater = ZlibStream(backends.zlib.decompressobj(), max_size=max_size)
        return inflater
    if compression == "zstd-stream":
        return ZstdInflater(max_size)
    return None

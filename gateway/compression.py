"""Transport decompression: ``zlib-stream`` and ``zstd-stream`` (protocol.md 1.4, 1.5).

One inflater per connection, handed to the transport's frame reader, so messages come out
of the socket already inflated (for zlib-stream in one compiled pass, see
:mod:`gateway._speedups`). ``feed(frame)`` returns a whole payload, or None while a message
is still incomplete. Without transport compression, :class:`NoInflater` handles the
payload-compression case (a zlib blob per binary message).

Caps (each breach is a :class:`CompressionError`; the shard fails the connection and
reconnects):

- ``max_size`` (``Config.max_inflated_size``, 256 MiB by default): the inflated size of one
  message, enforced *while* inflating on every path (zlib-stream, zstd-stream, payload
  compression), so a decompression bomb allocates at most about the cap: zlib is asked
  for ``max_size + 1`` bytes; zstd likewise where the backend takes a ``max_length``
  (``compression.zstd``, ``backports.zstd``), and with ``zstandard`` (no such argument) the
  input goes in slices small enough that one slice cannot inflate past what is left of
  the cap (:data:`ZSTD_RATIO`).
- ``max_compressed`` (:data:`MAX_COMPRESSED`, 64 MiB by default): the compressed bytes of
  one zlib-stream message, its frames joined, held until the ``00 00 ff ff`` suffix comes.
  (A zstd-stream message is one frame, bounded by ``Config.max_message_size``.)
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from . import backends
from ._speedups import CompressionError, ZlibStream

__all__ = [
    "Inflater",
    "ZstdInflater",
    "NoInflater",
    "CompressionError",
    "create",
    "MAX_COMPRESSED",
    "ZSTD_RATIO",
]

#: The most compressed bytes one zlib-stream message may take before its suffix (64 MiB:
#: Discord's largest messages, huge GUILD_CREATEs, compress to a few MiB).
MAX_COMPRESSED = 64 * 1024 * 1024
#: The most one byte of zstd input can inflate to: a 3-byte block header and a 1-byte RLE
#: block make up to 128 KiB. Slices of ``room // ZSTD_RATIO`` bytes cannot pass the cap.
ZSTD_RATIO = 32 * 1024
#: The smallest slice (zstandard path): at most ~1 MiB past the cap, few calls per message.
_ZSTD_MIN_SLICE = 32


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


def _zstd_decompressor() -> tuple[Any, bool]:
    """A streaming zstd decompressor, and whether its ``decompress`` takes ``max_length``."""
    for name in ("compression.zstd", "backports.zstd"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return module.ZstdDecompressor(), True
    try:
        import zstandard
    except ImportError:
        raise ImportError("zstd-stream needs a zstd backend: pip install 'gateway[zstd]'") from None
    return zstandard.ZstdDecompressor().decompressobj(), False


class ZstdInflater:
    """zstd-stream: one streaming decompressor per connection; one frame, one message.

    ``max_size`` (None or 0: no limit) is enforced while inflating (see the module
    docstring).
    """

    def __init__(self, max_size: int | None = None) -> None:
        self._d, self._bounded = _zstd_decompressor()
        self._max = max_size or 0

    def feed(self, frame: bytes) -> bytes | None:
        limit = self._max
        try:
            if not limit:
                out = bytes(self._d.decompress(frame))
            elif self._bounded:
                out = bytes(self._d.decompress(frame, limit + 1))
            else:
                out = self._sliced(frame, limit)
        except CompressionError:
            raise
        except Exception as exc:
            raise CompressionError(f"zstd-stream is corrupt: {exc}") from None
        if limit and len(out) > limit:
            raise CompressionError(f"a message inflates past {limit} bytes")
        return out

    def _sliced(self, frame: bytes, limit: int) -> bytes:
        """zstandard's decompressobj has no ``max_length``: feed slices no larger than
        what is left of the cap could come from (one slice for an ordinary message).
        """
        decompress = self._d.decompress
        view = memoryview(frame)
        parts: list[bytes] = []
        size = 0
        pos = 0
        while pos < len(frame):
            room = limit + 1 - size
            step = max(_ZSTD_MIN_SLICE, room // ZSTD_RATIO)
            out = decompress(view[pos : pos + step])
            pos += step
            if out:
                parts.append(out)
                size += len(out)
                if size > limit:
                    raise CompressionError(f"a message inflates past {limit} bytes")
        return b"".join(parts)


def create(
    compression: str | None, max_size: int | None = None, max_compressed: int = MAX_COMPRESSED
) -> Inflater | None:
    """A new transport inflater for one connection (None: no transport compression);
    ``max_size`` caps the inflated size of one message (a decompression bomb),
    ``max_compressed`` the compressed bytes of one zlib-stream message (0: no cap).
    """
    if compression == "zlib-stream":
        inflater: Inflater = ZlibStream(
            backends.zlib.decompressobj(), max_size=max_size, max_pending=max_compressed
        )
        return inflater
    if compression == "zstd-stream":
        return ZstdInflater(max_size)
    return None

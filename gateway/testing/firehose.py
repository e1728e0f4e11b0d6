"""Pre-built traffic for benchmarks: N dispatches as ready-made websocket frames.

A Python server cannot compress and frame 100k+ messages a second, so the emulator's
``firehose`` mode builds the whole stream once (in a worker thread), caches it, and writes
it to the socket in large chunks. The zlib-stream part is raw deflate, sync-flushed per
message exactly like live traffic, with a full flush at the end of every chunk. It refers
to no data before its chunk, so it can follow whatever the connection sent before, and
between chunks the connection may send more (with a fresh raw compressor each time).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from .corpus import Corpus, CorpusEvent

__all__ = ["Firehose", "build", "server_frame"]

CHUNK = 256 * 1024


def server_frame(payload: bytes, opcode: int) -> bytes:
    """One unmasked, final websocket frame (RFC 6455 5.2) as a server sends it."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload


@dataclass(frozen=True)
class Firehose:
    """``payloads`` (sequences ``first_seq``...) and the same as frames in ``chunks``."""

    first_seq: int
    payloads: list[bytes]
    chunks: list[bytes]
    wire_bytes: int


def build(
    corpus: Corpus,
    wants: Callable[[CorpusEvent], bool],
    envelope: Callable[[CorpusEvent, int], bytes],
    first_seq: int,
    count: int,
    compress: str | None,
) -> Firehose:
    """``count`` wanted events from ``corpus`` with sequences from ``first_seq``."""
    deflate = zlib.compressobj(wbits=-15) if compress == "zlib-stream" else None
    payloads: list[bytes] = []
    chunks: list[bytes] = []
    pending: list[bytes] = []
    size = total = 0
    while len(payloads) < count:
        event = corpus.next()
        if not wants(event):
            continue
        payload = envelope(event, first_seq + len(payloads))
        payloads.append(payload)
        if deflate is not None:
            body = deflate.compress(payload)
            # A chunk ends with a full flush: the next chunk refers to nothing before it, so
            # the emulator may send other messages (heartbeat ACKs) between chunks.
            last = size + len(body) >= CHUNK
            body += deflate.flush(zlib.Z_FULL_FLUSH if last else zlib.Z_SYNC_FLUSH)
            frame = server_frame(body, 2)
        else:
            frame = server_frame(payload, 1)
            last = size + len(frame) >= CHUNK
        pending.append(frame)
        size += len(frame)
        if last:
            chunks.append(b"".join(pending))
            total += size
            pending, size = [], 0
    if pending:
        chunks.append(b"".join(pending))
        total += size
    return Firehose(first_seq, payloads, chunks, total)

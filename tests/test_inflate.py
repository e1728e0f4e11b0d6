"""zlib-stream buffering twins, alone and inside the frame reader: identical results."""

from __future__ import annotations

import struct
import zlib
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import backends
from gateway._speedups import CompressionError, twins

SUFFIX = b"\x00\x00\xff\xff"


def zlib_stream(messages: list[bytes], splits: list[int]) -> tuple[list[bytes], list[bytes]]:
    """Compress ``messages`` as one zlib-stream; return (frames, expected outputs per frame)."""
    compressor = zlib.compressobj()
    frames: list[bytes] = []
    expected: list[Any] = []
    for i, message in enumerate(messages):
        data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
        parts = 1 + (splits[i % len(splits)] if splits else 0)
        step = max(1, -(-len(data) // parts))
        chunks = [data[j : j + step] for j in range(0, len(data), step)]
        # A chunk ending in the suffix by chance would end the message early; merge it on.
        merged: list[bytes] = []
        for chunk in chunks:
            if merged and merged[-1].endswith(SUFFIX):
                merged[-1] += chunk
            else:
                merged.append(chunk)
        frames += merged
        expected += [None] * (len(merged) - 1) + [message]
    return frames, expected


def outcome(twin: SimpleNamespace, frames: list[bytes]) -> list[Any]:
    stream = twin.ZlibStream(backends.zlib.decompressobj(), 256)
    results: list[Any] = []
    for frame in frames:
        try:
            results.append(stream.feed(frame))
        except CompressionError as exc:
            results.append(("error", str(exc)))
            break
    return results


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=2000), min_size=1, max_size=8),
       st.lists(st.integers(0, 4), max_size=8))  # fmt: skip
def test_random_streams_any_split(messages: list[bytes], splits: list[int]) -> None:
    frames, expected = zlib_stream(messages, splits)
    for twin in twins().values():
        assert outcome(twin, frames) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=5))
def test_garbage_gives_identical_errors(frames: list[bytes]) -> None:
    frames = [f + SUFFIX if i % 2 else f for i, f in enumerate(frames)]
    results = [outcome(twin, frames) for twin in twins().values()]
    assert all(r == results[0] for r in results)


def test_large_partial_buffer_is_released(speedups: SimpleNamespace) -> None:
    big = bytes(range(256)) * 4000
    frames, _ = zlib_stream([big, b'{"small":1}'], [3])
    stream = speedups.ZlibStream(backends.zlib.decompressobj(), 1024)
    out = [stream.feed(f) for f in frames]
    assert out[-1] == b'{"small":1}' and big in out and stream.buffered == 0


def test_corrupt_data_is_a_typed_error(speedups: SimpleNamespace) -> None:
    stream = speedups.ZlibStream(backends.zlib.decompressobj())
    with pytest.raises(CompressionError, match="zlib-stream is corrupt"):
        stream.feed(b"\x07" + SUFFIX)  # deflate block type 3 does not exist


def frame(payload: bytes, opcode: int = 2, fin: bool = True) -> bytes:
    head = 0x80 if fin else 0
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", head | opcode, n) + payload
    return struct.pack("!BBH", head | opcode, 126, n) + payload


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.binary(max_size=500), min_size=1, max_size=6),
    st.lists(st.integers(0, 3), max_size=6),
    st.lists(st.integers(0, 10**5), max_size=6),
)
def test_reader_with_inflater_in_one_pass(
    messages: list[bytes], splits: list[int], cuts: list[int]
) -> None:
    compressed, _ = zlib_stream(messages, splits)
    wire = b"".join(frame(c) for c in compressed)
    results = []
    for twin in twins().values():
        for inflater_twin in twins().values():  # mixed pairs too: same interface
            reader = twin.FrameReader(0, inflater_twin.ZlibStream(backends.zlib.decompressobj()))
            out: list[tuple[int, bytes]] = []
            last = 0
            for cut in [*sorted(c % (len(wire) + 1) for c in cuts), len(wire)]:
                out += reader.feed(wire[last:cut])
                last = cut
            results.append((out, reader.error))
    assert all(r == results[0] for r in results)
    assert results[0] == ([(2, m) for m in messages], None)


def test_reader_stops_at_corrupt_compressed_data(speedups: SimpleNamespace) -> None:
    compressed, _ = zlib_stream([b'{"op":11}'], [])
    reader = speedups.FrameReader(0, speedups.ZlibStream(backends.zlib.decompressobj()))
    out = reader.feed(frame(compressed[0]) + frame(b"\x07" + SUFFIX) + frame(compressed[0]))
    assert out == [(2, b'{"op":11}')]
    assert isinstance(reader.error, CompressionError)


# ---- argument types and odd decompressors (issue #13) ---------------------------------------


@pytest.mark.parametrize(
    ("keep", "error"), [(None, TypeError), (-1, ValueError), (1.0, TypeError), ("9", TypeError)]
)
def test_keep_buffer_rejected(speedups: SimpleNamespace, keep: object, error: type) -> None:
    with pytest.raises(error, match="keep_buffer"):
        speedups.ZlibStream(backends.zlib.decompressobj(), keep)


@pytest.mark.parametrize("keep", [0, 1, 2**63, 2**64, 2**100])
def test_keep_buffer_any_size(speedups: SimpleNamespace, keep: int) -> None:
    frames, _ = zlib_stream([bytes(range(256)) * 40], [3])
    stream = speedups.ZlibStream(backends.zlib.decompressobj(), keep)
    assert [stream.feed(f) for f in frames][-1] == bytes(range(256)) * 40


@pytest.mark.parametrize("frame", [bytearray(SUFFIX), memoryview(SUFFIX), "x", None, 5])
def test_feed_takes_bytes_only(speedups: SimpleNamespace, frame: object) -> None:
    with pytest.raises(TypeError, match="frame must be bytes"):
        speedups.ZlibStream(backends.zlib.decompressobj()).feed(frame)


class Decompressor:
    def __init__(self, result: object) -> None:
        self.result = result

    def decompress(self, data: bytes) -> object:
        return self.result


@pytest.mark.parametrize("result", [bytearray(b"ok"), memoryview(b"ok")])
def test_bytes_like_output_becomes_bytes(speedups: SimpleNamespace, result: object) -> None:
    out = speedups.ZlibStream(Decompressor(result)).feed(b"x" + SUFFIX)
    assert type(out) is bytes and out == b"ok"


@pytest.mark.parametrize("result", [5, "ok", None])
def test_output_that_is_not_bytes_like_is_an_error(
    speedups: SimpleNamespace, result: object
) -> None:
    # bytes(5) would have made five zero bytes out of a broken decompressor.
    with pytest.raises(CompressionError, match="the inflater returned"):
        speedups.ZlibStream(Decompressor(result)).feed(b"x" + SUFFIX)


def test_a_decompression_bomb_stops_at_max_size(speedups: Any) -> None:
    co = zlib.compressobj()
    bomb = co.compress(b"0" * 50_000_000) + co.flush(zlib.Z_SYNC_FLUSH)  # ~50 KB on the wire
    stream = speedups.ZlibStream(zlib.decompressobj(), max_size=1_000_000)
    with pytest.raises(CompressionError, match="1000000 byte limit"):
        stream.feed(bomb)


def test_a_message_of_exactly_max_size_passes(speedups: Any) -> None:
    co = zlib.compressobj()
    stream = speedups.ZlibStream(zlib.decompressobj(), max_size=1000)
    assert stream.feed(co.compress(b"1" * 1000) + co.flush(zlib.Z_SYNC_FLUSH)) == b"1" * 1000
    assert stream.feed(co.compress(b"2" * 999) + co.flush(zlib.Z_SYNC_FLUSH)) == b"2" * 999


@pytest.mark.parametrize("bad", [-1, "1", 1.5])
def test_max_size_is_checked_alike(speedups: Any, bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        speedups.ZlibStream(zlib.decompressobj(), max_size=bad)


def test_payload_compression_is_capped_too() -> None:
    from gateway.compression import NoInflater

    blob = zlib.compress(b"0" * 5_000_000)
    with pytest.raises(CompressionError, match="byte limit"):
        NoInflater(100_000).feed(blob)
    assert NoInflater(5_000_000).feed(blob) == b"0" * 5_000_000


# ---- issue 21: compressed bytes held per message are capped (item 7) ----------------------


def test_compressed_bytes_without_the_suffix_are_capped(speedups: Any) -> None:
    """A server that never ends a message: the partial buffer stops at ``max_pending`` with a
    typed error and is let go, instead of growing by every frame.
    """
    stream = speedups.ZlibStream(zlib.decompressobj(), max_pending=100_000)
    chunk = b"\x02" * 40_000  # never ends in the suffix
    assert stream.feed(chunk) is None
    assert stream.feed(chunk) is None
    assert stream.buffered == 80_000
    with pytest.raises(CompressionError, match="100000 byte limit"):
        stream.feed(chunk)
    assert stream.buffered == 0


def test_one_frame_over_max_pending_is_an_error_too(speedups: Any) -> None:
    co = zlib.compressobj(0)  # stored: the compressed message is longer than the text
    frame = co.compress(b"x" * 5000) + co.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(CompressionError, match="byte limit"):
        speedups.ZlibStream(zlib.decompressobj(), max_pending=len(frame) - 1).feed(frame)
    exact = speedups.ZlibStream(zlib.decompressobj(), max_pending=len(frame))
    assert exact.feed(frame) == b"x" * 5000


@pytest.mark.parametrize("bad", [-1, "1", 1.5])
def test_max_pending_is_checked_alike(speedups: Any, bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        speedups.ZlibStream(zlib.decompressobj(), max_pending=bad)


def test_reader_stops_at_the_pending_cap(speedups: Any) -> None:
    """Inside the frame reader the cap ends reading like corrupt data."""
    stream = speedups.ZlibStream(zlib.decompressobj(), max_pending=1000)
    reader = speedups.FrameReader(0, stream)
    frame = struct.pack("!BB", 0x82, 126) + struct.pack("!H", 600) + b"\x01" * 600
    assert reader.feed(frame * 3) == []
    assert isinstance(reader.error, CompressionError)
    assert stream.buffered == 0


def test_create_caps_compressed_bytes_by_default() -> None:
    from gateway import compression

    stream = compression.create("zlib-stream", None, max_compressed=10)
    assert stream is not None
    with pytest.raises(CompressionError):
        stream.feed(b"\x01" * 11)
    assert compression.MAX_COMPRESSED == 64 * 1024 * 1024


# ---- issue 21: zstd-stream inflates under the cap, never past it (item 6) ------------------


def _zstd_bomb(size: int) -> tuple[Any, bytes]:
    zstd = pytest.importorskip("backports.zstd")
    c = zstd.ZstdCompressor()
    return zstd, c.compress(b"\0" * size, c.FLUSH_BLOCK)


@pytest.mark.parametrize("backend", ["max_length", "zstandard"])
def test_a_zstd_bomb_never_allocates_past_the_cap(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ~2 KB message inflating to 64 MiB under a 1 MiB cap: a typed error, and the
    largest allocation stays near the cap (tracemalloc sees the backends' bytes objects).
    """
    import tracemalloc

    from gateway import compression

    _, bomb = _zstd_bomb(64 * 1024 * 1024)
    assert len(bomb) < 16_384
    if backend == "zstandard":
        zstandard = pytest.importorskip("zstandard")
        monkeypatch.setattr(
            compression,
            "_zstd_decompressor",
            lambda: (zstandard.ZstdDecompressor().decompressobj(), False),
        )
    inflater = compression.ZstdInflater(1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(CompressionError, match="inflates past"):
            inflater.feed(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, peak


@pytest.mark.parametrize("backend", ["max_length", "zstandard"])
def test_zstd_messages_up_to_the_cap_pass(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import compression

    zstd, _ = _zstd_bomb(1)
    if backend == "zstandard":
        zstandard = pytest.importorskip("zstandard")
        monkeypatch.setattr(
            compression,
            "_zstd_decompressor",
            lambda: (zstandard.ZstdDecompressor().decompressobj(), False),
        )
    c = zstd.ZstdCompressor()
    inflater = compression.ZstdInflater(100_000)
    for text in (b'{"op":11}', bytes(range(256)) * 390, b"y" * 100_000):
        assert inflater.feed(c.compress(text, c.FLUSH_BLOCK)) == text
    with pytest.raises(CompressionError):
        inflater.feed(c.compress(b"z" * 100_001, c.FLUSH_BLOCK))

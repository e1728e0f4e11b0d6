"""The frame reader twins: RFC 6455 framing, any split of the stream, identical errors."""

from __future__ import annotations

import random
import struct
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway._speedups import FrameError, twins


def frame(payload: bytes, opcode: int, fin: bool = True, rsv: int = 0, mask: bool = False) -> bytes:
    """Encode one frame as a server would (or, with the flags, as a broken server would)."""
    n = len(payload)
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    second = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", first, second | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, second | 126, n)
    else:
        head = struct.pack("!BBQ", first, second | 127, n)
    return head + (b"\x00" * 4 if mask else b"") + payload


def feed_split(reader: object, data: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    last = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        out += reader.feed(data[last:cut])  # type: ignore[attr-defined]
        last = cut
    return out


def both(data: bytes, cuts: list[int], max_size: int = 0) -> tuple[list[tuple[int, bytes]], object]:
    """Feed every twin; assert identical messages and errors; return them."""
    results = []
    for twin in twins().values():
        reader = twin.FrameReader(max_size)
        out = feed_split(reader, data, cuts)
        error = reader.error.args if reader.error is not None else None
        results.append((out, error, reader.closed))
    assert all(r == results[0] for r in results), results
    return results[0][0], results[0][1]


message = st.tuples(st.sampled_from([1, 2]), st.binary(max_size=300), st.integers(1, 4))
sizes = st.sampled_from([0, 1, 125, 126, 127, 65535, 65536, 70000])


@settings(max_examples=300, deadline=None)
@given(st.lists(message, max_size=12), st.lists(st.integers(0, 10**6), max_size=8),
       st.booleans(), st.randoms())  # fmt: skip
def test_random_streams_any_split(
    messages: list[tuple[int, bytes, int]], cuts: list[int], close: bool, rng: random.Random
) -> None:
    stream = b""
    expected: list[tuple[int, bytes]] = []
    for opcode, payload, parts in messages:
        step = max(1, -(-len(payload) // parts))
        chunks = [payload[i : i + step] for i in range(0, len(payload), step)] or [b""]
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            stream += frame(chunk, opcode if i == 0 else 0, fin=last)
            if last:
                expected.append((opcode, payload))
            if rng.random() < 0.3:  # control frames may sit between fragments
                stream += frame(b"ping", 9)
                expected.append((9, b"ping"))
    if close:
        stream += frame(struct.pack("!H", 1000) + b"bye", 8) + frame(b"after close", 1)
        expected.append((8, struct.pack("!H", 1000) + b"bye"))
    out, error = both(stream, cuts)
    assert error is None
    assert out == expected


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_length_encodings(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    out, error = both(frame(payload, 2), [1, 2, 3, 9, 10, 11])
    assert error is None and out == [(2, payload)]


@pytest.mark.parametrize(
    ("data", "message", "code"),
    [
        (frame(b"x", 1, rsv=4), "reserved bits", 1002),
        (frame(b"x", 1, mask=True), "masked frame", 1002),
        (frame(b"x", 3), "unknown opcode 3", 1002),
        (frame(b"x", 11), "unknown opcode 11", 1002),
        (frame(b"x", 9, fin=False), "fragmented control", 1002),
        (frame(b"x" * 126, 9), "control frame payload over 125", 1002),
        (frame(b"x", 0), "continuation frame outside", 1002),
        (frame(b"x", 1, fin=False) + frame(b"y", 2), "new data frame inside", 1002),
        (b"\x82\x7f\x80" + b"\x00" * 7, "most significant bit", 1002),
        (frame(b"x" * 11, 1), "over the 10 byte limit", 1009),
        (frame(b"x" * 6, 1, fin=False) + frame(b"x" * 6, 0), "over the 10 byte limit", 1009),
    ],
)
def test_protocol_errors(data: bytes, message: str, code: int) -> None:
    good = frame(b"before", 1)
    out, error = both(good + data + frame(b"after", 1), [3], max_size=10)
    assert out == [(1, b"before")]  # what came first is not lost
    assert error is not None and message in error[0] and error[1] == code  # type: ignore[index]


def test_oversized_frame_fails_before_its_payload_arrives() -> None:
    for twin in twins().values():
        reader = twin.FrameReader(1 << 20)
        assert reader.feed(b"\x82\x7f" + struct.pack("!Q", 1 << 40)) == []
        assert isinstance(reader.error, FrameError) and reader.error.close_code == 1009


def test_partial_header_waits() -> None:
    for twin in twins().values():
        reader = twin.FrameReader()
        data = frame(b"y" * 300, 2)
        assert reader.feed(data[:1]) == [] and reader.feed(data[1:3]) == []
        assert reader.feed(data[3:]) == [(2, b"y" * 300)] and reader.error is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(0, 300), max_size=4))
def test_garbage_gives_identical_results(data: bytes, cuts: list[int]) -> None:
    both(data, cuts, max_size=64)


def test_both_twins_are_tested(speedups: SimpleNamespace) -> None:
    assert speedups.FrameReader(0).feed(frame(b"{}", 1)) == [(1, b"{}")]

"""The frame reader twins: RFC 6455 framing, any split of the stream, identical errors."""

from __future__ import annotations

import random
import struct
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway._speedups import CompressionError, FrameError, twins


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


# Text messages are valid UTF-8 (invalid ones end reading: tested on their own below).
message = st.one_of(
    st.tuples(st.just(1), st.text(max_size=150).map(str.encode), st.integers(1, 4)),
    st.tuples(st.just(2), st.binary(max_size=300), st.integers(1, 4)),
)
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


# ---- hostile callers: re-entrant sinks, custom inflaters, argument types (issue #13) --------


class ReenteringSink:
    """A sink whose first append feeds the reader a large frame (which would grow its buffer)."""

    def __init__(self, swallow: bool) -> None:
        self.reader: object = None
        self.got: list[bytes] = []
        self.errors: list[BaseException] = []
        self.swallow = swallow

    def append(self, payload: bytes) -> None:
        self.got.append(payload)
        if len(self.got) == 1:
            try:
                self.reader.feed(frame(b"Z" * 60000, 2))  # type: ignore[attr-defined]
            except RuntimeError as exc:
                self.errors.append(exc)
                if not self.swallow:
                    raise


def test_feed_from_its_own_sink_is_refused(speedups: SimpleNamespace) -> None:
    # The compiled reader parsed through a pointer into its buffer while the sink ran; a
    # nested feed reallocated the buffer (use-after-free) and messages came out twice.
    sink = ReenteringSink(swallow=True)
    reader = sink.reader = speedups.FrameReader(0, None, sink)
    assert reader.feed(b"\x81\x05hel") == []
    assert reader.feed(b"lo\x81\x05world\x81\x05again") == []
    assert sink.got == [b"hello", b"world", b"again"]
    assert len(sink.errors) == 1 and "called from its own sink" in str(sink.errors[0])
    reader.feed(frame(b"next", 1))  # the refused data was never taken; reading goes on
    assert sink.got[-1] == b"next" and reader.error is None


def test_an_exception_from_the_sink_ends_reading(speedups: SimpleNamespace) -> None:
    sink = ReenteringSink(swallow=False)
    reader = sink.reader = speedups.FrameReader(0, None, sink)
    with pytest.raises(RuntimeError, match="called from its own sink"):
        reader.feed(frame(b"one", 1) + frame(b"two", 1))
    assert sink.got == [b"one"]
    with pytest.raises(RuntimeError, match="stopped") as stopped:
        reader.feed(frame(b"three", 1))
    assert sink.got == [b"one"]
    assert "called from its own sink" in str(stopped.value.__cause__)


class Inflater:
    """A custom inflater: returns ``result(frame)``; may feed the reader from inside."""

    def __init__(self, result: object, reader: object = None) -> None:
        self.result = result
        self.reader = reader

    def feed(self, data: bytes) -> object:
        if self.reader is not None:
            self.reader.feed(frame(b"nested", 1))  # type: ignore[attr-defined]
        return self.result(data) if callable(self.result) else self.result


def test_feed_from_its_own_inflater_is_refused(speedups: SimpleNamespace) -> None:
    inflater = Inflater(bytes)
    reader = speedups.FrameReader(0, inflater)
    inflater.reader = reader
    with pytest.raises(RuntimeError, match="called from its own sink or inflater"):
        reader.feed(frame(b"x" * 300, 2))
    with pytest.raises(RuntimeError, match="stopped"):
        reader.feed(b"")


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (bytearray, b"payload"),
        (memoryview, b"payload"),
        (lambda data: memoryview(bytearray(data))[1:], b"ayload"),
        (None, None),  # part of a message
    ],
)
def test_inflater_output_becomes_bytes(
    speedups: SimpleNamespace, result: object, expected: bytes | None
) -> None:
    # The compiled twin cast the output with <bytes> unchecked and read a bytearray's header.
    sink: list[object] = []
    reader = speedups.FrameReader(0, Inflater(result), sink)
    assert reader.feed(frame(b"payload", 2)) == [] and reader.error is None
    assert sink == ([] if expected is None else [expected])
    assert all(type(item) is bytes for item in sink)


@pytest.mark.parametrize("result", [5, "text", object(), (b"a",)])
def test_inflater_output_that_is_not_bytes_stops_reading(
    speedups: SimpleNamespace, result: object
) -> None:
    sink: list[object] = []
    reader = speedups.FrameReader(0, Inflater(lambda data: result), sink)
    reader.feed(frame(b"payload", 2) + frame(b"more", 2))
    assert sink == []
    assert isinstance(reader.error, CompressionError)
    assert "the inflater returned" in str(reader.error)


def test_max_size_can_change_between_feeds(speedups: SimpleNamespace) -> None:
    reader = speedups.FrameReader(100)
    assert reader.max_size == 100
    assert reader.feed(frame(b"x" * 50, 1)) == [(1, b"x" * 50)]
    reader.max_size = 10
    assert reader.max_size == 10
    assert reader.feed(frame(b"x" * 11, 1)) == []
    assert reader.error is not None
    assert reader.error.args == ("message over the 10 byte limit", 1009)


@pytest.mark.parametrize(
    ("max_size", "expected"), [(None, 0), (0, 0), (7, 7), (2**64, 2**64), (2**70, 2**70)]
)
def test_max_size_values(speedups: SimpleNamespace, max_size: int | None, expected: int) -> None:
    reader = speedups.FrameReader(max_size)
    assert reader.max_size == expected
    assert reader.feed(frame(b"x" * 5, 1)) == [(1, b"x" * 5)]


@pytest.mark.parametrize(
    ("max_size", "error"), [(-1, ValueError), (1.5, TypeError), ("10", TypeError)]
)
def test_max_size_rejected(speedups: SimpleNamespace, max_size: object, error: type) -> None:
    with pytest.raises(error, match="max_size"):
        speedups.FrameReader(max_size)
    reader = speedups.FrameReader(5)
    with pytest.raises(error, match="max_size"):
        reader.max_size = max_size
    assert reader.max_size == 5


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview, lambda b: memoryview(b)[::1]])
def test_feed_takes_any_bytes_like(speedups: SimpleNamespace, kind: object) -> None:
    data = frame(b"hello", 1) + frame(b"partial", 2)[:4]
    reader = speedups.FrameReader()
    assert reader.feed(kind(data)) == [(1, b"hello")]  # type: ignore[operator]
    assert reader.feed(kind(frame(b"partial", 2)[4:])) == [(2, b"partial")]  # type: ignore[operator]


@pytest.mark.parametrize("data", ["text", None, 5, [1, 2]])
def test_feed_rejects_what_is_not_bytes_like(speedups: SimpleNamespace, data: object) -> None:
    with pytest.raises(TypeError, match="bytes-like"):
        speedups.FrameReader().feed(data)


def test_sink_and_inflater_are_checked_at_construction(speedups: SimpleNamespace) -> None:
    with pytest.raises(AttributeError):
        speedups.FrameReader(0, None, object())
    with pytest.raises(AttributeError):
        speedups.FrameReader(0, object())


# ---- issue 21 item 5: text messages must be valid UTF-8 (RFC 6455 8.1) -------------------

UTF8_CASES = [
    b"plain ascii",
    "héllo wörld 🔥 한국어".encode(),
    b"\xef\xbf\xbf",  # U+FFFF
    b"\xf4\x8f\xbf\xbf",  # U+10FFFF
    b"x" * 7 + "é".encode() + b"y" * 9,  # a multi-byte character across the word loop
    b"\xff",
    b"\xc0\x80",  # overlong NUL
    b"\xc1\xbf",
    b"\xe0\x80\x80",  # overlong
    b"\xe0\x9f\xbf",
    b"\xf0\x8f\xbf\xbf",  # overlong 4-byte
    b"\xed\xa0\x80",  # a surrogate
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xf5\x80\x80\x80",
    b"\x80",  # a lone continuation byte
    b"abcdefgh\xc3",  # cut short at the end
    b"abc\xe2\x82",
    b"abc\xf0\x9f\x94",
    b"\xc3(",  # a lead without its continuation
    b"\xe2(\xa1",
    b'{"t":"MESSAGE_CREATE","d":{"content":"' + b"\xfe" * 42 + b'"}}',
]


@pytest.mark.parametrize("payload", UTF8_CASES)
def test_text_messages_are_checked_as_python_decodes(payload: bytes) -> None:
    """Every twin's verdict is ``bytes.decode("utf-8")``'s; invalid is close code 1007."""
    try:
        payload.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    data = frame(b"before", 1) + frame(payload, 1) + frame(b"after", 1)
    out, error = both(data, [3, len(data) // 2])
    if valid:
        assert error is None
        assert out == [(1, b"before"), (1, payload), (1, b"after")]
    else:
        assert out == [(1, b"before")]
        assert error == ("text message is not valid UTF-8", 1007)


@given(st.binary(max_size=40), st.lists(st.integers(0, 60), max_size=3))
@settings(max_examples=300, deadline=None)
def test_any_text_bytes_get_the_decoders_verdict(payload: bytes, cuts: list[int]) -> None:
    try:
        payload.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    _, error = both(frame(payload, 1), cuts)
    assert (error is None) == valid
    _, error = both(frame(payload, 2), cuts)  # binary: never checked
    assert error is None


def test_a_fragmented_text_message_is_checked_whole() -> None:
    """A character split over two fragments is valid; invalid bytes in any fragment are not."""
    fire = "🔥".encode()
    ok = frame(fire[:2], 1, fin=False) + frame(fire[2:], 0)
    out, error = both(ok, [1])
    assert error is None and out == [(1, fire)]
    bad = frame(b"ok", 1, fin=False) + frame(b"\xff", 0, fin=False) + frame(b"ok", 0)
    out, error = both(bad, [])
    assert out == [] and error == ("text message is not valid UTF-8", 1007)


def test_invalid_text_is_checked_before_the_inflater_and_sink(speedups: SimpleNamespace) -> None:
    class Inflater:
        def __init__(self) -> None:
            self.fed: list[bytes] = []

        def feed(self, data: bytes) -> bytes:
            self.fed.append(data)
            return data

    sink: list[bytes] = []
    inflater = Inflater()
    reader = speedups.FrameReader(0, inflater, sink)
    assert reader.feed(frame(b"\xc3\xa9", 1) + frame(b"\xc3", 1) + frame(b"x", 1)) == []
    assert inflater.fed == [b"\xc3\xa9"] and sink == [b"\xc3\xa9"]
    assert reader.error is not None and reader.error.close_code == 1007

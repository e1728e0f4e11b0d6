"""The dispatch drain twins: identical items, stops and sequences; the slow path keeps the rest."""

from __future__ import annotations

import zlib
from collections import deque
from types import MappingProxyType, SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import EventType, EventTypeFlags, backends, codec
from gateway._speedups import CompressionError, FrameError, ScanError, twins
from gateway.events import Event
from gateway.protocol import _dispatch_table

WANTED = int(EventTypeFlags.MESSAGE_CREATE | EventTypeFlags.TYPING_START)
TABLE = _dispatch_table(WANTED)


def dispatch(name: str, seq: int, d: bytes = b'{"id":"1"}') -> bytes:
    return b'{"t":"%s","s":%d,"op":0,"d":%s}' % (name.encode(), seq, d)


#: Payloads a shard meets, each with whether the drain may take it.
CASES: list[tuple[bytes, bool]] = [
    (dispatch("MESSAGE_CREATE", 1), True),  # wanted
    (dispatch("PRESENCE_UPDATE", 2), True),  # known, not wanted
    (b'{"op":0,"d":{"x":[1,{"t":"no"}]},"s":3,"t":"TYPING_START"}', True),  # t after d
    (b' { "t" : "MESSAGE_CREATE" , "s" : 4 , "op" : 0 , "d" : null } ', True),  # spaces
    (b'{"t":"MESSAGE\\u005fCREATE","s":5,"op":0,"d":{}}', True),  # an escaped name
    (b'{"t":"MESSAGE_CREATE","s":6,"op":-0,"d":{}}', True),  # -0 is 0
    (dispatch("READY", 7, b'{"session_id":"a"}'), False),  # changes state: receive()
    (dispatch("RESUMED", 8), False),
    (dispatch("SOMETHING_NEW", 9), False),  # unknown: receive() logs it
    (b'{"t":null,"s":null,"op":11,"d":null}', False),  # heartbeat ACK
    (b'{"t":"MESSAGE_CREATE","s":null,"op":0,"d":{}}', False),  # no sequence
    (b'{"t":"MESSAGE_CREATE","s":10,"op":00,"d":{}}', True),  # a peek, not a validator
    (b'{"t":"MESSAGE_CREATE","s":', False),  # cut short
    (b'{"t":"MESSAGE_CREATE","s":11,"op":0,"d":{"id":', True),  # decoded (and fails) later
    (b'{"t":"\xff","s":12,"op":0,"d":{}}', False),  # invalid UTF-8 in the name
    (b"[]", False),
    (b"", False),
]


def frames_of(payloads: list[bytes], compressed: bool, splits: list[int]) -> list[bytes]:
    if not compressed:
        return list(payloads)
    compressor = zlib.compressobj()
    frames: list[bytes] = []
    for i, payload in enumerate(payloads):
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        cut = min(splits[i % len(splits)] if splits else 0, len(data) - 5)
        if cut > 0 and not data[:cut].endswith(b"\x00\x00\xff\xff"):
            frames += [data[:cut], data[cut:]]  # one message over two frames
        else:
            frames.append(data)
    return frames


def run(twin: SimpleNamespace, frames: list[Any], limit: int, compressed: bool) -> list[Any]:
    """Drive drain as the shard does; the trace of what went where, with sequences."""
    dispatcher = twin.Dispatcher(TABLE, codec.fast_loads, Event)
    inflater = twin.ZlibStream(backends.zlib.decompressobj()) if compressed else None
    source, payloads, ready = deque(frames), deque(), deque()  # type: ignore[var-annotated]
    trace: list[Any] = []
    while True:
        count, seq = dispatcher.drain(source, payloads, ready, limit, inflater)
        assert count == len(ready) <= limit
        trace.append(("drained", list(ready), seq))
        ready.clear()
        if payloads:
            item = payloads.popleft()
            trace.append(("slow", item if isinstance(item, bytes) else repr(item)))
            if not isinstance(item, bytes):
                break  # a CompressionError ends the stream
        elif source and not isinstance(source[0], bytes):
            trace.append(("error", repr(source.popleft())))
        elif count == 0:
            return trace
    return trace


@pytest.mark.parametrize("compressed", [False, True])
def test_what_the_drain_takes(speedups: SimpleNamespace, compressed: bool) -> None:
    payloads = [payload for payload, _ in CASES]
    trace = run(speedups, frames_of(payloads, compressed, [3]), 64, compressed)
    taken = [item for step in trace if step[0] == "drained" for item in step[1]]
    slow = [step[1] for step in trace if step[0] == "slow"]
    assert slow == [payload for payload, fast in CASES if not fast]
    expected = []
    for payload, fast in CASES:
        if fast:
            wanted = b"MESSAGE" in payload or b"TYPING" in payload
            expected.append(payload if wanted else (payload, None))
    assert taken == expected


def test_the_last_sequence_of_a_run_is_returned(speedups: SimpleNamespace) -> None:
    frames = [dispatch("MESSAGE_CREATE", n) for n in range(1, 6)] + [b'{"op":11}']
    trace = run(speedups, frames, 3, False)
    assert [step[2] for step in trace if step[0] == "drained"] == [3, 5, None]


def test_a_stale_sequence_never_lowers_what_a_run_returns(speedups: SimpleNamespace) -> None:
    """s = 2..9 then a stale 6 in one run: 9, or the next RESUME would replay 7-9 (issue 21)."""
    frames = [dispatch("MESSAGE_CREATE", n) for n in [*range(2, 10), 6]]
    trace = run(speedups, frames, 64, False)
    assert [step[2] for step in trace if step[0] == "drained"] == [9, None]


def test_errors_stay_in_place(speedups: SimpleNamespace) -> None:
    error = FrameError("masked frame from the server", 1002)
    trace = run(speedups, [dispatch("MESSAGE_CREATE", 1), error, dispatch("MESSAGE_CREATE", 2)],
                64, False)  # fmt: skip
    assert [step[0] for step in trace] == ["drained", "error", "drained", "drained"]
    frames = frames_of([dispatch("MESSAGE_CREATE", 1)], True, [])
    trace = run(speedups, [*frames, b"\x00\x01garbage\x00\x00\xff\xff"], 64, True)
    assert trace[0][1] == [dispatch("MESSAGE_CREATE", 1)]
    assert trace[1][0] == "slow" and "CompressionError" in trace[1][1]


def test_event_decodes_on_take(speedups: SimpleNamespace) -> None:
    dispatcher = speedups.Dispatcher(TABLE, codec.fast_loads, Event)
    event = dispatcher.event(dispatch("MESSAGE_CREATE", 7, b'{"id":"9"}'))
    assert type(event) is Event
    assert event == Event(EventType.MESSAGE_CREATE, {"id": "9"}, 7, "MESSAGE_CREATE")
    escaped = dispatcher.event(b'{"t":"MESSAGE\\u005fCREATE","s":5,"op":0}')
    assert escaped == Event(EventType.MESSAGE_CREATE, None, 5, "MESSAGE_CREATE")
    for bad in (b'{"t":"MESSAGE_CREATE","s":1,"op":0,"d":{"id":', dispatch("PRESENCE_UPDATE", 1),
                b'{"t":"MESSAGE_CREATE","s":', dispatch("READY", 1)):  # fmt: skip
        with pytest.raises(ValueError):
            dispatcher.event(bad)


def test_event_class_must_be_a_tuple(speedups: SimpleNamespace) -> None:
    with pytest.raises(TypeError):
        speedups.Dispatcher(TABLE, codec.fast_loads, dict)


_kinds = st.sampled_from([payload for payload, _ in CASES])
_names = st.sampled_from(["MESSAGE_CREATE", "TYPING_START", "PRESENCE_UPDATE", "READY", "X"])
_bodies = st.sampled_from([b"{}", b"null", b'{"s":1,"t":"READY"}', b"[1,2]"])
_dispatches = st.builds(dispatch, _names, st.integers(0, 2**40), _bodies)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_kinds, _dispatches, st.binary(max_size=40)), max_size=30),
       st.integers(1, 8), st.booleans(), st.lists(st.integers(0, 30), max_size=5))  # fmt: skip
def test_twins_agree(
    payloads: list[bytes], limit: int, compressed: bool, splits: list[int]
) -> None:
    frames = frames_of(payloads, compressed, splits)
    traces = [run(twin, frames, limit, compressed) for twin in twins().values()]
    assert all(trace == traces[0] for trace in traces)
    # Every payload comes out once, in order, through the drain or the slow path.
    out = [item for step in traces[0] if step[0] != "error"
           for item in (step[1] if step[0] == "drained" else [step[1]])]  # fmt: skip
    assert [item[0] if isinstance(item, tuple) else item for item in out] == payloads


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_kinds, _dispatches, st.binary(max_size=40)), max_size=10))
def test_event_twins_agree(payloads: list[bytes]) -> None:
    for payload in payloads:
        results = []
        for twin in twins().values():
            try:
                results.append(twin.Dispatcher(TABLE, codec.fast_loads, Event).event(payload))
            except (ValueError, ScanError):
                results.append("ValueError")
        assert all(result == results[0] for result in results)


# ---- hostile input and callers (issue #13) -------------------------------------------------

NINES = b"9" * 5000  # past int()'s default limit of 4300 digits


@pytest.mark.parametrize(
    "huge",
    [
        b'{"t":"MESSAGE_CREATE","s":' + NINES + b',"op":0,"d":{}}',
        b'{"t":"MESSAGE_CREATE","s":1,"op":' + NINES + b',"d":{}}',
        b'{"op":0,"t":"MESSAGE\\u005fCREATE","s":' + NINES + b"}",
    ],
)
@pytest.mark.parametrize("held", [False, True])
def test_a_huge_number_stops_the_drain_and_loses_nothing(
    speedups: SimpleNamespace, huge: bytes, held: bool
) -> None:
    # The compiled drain raised ValueError after queueing the payload and dropping it from
    # payloads, losing (count, last) too.
    dispatcher = speedups.Dispatcher(TABLE, codec.fast_loads, Event)
    first, after = dispatch("MESSAGE_CREATE", 1), dispatch("MESSAGE_CREATE", 3)
    frames = deque([first, after] if held else [first, huge, after])
    payloads = deque([huge] if held else [])
    ready: deque[Any] = deque()
    if held:  # a payload already waiting comes first
        assert dispatcher.drain(frames, payloads, ready, 64) == (0, None)
        assert list(ready) == [] and list(payloads) == [huge]
        return
    assert dispatcher.drain(frames, payloads, ready, 64) == (1, 1)
    assert list(ready) == [first] and list(payloads) == [huge] and list(frames) == [after]
    with pytest.raises(ScanError, match="integer too long"):  # what receive() then meets
        speedups.scan(payloads[0])


class Inflater:
    def __init__(self, result: Any, dispatcher: Any = None) -> None:
        self.result = result
        self.dispatcher = dispatcher

    def feed(self, frame: bytes) -> Any:
        if self.dispatcher is not None:
            self.dispatcher.drain(deque(), deque(), deque(), 1)
        return self.result(frame)


@pytest.mark.parametrize("result", [bytearray, memoryview, lambda f: memoryview(bytearray(f))])
def test_bytes_like_inflater_output(speedups: SimpleNamespace, result: Any) -> None:
    # The compiled _take cast it with <bytes> unchecked and read the object's header.
    dispatcher = speedups.Dispatcher(TABLE, codec.fast_loads, Event)
    frames = deque([dispatch("MESSAGE_CREATE", 1), dispatch("PRESENCE_UPDATE", 2)])
    payloads: deque[Any] = deque()
    ready: deque[Any] = deque()
    assert dispatcher.drain(frames, payloads, ready, 64, Inflater(result)) == (2, 2)
    assert list(ready) == [dispatch("MESSAGE_CREATE", 1), (dispatch("PRESENCE_UPDATE", 2), None)]
    assert type(ready[0]) is bytes and type(ready[1][0]) is bytes


@pytest.mark.parametrize("result", [5, "text", [b"x"]])
def test_inflater_output_that_is_not_bytes_like(speedups: SimpleNamespace, result: Any) -> None:
    dispatcher = speedups.Dispatcher(TABLE, codec.fast_loads, Event)
    good = dispatch("MESSAGE_CREATE", 1)
    frames = deque([good, b"bad", good])
    payloads: deque[Any] = deque()
    ready: deque[Any] = deque()
    inflater = Inflater(lambda f: f if f == good else result)
    assert dispatcher.drain(frames, payloads, ready, 64, inflater) == (1, 1)
    assert list(ready) == [good] and list(frames) == [good]
    assert len(payloads) == 1 and isinstance(payloads[0], CompressionError)


def test_drain_from_its_own_inflater_is_refused(speedups: SimpleNamespace) -> None:
    dispatcher = speedups.Dispatcher(TABLE, codec.fast_loads, Event)
    inflater = Inflater(bytes, dispatcher)
    with pytest.raises(RuntimeError, match="called from its own inflater"):
        dispatcher.drain(deque([b"{}"]), deque(), deque(), 1, inflater)
    inflater.dispatcher = None  # not stuck: the next drain works
    assert dispatcher.drain(deque([dispatch("MESSAGE_CREATE", 4)]), deque(), deque(), 1,
                            inflater) == (1, 4)  # fmt: skip


def test_the_table_is_copied(speedups: SimpleNamespace) -> None:
    # The compiled twin cached the last name's entry, so a later change was half seen.
    table = dict(TABLE)
    dispatcher = speedups.Dispatcher(table, codec.fast_loads, Event)
    payload = dispatch("MESSAGE_CREATE", 1)
    ready: deque[Any] = deque()
    assert dispatcher.drain(deque([payload]), deque(), ready, 1) == (1, 1)
    del table["MESSAGE_CREATE"]
    table["TYPING_START"] = None
    assert dispatcher.drain(deque([payload]), deque(), ready, 1) == (1, 1)
    assert list(ready) == [payload, payload]
    assert dispatcher.event(dispatch("TYPING_START", 2)).type is EventType.TYPING_START
    view = dispatcher.table
    assert view == TABLE and view["MESSAGE_CREATE"] is EventType.MESSAGE_CREATE
    with pytest.raises(TypeError):
        view["X"] = None  # type: ignore[index]


def test_any_mapping_is_a_table(speedups: SimpleNamespace) -> None:
    # A MappingProxyType matched nothing in the compiled twin.
    dispatcher = speedups.Dispatcher(MappingProxyType(TABLE), codec.fast_loads, Event)
    ready: deque[Any] = deque()
    assert dispatcher.drain(deque([dispatch("MESSAGE_CREATE", 1)]), deque(), ready, 1) == (1, 1)
    assert dispatcher.event(ready[0]).type is EventType.MESSAGE_CREATE


@pytest.mark.parametrize("table", [None, ["MESSAGE_CREATE"], {1: None}, {b"READY": None}])
def test_what_is_not_a_table(speedups: SimpleNamespace, table: Any) -> None:
    # table=None stopped every drain silently in the compiled twin.
    with pytest.raises(TypeError, match="table"):
        speedups.Dispatcher(table, codec.fast_loads, Event)


def test_tables_alike_share_one_copy(speedups: SimpleNamespace) -> None:
    # One copy per shard would cost ~4 KiB of each idle shard.
    a = speedups.Dispatcher(dict(TABLE), codec.fast_loads, Event)
    b = speedups.Dispatcher(dict(TABLE), codec.fast_loads, Event)
    c = speedups.Dispatcher({"A": 1}, codec.fast_loads, Event)
    d = speedups.Dispatcher({"A": True}, codec.fast_loads, Event)  # equal, not the same
    assert a.table == b.table and a.table.copy() is not TABLE
    assert type(c.table["A"]) is int and d.table["A"] is True


@pytest.mark.parametrize("limit", [2**63, 2**64, 2**100])
def test_any_limit(speedups: SimpleNamespace, limit: int) -> None:
    dispatcher = speedups.Dispatcher(TABLE, codec.fast_loads, Event)
    frames = deque([dispatch("MESSAGE_CREATE", n) for n in range(1, 4)])
    assert dispatcher.drain(frames, deque(), deque(), limit) == (3, 3)
    assert dispatcher.drain(deque([dispatch("MESSAGE_CREATE", 1)]), deque(), deque(), -limit) == (
        0,
        None,
    )


def test_drain_argument_types(speedups: SimpleNamespace) -> None:
    dispatcher = speedups.Dispatcher(TABLE, codec.fast_loads, Event)
    with pytest.raises(TypeError, match="limit must be an int"):
        dispatcher.drain(deque(), deque(), deque(), 2.5)
    with pytest.raises(TypeError, match="deque"):
        dispatcher.drain([], deque(), deque(), 1)
    with pytest.raises(TypeError, match="deque"):
        dispatcher.drain(deque(), deque(), [], 1)


@pytest.mark.parametrize("payload", [bytearray(b"{}"), memoryview(b"{}"), "{}", None])
def test_event_takes_bytes_only(speedups: SimpleNamespace, payload: Any) -> None:
    with pytest.raises(TypeError, match="payload must be bytes"):
        speedups.Dispatcher(TABLE, codec.fast_loads, Event).event(payload)


@pytest.mark.parametrize("backend", ["json", "ujson", "orjson"])
@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b"NaN", b'"\\ud800"', b'"\xed\xa0\x80"'],
    ids=["deep", "nan", "lone_surrogate", "encoded_surrogate"],
)
def test_event_error_path_is_value_error_only(
    speedups: SimpleNamespace, backend: str, body: bytes
) -> None:
    """A wanted dispatch whose ``d`` no backend may decode: ``event`` raises the codec's
    DecodeError (a ValueError), never RecursionError or a value with NaN in it.
    """
    try:
        loads = codec.decoder(backend)
    except ImportError:
        pytest.skip(f"{backend} is not installed")
    dispatcher = speedups.Dispatcher(TABLE, loads, Event)
    ready: deque[Any] = deque()
    payload = dispatch("MESSAGE_CREATE", 1, body)
    assert dispatcher.drain(deque([payload]), deque(), ready, 10) == (1, 1)
    with pytest.raises(codec.DecodeError):
        dispatcher.event(ready.popleft())


@pytest.mark.parametrize(
    "payload",
    [
        b'{"t":"MESSAGE_CREATE","s":1,"op":0,"d":{},"t":"TYPING_START"}',
        b'{"t":"MESSAGE_CREATE","s":1,"op":0,"d":{},"s":99}',
        b'{"t":"MESSAGE_CREATE","s":1,"op":0,"d":{},"op":7}',
        b'{"t":"MESSAGE\\u005fCREATE","s":1,"op":0,"d":{},"t":"TYPING_START"}',
    ],
    ids=["t", "s", "op", "escaped-t"],
)
def test_a_duplicate_past_the_scan_is_bad_data_when_decoded(
    speedups: SimpleNamespace, payload: bytes
) -> None:
    """Issue 21 item 19: the drain sequences a dispatch by its first ``t``/``s``; the
    decoder keeps the last. ``event`` refuses a payload where they differ (a ValueError),
    instead of delivering it as another event or sequence than the one recorded.
    """
    dispatcher = speedups.Dispatcher(TABLE, codec.fast_loads, Event)
    ready: deque[Any] = deque()
    assert dispatcher.drain(deque([payload]), deque(), ready, 10) == (1, 1)
    with pytest.raises(ValueError, match="duplicate"):
        dispatcher.event(ready.popleft())


def test_repeated_equal_envelope_keys_still_decode(speedups: SimpleNamespace) -> None:
    dispatcher = speedups.Dispatcher(TABLE, codec.fast_loads, Event)
    payload = b'{"t":"MESSAGE_CREATE","s":1,"op":0,"d":{"x":1},"s":1}'
    event = dispatcher.event(payload)
    assert (event.sequence, event.name, event.data) == (1, "MESSAGE_CREATE", {"x": 1})


def test_event_refuses_a_sequence_out_of_range_like_scan(speedups: SimpleNamespace) -> None:
    """The compiled event() compares its own scan with the decoded body: its s must obey the
    scan's range rule too (the fuzzer found s=-5 accepted by one twin only)."""
    dispatcher = speedups.Dispatcher(TABLE, codec.fast_loads, Event)
    with pytest.raises(ScanError, match="sequence out of range"):
        dispatcher.event(b'{"t":"MESSAGE_CREATE","s":-5,"op":0}')


def test_event_checks_op_then_s_as_scan_does(speedups: SimpleNamespace) -> None:
    """A huge op and an out-of-range s: the sequence error, from both twins (the fuzzer
    found the compiled event() comparing op first and calling it a duplicate key)."""
    dispatcher = speedups.Dispatcher(TABLE, codec.fast_loads, Event)
    with pytest.raises(ScanError, match="sequence out of range"):
        dispatcher.event(b'{"t":"MESSAGE_CREATE","s":-5,"op":-222222222222222222220}')

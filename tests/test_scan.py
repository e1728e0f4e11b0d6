"""Envelope scanner: the pure and Cython twins read op/s/t alike, and fail alike."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import PAYLOADS, payload_names
from gateway import _speedups
from gateway._speedups import ScanError


def expected(payload: Any) -> tuple[Any, Any, Any]:
    return payload.get("op"), payload.get("s"), payload.get("t")


@pytest.mark.parametrize("name", [n for n in payload_names() if not n.startswith("http_")])
def test_corpus(speedups: SimpleNamespace, name: str) -> None:
    raw = (PAYLOADS / f"{name}.json").read_bytes()
    assert speedups.scan(raw) == expected(json.loads(raw))


@pytest.mark.parametrize(
    ("raw", "result"),
    [
        (b'{"t":null,"s":null,"op":11,"d":null}', (11, None, None)),
        (b'{"op": 11}', (11, None, None)),
        (b"{}", (None, None, None)),
        (
            b' \n{ "d" : {"op": 5, "s": 9, "t": "X"}, "op" : 0 , "s":42,"t":"MESSAGE_CREATE"} ',
            (0, 42, "MESSAGE_CREATE"),
        ),
        (b'{"d":["}", "\\"", {"t":"no"}],"t":"A\\u0042","s":3,"op":0}', (0, 3, "AB")),
        (b'{"d":"op","x":true,"y":1.5e3,"op":1,"s":null}', (1, None, None)),
        (b'{"s":1234567890123456789,"op":0,"t":"\xc3\xa9"}', (0, 1234567890123456789, "é")),
    ],
)
def test_shapes(speedups: SimpleNamespace, raw: bytes, result: tuple[Any, ...]) -> None:
    assert speedups.scan(raw) == result


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b"{",
        b'{"op":}',
        b'{"op":"1"}',
        b'{"t":5}',
        b'{"s":1.5}',
        b'{"op":1 x',
        b'{"d":{"a":[1,2}',
        b'{"d":"abc',
        b"{op:1}",
        b'{"t":"\xff"}',
        b'{"t":"\\x"}',
        b'{"a":',
    ],
)
def test_errors(speedups: SimpleNamespace, raw: bytes) -> None:
    with pytest.raises(ScanError):
        speedups.scan(raw)


def _outcome(module: SimpleNamespace, raw: bytes) -> Any:
    try:
        return module.scan(raw)
    except ScanError as exc:
        return ("error", exc.args)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["op", "s", "t", "d", "x"]) | st.text(), children, max_size=4
        )
    ),
    max_leaves=12,
)
envelopes = st.dictionaries(
    st.sampled_from(["op", "s", "t", "d", "_trace"]),
    st.integers(-(2**70), 2**70) | st.none() | st.text() | json_values,
)


@settings(max_examples=400, deadline=None)
@given(envelopes, st.booleans())
def test_twins_agree_on_envelopes(envelope: dict[str, Any], spaced: bool) -> None:
    raw = json.dumps(envelope, indent=1 if spaced else None, ensure_ascii=False).encode()
    results = {name: _outcome(m, raw) for name, m in _speedups.twins().items()}
    assert len(set(map(repr, results.values()))) == 1, results
    ok = (
        all(
            isinstance(envelope.get(k), int | None) and not isinstance(envelope.get(k), bool)
            for k in ("op", "s")
        )
        and isinstance(envelope.get("t"), str | None)
        and (envelope.get("s") is None or 0 <= envelope["s"] < 2**63)
    )
    if ok:
        assert results["python"] == expected(envelope)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=40).map(str.encode))
def test_twins_agree_on_garbage(raw: bytes) -> None:
    results = [_outcome(m, raw) for m in _speedups.twins().values()]
    assert all(repr(r) == repr(results[0]) for r in results)


# ---- huge integers and argument types (issue #13) ------------------------------------------

NINES = b"9" * 5000  # past int()'s default limit of 4300 digits


@pytest.mark.parametrize(
    ("raw", "position"),
    [
        (b'{"t":"MESSAGE_CREATE","s":' + NINES + b',"op":0,"d":{}}', 26),  # Discord's layout
        (b'{"t":"MESSAGE_CREATE","s":1,"op":' + NINES + b',"d":{}}', 33),
        (b'{"op": -' + NINES + b', "s": 1}', 7),  # the general walk; the sign is included
        (b'{"s":' + NINES + b',"op":' + NINES + b"}", 5 + 5000 + 6),  # op converts first
    ],
)
def test_integers_past_the_digit_limit(
    speedups: SimpleNamespace, raw: bytes, position: int
) -> None:
    with pytest.raises(ScanError) as caught:
        speedups.scan(raw)
    assert caught.value.args == ("integer too long", position)


@pytest.mark.parametrize(
    ("raw", "position"),
    [
        (b'{"op":' + NINES + b',"op":1,"s":2,"t":"X"}', len(NINES) + 7),  # before converting
        (b'{"t":"A","t":"B","s":1,"op":0,"d":{}}', 9),
        (b'{"s":1,"s":2,"t":"A","op":0}', 7),
        (b'{"op":0, "d":{"op":1}, "op":1,"t":"A","s":1}', 23),
        (b'{"t":null,"t":"A","s":1,"op":0}', 10),
    ],
    ids=["op-long", "t", "s", "op-after-d", "t-null"],
)
def test_a_duplicate_envelope_key_is_bad_data(
    speedups: SimpleNamespace, raw: bytes, position: int
) -> None:
    """Issue 21 item 19: the scan kept the first ``t``/``s``, the decoder the last, so an
    event was sequenced as one type and delivered as another. A duplicate the scan reads
    is a ScanError (a ValueError) in both twins, at the same position.
    """
    with pytest.raises(ScanError) as caught:
        speedups.scan(raw)
    assert caught.value.args == ("duplicate key", position)


def test_nested_and_escaped_keys_are_not_duplicates(speedups: SimpleNamespace) -> None:
    raw = b'{"d":{"t":"X","s":9,"op":5},"\\u0074":"y","t":"A","s":1,"op":0}'
    assert speedups.scan(raw) == (0, 1, "A")


def test_errors_come_in_walk_order_before_conversion(speedups: SimpleNamespace) -> None:
    with pytest.raises(ScanError, match="expected a string or null"):
        speedups.scan(b'{"s":' + NINES + b',"t":5}')


def test_long_integers_within_the_limit(speedups: SimpleNamespace) -> None:
    digits = b"1" * 4300
    assert speedups.scan(b'{"s":1,"op":' + digits + b"}") == (int(digits), 1, None)


@pytest.mark.parametrize(
    "data", [bytearray(b"{}"), memoryview(b"{}"), "{}", None, type("B", (bytes,), {})(b"{}")]
)
def test_scan_takes_bytes_only(speedups: SimpleNamespace, data: object) -> None:
    with pytest.raises(TypeError, match="data must be bytes"):
        speedups.scan(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"t":"X","s":9223372036854775808,"op":0}',  # 2**63, the fast layout
        b'{"op":0,"s":9223372036854775808,"t":"X"}',  # the general walk
        b'{"op":0,"s":-1,"t":"X"}',
        b'{"t":"X","s":' + b"9" * 400 + b',"op":0}',
    ],
)
def test_a_sequence_outside_0_to_2_63_is_bad_data(speedups: SimpleNamespace, data: bytes) -> None:
    """A sequence no encoder can write back in RESUME would wedge the shard (issue 21)."""
    with pytest.raises(ScanError, match="sequence out of range"):
        speedups.scan(data)


def test_the_largest_sequence_scans(speedups: SimpleNamespace) -> None:
    assert speedups.scan(b'{"t":"X","s":9223372036854775807,"op":0}') == (0, 2**63 - 1, "X")

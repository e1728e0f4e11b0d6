"""codec: identical results over every JSON backend, on the whole payload corpus."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import pytest

from conftest import PAYLOADS, payload_names, run_python
from gateway import backends, codec

AVAILABLE = [n for n in ("json", "ujson", "orjson") if importlib.util.find_spec(n)]


@pytest.fixture(params=AVAILABLE)
def json_backend(
    request: pytest.FixtureRequest,
) -> tuple[Callable[[Any], Any], Callable[[Any], str]]:
    return backends._load_json(request.param)  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", payload_names())
def test_roundtrip_identical_to_stdlib(name: str, json_backend: Any) -> None:
    loads, dumps = json_backend
    ref_loads, ref_dumps = backends._load_json("json")
    raw = (PAYLOADS / f"{name}.json").read_bytes()
    assert loads(raw) == ref_loads(raw)
    assert loads(raw.decode()) == ref_loads(raw)
    assert dumps(loads(raw)) == ref_dumps(ref_loads(raw))


def test_non_ascii_and_snowflakes(json_backend: Any) -> None:
    loads, dumps = json_backend
    value = {"content": 'héllo 🔥 \u2028 / "q"', "id": 2**63 - 1, "neg": -(2**63), "f": 0.5}
    text = dumps(value)
    assert text == (
        '{"content":"héllo 🔥 \u2028 / \\"q\\"",'
        '"id":9223372036854775807,"neg":-9223372036854775808,"f":0.5}'
    )
    assert loads(text) == value
    assert loads(text.encode()) == value


@pytest.mark.parametrize("bad", [b"{", b"nope", b'{"a":}', b"\xff\xfe", b""])
def test_invalid_json_is_decode_error(bad: bytes) -> None:
    with pytest.raises(codec.DecodeError):
        codec.loads(bad)
    assert issubclass(codec.DecodeError, ValueError)


@pytest.mark.parametrize("name", AVAILABLE)
def test_codec_uses_forced_backend(name: str) -> None:
    code = (
        "from gateway import codec, backends; "
        "print(backends.JSON, codec.dumps({'a': [1, 'é']}), codec.loads(b'{\"x\": 1}')['x'])"
    )
    result = run_python(code, GATEWAY_JSON=name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [name, '{"a":[1,"é"]}', "1"]


# ---- hostile input: every backend raises DecodeError and nothing else ----------------------

DEEP = 100_000
HOSTILE = {
    "deep_list": b"[" * DEEP + b"]" * DEEP,
    "deep_object": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "nan": b'{"a":NaN}',
    "infinity": b'{"a":Infinity}',
    "minus_infinity": b'{"a":-Infinity}',
    "lone_high_surrogate_escape": b'{"a":"\\ud800"}',
    "lone_low_surrogate_escape": b'{"a":"x\\udc00y"}',
    "surrogate_key_escape": b'{"\\ud800":1}',
    "encoded_surrogate_bytes": b'{"a":"\xed\xa0\x80"}',
    "invalid_utf8": b'{"a":"\xff\xfe"}',
    "truncated_utf8": b'{"a":"\xe2\x82"}',
    "digits_past_the_int_limit": b'{"a":1' + b"0" * 5000 + b"}",
    "raw_surrogate_str": '{"a":"\udcff"}',
}


@pytest.fixture(params=AVAILABLE)
def contract_loads(request: pytest.FixtureRequest) -> Callable[[bytes | str], Any]:
    return codec.decoder(request.param)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_raises_only_decode_error(
    case: str, contract_loads: Callable[[bytes | str], Any]
) -> None:
    with pytest.raises(codec.DecodeError):
        contract_loads(HOSTILE[case])


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":"NaN and Infinity are fine in strings"}',
        b'{"a":"\\ud83d\\ude00 paired"}',
        '{"a":"한국어 🔥"}'.encode(),
        b'{"a":"\\u0041\\n"}',
        b"[" * 200 + b"]" * 200,
    ],
)
def test_valid_json_near_the_checks_decodes_alike(
    text: bytes, contract_loads: Callable[[bytes | str], Any]
) -> None:
    expected = backends._load_json("json")[0](text)
    assert contract_loads(text) == expected
    assert contract_loads(text.decode()) == expected


def test_huge_numbers_decode_or_raise_decode_error(
    contract_loads: Callable[[bytes | str], Any],
) -> None:
    """10**400 and 1e400: a value (stdlib, ujson) or DecodeError (orjson), never
    OverflowError.
    """
    for text in (b'{"a":1' + b"0" * 400 + b"}", b'{"a":1e400}', b'{"a":-1e400}'):
        try:
            contract_loads(text)
        except codec.DecodeError:
            pass


def test_fast_loads_has_the_same_contract() -> None:
    assert codec.fast_loads is codec.loads
    with pytest.raises(codec.DecodeError):
        codec.fast_loads(HOSTILE["deep_list"])

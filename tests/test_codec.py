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

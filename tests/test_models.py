"""gateway.models: typed events decoded straight from the wire (issue 22, section 1).

Every shipped model decodes every matching payload of the shared corpus and of the
emulator's traffic, on both speedup twins; a bot's own slim Struct decodes only what it
declares; ``Config.models`` is validated; a payload that does not fit its model is a typed
error and a resume, end to end over the emulator on both loops.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

import gateway.shard as shard_module
from conftest import LOOPS, PAYLOADS, run_python
from gateway import (
    Config,
    Event,
    EventType,
    EventTypeFlags,
    InMemoryQueue,
    Intents,
    ReceiveMessageError,
    ReceiveMessageErrorKind,
    Shard,
    ShardId,
    codec,
    models,
)
from gateway.protocol import _dispatch_table
from gateway.testing import GatewayEmulator
from gateway.testing.corpus import MIXES, Corpus, guild_ids, large_guild

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "payloads"
TABLE = _dispatch_table(int(EventTypeFlags.ALL))
TOKEN = "MTIz.fake.token"


def _dispatches(directory: Path) -> list[tuple[str, bytes]]:
    """Every received dispatch (op 0) in ``directory``: (file name, the wire bytes)."""
    out = []
    for path in sorted(directory.glob("*.json")):
        body = json.loads(path.read_text())
        if isinstance(body, dict) and body.get("op") == 0:
            # As the wire carries it: compact JSON, the file's key order.
            out.append((path.stem, json.dumps(body, separators=(",", ":")).encode()))
    return out


def _envelope(name: str, seq: int, d: bytes) -> bytes:
    return b'{"t":"%s","s":%d,"op":0,"d":%s}' % (name.encode(), seq, d)


def _corpus_payloads() -> list[tuple[str, bytes]]:
    """The emulator's generated traffic (every mix, both content variants) and its large
    GUILD_CREATE, enveloped as the emulator sends them.
    """
    guilds = guild_ids(4)
    out = []
    for mix in MIXES:
        corpus = Corpus(guilds, seed=1, variants=32, mix=mix)
        for i, event in enumerate(corpus._events):
            out.append((f"{mix}-{i}", _envelope(event.name, i + 1, event.data)))
            out.append((f"{mix}-{i}-nc", _envelope(event.name, i + 1, event.data_without_content)))
    big = json.dumps(large_guild(guilds[0]), separators=(",", ":")).encode()
    out.append(("large_guild", _envelope("GUILD_CREATE", 7, big)))
    return out


SAMPLES = [
    *(("shared/" + n, p) for n, p in _dispatches(SHARED)),
    *(("emulator/" + n, p) for n, p in _dispatches(PAYLOADS)),
    *(("corpus/" + n, p) for n, p in _corpus_payloads()),
]
TYPED = [(n, p) for n, p in SAMPLES if EventType(json.loads(p)["t"]) in models.DEFAULT]


def test_the_samples_cover_the_issue_s_events() -> None:
    """Guard against an empty parametrisation: the shared and emulator corpora both
    count, and the corpus covers the firehose's events.
    """
    names = {json.loads(p)["t"] for _, p in TYPED}
    assert {"GUILD_CREATE", "MESSAGE_CREATE", "PRESENCE_UPDATE", "VOICE_STATE_UPDATE"} <= names
    assert any(n.startswith("shared/") for n, _ in TYPED)
    assert any(n.startswith("emulator/") for n, _ in TYPED)
    assert sum(n.startswith("corpus/") for n, _ in TYPED) > 60


def _model_payload_pairs() -> list[Any]:
    return [pytest.param(p, id=n) for n, p in TYPED]


@pytest.mark.parametrize("payload", _model_payload_pairs())
def test_every_shipped_model_decodes_every_matching_payload(
    payload: bytes, speedups: SimpleNamespace
) -> None:
    body = json.loads(payload)
    event_type = EventType(body["t"])
    model = models.DEFAULT[event_type]
    dispatcher = speedups.Dispatcher(
        TABLE, codec.fast_loads, Event, models.decoders(models.DEFAULT)
    )
    d = body["d"]
    if event_type is EventType.READY:  # the protocol's: converted from its dict when taken
        data = models.converter(model)(d)
    else:
        event = dispatcher.event(payload)
        assert (event.type, event.sequence, event.name) == (event_type, body["s"], body["t"])
        data = event.data
    assert type(data) is model
    # Snowflakes are ints; what the model declares is what the JSON says.
    for field in ("id", "guild_id", "channel_id", "user_id"):
        if field in model.__struct_fields__ and d.get(field) is not None:
            assert getattr(data, field) == int(d[field])
    # Nothing was lost: the model's view of the JSON, encoded back, is a subset of it.
    assert _subset(msgspec.to_builtins(data), d)


def _subset(typed: Any, raw: Any) -> bool:
    """Whether every field the model kept equals the JSON's (ints compared as strings for
    snowflakes; None for what the JSON left out).
    """
    if isinstance(typed, dict):
        return isinstance(raw, dict) and all(
            (v is None and raw.get(k) is None) or (k in raw and _subset(v, raw[k]))
            for k, v in typed.items()
        )
    if isinstance(typed, list):
        return isinstance(raw, list) and len(typed) == len(raw) and all(map(_subset, typed, raw))
    if isinstance(typed, int) and isinstance(raw, str):
        return str(typed) == raw
    return bool(typed == raw)


def test_ready_model_decodes_ready_and_converts_its_dict() -> None:
    payload = (SHARED / "ready.json").read_bytes()
    ready = models.decoder(models.Ready)(payload).d
    assert ready.session_id and ready.user.id == 80351110224678912
    assert all(type(g.id) is int and g.unavailable for g in ready.guilds)
    # The shard converts the protocol's dict (what it read the session from): the same.
    as_dict = json.loads(payload)["d"]
    assert models.converter(models.Ready)(as_dict) == ready
    with pytest.raises(ValueError, match="session_id"):
        models.converter(models.Ready)(dict(as_dict, session_id=5))


class SlimMessage(msgspec.Struct):
    """A bot's own model: the few fields it reads."""

    id: int
    channel_id: int
    content: str
    guild_id: int | None = None


def test_a_slim_user_struct_decodes_only_what_it_declares(speedups: SimpleNamespace) -> None:
    payload = (SHARED / "message_create.json").read_bytes()
    decoders = models.decoders({EventType.MESSAGE_CREATE: SlimMessage})
    event = speedups.Dispatcher(TABLE, codec.fast_loads, Event, decoders).event(payload)
    d = json.loads(payload)["d"]
    assert event.data == SlimMessage(
        id=int(d["id"]), channel_id=int(d["channel_id"]), content=d["content"],
        guild_id=int(d["guild_id"]),
    )  # fmt: skip


def test_event_types_without_a_model_keep_the_dict(speedups: SimpleNamespace) -> None:
    decoders = models.decoders({EventType.MESSAGE_CREATE: SlimMessage})
    dispatcher = speedups.Dispatcher(TABLE, codec.fast_loads, Event, decoders)
    payload = (SHARED / "presence_update.json").read_bytes()
    event = dispatcher.event(payload)
    assert event.type is EventType.PRESENCE_UPDATE and event.data == json.loads(payload)["d"]


@pytest.mark.parametrize(
    "payload",
    [
        b'{"t":"MESSAGE_CREATE","s":3,"op":0,"d":{"id":"x1","channel_id":"2","content":""}}',
        b'{"t":"MESSAGE_CREATE","s":3,"op":0,"d":{"channel_id":"2","content":""}}',
        b'{"t":"MESSAGE_CREATE","s":3,"op":0,"d":[1,2]}',
        b'{"t":"MESSAGE_CREATE","s":3,"op":0}',
        b'{"t":"MESSAGE_CREATE","s":3,"op":0,"d":{"id":"1",',
        b'{"t":"MESSAGE_CREATE","s":3,"op":1,"d":{}}',
        b'{"t":"READY","s":3,"op":0,"d":{}}',
        b'{"t":"MESSAGE_CREATE","s":3,"op":0,"d":{"id":"1","channel_id":"2","content":"","x":'
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}}",
        b'{"t":"MESSAGE_CREATE","s":3,"op":0,"d":{"id":"1","channel_id":"2","content":"\\ud800"}}',
        b'{"t":"MESSAGE_CREATE","s":3,"op":0,"d":{"id":"1","channel_id":"2","content":NaN}}',
    ],
    ids=[
        "bad-snowflake",
        "missing-field",
        "wrong-shape",
        "no-d",
        "truncated",
        "op1",
        "ready",
        "deep-nesting",
        "lone-surrogate",
        "nan",
    ],
)
def test_a_payload_that_does_not_fit_its_model_is_a_value_error(
    payload: bytes, speedups: SimpleNamespace
) -> None:
    decoders = models.decoders({EventType.MESSAGE_CREATE: SlimMessage})
    dispatcher = speedups.Dispatcher(TABLE, codec.fast_loads, Event, decoders)
    with pytest.raises(ValueError):
        dispatcher.event(payload)


def test_typed_envelope_comes_from_the_scan(speedups: SimpleNamespace) -> None:
    """A duplicate ``t`` past the scan's stop cannot make the event disagree with the
    sequence the drain recorded: the typed path reads op/s/t from the scan only.
    """
    d = b'{"id":"1","channel_id":"2","content":"c"}'
    payload = b'{"t":"MESSAGE_CREATE","s":5,"op":0,"d":%s,"t":"X","s":9}' % d
    decoders = models.decoders({EventType.MESSAGE_CREATE: SlimMessage})
    event = speedups.Dispatcher(TABLE, codec.fast_loads, Event, decoders).event(payload)
    assert (event.type, event.sequence, event.name) == (
        EventType.MESSAGE_CREATE,
        5,
        "MESSAGE_CREATE",
    )


def test_dispatcher_checks_its_decoders(speedups: SimpleNamespace) -> None:
    for bad, error in (([1], TypeError), ({1: len}, TypeError), ({"MESSAGE_CREATE": 3}, TypeError)):
        with pytest.raises(error):
            speedups.Dispatcher(TABLE, codec.fast_loads, Event, bad)
    # A copy: a later change to the caller's mapping is not seen.
    decoders = models.decoders({EventType.MESSAGE_CREATE: SlimMessage})
    dispatcher = speedups.Dispatcher(TABLE, codec.fast_loads, Event, decoders)
    decoders.clear()
    payload = (SHARED / "message_create.json").read_bytes()
    assert type(dispatcher.event(payload).data) is SlimMessage


def test_config_models_is_validated_and_frozen() -> None:
    config = Config(TOKEN, models={EventType.MESSAGE_CREATE: SlimMessage})
    assert dict(config.models) == {EventType.MESSAGE_CREATE: SlimMessage}
    with pytest.raises(TypeError):
        config.models[EventType.GUILD_CREATE] = models.GuildCreate  # type: ignore[index]
    assert len(Config(TOKEN, models=models.DEFAULT).models) == len(models.DEFAULT)
    assert not Config(TOKEN).models
    bad: Any
    for bad in ([], {"MESSAGE_CREATE": SlimMessage}, {EventType.MESSAGE_CREATE: dict}):
        with pytest.raises(TypeError):
            Config(TOKEN, models=bad)
    for event_type in (
        EventType.RESUMED,
        EventType.UNKNOWN,
        EventType.GATEWAY_HELLO,
    ):
        with pytest.raises(ValueError, match=event_type.name):
            Config(TOKEN, models={event_type: SlimMessage})


def test_config_names_a_model_msgspec_cannot_decode_into() -> None:
    class Local(msgspec.Struct):
        id: int

    class Outer(msgspec.Struct):  # postponed annotations: "Local" cannot be resolved
        inner: Local

    with pytest.raises(TypeError, match="msgspec cannot decode into"):
        Config(TOKEN, models={EventType.MESSAGE_CREATE: Outer})


def test_without_models_msgspec_is_never_imported() -> None:
    code = (
        "import sys\n"
        "from gateway import Config, Shard, ShardId\n"
        "Shard(ShardId.ONE, config=Config('a.b.c'))\n"
        "assert 'msgspec' not in sys.modules, 'msgspec imported'\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr


# ---- end to end over the emulator ----------------------------------------------------------------


def _message(i: int) -> dict[str, Any]:
    d = json.loads((PAYLOADS / "message_create.json").read_text())["d"]
    return dict(d, id=str(1000 + i), content=f"message {i}")


async def _next(shard: Shard, wanted: EventType, timeout: float = 5.0) -> Event:
    async def run() -> Event:
        while True:
            event = await shard.next_event()
            if event.type is wanted:
                return event

    return await asyncio.wait_for(run(), timeout)


@pytest.mark.asyncio(loop_factories=LOOPS)
async def test_typed_events_end_to_end_and_a_bad_shape_is_deserializing_and_a_resume(
    speedups: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shard_module, "Dispatcher", speedups.Dispatcher)
    async with GatewayEmulator(heartbeat_interval=5, guilds=1) as emu:
        shard = Shard(
            ShardId.ONE, TOKEN, Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.MESSAGE_CONTENT,
            gateway_url=emu.url, queue=InMemoryQueue(max_concurrency=0),
            models={**models.DEFAULT, EventType.MESSAGE_CREATE: SlimMessage},
            backoff_base=0, min_reconnect_interval=0,
        )  # fmt: skip
        try:
            ready = await _next(shard, EventType.READY)
            assert type(ready.data) is models.Ready and shard.session is not None
            assert ready.data.session_id == shard.session.session_id
            guild = await _next(shard, EventType.GUILD_CREATE)
            assert type(guild.data) is models.GuildCreate and not guild.data.unavailable
            guild_id = guild.data.id

            await emu.dispatch("MESSAGE_CREATE", dict(_message(1), guild_id=str(guild_id)))
            event = await _next(shard, EventType.MESSAGE_CREATE)
            assert event.data == SlimMessage(
                id=1001, channel_id=event.data.channel_id, content="message 1", guild_id=guild_id
            )
            # Does not fit: the id is no snowflake. Then a good one, after the resume.
            bad = dict(_message(2), guild_id=str(guild_id), id="not a number")
            (bad_seq,) = await emu.dispatch("MESSAGE_CREATE", bad)
            await emu.dispatch("MESSAGE_CREATE", dict(_message(3), guild_id=str(guild_id)))
            with pytest.raises(ReceiveMessageError) as caught:
                await _next(shard, EventType.MESSAGE_CREATE)
            assert caught.value.kind is ReceiveMessageErrorKind.DESERIALIZING
            assert not caught.value.is_fatal()
            event = await _next(shard, EventType.MESSAGE_CREATE)
            assert type(event.data) is SlimMessage and event.data.content == "message 3"
            await emu.wait_for(lambda: emu.resumes)
            assert emu.resumes[0].data["seq"] >= bad_seq  # the bad one is not replayed
            assert len(emu.identifies) == 1
            # next_message() stays raw.
            await emu.dispatch("MESSAGE_CREATE", dict(_message(4), guild_id=str(guild_id)))
            while True:
                message = await asyncio.wait_for(shard.next_message(), 5)
                if '"message 4"' in getattr(message, "text", ""):
                    break
        finally:
            await shard.close()


class StrictReady(msgspec.Struct):
    """A READY model that no READY fits (a field Discord never sends)."""

    session_id: str
    never_sent: int


@pytest.mark.asyncio(loop_factories=LOOPS)
async def test_a_ready_that_does_not_fit_its_model_is_deserializing_and_a_resume() -> None:
    """The protocol took the session from READY before the model saw it: the error is typed,
    and the shard resumes that session (no second IDENTIFY)."""
    async with GatewayEmulator(heartbeat_interval=5, guilds=1) as emu:
        shard = Shard(
            ShardId.ONE, TOKEN, Intents.GUILDS, gateway_url=emu.url,
            queue=InMemoryQueue(max_concurrency=0), models={EventType.READY: StrictReady},
            backoff_base=0, min_reconnect_interval=0,
        )  # fmt: skip
        try:
            with pytest.raises(ReceiveMessageError) as caught:
                await _next(shard, EventType.READY)
            assert caught.value.kind is ReceiveMessageErrorKind.DESERIALIZING
            assert "never_sent" in str(caught.value)
            await _next(shard, EventType.RESUMED)
            assert len(emu.identifies) == 1 and len(emu.resumes) == 1
        finally:
            await shard.close()

"""Value types: ShardId, Intents, EventType, EventTypeFlags, OpCode, CloseCode, CloseFrame."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway import CloseCode, CloseFrame, EventType, EventTypeFlags, Intents, OpCode, ShardId
from gateway.close import invalidates_session, is_fatal
from gateway.events import ALWAYS_SENT, INTENT_EVENTS
from gateway.latency import Latency

# ---- ShardId ---------------------------------------------------------------------------------


def test_shard_id_one() -> None:
    assert ShardId.ONE == ShardId(0, 1)
    assert ShardId.ONE.to_list() == [0, 1]


@pytest.mark.parametrize(("number", "total"), [(-1, 1), (1, 1), (5, 3), (0, 0), (0, -2)])
def test_shard_id_rejects_invalid(number: int, total: int) -> None:
    with pytest.raises(ValueError):
        ShardId(number, total)


def test_shard_id_rejects_non_int() -> None:
    with pytest.raises(TypeError):
        ShardId("1", 2)  # type: ignore[arg-type]


def test_shard_id_value_semantics() -> None:
    assert ShardId(3, 16).to_list() == [3, 16]
    assert {ShardId(3, 16), ShardId(3, 16)} == {ShardId(3, 16)}
    assert sorted([ShardId(2, 4), ShardId(0, 4)]) == [ShardId(0, 4), ShardId(2, 4)]
    assert str(ShardId(3, 16)) == "[3, 16]"
    assert repr(ShardId(3, 16)) == "ShardId(3, 16)"
    assert ShardId(5, 16).bucket(4) == 1
    assert ShardId(5, 16).bucket(0) == 0


def test_shard_routing_formula() -> None:
    guild = 197038439483310086
    owner = (guild >> 22) % 4
    assert [ShardId(n, 4).serves_guild(guild) for n in range(4)] == [n == owner for n in range(4)]


# ---- Intents -----------------------------------------------------------------------------------


def test_intent_masks_match_the_docs() -> None:
    assert Intents.all() == 53608447
    assert Intents.privileged() == 33026
    assert Intents.all_non_privileged() == 53575421
    assert Intents.MESSAGE_CONTENT == 1 << 15
    assert Intents.DIRECT_MESSAGE_POLLS == 1 << 25


def test_intents_parse() -> None:
    assert Intents.parse("guilds, GUILD_MESSAGES") == Intents.GUILDS | Intents.GUILD_MESSAGES
    assert Intents.parse("513") == Intents.GUILDS | Intents.GUILD_MESSAGES
    with pytest.raises(ValueError, match="GUILD_NOPE"):
        Intents.parse("GUILDS,GUILD_NOPE")
    with pytest.raises(ValueError):
        Intents.parse(str(1 << 17))


# ---- EventType / EventTypeFlags -------------------------------------------------------------


def _documented_dispatch_names() -> set[str]:
    """Every dispatch name of protocol.md section 9, when shared/ is beside the checkout."""
    doc = Path(__file__).resolve().parents[2] / "shared" / "docs" / "protocol.md"
    if not doc.exists():
        pytest.skip("shared/docs/protocol.md is not beside the checkout")
    text = doc.read_text()
    section = text[text.index("## 9.") : text.index("## 10.")]
    names = set(re.findall(r"`([A-Z_]{4,})`", section))
    return names - {"READY_SUPPLEMENTAL"}  # named there as an example of an unknown event


def test_event_type_has_every_documented_dispatch() -> None:
    dispatch = {t.value for t in EventType if t.is_dispatch}
    assert len(dispatch) == 79
    assert dispatch == _documented_dispatch_names()


def test_gateway_event_types() -> None:
    gateway = {t.value for t in EventType if not t.is_dispatch}
    assert gateway - {"UNKNOWN"} == {
        "GATEWAY_HELLO",
        "GATEWAY_HEARTBEAT",
        "GATEWAY_HEARTBEAT_ACK",
        "GATEWAY_RECONNECT",
        "GATEWAY_INVALIDATE_SESSION",
        "GATEWAY_CLOSE",
    }


def test_event_type_from_wire_name() -> None:
    assert EventType("MESSAGE_CREATE") is EventType.MESSAGE_CREATE
    assert str(EventType.MESSAGE_CREATE) == "MESSAGE_CREATE"


def test_one_distinct_bit_per_event_type() -> None:
    bits = [EventTypeFlags.from_event_type(t).value for t in EventType]
    assert all(b and b & (b - 1) == 0 for b in bits)
    assert len(set(bits)) == len(bits)
    assert sum(bits) == EventTypeFlags.ALL


def test_flags_contain_event_types() -> None:
    flags = EventTypeFlags.MESSAGE_CREATE | EventTypeFlags.READY
    assert EventType.MESSAGE_CREATE in flags
    assert EventType.TYPING_START not in flags
    assert EventType.TYPING_START in EventTypeFlags.ALL


def test_intent_groups() -> None:
    assert EventType.MESSAGE_CREATE in EventTypeFlags.GUILD_MESSAGES
    assert EventType.MESSAGE_CREATE in EventTypeFlags.DIRECT_MESSAGES
    assert EventType.PRESENCE_UPDATE in EventTypeFlags.GUILD_PRESENCES
    assert INTENT_EVENTS[Intents.GUILD_VOICE_STATES] == {
        EventType.VOICE_CHANNEL_EFFECT_SEND,
        EventType.VOICE_STATE_UPDATE,
    }
    assert EventType.THREAD_MEMBERS_UPDATE in INTENT_EVENTS[Intents.GUILD_MEMBERS]
    assert Intents.MESSAGE_CONTENT not in INTENT_EVENTS


def test_every_dispatch_belongs_to_an_intent_or_is_always_sent() -> None:
    in_groups = set().union(*INTENT_EVENTS.values())
    dispatch = {t for t in EventType if t.is_dispatch}
    assert in_groups | ALWAYS_SENT == dispatch
    assert not in_groups & ALWAYS_SENT


def test_from_intents() -> None:
    flags = EventTypeFlags.from_intents(Intents.GUILD_MESSAGES)
    assert EventType.MESSAGE_CREATE in flags
    assert EventType.READY in flags and EventType.GATEWAY_HELLO in flags
    assert EventType.INTERACTION_CREATE in flags
    assert EventType.TYPING_START not in flags
    assert EventType.GUILD_CREATE not in flags
    assert EventTypeFlags.from_intents(Intents.all()) == EventTypeFlags.ALL


# ---- OpCode / CloseCode / CloseFrame ---------------------------------------------------------


def test_opcodes() -> None:
    assert [int(o) for o in OpCode] == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 31, 43]


@pytest.mark.parametrize("code", list(CloseCode))
def test_close_code_policy_table(code: CloseCode) -> None:
    fatal = {4004, 4010, 4011, 4012, 4013, 4014}
    assert code.is_fatal() == (code in fatal)
    assert code.can_reconnect() == (code not in fatal)
    assert code.invalidates_session() == (code in {4007, 4009})


def test_close_policy_for_other_codes() -> None:
    for code in (None, 1000, 1001, 1006, 1011, 4000, 4900):
        assert not is_fatal(code)
        assert not invalidates_session(code)
    assert 4006 not in {c.value for c in CloseCode}


def test_close_frame() -> None:
    assert CloseFrame.NORMAL.code == 1000 and CloseFrame.NORMAL.ends_session
    assert CloseFrame.RESUME.code == 4000 and not CloseFrame.RESUME.ends_session
    assert CloseFrame(4000, "x") == CloseFrame(4000, "x")
    with pytest.raises(AttributeError):
        CloseFrame.NORMAL.code = 1001  # type: ignore[misc]
    with pytest.raises(ValueError):
        CloseFrame(999)
    with pytest.raises(ValueError):
        CloseFrame(4000, "x" * 124)


def test_latency_keeps_the_five_most_recent_round_trips() -> None:
    latency = Latency()
    assert latency.recent == () and latency.average is None
    for n in range(7):
        latency.record_sent(10.0 * n)
        latency.record_ack(10.0 * n + 0.1 * (n + 1))
    assert latency.recent == pytest.approx((0.3, 0.4, 0.5, 0.6, 0.7))
    assert latency.heartbeats == 7 and latency.average == pytest.approx(0.4)
    assert latency.received == pytest.approx(60.7)

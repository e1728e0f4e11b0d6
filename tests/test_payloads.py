"""gateway.payloads: the TypedDicts match real payloads, cover every event type, and narrow."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, NotRequired, get_args, get_origin, get_type_hints

import pytest

from conftest import load_payload, payload_names
from gateway import CloseFrame, Event, EventType
from gateway.payloads import PAYLOAD_TYPES, AnyEvent, OtherEvent, TypedEvent, _Other, typed
from gateway.testing.corpus import guild_payload

# ---- a small runtime checker for TypedDict definitions ---------------------------------------


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "__required_keys__")


def check(value: Any, tp: Any, path: str = "d") -> list[str]:
    """Where ``value`` does not fit ``tp`` (missing keys, undeclared keys, wrong kinds)."""
    if tp is Any:
        return []
    if tp is None or tp is type(None):
        return [] if value is None else [f"{path}: expected null, got {value!r}"]
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        fits = [check(value, arm, path) for arm in get_args(tp)]
        return [] if any(not f for f in fits) else min(fits, key=len)
    if origin is Literal:
        return [] if value in get_args(tp) else [f"{path}: {value!r} not in {get_args(tp)}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {value!r}"]
        (item,) = get_args(tp)
        return [e for i, v in enumerate(value) for e in check(v, item, f"{path}[{i}]")]
    if origin is dict:
        return [] if isinstance(value, dict) else [f"{path}: expected an object"]
    if _is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{path}: expected an object for {tp.__name__}, got {value!r}"]
        hints = get_type_hints(tp)
        errors = [f"{path}.{k}: missing ({tp.__name__})" for k in tp.__required_keys__ - set(value)]
        errors += [f"{path}.{k}: not declared in {tp.__name__}" for k in set(value) - set(hints)]
        for key in set(value) & set(hints):
            errors += check(value[key], hints[key], f"{path}.{key}")
        return errors
    if tp is float:
        return [] if isinstance(value, int | float) and not isinstance(value, bool) else [path]
    if tp is int:
        return [] if isinstance(value, int) and not isinstance(value, bool) else [path]
    return [] if isinstance(value, tp) else [f"{path}: expected {tp.__name__}, got {value!r}"]


# The docs' Emoji Example predates global_name; real traffic has it.
_KNOWN_GAPS = {"d.emojis[0].user.global_name: missing (User)"}


def _received(name: str) -> dict[str, Any] | None:
    payload = load_payload(name)
    if not isinstance(payload, dict) or payload.get("op") != 0:
        return None
    return payload


# The shipped dispatches whose type has a payload type.
DISPATCHES = [
    n for n in payload_names() if (p := _received(n)) and EventType(p["t"]) in PAYLOAD_TYPES
]


@pytest.mark.parametrize("name", DISPATCHES)
def test_shipped_dispatch_fits_its_payload_type(name: str) -> None:
    payload = _received(name)
    assert payload is not None
    errors = set(check(payload["d"], PAYLOAD_TYPES[EventType(payload["t"])])) - _KNOWN_GAPS
    assert not errors, sorted(errors)


def test_hello_fits() -> None:
    assert not check(load_payload("hello")["d"], PAYLOAD_TYPES[EventType.GATEWAY_HELLO])


def test_emulated_guild_create_fits() -> None:
    errors = set(check(guild_payload(1 << 22, members=3), PAYLOAD_TYPES[EventType.GUILD_CREATE]))
    assert not errors - _KNOWN_GAPS


def test_the_checker_catches_a_missing_and_an_undeclared_key() -> None:
    d = dict(load_payload("message_create")["d"])
    del d["content"]
    d["contnet"] = "x"
    errors = check(d, PAYLOAD_TYPES[EventType.MESSAGE_CREATE])
    assert "d.content: missing (MessageCreate)" in errors
    assert "d.contnet: not declared in MessageCreate" in errors


# ---- coverage and the typed union --------------------------------------------------------------


def test_every_event_type_is_typed_or_other_exactly_once() -> None:
    other = set(get_args(_Other))
    assert not other & set(PAYLOAD_TYPES)
    assert other | set(PAYLOAD_TYPES) == set(EventType), "add new event types to payloads.py"


def test_the_union_has_one_arm_per_payload_type() -> None:
    arms = [arm for arm in get_args(AnyEvent) if arm != OtherEvent]
    assert OtherEvent in get_args(AnyEvent)
    found = {}
    for arm in arms:
        assert get_origin(arm) is TypedEvent
        literal, data = get_args(arm)
        (event_type,) = get_args(literal)
        found[event_type] = data
    assert found == PAYLOAD_TYPES


def test_typed_returns_the_event_itself() -> None:
    event = Event(EventType.MESSAGE_CREATE, {"content": "hi"}, 3)
    assert typed(event) is event
    close = Event(EventType.GATEWAY_CLOSE, CloseFrame(4000))
    assert typed(close) is close


def test_not_required_marks_survive_for_documented_optional_fields() -> None:
    hints = get_type_hints(PAYLOAD_TYPES[EventType.MESSAGE_CREATE], include_extras=True)
    assert get_origin(hints["guild_id"]) is NotRequired
    assert get_origin(hints["content"]) is not NotRequired


def _member() -> dict[str, Any]:
    member: dict[str, Any] = load_payload("guild_members_chunk")["d"]["members"][0]
    return member


@pytest.mark.parametrize(
    ("event_type", "build"),
    [
        (EventType.GUILD_MEMBER_ADD, lambda: {**_member(), "guild_id": "1"}),
        (EventType.GUILD_MEMBER_REMOVE, lambda: {"guild_id": "1", "user": _member()["user"]}),
        (EventType.GUILD_MEMBER_UPDATE, lambda: {**_member(), "guild_id": "1"}),
        (EventType.MESSAGE_UPDATE, lambda: load_payload("message_create")["d"]),
        (EventType.MESSAGE_DELETE, lambda: {"id": "2", "channel_id": "3", "guild_id": "1"}),
        (EventType.GUILD_DELETE, lambda: load_payload("guild_delete_unavailable")["d"]),
    ],
)
def test_payloads_built_from_shipped_objects_fit(event_type: EventType, build: Any) -> None:
    errors = check(build(), PAYLOAD_TYPES[event_type])
    assert not errors, errors

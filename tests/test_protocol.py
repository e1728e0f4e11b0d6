"""ShardProtocol alone, with a fake clock and fixed randomness (protocol.md 3, 5, 6, 12)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway import CloseFrame, Config, EventType, EventTypeFlags, Intents, ShardId, ShardState
from gateway.protocol import RESUME_URL_ATTEMPTS, TRANSITIONS, NextAction, ShardProtocol


def wire(op: int, d: Any = None, s: int | None = None, t: str | None = None) -> bytes:
    return json.dumps({"t": t, "s": s, "op": op, "d": d}).encode()


def make(rng: float = 0.5, **config: Any) -> ShardProtocol:
    cfg = Config("secret-token", Intents.GUILDS, gateway_url="ws://127.0.0.1:1", **config)
    return ShardProtocol(ShardId(0, 1), cfg, rng=lambda: rng)


def hello(p: ShardProtocol, now: float = 0.0, interval_ms: int = 10_000) -> None:
    p.connection_opened(now)
    p.receive(wire(10, {"heartbeat_interval": interval_ms}), now)


def ready(p: ShardProtocol, now: float = 0.0) -> None:
    hello(p, now)
    p.identify(now)
    p.data_to_send(now)
    p.receive(wire(0, {"session_id": "abc", "resume_gateway_url": "ws://resume"}, 1, "READY"), now)


def sent_ops(payloads: list[str]) -> list[int]:
    return [json.loads(x)["op"] for x in payloads]


# ---- heartbeat ---------------------------------------------------------------------------


def test_first_heartbeat_waits_interval_times_jitter() -> None:
    p = make(rng=0.25)
    hello(p)
    assert p.data_to_send(0.0) == []
    assert p.next_deadline() == pytest.approx(2.5)
    p.on_timer(2.4)
    assert p.data_to_send(2.4) == []
    p.on_timer(2.5)
    assert sent_ops(p.data_to_send(2.5)) == [1]


def test_heartbeat_carries_last_sequence_and_repeats_every_interval() -> None:
    p = make(rng=0.0)
    ready(p)
    p.receive(wire(0, {}, 7, "GUILD_CREATE"), 0.1)
    p.on_timer(0.1)
    assert [json.loads(x) for x in p.data_to_send(0.1)] == [{"op": 1, "d": 7}]
    p.receive(wire(11), 0.2)
    assert p.next_deadline() == pytest.approx(10.0)
    assert p.latency.heartbeats == 1 and p.latency.average == pytest.approx(0.1)


def test_server_heartbeat_request_is_answered_at_once() -> None:
    p = make()
    hello(p)
    event = p.receive(wire(1), 1.0)
    assert event is not None and event.type is EventType.GATEWAY_HEARTBEAT
    assert [json.loads(x) for x in p.data_to_send(1.0)] == [{"op": 1, "d": None}]


def test_zombie_connection_is_closed_with_resumable_code() -> None:
    p = make(rng=0.0)
    ready(p)
    p.on_timer(0.0)
    p.data_to_send(0.0)  # beat 1, never acknowledged
    p.on_timer(10.0)
    assert p.close_request is not None and p.close_request.code not in (1000, 1001)
    assert p.data_to_send(10.0) == []  # nothing on a closing socket
    _, action = p.connection_closed(p.close_request.code, 10.1)
    assert action is NextAction.RESUME
    assert p.connect_url().startswith("ws://resume/?v=10")


# ---- identify / resume / invalid session ---------------------------------------------------


def test_identify_only_after_hello_and_permit() -> None:
    p = make()
    p.connection_opened(0.0)
    assert not p.wants_identify(0.0)
    p.receive(wire(10, {"heartbeat_interval": 1000}), 0.0)
    assert p.wants_identify(0.0)
    p.identify(0.0)
    (payload,) = p.data_to_send(0.0)
    d = json.loads(payload)["d"]
    assert d["shard"] == [0, 1] and d["intents"] == 1 and d["token"] == "secret-token"
    assert not p.wants_identify(0.0)


def test_resume_sent_after_hello_when_session_exists() -> None:
    p = make()
    ready(p)
    p.connection_closed(None, 1.0)
    hello(p, 2.0)
    (payload,) = p.data_to_send(2.0)
    assert json.loads(payload) == {
        "op": 6,
        "d": {"token": "secret-token", "session_id": "abc", "seq": 1},
    }
    assert p.state is ShardState.RESUMING
    p.receive(wire(0, {}, 2, "RESUMED"), 2.1)
    assert p.state is ShardState.ACTIVE


def test_invalid_session_false_identifies_after_1_to_5_seconds() -> None:
    p = make(rng=0.5)
    ready(p)
    p.receive(wire(9, False), 10.0)
    assert p.session is None
    assert not p.wants_identify(12.9)
    assert p.wants_identify(13.0)  # 1 + 4 * 0.5


def test_invalid_session_true_resumes_on_a_new_connection() -> None:
    """op 9 true: close (not 1000/1001) and RESUME on a new connection to the resume URL,
    never on this one (protocol.md 5.2)."""
    p = make()
    ready(p)
    p.connection_closed(4000, 1.0)
    hello(p, 2.0)
    p.data_to_send(2.0)
    p.receive(wire(9, True), 2.1)
    assert p.data_to_send(2.1) == []
    assert p.close_request is not None and p.close_request.code not in (1000, 1001)
    _, action = p.connection_closed(p.close_request.code, 2.2)
    assert action is NextAction.RESUME and p.connect_url().startswith("ws://resume/")
    hello(p, 3.0)
    assert sent_ops(p.data_to_send(3.0)) == [6]


def test_reconnect_op7_requests_resumable_close() -> None:
    p = make()
    ready(p)
    event = p.receive(wire(7), 1.0)
    assert event is not None and event.type is EventType.GATEWAY_RECONNECT
    assert p.close_request == CloseFrame(4000, "reconnect requested")


@pytest.mark.parametrize("code", [4004, 4010, 4011, 4012, 4013, 4014])
def test_fatal_close_codes_stop(code: int) -> None:
    p = make()
    ready(p)
    _, action = p.connection_closed(code, 1.0)
    assert action is NextAction.STOP and p.state is ShardState.FATALLY_CLOSED


@pytest.mark.parametrize("code", [4007, 4009])
def test_session_ending_codes_identify(code: int) -> None:
    p = make()
    ready(p)
    _, action = p.connection_closed(code, 1.0)
    assert action is NextAction.IDENTIFY and p.session is None


@pytest.mark.parametrize("code", [None, 1000, 1001, 1006, 4000, 4001, 4002, 4003, 4005, 4008])
def test_other_close_codes_resume(code: int | None) -> None:
    p = make()
    ready(p)
    _, action = p.connection_closed(code, 1.0)
    assert action is NextAction.RESUME and p.session is not None


def test_user_close_normal_ends_session_resume_keeps_it() -> None:
    p = make()
    ready(p)
    assert p.close(CloseFrame.RESUME) is not None
    q = make()
    ready(q)
    assert q.close(CloseFrame.NORMAL) is None and q.session is None


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    for rng, scale in ((1.0, 1.0), (0.5, 0.5), (0.0, 0.0)):
        p = make(rng=rng)
        delays = []
        for _ in range(10):
            p.connect_failed()
            delays.append(p.backoff(0.0))
        assert delays == [scale * d for d in (1, 2, 4, 8, 16, 32, 64, 128, 128, 128)]


def test_backoff_resets_only_after_a_connection_that_lived() -> None:
    p = make(rng=1.0, backoff_reset_after=5.0)
    p.connect_failed()
    ready(p, now=0.0)
    p.connection_closed(None, 60.0)  # READY at 0, lived a minute: reconnect at once
    assert p.backoff(60.0) == 0  # (the first attempt: no floor to keep)


def flap(p: ShardProtocol, code: int | None, lived: float = 0.25) -> list[float]:
    """READY, then the connection ends ``lived`` seconds later, four times; the waits."""
    delays = []
    now = 0.0
    for _ in range(4):
        p.attempt_started(now)
        p.connection_opened(now)
        p.receive(wire(10, {"heartbeat_interval": 10_000}), now)
        p.identify(now)
        p.receive(wire(0, {"session_id": "abc"}, 1, "READY"), now)
        p.connection_closed(code, now + lived)
        delays.append(p.backoff(now + lived))
        now += 10
    return delays


def test_server_closes_after_ready_reconnect_promptly_above_the_floor() -> None:
    """The server closes (a resumable code) right after READY, again and again: it asked,
    so no doubling (protocol.md 5.3), but never sooner than min_reconnect_interval after
    the previous attempt."""
    p = make(rng=1.0, min_reconnect_interval=1.0)
    assert flap(p, 4000) == [0.75] * 4


def test_4008_soon_after_ready_backs_off() -> None:
    """A 4008 loop: READY, then closed with 4008 within a second, again and again. Each
    reconnect waits longer (protocol.md 5.3's table: "resume after backoff")."""
    p = make(rng=1.0, backoff_reset_after=5.0, min_reconnect_interval=1.0)
    assert flap(p, 4008) == [1, 2, 4, 8]


def test_drops_soon_after_ready_reconnect_above_the_floor() -> None:
    """A crashing proxy: READY, then dropped. READY reset the backoff (protocol.md 5.3); the
    floor bounds the storm to one attempt a second."""
    p = make(rng=1.0, backoff_reset_after=5.0, min_reconnect_interval=1.0)
    assert flap(p, None) == [0.75] * 4


def test_a_connection_that_lived_reconnects_promptly_whatever_ended_it() -> None:
    p = make(rng=1.0, backoff_reset_after=5.0, min_reconnect_interval=1.0)
    assert flap(p, None, lived=6.0) == [0.1] * 4  # the small jitter only


def test_resume_url_falls_back_to_gateway_url_after_failed_connects() -> None:
    p = make()
    ready(p)
    p.connection_closed(None, 1.0)
    urls = []
    for _ in range(4):
        urls.append(p.connect_url().split("/?")[0])
        p.connect_failed()
    assert urls == ["ws://resume"] * RESUME_URL_ATTEMPTS + ["ws://127.0.0.1:1"]
    hello(p, 5.0)
    assert sent_ops(p.data_to_send(5.0)) == [6]  # still a resume, through gateway_url


# ---- commands and rate limit ---------------------------------------------------------------


def test_commands_wait_for_ready_and_survive_reconnects() -> None:
    p = make()
    p.command('{"op":3,"d":{}}')
    hello(p)
    assert p.data_to_send(0.0) == []
    p.connection_closed(None, 0.5)
    ready(p, 1.0)
    assert sent_ops(p.data_to_send(1.0)) == [3]


def test_rate_limit_keeps_heartbeat_reserve() -> None:
    p = make(rng=0.0)
    ready(p)  # interval 10 s -> reserve ceil(60/10)+1 = 7; identify counted 1
    for _ in range(200):
        p.command('{"op":3,"d":{}}')
    first = p.data_to_send(0.0)
    assert len(first) == 120 - 7 - 1
    p.on_timer(0.0)
    assert sent_ops(p.data_to_send(0.0)) == [1]  # the heartbeat still goes
    assert p.next_deadline() == pytest.approx(10.0)  # next beat comes before the window
    p.receive(wire(11), 0.1)
    p.on_timer(60.0)
    assert len(p.data_to_send(60.0)) > 0


def test_oversized_command_is_rejected() -> None:
    with pytest.raises(ValueError, match="4096"):
        make().command("x" * 4097)


# ---- decoding and filtering ----------------------------------------------------------------


def test_filtered_events_are_not_decoded_but_advance_sequence() -> None:
    p = make(event_types=EventTypeFlags.MESSAGE_CREATE)
    ready(p)
    broken = b'{"t":"TYPING_START","s":5,"op":0,"d":{this is not json'
    assert p.receive(broken, 1.0) is None
    assert p.sequence == 5
    event = p.receive(wire(0, {"content": "hi"}, 6, "MESSAGE_CREATE"), 1.0)
    assert event is not None and event.data == {"content": "hi"} and event.sequence == 6


def test_unknown_dispatch_is_delivered_with_its_wire_name() -> None:
    p = make()
    ready(p)
    event = p.receive(wire(0, {"a": 1}, 9, "GUILD_APPLICATION_COMMAND_INDEX_UPDATE"), 1.0)
    assert event is not None and event.type is EventType.UNKNOWN
    assert event.name == "GUILD_APPLICATION_COMMAND_INDEX_UPDATE"
    assert event.data == {"a": 1} and event.sequence == 9
    assert p.sequence == 9


def test_unknown_dispatch_has_its_own_filter_bit() -> None:
    p = make(event_types=EventTypeFlags.ALL & ~EventTypeFlags.UNKNOWN)
    ready(p)
    assert p.receive(wire(0, {}, 9, "SOMETHING_NEW"), 1.0) is None
    assert p.sequence == 9


def test_unknown_opcode_is_ignored() -> None:
    p = make()
    ready(p)
    assert p.receive(wire(42), 1.0) is None


def test_invalid_json_raises_value_error() -> None:
    p = make()
    with pytest.raises(ValueError):
        p.receive(b'{"t":null,"s":null,"op":', 0.0)


def test_config_never_shows_token() -> None:
    cfg = Config("Bot secret-token", Intents.GUILDS)
    assert cfg.token == "secret-token"
    assert "secret-token" not in repr(cfg)
    with pytest.raises(ValueError):
        Config("t", Intents.GUILDS, large_threshold=10)


# ---- liveness: no false zombies, HELLO timeout ------------------------------------------------


def test_server_heartbeat_request_restarts_the_interval() -> None:
    """op 1 just before the timer: the reply beat cannot be ACKed yet when the timer fires,
    so the timer restarts from the reply, never judging it a zombie."""
    p = make(rng=1.0)
    ready(p)  # first beat due at 10.0
    p.receive(wire(1), 9.99)
    assert sent_ops(p.data_to_send(9.99)) == [1]
    assert p.next_deadline() == pytest.approx(19.99)
    p.on_timer(10.0)
    assert p.close_request is None and p.data_to_send(10.0) == []
    p.receive(wire(11), 10.05)
    p.on_timer(20.0)
    assert sent_ops(p.data_to_send(20.0)) == [1] and p.close_request is None


def test_a_late_timer_is_no_zombie_verdict() -> None:
    """The loop was blocked past the beat: the ACK may be unread in the socket, so the
    late beat goes out instead of a zombie close."""
    p = make(rng=0.0)
    ready(p)
    p.on_timer(0.0)
    p.data_to_send(0.0)  # beat 1, never ACKed (unread)
    p.on_timer(10.0 + 6.0)  # 6 s late on a 10 s interval
    assert p.close_request is None and sent_ops(p.data_to_send(16.0)) == [1]
    # The late beat restarts the cadence: its ACK gets a whole interval, not 4 s (CI saw
    # the beat judged 38 ms after it went out, the next deadline being "now").
    assert p.next_deadline() == pytest.approx(26.0)
    p.on_timer(20.0)
    assert p.close_request is None and p.data_to_send(20.0) == []
    p.receive(wire(11), 20.5)
    p.on_timer(26.0)
    assert p.close_request is None and sent_ops(p.data_to_send(26.0)) == [1]


def test_a_slightly_late_timer_keeps_the_cadence() -> None:
    """A timer a little late (under half an interval) keeps the beats on their schedule."""
    p = make(rng=0.0)
    ready(p)
    p.on_timer(0.0)
    p.data_to_send(0.0)
    p.receive(wire(11), 0.1)
    p.on_timer(10.0 + 3.0)
    assert sent_ops(p.data_to_send(13.0)) == [1] and p.next_deadline() == pytest.approx(20.0)


def test_zombie_is_detected_on_time() -> None:
    p = make(rng=0.0)
    ready(p)
    p.on_timer(0.0)
    p.data_to_send(0.0)
    p.on_timer(10.0)
    assert p.close_request is not None and p.close_request.code not in (1000, 1001)


def test_no_zombie_verdict_while_reading_is_paused() -> None:
    p = make(rng=0.0)
    ready(p)
    p.on_timer(0.0)
    p.data_to_send(0.0)
    p.reading_paused(5.0)  # the consumer is behind: the ACK may be in the socket
    p.on_timer(10.0)
    assert p.close_request is None and sent_ops(p.data_to_send(10.0)) == [1]
    p.reading_resumed(12.0)
    p.on_timer(20.0)  # paused during that interval too: still no verdict
    assert p.close_request is None and sent_ops(p.data_to_send(20.0)) == [1]
    p.on_timer(30.0)  # a whole interval read with no ACK: a zombie
    assert p.close_request is not None


def test_no_hello_in_time_requests_a_reconnect() -> None:
    p = make(hello_timeout=3.0)
    p.connection_opened(0.0)
    assert p.next_deadline() == pytest.approx(3.0)
    p.on_timer(2.9)
    assert p.close_request is None
    p.on_timer(3.0)
    assert p.close_request is not None and p.close_request.code not in (1000, 1001)
    _, action = p.connection_closed(p.close_request.code, 3.1)
    assert action is NextAction.IDENTIFY


@pytest.mark.parametrize(
    "payload",
    [
        wire(10, None),
        wire(10, {}),
        wire(10, {"heartbeat_interval": "41250"}),
        wire(10, {"heartbeat_interval": -1}),
        wire(10, {"heartbeat_interval": True}),
        wire(10, [1]),
        b"[10]",
    ],
)
def test_malformed_hello_is_a_decode_error(payload: bytes) -> None:
    p = make()
    p.connection_opened(0.0)
    with pytest.raises(ValueError):
        p.receive(payload, 0.0)


@pytest.mark.parametrize(
    "d",
    [None, {}, {"session_id": 5}, {"session_id": ""}, {"session_id": "a", "resume_gateway_url": 3}],
)
def test_malformed_ready_is_a_decode_error(d: Any) -> None:
    p = make()
    hello(p)
    p.identify(0.0)
    with pytest.raises(ValueError):
        p.receive(wire(0, d, 1, "READY"), 0.0)
    assert p.session is None and p.state is ShardState.IDENTIFYING


@pytest.mark.parametrize("d", [None, 1, "true", {}])
def test_malformed_invalid_session_is_a_decode_error(d: Any) -> None:
    p = make()
    ready(p)
    with pytest.raises(ValueError):
        p.receive(wire(9, d), 1.0)
    assert p.session is not None  # nothing was changed


# ---- sending: a write that failed ------------------------------------------------------------


def test_commands_not_written_go_back_to_the_front() -> None:
    p = make()
    ready(p)
    for n in range(3):
        p.command(f'{{"op":3,"d":{{"n":{n}}}}}')
    p.on_timer(5.0)  # a heartbeat goes first
    out = p.data_to_send(5.0)
    assert sent_ops(out) == [1, 3, 3, 3]
    p.unsent(out, 2)  # the heartbeat and the first command were written
    p.command('{"op":3,"d":{"n":3}}')
    p.connection_closed(None, 6.0)
    hello(p, 7.0)
    p.data_to_send(7.0)
    p.receive(wire(0, {}, 2, "RESUMED"), 7.1)
    sent = [json.loads(x)["d"]["n"] for x in p.data_to_send(7.1)]
    assert sent == [1, 2, 3]


# ---- closes ------------------------------------------------------------------------------------


def test_gateway_close_carries_the_servers_code_and_reason() -> None:
    p = make()
    ready(p)
    event, _ = p.connection_closed(4000, 1.0, "server said so")
    assert event.data == CloseFrame(4000, "server said so")
    assert event.data.reason == "server said so"


def test_close_after_a_fatal_close_stays_fatally_closed() -> None:
    p = make()
    ready(p)
    p.connection_closed(4004, 1.0)
    assert p.state is ShardState.FATALLY_CLOSED
    p.close(CloseFrame.NORMAL)
    assert p.state is ShardState.FATALLY_CLOSED


def test_illegal_transitions_raise() -> None:
    p = make()
    with pytest.raises(RuntimeError, match="no transition"):
        p._move("resumed")  # not connected
    assert (ShardState.FATALLY_CLOSED, "close") not in TRANSITIONS

"""The sans-I/O core against a hostile or odd server (issue 21), with a fake clock.

Each test names the defect it guards; each failed before its fix.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from test_protocol import hello, make, ready, sent_ops, wire

from gateway import CloseFrame, Config, Intents, ShardId, ShardState, codec
from gateway.protocol import (
    HELLO_INTERVAL_RANGE,
    NO_READY_CLOSE,
    RESUME_URL_ATTEMPTS,
    ShardProtocol,
)
from gateway.ratelimit import CommandRatelimiter

# ---- 1: no busy timer while waiting for the identify permit -----------------------------


def test_identify_delay_after_op9_is_no_past_deadline_once_due() -> None:
    """After op 9 false the 1-5 s wait ends; while the driver then waits for its permit the
    deadline must not stay in the past (the driver re-armed its timer every loop turn)."""
    p = make(rng=0.5)
    ready(p)
    p.receive(wire(9, False), 1.0)
    assert p.next_deadline() == pytest.approx(4.0)  # 1 + 4 * 0.5
    assert not p.wants_identify(3.9)
    p.on_timer(4.0)
    assert p.wants_identify(4.0)
    deadline = p.next_deadline()
    assert deadline is None or deadline > 4.0  # the next heartbeat, not the passed wait


# ---- 12: the op 9 wait holds across connections ----------------------------------------


def test_identify_delay_after_op9_survives_a_reconnect() -> None:
    p = make(rng=1.0)  # wait 5 s
    ready(p)
    p.receive(wire(9, False), 10.0)
    p.connection_closed(4000, 10.05)  # the server closes 50 ms later
    hello(p, 10.3)
    assert not p.wants_identify(10.3)
    assert not p.identify(12.0)
    assert p.next_deadline() == pytest.approx(15.0)
    p.on_timer(15.0)
    assert p.identify(15.0)
    assert sent_ops(p.data_to_send(15.0)) == [2]


# ---- 4: no input leaves the state machine wedged -----------------------------------------


def test_second_hello_is_bad_data_not_a_wedge() -> None:
    p = make()
    ready(p)
    with pytest.raises(codec.DecodeError, match="second HELLO"):
        p.receive(wire(10, {"heartbeat_interval": 10_000}), 1.0)
    p.fail(CloseFrame(4000, "deserializing error"))
    p.connection_closed(4000, 1.0)
    assert p.state is ShardState.DISCONNECTED
    hello(p, 2.0)
    assert sent_ops(p.data_to_send(2.0)) == [6]  # resumes on the next connection


def test_close_reason_of_invalid_utf8_is_cut_not_raised() -> None:
    p = make()
    ready(p)
    reason = (b"\xff" * 42).decode(errors="replace")  # 126 bytes once encoded
    event, _ = p.connection_closed(4000, 1.0, reason)
    assert event.data is not None and event.data.code == 4000
    assert len(event.data.reason.encode()) <= 123
    assert p.state is ShardState.DISCONNECTED


# ---- 9: the sequence never moves back -----------------------------------------------------


def test_sequence_going_backwards_is_not_taken() -> None:
    p = make()
    ready(p)
    p.receive(wire(0, {}, 9, "MESSAGE_CREATE"), 1.0)
    p.receive(wire(0, {}, 6, "MESSAGE_CREATE"), 1.1)
    assert p.sequence == 9
    p.record_sequence(7)  # the batched path too
    assert p.sequence == 9
    p.connection_closed(None, 2.0)
    hello(p, 3.0)
    resume = json.loads(p.data_to_send(3.0)[0])
    assert resume["op"] == 6 and resume["d"]["seq"] == 9


def test_a_new_session_restarts_the_sequence() -> None:
    p = make()
    ready(p)
    p.receive(wire(0, {}, 50, "MESSAGE_CREATE"), 1.0)
    p.receive(wire(9, False), 1.5)
    p.on_timer(10.0)
    p.identify(10.0)
    p.receive(wire(0, {"session_id": "new"}, 1, "READY"), 10.1)
    assert p.sequence == 1


# ---- 10: HELLO's interval is bounded --------------------------------------------------------


@pytest.mark.parametrize(
    "interval",
    [0, -1, 0.001, 99, 3_600_001, 2**64, 10**400, math.nan, math.inf, "41250", True, None],
)
def test_hello_interval_outside_the_sane_range_is_malformed(interval: Any) -> None:
    p = make()
    p.connection_opened(0.0)
    # The stdlib writes big ints and NaN / Infinity literals, as a hostile server might.
    raw = json.dumps({"op": 10, "d": {"heartbeat_interval": interval}}).encode()
    with pytest.raises(ValueError):
        p.receive(raw, 0.0)
    assert p.heartbeat_interval is None


@pytest.mark.parametrize("interval", HELLO_INTERVAL_RANGE)
def test_hello_interval_at_the_bounds_is_accepted(interval: int) -> None:
    p = make()
    hello(p, 0.0, interval)
    assert p.heartbeat_interval == interval / 1000


# ---- 15: the command limiter with fast heartbeats ------------------------------------------


def worst_window(interval: float, commands: int = 300, seconds: float = 180.0) -> int:
    """Payloads in the busiest 60 s of a connection that heartbeats every ``interval`` s
    while ``commands`` wait to go, driven through the protocol with a fake clock."""
    p = make(rng=0.0)
    hello(p, 0.0, int(interval * 1000))
    p.identify(0.0)
    times = [0.0] * len(p.data_to_send(0.0))
    p.receive(wire(0, {"session_id": "abc"}, 1, "READY"), 0.0)
    for _ in range(commands):
        p.command('{"op":3,"d":{}}')
    now = 0.0
    while now < seconds:
        deadline = p.next_deadline()
        assert deadline is not None and deadline >= now - 1e-9
        now = max(deadline, now)
        p.on_timer(now)
        times += [now] * len(p.data_to_send(now))
        p.receive(wire(11), now)
    return max(sum(1 for t in times if start <= t < start + 60) for start in times)


@pytest.mark.parametrize("interval", [0.6, 0.8, 1.0, 5.0, 41.25])
def test_heartbeats_and_commands_stay_within_120_per_minute(interval: float) -> None:
    assert worst_window(interval) <= 120


@pytest.mark.parametrize("interval", [0.1, 0.2, 0.4, 0.5])
def test_beats_faster_than_the_limit_hold_commands_and_never_raise(interval: float) -> None:
    """Heartbeats alone fill the window (a test server's interval): commands wait, the
    limiter raises nothing (it raised IndexError) and the timer keeps a future deadline."""
    beats = int(60 / interval) + 1
    assert worst_window(interval, seconds=70.0) <= beats + 2
    limiter = CommandRatelimiter(interval)
    for i in range(200):
        limiter.record(i * 0.01)
        assert limiter.available(i * 0.01) == 0
        assert limiter.next_available() >= i * 0.01


# ---- 16: resume_gateway_url may not weaken the scheme ---------------------------------------


@pytest.mark.parametrize(
    ("gateway", "resume", "used"),
    [
        ("wss://gw.example", "ws://evil.example", False),
        ("wss://gw.example", "http://evil.example", False),
        ("wss://gw.example", "wss://resume.example", True),
        ("ws://127.0.0.1:1", "ws://resume", True),
        ("ws://127.0.0.1:1", "wss://resume", True),
        ("ws://127.0.0.1:1", "ftp://x", False),
    ],
)
def test_resume_url_must_not_weaken_the_scheme(gateway: str, resume: str, used: bool) -> None:
    cfg = Config("secret-token", Intents.GUILDS, gateway_url=gateway)
    p = ShardProtocol(ShardId(0, 1), cfg, rng=lambda: 0.5)
    hello(p)
    p.identify(0.0)
    p.receive(wire(0, {"session_id": "abc", "resume_gateway_url": resume}, 1, "READY"), 0.0)
    p.connection_closed(None, 1.0)
    base = p.connect_url().split("/?")[0]
    assert base == (resume if used else gateway)


# ---- 18: READY / RESUMED must come in time -------------------------------------------------


def test_a_resume_ignored_by_the_server_times_out() -> None:
    p = make(ready_timeout=3.0, rng=0.0)
    ready(p)
    p.connection_closed(None, 1.0)
    hello(p, 2.0)
    assert sent_ops(p.data_to_send(2.0)) == [6]
    now = 2.0
    while p.close_request is None and now < 10:  # heartbeats are ACKed; nothing else comes
        deadline = p.next_deadline()
        assert deadline is not None
        now = deadline
        p.on_timer(now)
        p.data_to_send(now)
        p.receive(wire(11), now)
    assert p.close_request == NO_READY_CLOSE
    assert now == pytest.approx(5.0)


def test_a_long_replay_is_progress_not_a_timeout() -> None:
    p = make(ready_timeout=3.0, rng=0.0)
    ready(p)
    p.connection_closed(None, 1.0)
    hello(p, 2.0)
    p.data_to_send(2.0)
    for i in range(10):  # one dispatch a second for 10 s, then RESUMED
        p.receive(wire(0, {}, 2 + i, "MESSAGE_CREATE"), 2.5 + i)
        p.on_timer(2.5 + i)
        p.receive(wire(11), 2.5 + i)
    assert p.close_request is None
    p.receive(wire(0, {}, 12, "RESUMED"), 12.6)
    assert p.state is ShardState.ACTIVE


def test_identify_without_ready_times_out() -> None:
    p = make(ready_timeout=2.0, rng=0.0)
    hello(p)
    p.identify(0.0)
    p.on_timer(2.0)
    assert p.close_request == NO_READY_CLOSE


# ---- 20: server-requested reconnects do not escalate ----------------------------------------


def test_op7_storm_does_not_grow_the_backoff() -> None:
    p = make(rng=1.0, min_reconnect_interval=1.0)
    p.attempt_started(0.0)
    ready(p)
    delays = []
    now = 0.0
    for _ in range(6):
        p.receive(wire(7), now + 2.0)
        p.connection_closed(4000, now + 2.0)
        delays.append(p.backoff(now + 2.0))
        now += 2.0
        p.attempt_started(now)
        hello(p, now)
        p.data_to_send(now)
        p.receive(wire(0, {}, 2, "RESUMED"), now)
    # a small jitter (10% of the floor), never doubling
    assert delays == [pytest.approx(0.1)] * 6


def test_op7_right_after_resumed_waits_for_the_floor() -> None:
    p = make(rng=0.0, min_reconnect_interval=1.0)
    ready(p)
    p.connection_closed(None, 4.0)
    p.attempt_started(5.0)
    hello(p, 5.0)
    p.data_to_send(5.0)
    p.receive(wire(0, {}, 2, "RESUMED"), 5.1)
    p.receive(wire(7), 5.2)
    p.connection_closed(4000, 5.2)
    assert p.backoff(5.2) == pytest.approx(0.8)


def test_op7_before_resumed_is_a_failed_attempt() -> None:
    """A server that sends op 7 on every new connection, before RESUMED: not a live session
    (protocol.md 5.3), so the backoff grows and the resume URL is eventually left."""
    p = make(rng=1.0, min_reconnect_interval=1.0)
    ready(p)
    p.connection_closed(None, 60.0)  # a live session ends: the next attempt is prompt
    delays = []
    for i in range(4):
        now = 100.0 + 10.0 * i
        p.attempt_started(now)
        hello(p, now)
        p.receive(wire(7), now)
        p.connection_closed(4000, now)
        delays.append(p.backoff(now))
    assert delays == [1, 2, 4, 8]


# ---- op 1 floods and dispatches before HELLO ------------------------------------------------


def test_an_op1_flood_gets_one_heartbeat_a_second() -> None:
    p = make(rng=0.5)
    ready(p)
    sent = 0
    for i in range(200):  # 200 requests in 2 s
        p.receive(wire(1), 1.0 + i * 0.01)
        sent += sent_ops(p.data_to_send(1.0 + i * 0.01)).count(1)
    assert sent == 2


def test_a_dispatch_before_hello_is_bad_data() -> None:
    p = make()
    p.connection_opened(0.0)
    with pytest.raises(codec.DecodeError, match="before HELLO"):
        p.receive(wire(0, {}, 5, "MESSAGE_CREATE"), 0.0)
    assert p.sequence is None


def test_failures_before_ready_still_back_off() -> None:
    p = make(rng=1.0, backoff_base=1.0)
    delays = []
    for i in range(4):
        p.attempt_started(float(i))
        p.connection_opened(float(i))
        p.connection_closed(None, float(i))  # closed before HELLO
        delays.append(p.backoff(float(i)))
    assert delays == [1, 2, 4, 8]


def test_resume_url_that_never_says_hello_is_abandoned() -> None:
    p = make(hello_timeout=1.0)
    ready(p)
    p.connection_closed(None, 1.0)
    urls = []
    now = 2.0
    for _ in range(RESUME_URL_ATTEMPTS + 1):
        urls.append(p.connect_url().split("/?")[0])
        p.connection_opened(now)
        p.on_timer(now + 1.0)  # no HELLO
        assert p.close_request is not None
        p.connection_closed(4000, now + 1.0)
        now += 2.0
    assert urls == ["ws://resume"] * RESUME_URL_ATTEMPTS + ["ws://127.0.0.1:1"]

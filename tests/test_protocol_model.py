"""ShardProtocol against a small model of protocol.md section 12 (hypothesis, stateful).

The model keeps what the spec says a shard knows (state, session, sequence, whether a
close was asked for) and what it may send after each step. Hypothesis drives random
interleavings of server payloads, closes, timers and user calls, on a fake clock.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway import CloseFrame, Config, Intents, ShardId, ShardState
from gateway.protocol import NextAction, ShardProtocol

FATAL = [4004, 4010, 4011, 4012, 4013, 4014]
NEW_SESSION = [4007, 4009]
OTHER = [1000, 1001, 1006, 4000, 4001, 4002, 4003, 4005, 4008, None]
INTERVAL_MS = 1000
_RESUMING = ShardState.RESUMING


def wire(op: int, d: Any = None, s: int | None = None, t: str | None = None) -> bytes:
    return json.dumps({"t": t, "s": s, "op": op, "d": d}).encode()


class ShardModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        config = Config("model-token", Intents.GUILDS, gateway_url="ws://g")
        self.p = ShardProtocol(ShardId(0, 1), config, rng=lambda: 0.5)
        self.now = 0.0
        self.state = ShardState.DISCONNECTED
        self.session: str | None = None
        self.seq: int | None = None
        self.open = False
        self.hello = False
        self.closing = False
        self.identified = False
        self.resume_sent = False
        self.sessions = 0
        self.steps = 0  # rules run on this connection
        self.last_request: float | None = None  # the last op 1 answered (on this connection)

    # ---- helpers ------------------------------------------------------------------------

    def sent(self) -> list[dict[str, Any]]:
        payloads = [json.loads(x) for x in self.p.data_to_send(self.now)]
        if self.closing:
            assert payloads == []
        for payload in payloads:
            if payload["op"] == 1:
                assert payload["d"] == self.seq
        return payloads

    def live(self) -> bool:
        return self.open and not self.closing

    # ---- connection ---------------------------------------------------------------------

    @precondition(lambda self: not self.open and self.state is ShardState.DISCONNECTED)
    @rule(then_hello=st.integers(0, 3))
    def connect(self, then_hello: int) -> None:
        self.p.connection_opened(self.now)
        self.open, self.hello, self.closing, self.identified = True, False, False, False
        self.resume_sent = False
        self.steps = 0
        self.last_request = None
        self.state = ShardState.RESUMING if self.session else ShardState.IDENTIFYING
        if then_hello:
            self.hello_arrives()

    @precondition(lambda self: self.live() and not self.hello)
    @rule()
    def hello_late(self) -> None:
        self.hello_arrives()

    def hello_arrives(self) -> None:
        self.p.receive(wire(10, {"heartbeat_interval": INTERVAL_MS}), self.now)
        self.hello = True
        ops = [x["op"] for x in self.sent()]
        if self.session is not None:
            assert ops == [6]
            self.resume_sent = True
        else:
            assert 6 not in ops

    @precondition(lambda self: self.live() and self.hello and self.session is None)
    @rule(then_ready=st.integers(0, 3))
    def identify(self, then_ready: int) -> None:
        wanted = self.p.wants_identify(self.now)
        assert wanted == (not self.identified and self.now >= self.p._identify_not_before)
        if wanted:
            assert self.p.identify(self.now)
            assert [x["op"] for x in self.sent()] == [2]
            self.identified = True
            if then_ready:  # usually READY follows at once
                self.ready()

    @precondition(lambda self: self.live() and self.identified and self.session is None)
    @rule()
    def ready_arrives(self) -> None:
        self.ready()

    def ready(self) -> None:
        self.sessions += 1
        session_id = f"s{self.sessions}"
        self.p.receive(wire(0, {"session_id": session_id}, 1, "READY"), self.now)
        self.session, self.seq, self.state = session_id, 1, ShardState.ACTIVE

    @precondition(
        lambda self: self.live() and self.resume_sent and self.state is ShardState.RESUMING
    )
    @rule(replayed=st.integers(0, 3))
    def resumed(self, replayed: int) -> None:
        for _ in range(replayed):
            assert self.seq is not None
            self.seq += 1
            self.p.receive(wire(0, {}, self.seq, "MESSAGE_CREATE"), self.now)
        assert self.seq is not None
        self.seq += 1
        self.p.receive(wire(0, {}, self.seq, "RESUMED"), self.now)
        self.state = ShardState.ACTIVE

    @precondition(lambda self: self.live() and self.state is ShardState.ACTIVE)
    @rule(count=st.integers(1, 5))
    def dispatches(self, count: int) -> None:
        for _ in range(count):
            assert self.seq is not None
            self.seq += 1
            self.p.receive(wire(0, {"n": 1}, self.seq, "MESSAGE_CREATE"), self.now)

    @precondition(lambda self: self.live() and self.hello)
    @rule()
    def server_heartbeat_request(self) -> None:
        self.p.receive(wire(1), self.now)
        # Answered at once, but at most once a second (a flood of op 1 gets one beat).
        answered = self.last_request is None or self.now - self.last_request >= 1.0
        assert [x["op"] for x in self.sent()] == ([1] if answered else [])
        if answered:
            self.last_request = self.now

    @precondition(lambda self: self.live())
    @rule()
    def ack(self) -> None:
        self.p.receive(wire(11), self.now)

    @precondition(lambda self: self.live() and self.steps > 3)
    @rule()
    def reconnect_requested(self) -> None:
        self.p.receive(wire(7), self.now)
        self.closing = True

    @precondition(lambda self: self.live() and self.hello and self.steps > 3)
    @rule(resumable=st.booleans())
    def invalid_session(self, resumable: bool) -> None:
        self.p.receive(wire(9, resumable), self.now)
        if resumable and self.session is not None:
            self.closing = True
        else:
            self.session, self.seq = None, None
            self.state, self.identified = ShardState.IDENTIFYING, False
            self.resume_sent = False

    @precondition(lambda self: self.live())
    @rule(dt=st.floats(0.01, 3.0))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        self.p.on_timer(self.now)
        if self.p.close_request is not None:  # a zombie or no HELLO: resumable either way
            assert self.p.close_request.code not in (1000, 1001)
            self.closing = True
        self.sent()

    @precondition(lambda self: self.open and (self.closing or self.steps > 3))
    # Mostly codes that reconnect, so runs get deep; a fatal one ends the run.
    @rule(code=st.sampled_from(OTHER * 3 + NEW_SESSION + FATAL[:1]))
    def connection_closes(self, code: int | None) -> None:
        requested = self.closing
        self.now += 0.01
        _, action = self.p.connection_closed(code, self.now)
        self.open = False
        if not requested and code in FATAL:
            assert action is NextAction.STOP
            self.state = ShardState.FATALLY_CLOSED
            return
        if not requested and code in NEW_SESSION:
            self.session, self.seq = None, None
        self.state = ShardState.DISCONNECTED
        assert action is (NextAction.RESUME if self.session else NextAction.IDENTIFY)

    @precondition(
        lambda self: (
            self.sessions >= 2 and self.state not in (ShardState.CLOSED, ShardState.FATALLY_CLOSED)
        )
    )
    @rule(ends=st.booleans())
    def user_closes(self, ends: bool) -> None:
        frame = CloseFrame.NORMAL if ends else CloseFrame.RESUME
        returned = self.p.close(frame)
        if ends:
            assert returned is None
            self.session, self.seq = None, None
        else:
            expected = self.session
            assert (returned.session_id if returned else None) == expected
        self.state = ShardState.CLOSED
        self.closing = self.open
        if self.open:
            _, action = self.p.connection_closed(frame.code, self.now)
            assert action is NextAction.STOP
            self.open = False

    @precondition(lambda self: self.state in (ShardState.CLOSED, ShardState.FATALLY_CLOSED))
    @rule(code=st.sampled_from(FATAL))
    def fatal_codes_all_stop(self, code: int) -> None:
        p = ShardProtocol(ShardId(0, 1), self.p.config, rng=lambda: 0.5)
        p.connection_opened(0.0)
        _, action = p.connection_closed(code, 1.0)
        assert action is NextAction.STOP and p.state is ShardState.FATALLY_CLOSED

    @precondition(lambda self: self.state in (ShardState.CLOSED, ShardState.FATALLY_CLOSED))
    @rule()
    def stopped(self) -> None:  # the end: nothing more is sent or scheduled
        self.now += 0.1
        assert self.p.data_to_send(self.now) == [] and self.p.next_deadline() is None

    # ---- invariants ---------------------------------------------------------------------

    @invariant()
    def agrees_with_the_model(self) -> None:
        self.steps += 1
        assert self.p.state is self.state
        assert self.p.sequence == self.seq
        session = self.p.session
        assert (session.session_id if session else None) == self.session
        if self.open:
            assert (self.p.close_request is not None) == self.closing
        if self.session is not None:
            assert not self.p.wants_identify(self.now + 100)


TestShardModel = ShardModel.TestCase
TestShardModel.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)

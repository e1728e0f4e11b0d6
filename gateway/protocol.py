"""The shard's sans-I/O state machine (protocol.md sections 2-5 and 12).

``ShardProtocol`` holds everything a shard knows and decides, and does no I/O: the driver
(:class:`gateway.Shard`) feeds it whole payloads and the time, and asks it what to send,
when to wake it up, and whether to close. Time is a float of seconds (monotonic) passed in;
randomness (heartbeat jitter, invalid-session delay) comes from an injectable source so
tests can fix it.

Driver contract, per connection::

    protocol.connection_opened(now)
    for each message:   event = protocol.receive(payload_bytes, now)
                        (or, for a run of plain dispatches the pipeline scanned itself,
                        protocol.record_sequence(last_seq))
    at next_deadline(): protocol.on_timer(now)
    while reading is paused (backpressure): reading_paused(now) ... reading_resumed(now)
    when wants_identify(now): await the identify queue, then protocol.identify(now)
    after every call:   send each of protocol.data_to_send(now) (a payload not written goes
                        back with protocol.unsent(payloads, index));
                        if protocol.close_request: close the socket with it
    when the socket is gone: protocol.connection_closed(code, now, reason)

State transitions (every one happens in :meth:`ShardProtocol._move`, checked against
:data:`TRANSITIONS`)::

    DISCONNECTED --open-->          IDENTIFYING (no session) | RESUMING (a session)
    IDENTIFYING  --READY-->         ACTIVE
    RESUMING     --RESUMED-->       ACTIVE
    RESUMING     --op 9 false-->    IDENTIFYING      (session cleared; identify after 1-5 s)
    ACTIVE       --op 9 false-->    IDENTIFYING
    IDENTIFYING  --op 9 false-->    IDENTIFYING      (identify again after 1-5 s)
    any open     --closed-->        DISCONNECTED     (reconnect: resume or identify)
    any open     --fatal close-->   FATALLY_CLOSED   (4004, 4010-4014: never reconnects)
    DISCONNECTED --fatal close-->   FATALLY_CLOSED
    any but FATALLY_CLOSED --close()--> CLOSED

op 7, op 9 true, a zombie, no HELLO in time, and bad data do not change the state
directly: they request a close (not 1000/1001, so the session stays resumable), and the
``closed`` transition follows.
"""

from __future__ import annotations

import enum
import logging
import random
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from . import codec
from ._speedups import scan
from .close import CloseFrame, invalidates_session, is_fatal
from .commands import MAX_PAYLOAD_BYTES
from .config import Config
from .events import Event, EventType, EventTypeFlags
from .latency import Latency
from .opcode import OpCode
from .ratelimit import CommandRatelimiter
from .session import Session
from .shard_id import ShardId
from .state import ShardState

__all__ = [
    "ShardProtocol",
    "NextAction",
    "TRANSITIONS",
    "ZOMBIE_CLOSE",
    "MAX_BACKOFF",
    "RESUME_URL_ATTEMPTS",
    "HELLO_INTERVAL_RANGE",
    "ABORTING_CLOSES",
]

log = logging.getLogger(__name__)

#: The close frame sent on a zombied connection or an op 7: not 1000/1001, so the session
#: stays resumable.
ZOMBIE_CLOSE = CloseFrame(4000, "zombied connection")
RECONNECT_CLOSE = CloseFrame(4000, "reconnect requested")
RESUMABLE_INVALID_CLOSE = CloseFrame(4000, "invalid session (resumable)")
NO_HELLO_CLOSE = CloseFrame(4000, "no hello")
NO_READY_CLOSE = CloseFrame(4000, "no ready or resumed")
#: Closes the driver makes without waiting for the server's echo: the connection is dead
#: or silent, so waiting would only delay the reconnect (protocol.md 3.5).
ABORTING_CLOSES = (ZOMBIE_CLOSE, NO_HELLO_CLOSE, NO_READY_CLOSE)
#: Closes that answer a reconnect the server asked for (op 7, op 9 true): not a failure.
_SERVER_ASKED = (RECONNECT_CLOSE, RESUMABLE_INVALID_CLOSE)
#: The ``heartbeat_interval`` a HELLO may carry, in milliseconds (protocol.md 12: Discord
#: sends 41,250; tests and emulators use less; anything outside is a malformed HELLO).
HELLO_INTERVAL_RANGE = (100, 3_600_000)
#: Jitter of a prompt (server-requested) reconnect, as a share of
#: ``Config.min_reconnect_interval``.
PROMPT_JITTER = 0.1
#: Seconds within which further op 1 requests are answered by the beat already sent: a
#: server flooding op 1 must not make the shard flood heartbeats (120 payloads / 60 s).
HEARTBEAT_REQUEST_WINDOW = 1.0
#: Close code of a client over the send rate limit: resumable, but "after backoff".
_RATE_LIMITED = 4008
#: Reconnect backoff cap in seconds (the default of ``Config.backoff_max``).
MAX_BACKOFF = 128.0
#: Failed connects to ``resume_gateway_url`` before resuming through ``gateway_url``.
RESUME_URL_ATTEMPTS = 3
#: A timer this late (as a share of the heartbeat interval) means the driver did not run,
#: so it could not read an ACK either: no zombie verdict on that beat.
LATE_TIMER = 0.5

_DISPATCH_TYPES: dict[str, EventType] = {t.value: t for t in EventType if t.is_dispatch}
# Builds an Event without the keyword handling of Event.__new__ (the per-event path).
_new_event = tuple.__new__
# Plain ints: int & int is several times faster than IntFlag arithmetic on the hot path.
_FLAG = {t: int(EventTypeFlags.from_event_type(t)) for t in EventType}
# Dispatch names the drain may take (READY and RESUMED change state: they take receive()).
_PLAIN = [t for t in _DISPATCH_TYPES.values() if t not in (EventType.READY, EventType.RESUMED)]
_TABLES: dict[int, dict[str, EventType | None]] = {}


def _dispatch_table(flags: int) -> dict[str, EventType | None]:
    """Plain dispatch name -> its type if ``flags`` wants it, else None (one per filter)."""
    table = _TABLES.get(flags)
    if table is None:
        table = _TABLES[flags] = {t.value: (t if flags & _FLAG[t] else None) for t in _PLAIN}
    return table


_S = ShardState
#: Every legal state change: ``(state, trigger) -> next state``.
TRANSITIONS: dict[tuple[ShardState, str], ShardState] = {
    **{(_S.DISCONNECTED, "open"): _S.IDENTIFYING},
    (_S.DISCONNECTED, "open_resume"): _S.RESUMING,
    (_S.IDENTIFYING, "ready"): _S.ACTIVE,
    (_S.RESUMING, "ready"): _S.ACTIVE,  # a READY after an op 9 false's identify
    (_S.ACTIVE, "ready"): _S.ACTIVE,
    (_S.RESUMING, "resumed"): _S.ACTIVE,
    (_S.ACTIVE, "resumed"): _S.ACTIVE,
    (_S.IDENTIFYING, "resumed"): _S.ACTIVE,
    **{(state, "invalid"): _S.IDENTIFYING for state in (_S.IDENTIFYING, _S.RESUMING, _S.ACTIVE)},
    **{(state, "resume"): _S.RESUMING for state in (_S.IDENTIFYING, _S.RESUMING)},
    **{
        (state, "closed"): _S.DISCONNECTED
        for state in (_S.DISCONNECTED, _S.IDENTIFYING, _S.RESUMING, _S.ACTIVE)
    },
    **{
        (state, "fatal"): _S.FATALLY_CLOSED
        for state in (_S.DISCONNECTED, _S.IDENTIFYING, _S.RESUMING, _S.ACTIVE)
    },
    **{(state, "close"): _S.CLOSED for state in ShardState if state is not _S.FATALLY_CLOSED},
}


class NextAction(enum.Enum):
    """What the driver does after a connection is gone."""

    RESUME = "resume"
    IDENTIFY = "identify"
    STOP = "stop"


class ShardProtocol:
    """State of one shard across connections; see the module docstring for the contract."""

    def __init__(
        self,
        shard_id: ShardId,
        config: Config,
        *,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.shard_id = shard_id
        self.config = config
        self.latency = Latency()
        self.state = ShardState.DISCONNECTED
        self.reconnect_attempts = 0
        self._rng = rng
        self._flags = int(config.event_types)
        self._session_id: str | None = config.session.session_id if config.session else None
        self._sequence: int | None = config.session.sequence if config.session else None
        self._resume_url: str | None = config.resume_url if config.session else None
        self._resume_url_failures = 0
        self._active_since: float | None = None
        # When the last connection attempt started (the floor between prompt reconnects).
        self._last_attempt: float | None = None
        self._on_resume_url = False  # this connection went to resume_gateway_url
        # Not before this time may IDENTIFY go (1-5 s after an op 9 false): kept across
        # connections, so a reconnect does not shorten it; 0 once passed.
        self._identify_not_before = 0.0
        #: READY and RESUMED received so far (the driver saves the session on a change).
        self.activations = 0
        #: User commands, kept across reconnects until sent on an identified connection.
        self._commands: deque[str] = deque()
        self._commands_in_flight = 0
        self._reset_connection()

    # ---- public state ---------------------------------------------------------------------

    @property
    def session(self) -> Session | None:
        """The current session as processed (to resume), or None."""
        if self._session_id is None:
            return None
        return Session(self._session_id, self._sequence or 0)

    @property
    def sequence(self) -> int | None:
        """The last sequence number received."""
        return self._sequence

    @property
    def resume_url(self) -> str | None:
        """``resume_gateway_url`` from READY."""
        return self._resume_url

    @property
    def awaiting_ack(self) -> bool:
        """Whether the last heartbeat sent has not been acknowledged yet."""
        return self._awaiting_ack

    @property
    def heartbeat_interval(self) -> float | None:
        """Seconds between heartbeats, from HELLO (None before HELLO)."""
        return self._interval

    @property
    def dispatch_table(self) -> dict[str, EventType | None]:
        """Plain dispatch name -> its type if wanted, else None: what the receive pipeline
        may take in a batch without :meth:`receive` (then :meth:`record_sequence`).
        """
        return _dispatch_table(self._flags)

    def restore(self, session: Session, resume_url: str | None) -> None:
        """Resume ``session`` on the next connection (a session loaded from a store)."""
        if self._open:
            raise RuntimeError("restore() is for a shard that has not connected")
        self._session_id = session.session_id
        self._sequence = session.sequence
        self._resume_url = resume_url

    def connect_url(self) -> str:
        """Where to connect next, with the query: ``resume_gateway_url`` while a session
        exists (``gateway_url`` after :data:`RESUME_URL_ATTEMPTS` failed connects to it).
        """
        base = self.config.gateway_url
        self._on_resume_url = bool(
            self._session_id
            and self._resume_url
            and self._resume_url_failures < RESUME_URL_ATTEMPTS
        )
        if self._on_resume_url:
            assert self._resume_url is not None
            base = self._resume_url
        return base.rstrip("/") + "/" + self.config.query()

    def backoff(self, now: float) -> float:
        """Seconds to wait before the next connection attempt (protocol.md 5.3).

        After attempts that failed (no connection, no HELLO, closed before READY/RESUMED):
        "full jitter", uniform in [0, base * 2**n] capped, so shards do not retry in
        lockstep. Otherwise (the first connection, or a reconnect the server asked for on
        a live session: op 7, op 9 true, a close after READY/RESUMED) promptly: a small
        jitter, but at least ``Config.min_reconnect_interval`` after the previous attempt,
        so a storm of op 7 cannot make the shard hammer the gateway.
        """
        if self.reconnect_attempts == 0:
            if self._last_attempt is None:
                return 0.0
            floor = self.config.min_reconnect_interval
            return max(floor * PROMPT_JITTER * self._rng(), self._last_attempt + floor - now)
        cap = min(
            self.config.backoff_max,
            self.config.backoff_base * 2.0 ** min(self.reconnect_attempts - 1, 32),
        )
        return cap * self._rng()

    def attempt_started(self, now: float) -> None:
        """The driver starts a connection attempt now (the floor of :meth:`backoff`)."""
        self._last_attempt = now

    # ---- connection lifecycle -------------------------------------------------------------

    def _move(self, trigger: str) -> None:
        new = TRANSITIONS.get((self.state, trigger))
        if new is None:
            raise RuntimeError(f"no transition from {self.state.value} on {trigger!r}")
        self.state = new

    def _reset_connection(self) -> None:
        self._interval: float | None = None
        self._next_beat: float | None = None
        self._hello_deadline: float | None = None
        self._awaiting_ack = False
        self._blind = False  # reading was paused since the last beat: no zombie verdict
        self._paused = False
        self._priority: list[str] = []
        self._limiter: CommandRatelimiter | None = None
        self._identify_sent = False
        self._last_request: float | None = None  # the last op 1 answered
        # READY or RESUMED must come by then after IDENTIFY/RESUME (None: not waiting);
        # the sequence when it was set tells a slow replay (progress) from a silent server.
        self._ready_deadline: float | None = None
        self._ready_seq: int | None = None
        self.close_request: CloseFrame | None = None
        self._open = False

    def connection_opened(self, now: float) -> None:
        """A new websocket is open: wait for HELLO (at most ``Config.hello_timeout``)."""
        self._reset_connection()
        self._open = True
        self._hello_deadline = now + self.config.hello_timeout
        self._move("open_resume" if self._session_id else "open")

    def connection_closed(
        self, code: int | None, now: float, reason: str = ""
    ) -> tuple[Event, NextAction]:
        """The socket is gone (``code``/``reason``: the close frame received, or the one we
        sent when we closed; None for a bare drop). Returns the GATEWAY_CLOSE event
        (carrying that frame) and what to do next.
        """
        requested = self.close_request
        active_since = self._active_since
        on_resume_url = self._on_resume_url
        self._reset_connection()
        self._active_since = None
        self._on_resume_url = False
        frame = _close_frame(code, reason)
        event = Event(EventType.GATEWAY_CLOSE, frame)
        if self.state in (ShardState.CLOSED, ShardState.FATALLY_CLOSED):
            return event, NextAction.STOP
        if requested is None and is_fatal(code):
            self._move("fatal")
            log.error("shard %s: fatal close code %s, not reconnecting", self.shard_id, code)
            return event, NextAction.STOP
        if requested is None and invalidates_session(code):
            self._clear_session()
        if self._prompt(active_since, requested, code, now):
            # Not a failure (protocol.md 5.3): reconnect promptly, above the floor.
            self.reconnect_attempts = 0
        else:
            # Failed (before READY/RESUMED, or a drop or 4008 soon after it): back off
            # further, and a resume URL that keeps failing (even one that never says
            # HELLO) is left.
            self.reconnect_attempts += 1
            if on_resume_url and self._session_id:
                self._resume_url_failures += 1
        self._move("closed")
        return event, NextAction.RESUME if self._session_id else NextAction.IDENTIFY

    def _prompt(
        self, active_since: float | None, requested: CloseFrame | None, code: int | None, now: float
    ) -> bool:
        """Whether a connection that ended reconnects promptly (protocol.md 5.3): it reached
        READY/RESUMED (which resets the backoff), unless it was closed with 4008 ("resume
        after backoff") within ``Config.backoff_reset_after`` seconds of it. A storm of
        anything else is bounded by ``Config.min_reconnect_interval``.
        """
        if active_since is None:
            return False
        if now - active_since >= self.config.backoff_reset_after or requested in _SERVER_ASKED:
            return True
        return code != _RATE_LIMITED

    def connect_failed(self) -> None:
        """Opening a connection failed: back off further (and count a failed resume URL)."""
        self.reconnect_attempts += 1
        if self._session_id and self._resume_url:
            self._resume_url_failures += 1

    def close(self, frame: CloseFrame) -> Session | None:
        """The user closes the shard. 1000/1001 end the session; others keep it resumable.

        A fatally closed shard stays FATALLY_CLOSED.
        """
        session = self.session
        if self.state is not ShardState.FATALLY_CLOSED:
            self._move("close")
        if self._open:
            self._request_close(frame)
        if frame.ends_session:
            self._clear_session()
            return None
        return session

    def _clear_session(self) -> None:
        self._session_id = None
        self._sequence = None
        self._resume_url = None
        self._resume_url_failures = 0

    # ---- receiving ------------------------------------------------------------------------

    def receive(self, payload: bytes, now: float) -> Event | None:
        """Process one whole gateway payload; the event to deliver, if the user wants it.

        Raises :class:`gateway.codec.DecodeError` / ``ScanError`` (ValueErrors) on a payload
        that is not a gateway envelope, or a HELLO, READY or INVALID_SESSION without the
        fields the protocol needs; the driver then reconnects.
        """
        op, seq, name = scan(payload)
        if op == 0:
            if self._interval is None:  # no session can exist on this connection yet
                raise codec.DecodeError("a dispatch before HELLO")
            return self._dispatch(payload, seq, name, now)
        if op == OpCode.HEARTBEAT_ACK:
            self._awaiting_ack = False
            self.latency.record_ack(now)
            return self._gateway_event(EventType.GATEWAY_HEARTBEAT_ACK, None)
        if op == OpCode.HELLO:
            return self._hello(_data(payload), now)
        if op == OpCode.HEARTBEAT:
            self._heartbeat_requested(now)
            return self._gateway_event(EventType.GATEWAY_HEARTBEAT, None)
        if op == OpCode.RECONNECT:
            log.info("shard %s: op 7 reconnect", self.shard_id)
            self._request_close(RECONNECT_CLOSE)
            return self._gateway_event(EventType.GATEWAY_RECONNECT, None)
        if op == OpCode.INVALID_SESSION:
            resumable = _data(payload)
            if not isinstance(resumable, bool):
                raise codec.DecodeError(f"INVALID_SESSION d must be a boolean, got {resumable!r}")
            return self._invalid_session(resumable, now)
        if op is None:
            raise codec.DecodeError("payload has no op")
        log.debug("shard %s: ignoring unknown opcode %s", self.shard_id, op)
        return None

    def record_sequence(self, seq: int | None) -> None:
        """The receive pipeline took a run of plain dispatches itself (a compiled batch):
        the highest sequence among them, or None. The sequence never moves back
        (protocol.md 12): a lower one is a server anomaly, logged.
        """
        if seq is not None:
            self._advance(seq)

    def _advance(self, seq: int) -> None:
        current = self._sequence
        if current is None or seq > current:
            self._sequence = seq
        elif seq < current:
            log.warning(
                "shard %s: sequence %s after %s (kept %s)", self.shard_id, seq, current, current
            )

    def _gateway_event(self, event_type: EventType, data: Any) -> Event | None:
        return Event(event_type, data) if self._flags & _FLAG[event_type] else None

    def _dispatch(
        self, payload: bytes, seq: int | None, name: str | None, now: float
    ) -> Event | None:
        event_type = _DISPATCH_TYPES.get(name) if name is not None else None
        if event_type is EventType.READY:
            d = _data(payload)
            session_id = d.get("session_id") if isinstance(d, dict) else None
            resume_url = d.get("resume_gateway_url") if isinstance(d, dict) else None
            if not isinstance(session_id, str) or not session_id:
                raise codec.DecodeError("READY has no session_id")
            if resume_url is not None and not isinstance(resume_url, str):
                raise codec.DecodeError("READY's resume_gateway_url is not a string")
            self._session_id = session_id
            self._resume_url = self._safe_resume_url(resume_url)
            self._resume_url_failures = 0
            # A new session: its sequence starts here (it may be below the old one).
            self._sequence = seq if seq is not None else self._sequence
            self._became_active("ready", now)
            return Event(event_type, d, seq) if self._flags & _FLAG[event_type] else None
        if seq is not None:
            self._advance(seq)
        if event_type is EventType.RESUMED:
            self._became_active("resumed", now)
        if event_type is None:
            # Unknown names (new or undocumented events) are delivered with their wire name.
            if not self._flags & _FLAG[EventType.UNKNOWN]:
                return None
            return Event(EventType.UNKNOWN, _data(payload), seq, name)
        if not self._flags & _FLAG[event_type]:
            return None
        return _new_event(Event, (event_type, codec.fast_loads(payload).get("d"), seq, name))

    def _safe_resume_url(self, url: str | None) -> str | None:
        """READY's ``resume_gateway_url`` if it may be used: a ws(s) URL that does not
        weaken the gateway's scheme (a ``wss://`` gateway never resumes over ``ws://``,
        where the token would travel in clear; protocol.md 12). None: resume at
        ``gateway_url``.
        """
        if not url:
            return None
        scheme = urlsplit(url).scheme.lower() if url.isascii() else ""
        secure = self.config.gateway_url.lower().startswith("wss://")
        if scheme == "wss" or (scheme == "ws" and not secure):
            return url
        log.warning(
            "shard %s: refusing resume_gateway_url with scheme %r (gateway is %s); "
            "resuming at gateway_url", self.shard_id, scheme, "wss" if secure else "ws",
        )  # fmt: skip
        return None

    def _became_active(self, trigger: str, now: float) -> None:
        self._move(trigger)
        self._active_since = now
        self._ready_deadline = None
        self.activations += 1

    def _hello(self, d: Any, now: float) -> Event | None:
        if self._interval is not None:
            raise codec.DecodeError("a second HELLO on one connection")
        raw = d.get("heartbeat_interval") if isinstance(d, dict) else None
        low, high = HELLO_INTERVAL_RANGE
        # The range check also refuses NaN, infinities and ints too large for a float.
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not low <= raw <= high:
            raise codec.DecodeError(f"HELLO has no valid heartbeat_interval: {raw!r}")
        interval = float(raw) / 1000
        self._interval = interval
        self._hello_deadline = None
        self._limiter = CommandRatelimiter(interval)
        # Jitter spreads the first beats of many shards (protocol.md 3.1).
        self._next_beat = now + interval * self._rng()
        if self._session_id is not None:
            self._queue_resume(now)
        return self._gateway_event(EventType.GATEWAY_HELLO, d)

    def _invalid_session(self, resumable: bool, now: float) -> Event | None:
        log.info("shard %s: invalid session (resumable=%s)", self.shard_id, resumable)
        if resumable and self._session_id is not None:
            # Resume on a new connection, never on this one (protocol.md 5.2).
            self._request_close(RESUMABLE_INVALID_CLOSE)
        else:
            self._clear_session()
            self._move("invalid")
            self._identify_sent = False
            self._ready_deadline = None
            # Discord asks for a random 1-5 s before identifying again (protocol.md 5.2),
            # counted from the op 9 even across a reconnect (protocol.md 12).
            self._identify_not_before = now + 1 + 4 * self._rng()
        return self._gateway_event(EventType.GATEWAY_INVALIDATE_SESSION, resumable)

    # ---- sending --------------------------------------------------------------------------

    def _queue_heartbeat(self, now: float) -> None:
        self._priority.append(codec.dumps({"op": 1, "d": self._sequence}))
        self._awaiting_ack = True
        self.latency.record_sent(now)

    def _heartbeat_requested(self, now: float) -> None:
        """op 1 from the server: beat now, and restart the interval from this beat, so the
        timer never judges a beat whose ACK cannot have arrived yet (protocol.md 3.4).
        """
        last = self._last_request
        if last is not None and 0 <= now - last < HEARTBEAT_REQUEST_WINDOW:
            return  # answered by the beat just sent: a flood of op 1 gets one beat a second
        self._last_request = now
        self._queue_heartbeat(now)
        if self._interval is not None:
            self._next_beat = now + self._interval
            self._blind = self._paused

    def _queue_resume(self, now: float) -> None:
        self._move("resume")
        d = {"token": self.config.token, "session_id": self._session_id, "seq": self._sequence or 0}
        self._priority.append(codec.dumps({"op": 6, "d": d}))
        self._await_ready(now)

    def _await_ready(self, now: float) -> None:
        """IDENTIFY or RESUME is out: READY or RESUMED must follow in time."""
        self._ready_deadline = now + self.config.ready_timeout
        self._ready_seq = self._sequence

    def fail(self, frame: CloseFrame) -> None:
        """The driver met bad data on this connection: close it with ``frame`` (reconnect)."""
        self._request_close(frame)

    def _request_close(self, frame: CloseFrame) -> None:
        if self.close_request is None:
            self.close_request = frame

    def wants_identify(self, now: float) -> bool:
        """Whether the driver should get an identify permit and then call :meth:`identify`."""
        return (  # the first test ends it for an identified shard (the per-event case)
            self._session_id is None
            and self._open
            and self._interval is not None
            and not self._identify_sent
            and self.close_request is None
            and now >= self._identify_not_before
        )

    def identify(self, now: float) -> bool:
        """The identify queue granted a permit: send IDENTIFY. False if no longer wanted
        (the driver then returns the permit if its queue can take it back).
        """
        if not self.wants_identify(now):
            return False
        self._identify_sent = True
        self._priority.append(codec.dumps(self.config.identify_payload(self.shard_id.to_list())))
        self._await_ready(now)
        return True

    def command(self, payload: str) -> None:
        """Queue a user payload (JSON text); it is sent once identified, rate limited.

        Raises ValueError for a payload over 4096 bytes (the gateway would close 4002).
        """
        if len(payload.encode()) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload is larger than {MAX_PAYLOAD_BYTES} bytes")
        self._commands.append(payload)

    @property
    def pending_commands(self) -> int:
        """User payloads queued and not yet sent."""
        return len(self._commands)

    def data_to_send(self, now: float) -> list[str]:
        """Payloads to write now, in order. Nothing while a close is requested."""
        self._commands_in_flight = 0
        if not self.wants_write or not self._open or self.close_request:
            return []
        out = self._priority
        self._priority = []
        limiter = self._limiter
        if limiter is not None:
            for _ in out:
                limiter.record(now)
        if self.state is ShardState.ACTIVE and self._commands and limiter is not None:
            allowed = (
                limiter.available(now) if self.config.ratelimit_messages else len(self._commands)
            )
            while allowed > 0 and self._commands:
                out.append(self._commands.popleft())
                self._commands_in_flight += 1
                limiter.record(now)
                allowed -= 1
        return out

    def unsent(self, payloads: list[str], index: int) -> None:
        """``payloads`` (the last :meth:`data_to_send`) were written up to ``index`` only:
        the connection went away. User commands among the rest go back to the front of the
        queue, in order, for the next connection (heartbeats, IDENTIFY and RESUME belong to
        the dead connection).
        """
        first_command = len(payloads) - self._commands_in_flight
        self._commands.extendleft(reversed(payloads[max(index, first_command) :]))
        self._commands_in_flight = 0

    # ---- time -----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` must run next (None: nothing scheduled)."""
        if not self._open or self.close_request is not None:
            return None
        deadline = self._next_beat if self._next_beat is not None else self._hello_deadline
        # Only while it is ahead (on_timer zeroes it once passed): a past deadline here
        # would re-arm the driver's timer every loop turn while the identify queue waits.
        if self._identify_not_before and not self._identify_sent and self._session_id is None:
            if deadline is None or self._identify_not_before < deadline:
                deadline = self._identify_not_before
        if self._ready_deadline is not None:
            if deadline is None or self._ready_deadline < deadline:
                deadline = self._ready_deadline
        if self._commands and self.state is ShardState.ACTIVE and self._limiter is not None:
            available = self._limiter.next_available()
            if deadline is None or available < deadline:
                deadline = available
        return deadline

    @property
    def wants_write(self) -> bool:
        """Whether :meth:`data_to_send` may have something (a cheap check for the driver)."""
        return bool(self._priority or self._commands)

    def reading_paused(self, now: float) -> None:
        """The driver stopped reading (the consumer is behind): an ACK may wait unread, so
        beats go on but none is judged a zombie until reading resumes for a whole interval.
        """
        self._paused = True
        self._blind = True

    def reading_resumed(self, now: float) -> None:
        """The driver reads again (see :meth:`reading_paused`)."""
        self._paused = False

    def on_timer(self, now: float) -> None:
        """Run what is due: no HELLO in time, a heartbeat, or close a zombie connection."""
        if self._hello_deadline is not None and now >= self._hello_deadline:
            timeout = self.config.hello_timeout
            log.warning("shard %s: no HELLO within %.1f s", self.shard_id, timeout)
            self._request_close(NO_HELLO_CLOSE)
            return
        if self._identify_not_before and now >= self._identify_not_before:
            self._identify_not_before = 0.0  # passed: wants_identify may say yes now
        if self._ready_deadline is not None and now >= self._ready_deadline:
            self._ready_timer(now)
            if self.close_request is not None:
                return
        if self._next_beat is None or now < self._next_beat or self._interval is None:
            return
        late = now - self._next_beat > self._interval * LATE_TIMER
        if self._awaiting_ack and not (self._blind or late):
            # No ACK since the last beat: the connection is a zombie (protocol.md 3.5).
            log.warning("shard %s: no heartbeat ACK, reconnecting", self.shard_id)
            self._request_close(ZOMBIE_CLOSE)
            return
        if self._awaiting_ack:
            log.info("shard %s: heartbeat ACK unread (reading paused or loop late)", self.shard_id)
        self._queue_heartbeat(now)
        self._blind = self._paused
        # On time (or a little late), keep the cadence; later than that, restart it from
        # this beat, so its ACK always has at least half an interval before it is judged.
        self._next_beat = now + self._interval if late else self._next_beat + self._interval

    def _ready_timer(self, now: float) -> None:
        """READY/RESUMED is late: reconnect, unless dispatches came meanwhile (a long
        replay) or reading was paused (they may wait unread): then wait again.
        """
        if self._paused or self._blind or self._sequence != self._ready_seq:
            self._await_ready(now)
            return
        timeout = self.config.ready_timeout
        log.warning("shard %s: no READY or RESUMED within %.1f s", self.shard_id, timeout)
        self._request_close(NO_READY_CLOSE)


def _close_frame(code: int | None, reason: str) -> CloseFrame | None:
    """The close frame received, as a value (None: none, or a code not valid on the wire);
    a reason over 123 bytes (a replacement character for each invalid byte) is cut.
    """
    if code is None or not _valid_close(code):
        return None
    raw = reason.encode(errors="replace")
    if len(raw) > 123:
        reason = raw[:123].decode(errors="ignore")
    return CloseFrame(code, reason)


def _data(payload: bytes) -> Any:
    """``d`` of a payload the fast scan could not decide on its own."""
    body = codec.loads(payload)
    if not isinstance(body, dict):
        raise codec.DecodeError("payload is not a JSON object")
    return body.get("d")


def _valid_close(code: int) -> bool:
    return 1000 <= code <= 1014 or 3000 <= code <= 4999

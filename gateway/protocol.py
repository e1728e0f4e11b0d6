"""The shard's sans-I/O state machine (protocol.md sections 2-5 and 12).

``ShardProtocol`` holds everything a shard knows and decides, and does no I/O: the driver
(:class:`gateway.Shard`) feeds it whole payloads and the time, and asks it what to send,
when to wake it up, and whether to close. Time is a float of seconds (monotonic) passed in;
randomness (heartbeat jitter, invalid-session delay) comes from an injectable source so
tests can fix it.

Driver contract, per connection::

    protocol.connection_opened(now)
    for each message:   event = protocol.receive(payload_bytes, now)
    at next_deadline(): protocol.on_timer(now)
    when wants_identify(now): await the identify queue, then protocol.identify(now)
    after every call:   send each of protocol.data_to_send(now);
                        if protocol.close_request: close the socket with it
    when the socket is gone: protocol.connection_closed(code, now)
"""

from __future__ import annotations

import enum
import logging
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from . import codec
from ._speedups import Dispatcher, scan
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

__all__ = ["ShardProtocol", "NextAction", "ZOMBIE_CLOSE", "MAX_BACKOFF"]

log = logging.getLogger(__name__)

#: The close frame sent on a zombied connection or an op 7: not 1000/1001, so the session
#: stays resumable.
ZOMBIE_CLOSE = CloseFrame(4000, "zombied connection")
RECONNECT_CLOSE = CloseFrame(4000, "reconnect requested")
#: Reconnect backoff cap in seconds.
MAX_BACKOFF = 128.0

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
        #: User commands, kept across reconnects until sent on an identified connection.
        self._commands: deque[str] = deque()
        self._dispatcher = Dispatcher(_dispatch_table(self._flags), codec.fast_loads, Event)
        #: ``decode_event(payload)``: the event of a wanted dispatch that :meth:`drain`
        #: took undecoded (a compiled call); raises ValueError if the JSON is damaged.
        self.decode_event: Callable[[bytes], Event] = self._dispatcher.event
        self._reset_connection()

    # ---- public state ---------------------------------------------------------------------

    @property
    def session(self) -> Session | None:
        """The current session (to resume), or None."""
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

    def connect_url(self) -> str:
        """Where to connect next: the resume URL while a session exists, with the query."""
        base = (
            self._resume_url if self._session_id and self._resume_url else self.config.gateway_url
        )
        return base.rstrip("/") + "/" + self.config.query()

    def backoff(self) -> float:
        """Seconds to wait before the next connection attempt (0, then 1, 2, 4 ... 128)."""
        if self.reconnect_attempts == 0:
            return 0.0
        return min(MAX_BACKOFF, 2.0 ** (self.reconnect_attempts - 1))

    # ---- connection lifecycle -------------------------------------------------------------

    def _reset_connection(self) -> None:
        self._interval: float | None = None
        self._next_beat: float | None = None
        self._awaiting_ack = False
        self._priority: list[str] = []
        self._limiter: CommandRatelimiter | None = None
        self._identify_sent = False
        self._identify_not_before = 0.0
        self.close_request: CloseFrame | None = None
        self._open = False

    def connection_opened(self, now: float) -> None:
        """A new websocket is open: wait for HELLO."""
        self._reset_connection()
        self._open = True
        self.state = ShardState.RESUMING if self._session_id else ShardState.IDENTIFYING

    def connection_closed(self, code: int | None, now: float) -> tuple[Event, NextAction]:
        """The socket is gone (``code``: the close code received, None for a bare drop).

        Returns the GATEWAY_CLOSE event and what to do next.
        """
        requested = self.close_request
        was_active = self.state is ShardState.ACTIVE
        self._reset_connection()
        frame = CloseFrame(code) if code is not None and _valid_close(code) else None
        event = Event(EventType.GATEWAY_CLOSE, frame)
        if self.state is ShardState.CLOSED:
            return event, NextAction.STOP
        if requested is None and is_fatal(code):
            self.state = ShardState.FATALLY_CLOSED
            log.error("shard %s: fatal close code %s, not reconnecting", self.shard_id, code)
            return event, NextAction.STOP
        if requested is None and invalidates_session(code):
            self._clear_session()
        if not was_active:
            self.reconnect_attempts += 1
        self.state = ShardState.DISCONNECTED
        return event, NextAction.RESUME if self._session_id else NextAction.IDENTIFY

    def connect_failed(self) -> None:
        """Opening a connection failed: back off further."""
        self.reconnect_attempts += 1
        self.state = ShardState.DISCONNECTED

    def close(self, frame: CloseFrame) -> Session | None:
        """The user closes the shard. 1000/1001 end the session; others keep it resumable."""
        session = self.session
        self.close_request = frame
        self.state = ShardState.CLOSED
        if frame.ends_session:
            self._clear_session()
            return None
        return session

    def _clear_session(self) -> None:
        self._session_id = None
        self._sequence = None
        self._resume_url = None

    # ---- receiving ------------------------------------------------------------------------

    def receive(self, payload: bytes, now: float) -> Event | None:
        """Process one whole gateway payload; the event to deliver, if the user wants it.

        Raises :class:`gateway.codec.DecodeError` / ``ScanError`` (ValueErrors) on a payload
        that is not a gateway envelope; the driver then reconnects.
        """
        op, seq, name = scan(payload)
        if op == 0:
            return self._dispatch(payload, seq, name, now)
        if op == OpCode.HEARTBEAT_ACK:
            self._awaiting_ack = False
            self.latency.record_ack(now)
            return self._gateway_event(EventType.GATEWAY_HEARTBEAT_ACK, None)
        if op == OpCode.HELLO:
            return self._hello(codec.loads(payload).get("d") or {}, now)
        if op == OpCode.HEARTBEAT:
            self._queue_heartbeat(now)
            return self._gateway_event(EventType.GATEWAY_HEARTBEAT, None)
        if op == OpCode.RECONNECT:
            log.info("shard %s: op 7 reconnect", self.shard_id)
            self._request_close(RECONNECT_CLOSE)
            return self._gateway_event(EventType.GATEWAY_RECONNECT, None)
        if op == OpCode.INVALID_SESSION:
            return self._invalid_session(codec.loads(payload).get("d") is True, now)
        if op is None:
            raise codec.DecodeError("payload has no op")
        log.debug("shard %s: ignoring unknown opcode %s", self.shard_id, op)
        return None

    def drain(
        self,
        frames: deque[Any],
        payloads: deque[Any],
        ready: deque[Any],
        limit: int,
        inflater: Any = None,
    ) -> int:
        """Process up to ``limit`` plain dispatches into ``ready`` in one (compiled) call:
        the batch path of :meth:`receive`; returns how many.

        ``frames`` are the connection's messages, inflated here through ``inflater`` (None:
        no transport compression). A plain dispatch is op 0 with a known name other than
        READY/RESUMED; the first payload that is anything else is left (inflated) at the
        head of ``payloads`` for :meth:`receive`. ``ready`` gets ``payload`` (bytes: wanted;
        :attr:`decode_event` makes the event when it is taken, so its objects die young)
        or ``(payload, None)`` (not wanted). See ``gateway._speedups._dispatch_py``.
        """
        count: int
        count, seq = self._dispatcher.drain(frames, payloads, ready, limit, inflater)
        if seq is not None:
            self._sequence = seq
        return count

    def _gateway_event(self, event_type: EventType, data: Any) -> Event | None:
        return Event(event_type, data) if self._flags & _FLAG[event_type] else None

    def _dispatch(
        self, payload: bytes, seq: int | None, name: str | None, now: float
    ) -> Event | None:
        if seq is not None:
            self._sequence = seq
        event_type = _DISPATCH_TYPES.get(name) if name is not None else None
        if event_type is EventType.READY:
            d = codec.loads(payload)["d"]
            self._session_id = d["session_id"]
            self._resume_url = d.get("resume_gateway_url") or None
            self._became_active()
            return Event(event_type, d, seq) if self._flags & _FLAG[event_type] else None
        if event_type is EventType.RESUMED:
            self._became_active()
        if event_type is None:
            log.debug("shard %s: unknown dispatch %r (sequence %s)", self.shard_id, name, seq)
            return None
        if not self._flags & _FLAG[event_type]:
            return None
        return _new_event(Event, (event_type, codec.fast_loads(payload).get("d"), seq, name))

    def _became_active(self) -> None:
        self.state = ShardState.ACTIVE
        self.reconnect_attempts = 0

    def _hello(self, d: dict[str, Any], now: float) -> Event | None:
        interval = float(d.get("heartbeat_interval", 41250)) / 1000
        self._interval = interval
        self._limiter = CommandRatelimiter(interval)
        # Jitter spreads the first beats of many shards (protocol.md 3.1).
        self._next_beat = now + interval * self._rng()
        if self._session_id is not None:
            self._queue_resume()
        return self._gateway_event(EventType.GATEWAY_HELLO, d)

    def _invalid_session(self, resumable: bool, now: float) -> Event | None:
        log.info("shard %s: invalid session (resumable=%s)", self.shard_id, resumable)
        if resumable and self._session_id is not None:
            self._queue_resume()
        else:
            self._clear_session()
            self.state = ShardState.IDENTIFYING
            self._identify_sent = False
            # Discord asks for a random 1-5 s before identifying again (protocol.md 5.2).
            self._identify_not_before = now + 1 + 4 * self._rng()
        return self._gateway_event(EventType.GATEWAY_INVALIDATE_SESSION, resumable)

    # ---- sending --------------------------------------------------------------------------

    def _queue_heartbeat(self, now: float) -> None:
        self._priority.append(codec.dumps({"op": 1, "d": self._sequence}))
        self._awaiting_ack = True
        self.latency.record_sent(now)

    def _queue_resume(self) -> None:
        self.state = ShardState.RESUMING
        d = {"token": self.config.token, "session_id": self._session_id, "seq": self._sequence or 0}
        self._priority.append(codec.dumps({"op": 6, "d": d}))

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

    def identify(self, now: float) -> None:
        """The identify queue granted a permit: send IDENTIFY."""
        if not self.wants_identify(now):
            return
        self._identify_sent = True
        self.state = ShardState.IDENTIFYING
        self._priority.append(codec.dumps(self.config.identify_payload(self.shard_id.to_list())))

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
                limiter.record(now)
                allowed -= 1
        return out

    # ---- time -----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` must run next (None: nothing scheduled)."""
        if not self._open or self.close_request is not None:
            return None
        deadline = self._next_beat
        if self._identify_not_before and not self._identify_sent and self._session_id is None:
            if deadline is None or self._identify_not_before < deadline:
                deadline = self._identify_not_before
        if self._commands and self.state is ShardState.ACTIVE and self._limiter is not None:
            available = self._limiter.next_available()
            if deadline is None or available < deadline:
                deadline = available
        return deadline

    @property
    def wants_write(self) -> bool:
        """Whether :meth:`data_to_send` may have something (a cheap check for the driver)."""
        return bool(self._priority or self._commands)

    def on_timer(self, now: float) -> None:
        """Run what is due: heartbeat, or close a zombie connection."""
        if self._next_beat is None or now < self._next_beat or self._interval is None:
            return
        if self._awaiting_ack:
            # No ACK since the last beat: the connection is a zombie (protocol.md 3.5).
            log.warning("shard %s: no heartbeat ACK, reconnecting", self.shard_id)
            self._request_close(ZOMBIE_CLOSE)
            return
        self._queue_heartbeat(now)
        self._next_beat = max(self._next_beat + self._interval, now)


def _valid_close(code: int) -> bool:
    return 1000 <= code <= 1014 or 3000 <= code <= 4999

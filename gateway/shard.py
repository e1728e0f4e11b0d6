"""The asyncio shard: one self-healing websocket session to the gateway.

:class:`Shard` drives :class:`gateway.protocol.ShardProtocol` (all decisions live there)
over :class:`gateway.transport.Connection`. Liveness never waits for the consumer:

- a background task per shard connects, reconnects (with backoff), identifies through the
  queue and closes;
- the protocol's one deadline (heartbeat, HELLO timeout, identify delay, rate limit) is one
  loop timer, moved when the deadline moves;
- data that the consumer does not take within :data:`LIVENESS_DELAY` is processed by the
  shard itself (inflate and scan only, no JSON decode), so heartbeat requests, ACKs, op 7
  and closes are seen while the consumer is busy. A consumer that falls behind makes the
  shard stop reading at ``Config.read_high_water`` bytes; heartbeats go on meanwhile.

The consumer's ``next_event()`` only takes: a wanted dispatch waits as its payload and is
JSON-decoded when taken, so its objects die young. When nothing is processed yet it
processes one batch itself (the hot path of a busy shard: no trip through the loop).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any, NoReturn, TypeAlias

import websockets

from . import codec
from . import compression as compression_module
from ._speedups import Dispatcher, scan
from .close import CloseFrame, describe
from .commands import Command
from .compression import Inflater
from .config import Config
from .errors import ReceiveMessageError, ReceiveMessageErrorKind
from .events import Event, EventType, EventTypeFlags
from .intents import Intents
from .latency import Latency
from .message import Close, Message, Text
from .protocol import ABORTING_CLOSES, NextAction, ShardProtocol
from .queue import default_queue
from .session import SavedSession, Session
from .shard_id import ShardId
from .state import ShardState
from .transport import CompressionError, Connection, FrameError
from .watchdog import watch

__all__ = ["Shard", "BATCH", "LIVENESS_DELAY"]

log = logging.getLogger(__name__)

#: Buffered payloads processed per step of the consumer (bounds the timer's delay).
BATCH = 64
#: Seconds received data may wait for the consumer before the shard processes it itself.
LIVENESS_DELAY = 0.05
#: The identify queue failed: seconds before retrying (full jitter up to this, doubling).
_QUEUE_RETRY = (1.0, 60.0)

#: The least wait between two connection attempts after a failure (seconds).
_MIN_RETRY = 0.05
#: The least TCP_USER_TIMEOUT a paused shard sets (seconds; see Connection.limit_unacked).
_UNACKED_MIN = 10.0
#: Seconds close() waits for the driver and the final session save (a store that hangs).
_FINAL_SAVE_TIMEOUT = 10.0
#: Seconds after which an unchanged session is saved again (stores expire sessions).
_RESAVE_UNCHANGED = 60.0

_CONNECT_ERRORS = (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI)


class _Closed:
    """A connection ended: its place in the ready queue (``Close`` and GATEWAY_CLOSE)."""

    __slots__ = ("event", "message")

    def __init__(self, message: Close, event: Event | None) -> None:
        self.message = message
        self.event = event


_Ready: TypeAlias = "bytes | tuple[bytes, Event | None] | ReceiveMessageError | _Closed"
#: A merged stream listening to a shard: told when the shard may have something; returns
#: whether a consumer is waiting on the stream (else the shard processes data itself).
Listener: TypeAlias = "Callable[[Shard], bool]"


def _size(items: Iterable[_Ready]) -> int:
    """Bytes of the payloads among ``items``."""
    total = 0
    for item in items:
        if type(item) is bytes:
            total += len(item)
        elif type(item) is tuple:
            total += len(item[0])
    return total


def _decoders(config: Config) -> dict[str, Callable[[bytes], Any]] | None:
    """The typed decoders of ``Config.models`` (None: none, and msgspec is not imported)."""
    if not config.models:
        return None
    from .models import decoders

    return decoders(config.models)


def _ready_converter(config: Config) -> Callable[[Any], Any] | None:
    """READY's model as a converter of the protocol's dict (None: READY stays a dict)."""
    model = config.models.get(EventType.READY)
    if model is None:
        return None
    from .models import converter

    return converter(model)


class Shard:
    """One gateway session: identify or resume, heartbeat, reconnect, deliver events.

    ``Shard(ShardId.ONE, token, intents)`` or ``Shard(shard_id, config=Config(...))``.
    ``async for event in shard`` yields events until the shard is closed or a fatal close
    code arrives; ``next_event()`` raises :class:`ReceiveMessageError` in those cases.

    The shard starts (connects) on the first ``next_event()`` / ``next_message()`` or
    :meth:`start`, and from then on keeps its session alive by itself, whether or not
    anyone is taking events: a slow consumer only makes it hold events (up to
    ``Config.read_high_water`` bytes) and stop reading the socket until they are taken.
    """

    # Slots: the hot path reads a dozen attributes per event, of shards whose memory is
    # cold when events trickle (a slot is a fixed offset, not a dict lookup).
    __slots__ = (
        "__weakref__", "_activations", "_config", "_conn", "_decode_event", "_dispatcher",
        "_ended", "_fatal_code", "_held", "_held_at_open", "_id", "_identify_task",
        "_inflater", "_last_save", "_listener", "_loop", "_paused", "_payloads", "_protocol",
        "_raw_payloads", "_ready", "_rng", "_save_task", "_save_timer", "_saved", "_soon",
        "_task", "_timer", "_timer_at", "_typed_ready", "_waiter",
    )  # fmt: skip

    def __init__(
        self,
        shard_id: ShardId,
        token: str | None = None,
        intents: Intents | None = None,
        *,
        config: Config | None = None,
        rng: Callable[[], float] = random.random,
        **options: Any,
    ) -> None:
        if config is None:
            if token is None:
                raise TypeError("give a token (and intents) or a config")
            config = Config(token, intents if intents is not None else Intents(0), **options)
        elif token is not None or intents is not None or options:
            raise TypeError("give either a config or token/intents/options, not both")
        self._id = shard_id
        self._config = config
        self._rng = rng
        self._protocol = ShardProtocol(shard_id, config, rng=rng)
        self._dispatcher = Dispatcher(
            self._protocol.dispatch_table, codec.fast_loads, Event, _decoders(config)
        )
        self._decode_event = self._dispatcher.event
        self._typed_ready = _ready_converter(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._conn: Connection | None = None
        # Without transport compression: payload-compressed blobs, capped like the rest.
        self._raw_payloads = compression_module.NoInflater(config.max_inflated_size)
        # This connection's transport inflater (None: uncompressed) and the payload it
        # inflated that the batch drain left for ShardProtocol.receive.
        self._inflater: Inflater | None = None
        self._payloads: deque[bytes | CompressionError] = deque()
        # Payloads processed and not yet taken: bytes (a wanted dispatch, decoded when
        # taken), (bytes, Event | None) (processed), or an error / a connection's end in
        # its place.
        self._ready: deque[_Ready] = deque()
        self._held = 0  # bytes the shard processed ahead for a consumer that is behind
        self._held_at_open = 0  # _held when this connection opened (its own share is capped)
        self._paused = False  # reading stopped at the high-water mark
        self._ended: asyncio.Future[None] | None = None  # the connection must end
        self._waiter: asyncio.Future[None] | None = None  # the consumer waits
        self._listener: Listener | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._soon: asyncio.TimerHandle | None = None  # processes data the consumer left
        self._identify_task: asyncio.Task[None] | None = None
        self._save_task: asyncio.Task[None] | None = None
        self._saved: SavedSession | None = None
        self._last_save = 0.0
        self._activations = 0  # the protocol's READY/RESUMED count last seen (save on change)
        self._save_timer: asyncio.TimerHandle | None = None  # the session store's cadence
        self._fatal_code: int | None = None

    # ---- public properties ----------------------------------------------------------------

    @property
    def id(self) -> ShardId:
        return self._id

    @property
    def config(self) -> Config:
        return self._config

    @property
    def state(self) -> ShardState:
        return self._protocol.state

    @property
    def latency(self) -> Latency:
        return self._protocol.latency

    @property
    def session(self) -> Session | None:
        """The session to resume *after what the caller has received*: its sequence is the
        last dispatch taken from this shard (events it holds but has not handed out yet
        would come again in a resume, so none is lost).
        """
        session = self._protocol.session
        if session is None:
            return None
        for item in self._ready:
            payload = item if type(item) is bytes else item[0] if type(item) is tuple else None
            if payload is None:
                continue
            try:
                op, seq, _ = scan(payload)
            except ValueError:
                continue
            if op == 0 and seq is not None:
                if seq - 1 < session.sequence:
                    return Session(session.session_id, max(seq - 1, 0))
                break
        return session

    @property
    def resume_url(self) -> str | None:
        return self._protocol.resume_url

    @property
    def reconnect_attempts(self) -> int:
        return self._protocol.reconnect_attempts

    def __repr__(self) -> str:
        return f"Shard({self._id!r}, state={self.state.value})"

    # ---- sending --------------------------------------------------------------------------

    def command(self, command: Command) -> None:
        """Queue a command; sent once identified, within the rate limit, never lost."""
        self.send(codec.dumps(command.payload()))

    def send(self, payload: str) -> None:
        """Queue a raw JSON payload (same queue as :meth:`command`)."""
        if self.state in (ShardState.CLOSED, ShardState.FATALLY_CLOSED):
            raise RuntimeError("the shard is closed")
        self._protocol.command(payload)
        if self._conn is not None and self._loop is not None:
            self._after(self._loop.time())

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting now (``next_event()`` and the merged streams call it)."""
        if self._task is None and self.state not in (ShardState.CLOSED, ShardState.FATALLY_CLOSED):
            self._loop = loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name=f"gateway shard {self._id}")
            if self._config.session_store is not None:
                self._save_timer = loop.call_later(
                    self._config.session_save_interval, self._save_tick
                )
            if self._config.loop_watchdog is not None:
                watch(loop, self, self._config.loop_watchdog)

    async def close(self, frame: CloseFrame = CloseFrame.NORMAL) -> Session | None:
        """Close the shard. ``CloseFrame.NORMAL`` ends the session; ``CloseFrame.RESUME``
        keeps it and returns the :class:`Session` to resume later (``Config(session=...)``),
        as of the last event delivered: events held and not delivered come again there.
        """
        session = None if frame.ends_session else self.session
        self._protocol.close(frame)
        self._ready.clear()
        self._payloads.clear()
        self._held = 0
        task, self._task = self._task, None
        conn, self._conn = self._conn, None
        self._stop_connection_work()
        if task is not None:
            task.cancel()
        try:
            if conn is not None:
                await conn.close(frame.code, frame.reason)
        finally:  # also when close() itself is cancelled: nothing is left half done
            if conn is not None:
                conn.abort()
            try:  # bounded: a store that hangs must not hang close()
                async with asyncio.timeout(_FINAL_SAVE_TIMEOUT):
                    if task is not None:
                        await asyncio.gather(task, return_exceptions=True)
                    await self._stop_saving()  # a cadence save must not land after this one
                    await self._store_final(session, frame.ends_session)
            except TimeoutError:
                log.warning("shard %s: the final session save timed out", self._id)
            self._wake()
        return session

    async def _stop_saving(self) -> None:
        """Stop the session store's cadence, and wait out a save in flight."""
        if self._save_timer is not None:
            self._save_timer.cancel()
            self._save_timer = None
        if self._save_task is not None:
            self._save_task.cancel()
            await asyncio.gather(self._save_task, return_exceptions=True)

    async def _run(self) -> None:
        """The shard's life: connect, wait for the connection to end, reconnect."""
        loop = asyncio.get_running_loop()
        await self._load_session()
        while self.state not in (ShardState.CLOSED, ShardState.FATALLY_CLOSED):
            try:
                if not await self._connect(loop):
                    continue
                assert self._ended is not None
                await self._ended
                if not await self._finish_connection(loop):
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: say so, then heal like a dropped connection
                log.exception("shard %s: unexpected error in the driver", self._id)
                self._push(ReceiveMessageError(ReceiveMessageErrorKind.RECONNECT, repr(exc)))
                self._reset(loop)

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        """The one way out of an unexpected error: drop the connection and bring the
        protocol to DISCONNECTED as if TCP had dropped (so the next connection can open,
        resume or identify), with the backoff of a failed attempt.
        """
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()
        self._stop_connection_work()
        self._payloads.clear()
        p = self._protocol
        if p.state not in (ShardState.IDENTIFYING, ShardState.RESUMING, ShardState.ACTIVE):
            p.connect_failed()  # the error came before a connection opened
            return
        try:  # counts the failure itself (once), like any drop
            p.connection_closed(None, loop.time())
        except Exception:  # pragma: no cover - a second bug must not stop the loop
            log.exception("shard %s: resetting the protocol failed", self._id)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> bool:
        p = self._protocol
        delay = p.backoff(loop.time())
        if p.reconnect_attempts > 1:
            delay = max(delay, _MIN_RETRY)  # never a hot loop of failing connects
        if delay:
            log.info("shard %s: reconnecting in %.1f s", self._id, delay)
            await asyncio.sleep(delay)  # close() cancels the task
        p.attempt_started(loop.time())
        url = p.connect_url()
        try:  # ssl None: the process-wide default context (one per process, not per shard)
            conn = await Connection.open(
                url, ssl=self._config.ssl, timeout=self._config.connect_timeout,
                max_size=self._config.max_message_size, on_data=self._on_data,
                read_interval=self._config.read_interval,
            )  # fmt: skip
        except _CONNECT_ERRORS as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # wait_for (3.11) can turn our cancellation into the connect's own error.
                raise asyncio.CancelledError from exc
            log.warning("shard %s: connecting failed: %s", self._id, str(exc) or repr(exc))
            p.connect_failed()
            return False
        if self.state is ShardState.CLOSED:  # close() raced the connect (wait_for can
            conn.abort()  # swallow a cancellation that arrives as the connect completes)
            return False
        self._conn = conn
        self._inflater = compression_module.create(  # max_message_size also caps the
            self._config.compression,  # compressed bytes of one zlib-stream payload
            self._config.max_inflated_size,
            self._config.max_message_size or 0,
        )
        self._payloads.clear()
        self._held_at_open = self._held
        self._ended = loop.create_future()
        p.connection_opened(loop.time())
        self._step(loop.time())  # messages may have come with the handshake
        return True

    async def _finish_connection(self, loop: asyncio.AbstractEventLoop) -> bool:
        """The connection must end (a close was requested, or it is gone): close it,
        deliver what it brought, then tell the protocol. False when the shard stops.
        """
        p = self._protocol
        conn = self._conn
        assert conn is not None
        self._stop_connection_work()
        code: int | None = None
        reason = ""
        gone = conn.gone
        if gone is not None:
            # The server closed or TCP dropped: everything received before that is valid
            # and goes first, past the high-water mark (bounded by one read). The event
            # carries the server's close frame.
            self._fill(conn, loop.time(), sys.maxsize)
            code, reason = gone.code, gone.reason
        frame = p.close_request
        if frame is not None:
            if frame in ABORTING_CLOSES:  # dead or silent: send the close, wait for nothing
                conn.close_now(frame.code, frame.reason)
            else:
                await conn.close(frame.code, frame.reason)
            if gone is None:
                code, reason = frame.code, frame.reason
        conn.abort()
        self._conn = None
        self._payloads.clear()
        event, action = p.connection_closed(code, loop.time(), reason)
        wanted = self._config.event_types & EventTypeFlags.GATEWAY_CLOSE
        self._push(_Closed(Close(event.data), event if wanted else None))
        if action is not NextAction.STOP:
            return True
        if self.state is ShardState.FATALLY_CLOSED:
            self._fatal_code = code
            await self._stop_saving()  # a cadence save must not revive the deleted session
            await self._store_final(None, True)
        return False

    def _stop_connection_work(self) -> None:
        for handle in (self._timer, self._soon):
            if handle is not None:
                handle.cancel()
        self._timer = self._soon = None
        self._timer_at = None
        if self._identify_task is not None:
            self._identify_task.cancel()
            self._identify_task = None
        if self._paused:
            self._paused = False
            self._protocol.reading_resumed(0.0)

    # ---- callbacks: data, timer -----------------------------------------------------------

    def _on_data(self) -> None:
        """The connection received messages or ended (a transport callback)."""
        conn = self._conn
        if conn is not None and conn.closed:
            self._resolve_ended()  # the driver delivers what is left, then reconnects
        waiter = self._waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
            return
        listener = self._listener
        if listener is not None and listener(self):
            return
        if self._soon is None and self._loop is not None:
            self._soon = self._loop.call_later(LIVENESS_DELAY, self._process_left)

    def _process_left(self) -> None:
        """Nobody took the data in time: process it here, so liveness does not wait."""
        self._soon = None
        assert self._loop is not None
        self._step(self._loop.time())

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        assert self._loop is not None
        now = self._loop.time()
        p = self._protocol
        # Before any verdict (a zombie, no READY), read what was received: the ACK or READY
        # may wait behind events the consumer has not taken (cheap: nothing is decoded).
        self._step(now)
        p.on_timer(now)
        self._after(now)

    def _step(self, now: float) -> None:
        """Process received data ahead of the consumer, up to the high-water mark."""
        conn = self._conn
        if conn is None:
            return
        had = len(self._ready)
        try:
            self._fill(conn, now, sys.maxsize, count=True)
            self._after(now)
        except Exception as exc:  # a bug in a callback must not leave a silent hang
            log.exception("shard %s: unexpected error processing data", self._id)
            self._protocol.fail(CloseFrame(4000, "internal error"))
            self._push(ReceiveMessageError(ReceiveMessageErrorKind.RECONNECT, repr(exc)))
            self._resolve_ended()
        if len(self._ready) != had:
            self._wake()

    def _after(self, now: float) -> None:
        """After the protocol moved: write, end the connection if it must end, identify,
        and move the timer to the protocol's deadline.
        """
        p = self._protocol
        conn = self._conn
        if conn is None:
            return
        if p.wants_write:
            self._flush(conn, now)
        if p.activations != self._activations:  # READY or RESUMED: save the session now
            if self._maybe_save(now, force=True):  # else again after the save in flight
                self._activations = p.activations
        if p.close_request is not None or conn.closed:
            self._resolve_ended()
            return
        if self._identify_task is None and p.wants_identify(now):
            assert self._loop is not None
            self._identify_task = self._loop.create_task(self._identify())
        deadline = p.next_deadline()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            if deadline is not None:
                assert self._loop is not None
                self._timer = self._loop.call_at(deadline, self._on_timer)
            else:
                self._timer = None

    def _resolve_ended(self) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    def _flush(self, conn: Connection, now: float) -> None:
        payloads = self._protocol.data_to_send(now)
        for index, payload in enumerate(payloads):
            try:
                conn.send(payload)
            except Exception:  # ConnectionGone: the rest waits for the next connection
                self._protocol.unsent(payloads, index)
                return

    async def _identify(self) -> None:
        queue = self._config.queue or default_queue()
        failures = 0
        while True:
            try:
                await queue.acquire(self._id.number)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                base, cap = _QUEUE_RETRY
                delay = min(cap, base * 2 ** min(failures - 1, 16)) * (0.5 + self._rng() / 2)
                log.warning(
                    "shard %s: the identify queue failed (%r); retrying in %.1f s",
                    self._id, exc, delay,
                )  # fmt: skip
                self._push(
                    ReceiveMessageError(
                        ReceiveMessageErrorKind.IDENTIFY_QUEUE,
                        f"the identify queue failed: {exc!r}; retrying in {delay:.1f} s",
                    )
                )
                await asyncio.sleep(delay)
        self._identify_task = None
        assert self._loop is not None
        now = self._loop.time()
        self._protocol.identify(now)
        self._after(now)

    # ---- receiving ------------------------------------------------------------------------

    async def next_message(self) -> Message:
        """The next raw message: ``Text`` (every payload) or ``Close``.

        Payloads are scanned for ``op``/``s``/``t`` (the shard's own bookkeeping) but never
        JSON-decoded here, however ``event_types`` is set.
        """
        while True:
            if self._ready or self._refill():
                return self._take_message()
            self._check_open()
            await self._wait()

    async def next_event(self) -> Event:
        """The next event the shard's ``event_types`` wants.

        Raises :class:`ReceiveMessageError`: fatal after a fatal close code or ``close()``;
        otherwise (corrupt data, a failing identify queue) the shard heals by itself and
        the next call continues.
        """
        while True:
            if self._ready:
                event = self._take_event()
                if event is not None:
                    return event
            elif not self._refill():
                self._check_open()
                await self._wait()

    def __aiter__(self) -> Shard:
        return self

    async def __anext__(self) -> Event:
        while True:
            try:
                if self._ready:
                    event = self._take_event()
                    if event is not None:
                        return event
                return await self.next_event()
            except ReceiveMessageError as exc:
                if exc.is_fatal() or exc.kind is ReceiveMessageErrorKind.CLOSED:
                    raise StopAsyncIteration from exc
                log.warning("shard %s: %s", self._id, exc)

    def poll_event(self) -> Event | None:
        """The next wanted event if one can be had without waiting, else None (for merged
        streams). Raises as :meth:`next_event` does.
        """
        ready = self._ready
        while ready or self._refill():
            item = ready[0]
            if type(item) is bytes:  # the common case, inline: a wanted dispatch
                ready.popleft()
                try:
                    return self._decode_event(item)  # type: ignore[no-any-return]
                except ValueError as exc:
                    self._fail(ReceiveMessageErrorKind.DESERIALIZING, exc)
            event = self._take_event()
            if event is not None:
                return event
        self._check_open()
        return None

    def poll_message(self) -> Message | None:
        """The next raw message if one can be had without waiting, else None."""
        if self._ready or self._refill():
            return self._take_message()
        self._check_open()
        return None

    async def _wait(self) -> None:
        """Sleep until data arrives or the shard's state changes."""
        assert self._loop is not None
        self._waiter = waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
        elif self._listener is not None:
            self._listener(self)

    def _push(self, item: _Ready) -> None:
        self._ready.append(item)
        self._wake()

    def _check_open(self) -> None:
        """Nothing is ready: raise if nothing ever will be; start the shard if needed."""
        state = self._protocol.state
        if state is ShardState.FATALLY_CLOSED:
            raise ReceiveMessageError(
                ReceiveMessageErrorKind.FATALLY_CLOSED,
                f"the gateway closed the shard with fatal code {describe(self._fatal_code)}",
                self._fatal_code,
            )
        if state is ShardState.CLOSED:
            raise ReceiveMessageError(ReceiveMessageErrorKind.CLOSED, "the shard is closed")
        if self._task is None:
            self.start()

    def _refill(self) -> bool:
        """``_ready`` is empty: process one batch of received data (the consumer's hot
        path); whether anything is ready now.
        """
        if self._held:
            self._held = 0
            if self._paused and self._conn is not None:
                self._paused = False
                self._conn.resume_reading()
                assert self._loop is not None
                self._protocol.reading_resumed(self._loop.time())
        conn = self._conn
        if conn is None or not (conn.messages or self._payloads):
            return False
        if self._protocol.close_request is not None:
            return False  # the connection is ending: the driver delivers its rest
        loop = self._loop
        assert loop is not None
        frames = conn.messages
        payloads = self._payloads
        budget = BATCH
        plain = False  # only plain dispatches were taken: they move no deadline
        if not payloads:  # the common case first, inline: one run of plain dispatches
            taken, seq = self._dispatcher.drain(
                frames, payloads, self._ready, BATCH, self._inflater
            )
            if taken and not self._protocol.heartbeat_interval:
                self._before_hello(taken, "a dispatch")
                return True
            if seq is not None:
                self._protocol.record_sequence(seq)
            plain = bool(taken) and not payloads and (not frames or type(frames[0]) is bytes)
            budget -= taken  # the rest of this batch: what stopped the run, and after it
        if not plain and self._fill(conn, None, budget):
            self._after(loop.time())
        if conn.messages and self._soon is None:  # more waits: keep liveness if we go away
            self._soon = loop.call_later(LIVENESS_DELAY, self._process_left)
        return bool(self._ready)

    def _has_more(self) -> bool:
        """Whether a poll may find something now (else the shard tells its listener):
        something ready or received, held bytes (a poll resumes reading, which may be
        paused: then no data would come to wake anyone), or the shard has ended (a poll
        raises).
        """
        if self._ready or self._held:
            return True
        conn = self._conn
        if conn is not None:
            return bool(conn.messages or self._payloads)
        return self._protocol.state in (ShardState.CLOSED, ShardState.FATALLY_CLOSED)

    def _take_event(self) -> Event | None:
        """The next wanted event processed (skipping the rest); raises the error queued in
        its place; None when none is waiting.
        """
        ready = self._ready
        while ready:
            item = ready.popleft()
            if type(item) is bytes:  # a wanted dispatch: decoded now, so its objects die young
                try:
                    return self._decode_event(item)  # type: ignore[no-any-return]
                except ValueError as exc:
                    self._fail(ReceiveMessageErrorKind.DESERIALIZING, exc)
            if type(item) is tuple:
                event = item[1]
                if event is not None:
                    if self._typed_ready is not None and event.type is EventType.READY:
                        return self._typed(event)
                    return event
            elif type(item) is _Closed:
                if item.event is not None:
                    return item.event
            else:
                assert isinstance(item, ReceiveMessageError)
                raise item
        return None

    def _typed(self, ready: Event) -> Event:
        """READY with its model as data (the protocol read the session from the dict)."""
        assert self._typed_ready is not None
        try:
            return ready._replace(data=self._typed_ready(ready.data))
        except ValueError as exc:
            self._fail(ReceiveMessageErrorKind.DESERIALIZING, exc)

    def _take_message(self) -> Message:
        """The next payload processed (``_ready`` is not empty) as a message; raises the
        error queued in its place.
        """
        item = self._ready.popleft()
        if isinstance(item, _Closed):
            return item.message
        if isinstance(item, ReceiveMessageError):
            raise item
        payload = item if isinstance(item, bytes) else item[0]
        try:
            return Text(payload.decode())
        except UnicodeDecodeError as exc:  # an inflated payload that is not UTF-8
            self._fail(ReceiveMessageErrorKind.DESERIALIZING, exc)

    def _fill(self, conn: Connection, now: float | None, limit: int, count: bool = False) -> bool:
        """Process up to ``limit`` received payloads into ``_ready``. Runs of plain
        dispatches go in one compiled call (inflate, scan, sequence), anything else through
        ``ShardProtocol.receive``. Stops at a close request; an error is queued in its
        place, so what came before it is delivered first. With ``count`` (processing ahead
        of the consumer), pauses reading at the high-water mark, but only once this
        connection's HELLO is seen, and still processes what was read: control payloads
        (HELLO, ACK, op 1/7/9, READY, RESUMED) never wait for the consumer, and what is
        held past the mark is bounded by one read.

        ``now`` is the loop's time (None: read when needed). Returns whether the protocol
        saw more than plain dispatches (then the caller must run :meth:`_after`).
        """
        p = self._protocol
        ready = self._ready
        frames = conn.messages
        payloads = self._payloads
        drain = self._dispatcher.drain
        budget = limit
        moved = False
        while budget > 0 and p.close_request is None:
            start = len(ready)
            taken, seq = drain(frames, payloads, ready, min(budget, BATCH), self._inflater)
            if taken and not p.heartbeat_interval:
                self._before_hello(taken, "a dispatch")
                return True
            if seq is not None:
                p.record_sequence(seq)
            budget -= taken
            if budget > 0 and (payloads or (frames and type(frames[0]) is not bytes)):
                item = payloads.popleft() if payloads else frames.popleft()
                budget -= 1
                moved = True
                if now is None:
                    assert self._loop is not None
                    now = self._loop.time()
                try:
                    ready.append(self._receive(item, now))
                except ReceiveMessageError as exc:
                    ready.append(exc)
                    break
            elif not taken:
                break  # nothing left
            if count:
                self._held += _size(islice(ready, start, None))
                if self._held >= self._config.read_high_water:
                    if p.heartbeat_interval:
                        moved = self._pause(conn, now) or moved
                    elif self._held - self._held_at_open >= self._config.read_high_water:
                        self._before_hello(0, "too much data")
                        return True
            if not frames and not payloads:
                break
        return moved

    def _before_hello(self, taken: int, what: str) -> None:
        """Bad data before this connection's HELLO: ``taken`` dispatches the drain just
        queued (no session can exist yet: they are dropped, their sequence unrecorded), or
        held bytes at the high-water mark (never paused there: HELLO would never be read).
        Fail the connection; the error takes their place.
        """
        for _ in range(taken):
            self._ready.pop()
        try:
            self._fail(ReceiveMessageErrorKind.DESERIALIZING, ValueError(f"{what} before HELLO"))
        except ReceiveMessageError as exc:
            self._ready.append(exc)

    def _pause(self, conn: Connection, now: float | None) -> bool:
        """Stop reading at the high-water mark (once); whether the protocol was told."""
        if self._paused:
            return False
        self._paused = True
        conn.pause_reading()
        # Paused, the shard cannot see ACKs (no zombie verdict): let TCP bound a dead
        # network instead, at two heartbeat intervals (at least 10 s).
        conn.limit_unacked(max(2 * (self._protocol.heartbeat_interval or 0.0), _UNACKED_MIN))
        assert self._loop is not None
        self._protocol.reading_paused(now if now is not None else self._loop.time())
        return True

    def _receive(
        self, raw: bytes | FrameError | CompressionError, now: float
    ) -> tuple[bytes, Event | None]:
        if isinstance(raw, FrameError):
            self._fail(ReceiveMessageErrorKind.DESERIALIZING, raw, raw.close_code)
        try:
            if isinstance(raw, CompressionError):
                raise raw
            payload = raw if self._inflater is not None else self._raw_payloads.feed(raw)
            event = self._protocol.receive(payload, now)
        except CompressionError as exc:
            self._fail(ReceiveMessageErrorKind.COMPRESSION, exc)
        except ValueError as exc:
            self._fail(ReceiveMessageErrorKind.DESERIALIZING, exc)
        except Exception as exc:  # a bug met by this payload: typed, and the shard heals
            log.exception("shard %s: unexpected error processing a payload", self._id)
            self._fail(ReceiveMessageErrorKind.RECONNECT, exc)
        return payload, event

    def _fail(self, kind: ReceiveMessageErrorKind, exc: Exception, code: int = 4000) -> NoReturn:
        """Bad data: close with ``code`` (keeping the session), reconnect and resume; tell the
        caller (a framing error's ``close_code`` is the one the shard closed with).
        """
        log.warning("shard %s: %s error (%s); reconnecting", self._id, kind.value, exc)
        self._protocol.fail(CloseFrame(code, f"{kind.value} error"))
        if self._loop is not None:
            self._after(self._loop.time())
        close_code = code if isinstance(exc, FrameError) else None
        raise ReceiveMessageError(kind, f"{kind.value} error: {exc}", close_code) from exc

    # ---- sessions in a store --------------------------------------------------------------

    async def _load_session(self) -> None:
        store = self._config.session_store
        if store is None or self._config.session is not None or self._protocol.session:
            return
        try:
            saved = await store.load(self._id.number)
        except Exception as exc:
            log.warning("shard %s: loading the saved session failed (%r)", self._id, exc)
            return
        if saved is not None:
            log.info("shard %s: resuming saved session (sequence %s)", self._id, saved.session)
            self._protocol.restore(saved.session, saved.resume_url)
            self._saved = saved

    def _save_tick(self) -> None:
        """The session store's cadence (``Config.session_save_interval``), its own timer:
        the heartbeat's (41 s on Discord) would be too rare.
        """
        assert self._loop is not None
        loop = self._loop
        self._save_timer = None
        if self.state in (ShardState.CLOSED, ShardState.FATALLY_CLOSED):
            return
        self._save_timer = loop.call_later(self._config.session_save_interval, self._save_tick)
        self._maybe_save(loop.time())

    def _maybe_save(self, now: float, force: bool = False) -> bool:
        """Save the session if due (``force``: right after READY/RESUMED); False when a
        save in flight kept this one from starting.
        """
        store = self._config.session_store
        if store is None:
            return True
        if not force and now - self._last_save < self._config.session_save_interval:
            return True
        if self._save_task is not None and not self._save_task.done():
            return False
        session = self.session
        if session is None:
            return True
        saved = SavedSession(session, self._protocol.resume_url)
        if saved == self._saved and now - self._last_save < _RESAVE_UNCHANGED:
            return True  # unchanged: re-saved now and then, so a store's TTL does not expire it
        self._last_save = now
        assert self._loop is not None
        self._save_task = self._loop.create_task(self._save(saved))
        return True

    async def _save(self, saved: SavedSession) -> None:
        store = self._config.session_store
        assert store is not None
        try:
            await store.save(self._id.number, saved)
            self._saved = saved
        except Exception as exc:
            log.warning("shard %s: saving the session failed (%r)", self._id, exc)

    async def _store_final(self, session: Session | None, ended: bool) -> None:
        store = self._config.session_store
        if store is None:
            return
        try:
            if session is not None:
                await store.save(self._id.number, SavedSession(session, self.resume_url))
            elif ended:
                await store.delete(self._id.number)
        except Exception as exc:
            log.warning("shard %s: updating the session store failed (%r)", self._id, exc)

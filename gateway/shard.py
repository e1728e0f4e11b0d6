"""The asyncio shard: one self-healing websocket session to the gateway.

:class:`Shard` drives :class:`gateway.protocol.ShardProtocol` (all decisions live there)
over :class:`gateway.transport.Connection`. Work happens while the user awaits
``next_event()`` / ``next_message()`` (as in twilight): keep polling, or heartbeats stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl as ssl_module
import sys
from collections import deque
from collections.abc import Callable
from typing import Any, NoReturn, TypeAlias

import websockets

from . import backends, codec
from . import compression as compression_module
from .close import CloseFrame, describe
from .commands import Command
from .compression import Inflater
from .config import Config
from .errors import ReceiveMessageError, ReceiveMessageErrorKind
from .events import Event, EventTypeFlags
from .intents import Intents
from .latency import Latency
from .message import Close, Message, Text
from .protocol import NextAction, ShardProtocol
from .queue import default_queue
from .session import Session
from .shard_id import ShardId
from .state import ShardState
from .transport import CompressionError, Connection, ConnectionGone, FrameError

__all__ = ["Shard"]

log = logging.getLogger(__name__)

#: Buffered payloads processed per trip through the driver (bounds the timer's delay).
BATCH = 64

_CONNECT_ERRORS = (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI)


_Ready: TypeAlias = "bytes | tuple[bytes, Event | None] | ReceiveMessageError"


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Shard:
    """One gateway session: identify or resume, heartbeat, reconnect, deliver events.

    ``Shard(ShardId.ONE, token, intents)`` or ``Shard(shard_id, config=Config(...))``.
    ``async for event in shard`` yields events until the shard is closed or a fatal close
    code arrives; ``next_event()`` raises :class:`ReceiveMessageError` in those cases.
    """

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
        self._protocol = ShardProtocol(shard_id, config, rng=rng)
        self._decode_event = self._protocol.decode_event
        self._conn: Connection | None = None
        self._raw_payloads = compression_module.NoInflater()  # without transport compression
        # This connection's transport inflater (None: uncompressed) and the payload it
        # inflated that ShardProtocol.drain left for ShardProtocol.receive.
        self._inflater: Inflater | None = None
        self._payloads: deque[bytes | CompressionError] = deque()
        self._identify_task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._ssl: ssl_module.SSLContext | None = config.ssl
        self._fatal_code: int | None = None
        # Payloads processed in a batch and not yet returned, as ShardProtocol.drain puts
        # them (bytes: a wanted dispatch, decoded when taken; (bytes, Event | None): processed),
        # or the error met in a payload's place.
        self._ready: deque[_Ready] = deque()
        # Payloads processed ahead by _catch_up, moved to _ready a batch at a time (made
        # only when needed: an empty deque is ~760 bytes, and idle shards are many).
        self._backlog: deque[_Ready] | None = None

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
        return self._protocol.session

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
        self._wake()

    async def close(self, frame: CloseFrame = CloseFrame.NORMAL) -> Session | None:
        """Close the shard. ``CloseFrame.NORMAL`` ends the session; ``CloseFrame.RESUME``
        keeps it and returns the :class:`Session` to resume later (``Config(session=...)``).
        """
        session = self._protocol.close(frame)
        conn = self._conn
        self._cancel_tasks()
        if conn is not None:
            await conn.close(frame.code, frame.reason)
        self._wake()
        return session

    # ---- receiving ------------------------------------------------------------------------

    async def next_message(self) -> Message:
        """The next raw message: ``Text`` (every payload) or ``Close``.

        Payloads are scanned for ``op``/``s``/``t`` (the shard's own bookkeeping) but never
        JSON-decoded here, however ``event_types`` is set.
        """
        while True:
            if self._ready:
                return Text(self._take_message().decode())
            closed = await self._pump()
            if closed is not None:
                return closed[0]

    async def next_event(self) -> Event:
        """The next event the shard's ``event_types`` wants.

        Raises :class:`ReceiveMessageError`: fatal after a fatal close code or ``close()``;
        otherwise (corrupt data) the shard reconnects and the next call continues.
        """
        if self._ready:  # the per-event path: no driver trip
            event = self._take_event()
            if event is not None:
                return event
        while True:
            closed = await self._pump()
            if closed is None:
                event = self._take_event()
                if event is not None:
                    return event
            elif closed[1] is not None:
                return closed[1]  # GATEWAY_CLOSE, when wanted

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

    # ---- the driver loop ------------------------------------------------------------------

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _cancel_tasks(self) -> None:
        if self._identify_task is not None:
            self._identify_task.cancel()
            self._identify_task = None

    def _check_open(self) -> None:
        state = self._protocol.state
        if state is ShardState.FATALLY_CLOSED:
            raise ReceiveMessageError(
                ReceiveMessageErrorKind.FATALLY_CLOSED,
                f"the gateway closed the shard with fatal code {describe(self._fatal_code)}",
                self._fatal_code,
            )
        if state is ShardState.CLOSED:
            raise ReceiveMessageError(ReceiveMessageErrorKind.CLOSED, "the shard is closed")

    async def _pump(self) -> tuple[Close, Event | None] | None:
        """Drive the shard until ``_ready`` holds payloads (None) or the connection ends
        (its ``Close`` and the GATEWAY_CLOSE event if wanted). Call it with ``_ready`` empty.
        """
        p = self._protocol
        loop = asyncio.get_running_loop()
        while True:
            conn = self._conn
            if conn is None:
                self._check_open()
                await self._connect(loop)
                continue
            now = loop.time()
            if p.wants_write:
                self._flush(loop)
            if p.close_request is not None and not self._backlog:
                return await self._close_requested()
            if self._identify_task is None and p.wants_identify(now):
                self._identify_task = asyncio.create_task(self._identify())
            deadline = p.next_deadline()
            if deadline is not None and now >= deadline:
                if p.awaiting_ack:
                    self._catch_up(conn, now)
                p.on_timer(now)
                if p.close_request is not None:
                    continue  # a zombie: close it (after the backlog)
                self._flush(loop)
                deadline = p.next_deadline()
                if deadline is not None and deadline <= now:
                    deadline = None  # the identify queue's task wakes us, not the clock
            if self._backlog:
                self._take_backlog()
            else:
                self._fill(conn, now)
            if p.wants_write:
                self._flush(loop)
            if self._ready:
                return None
            if p.close_request is not None:
                continue
            gone = conn.ended()
            if gone is not None:
                return self._connection_gone(gone.code)
            await self._wait(loop, deadline)

    def _take_event(self) -> Event | None:
        """The next wanted event processed in a batch (skipping the rest); raises the error
        queued in its place; None when none is waiting.
        """
        ready = self._ready
        while ready:
            item = ready.popleft()
            if type(item) is bytes:  # a wanted dispatch: decoded now, so its objects die young
                try:
                    return self._decode_event(item)
                except ValueError as exc:
                    self._fail(ReceiveMessageErrorKind.DESERIALIZING, exc)
            if type(item) is tuple:
                if item[1] is not None:
                    return item[1]
            else:
                assert isinstance(item, ReceiveMessageError)
                raise item
        return None

    def _take_message(self) -> bytes:
        """The next payload processed in a batch (``_ready`` is not empty); raises the
        error queued in its place.
        """
        item = self._ready.popleft()
        if type(item) is bytes:
            return item
        if type(item) is tuple:
            return item[0]
        assert isinstance(item, ReceiveMessageError)
        raise item

    def _catch_up(self, conn: Connection, now: float) -> None:
        """A heartbeat is due and the last one is unacknowledged: before calling the
        connection a zombie, process everything received so far (cheap: nothing is
        decoded), since the ACK may wait behind a backlog the user has not taken yet. The
        processed payloads wait in ``_backlog`` and still reach ``_ready`` a batch per
        driver trip, so heartbeats keep their schedule while the user catches up.
        """
        if self._backlog is None:
            self._backlog = deque()
        self._fill(conn, now, sys.maxsize, self._backlog)

    def _take_backlog(self) -> None:
        backlog, ready = self._backlog, self._ready
        assert backlog is not None
        for _ in range(min(BATCH, len(backlog))):
            ready.append(backlog.popleft())
        if not backlog:
            self._backlog = None

    def _fill(
        self, conn: Connection, now: float, limit: int = BATCH, into: deque[_Ready] | None = None
    ) -> None:
        """Process up to ``limit`` received payloads into ``_ready`` (or ``into``): one
        timer and flush check per batch, not per payload. Runs of plain dispatches go in
        one compiled call (inflate, scan, sequence), anything else through
        ``ShardProtocol.receive``. Stops at a close request; an error is queued in its
        place, so what came before it is delivered first.
        """
        p = self._protocol
        ready = self._ready if into is None else into
        frames = conn.messages
        payloads = self._payloads
        budget = limit
        while budget > 0 and p.close_request is None:
            budget -= p.drain(frames, payloads, ready, budget, self._inflater)
            if budget <= 0:
                break
            item: bytes | FrameError | CompressionError
            if payloads:
                item = payloads.popleft()
            elif frames and type(frames[0]) is not bytes:
                item = frames.popleft()  # a FrameError
            else:
                break  # nothing left
            budget -= 1
            try:
                ready.append(self._receive(item, now))
            except ReceiveMessageError as exc:
                ready.append(exc)
                break
        conn.consumed()

    async def _wait(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> None:
        """Sleep until data arrives, ``_wake()`` is called, or ``deadline`` passes."""
        self._wakeup = waiter = loop.create_future()
        timer = None if deadline is None else loop.call_at(deadline, _resolve, waiter)
        try:
            await waiter
        finally:
            self._wakeup = None
            if timer is not None:
                timer.cancel()

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
        return payload, event

    def _fail(self, kind: ReceiveMessageErrorKind, exc: Exception, code: int = 4000) -> NoReturn:
        """Bad data: close (keeping the session), reconnect and resume; tell the caller."""
        log.warning("shard %s: %s error (%s); reconnecting", self._id, kind.value, exc)
        self._protocol.fail(CloseFrame(code, f"{kind.value} error"))
        raise ReceiveMessageError(kind, f"{kind.value} error: {exc}") from exc

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        conn = self._conn
        if conn is None:
            return
        for payload in self._protocol.data_to_send(loop.time()):
            try:
                conn.send(payload)
            except ConnectionGone:
                return  # the receive side reports the close

    async def _identify(self) -> None:
        queue = self._config.queue or default_queue()
        await queue.acquire(self._id.number)
        self._protocol.identify(asyncio.get_running_loop().time())
        self._identify_task = None
        self._wake()

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        p = self._protocol
        delay = p.backoff()
        if delay:
            log.info("shard %s: reconnecting in %.0f s", self._id, delay)
            self._wakeup = loop.create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup, delay)  # close() interrupts the wait
            self._wakeup = None
            self._check_open()
        url = p.connect_url()
        if self._ssl is None and url.startswith("wss://"):
            self._ssl = backends.create_ssl_context()
        try:
            conn = await Connection.open(
                url, ssl=self._ssl, timeout=self._config.connect_timeout,
                max_size=self._config.max_message_size, on_data=self._wake,
            )  # fmt: skip
        except _CONNECT_ERRORS as exc:
            log.warning("shard %s: connecting failed: %s", self._id, exc)
            p.connect_failed()
            return
        self._conn = conn
        self._inflater = compression_module.create(self._config.compression)
        self._payloads.clear()
        p.connection_opened(loop.time())

    async def _close_requested(self) -> tuple[Close, Event | None]:
        p = self._protocol
        frame = p.close_request
        assert frame is not None and self._conn is not None
        conn = self._conn
        self._cancel_tasks()
        await conn.close(frame.code, frame.reason)
        return self._connection_gone(frame.code)

    def _connection_gone(self, code: int | None) -> tuple[Close, Event | None]:
        self._cancel_tasks()
        if self._conn is not None:
            self._conn.abort()
        self._conn = None
        event, action = self._protocol.connection_closed(code, asyncio.get_running_loop().time())
        frame = event.data
        if action is NextAction.STOP and self.state is ShardState.FATALLY_CLOSED:
            self._fatal_code = code
            log.error("shard %s: fatal close %s", self._id, code)
        wanted = self._config.event_types & EventTypeFlags.GATEWAY_CLOSE
        return Close(frame), (event if wanted else None)

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
from collections import deque
from collections.abc import Callable
from typing import Any, NoReturn

import websockets

from . import backends, codec
from . import compression as compression_module
from .close import CloseFrame, describe
from .commands import Command
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
        self._conn: Connection | None = None
        self._raw_payloads = compression_module.NoInflater()  # without transport compression
        self._inflated = False  # whether the transport inflates
        self._identify_task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._ssl: ssl_module.SSLContext | None = config.ssl
        self._fatal_code: int | None = None
        # Payloads processed in a batch and not yet returned (or the error met in place).
        self._ready: deque[tuple[bytes, Event | None] | ReceiveMessageError] = deque()

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
        """The next raw message: ``Text`` (every payload) or ``Close``."""
        ready = self._take_ready(events_only=False)
        message = ready[0] if ready is not None else (await self._pump(events_only=False))[0]
        return Text(message.decode()) if isinstance(message, bytes) else message

    async def next_event(self) -> Event:
        """The next event the shard's ``event_types`` wants.

        Raises :class:`ReceiveMessageError`: fatal after a fatal close code or ``close()``;
        otherwise (corrupt data) the shard reconnects and the next call continues.
        """
        ready = self._take_ready(events_only=True)  # the per-event path: no driver trip
        if ready is not None and ready[1] is not None:
            return ready[1]
        while True:  # goes round only after a close that GATEWAY_CLOSE is not wanted for
            _, event = await self._pump(events_only=True)
            if event is not None:
                return event

    def __aiter__(self) -> Shard:
        return self

    async def __anext__(self) -> Event:
        while True:
            try:
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

    async def _pump(self, events_only: bool) -> tuple[bytes | Close, Event | None]:
        """Drive the shard until a payload (bytes, not yet decoded to text) or a close;
        with ``events_only``, until something ``next_event`` returns.
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
            if p.close_request is not None:
                return await self._close_requested()
            if self._identify_task is None and p.wants_identify(now):
                self._identify_task = asyncio.create_task(self._identify())
            deadline = p.next_deadline()
            if deadline is not None and now >= deadline:
                p.on_timer(now)
                if p.close_request is not None:
                    continue  # a zombie: close it
                self._flush(loop)
                deadline = p.next_deadline()
                if deadline is not None and deadline <= now:
                    deadline = None  # the identify queue's task wakes us, not the clock
            try:
                item = conn.pop()
            except ConnectionGone as gone:
                return self._connection_gone(gone.code)
            if item is None:
                await self._wait(loop, deadline)
                continue
            result = self._receive(item, now)
            self._receive_more(conn, now)
            if p.wants_write:
                self._flush(loop)
            if result[1] is not None or not events_only:
                return result
            queued = self._take_ready(events_only=True)  # the first wanted one of the batch
            if queued is not None:
                return queued

    def _take_ready(self, events_only: bool) -> tuple[bytes, Event | None] | None:
        """The next payload processed in a batch (with ``events_only``, the next one holding
        a wanted event); raises the error queued in its place; None when none is waiting.
        """
        ready = self._ready
        while ready:
            item = ready.popleft()
            if isinstance(item, ReceiveMessageError):
                raise item
            if item[1] is not None or not events_only:
                return item
        return None

    def _receive_more(self, conn: Connection, now: float) -> None:
        """Process up to ``BATCH`` more buffered payloads into ``_ready`` (one timer and
        flush check per batch instead of per payload). Stops at a close request; an error
        is queued in its place, so that what came before it is delivered first.
        """
        p = self._protocol
        ready = self._ready
        for _ in range(BATCH):
            if p.close_request is not None:
                return
            try:
                item = conn.pop()
            except ConnectionGone:
                return  # the driver handles it once _ready is drained
            if item is None:
                return
            try:
                ready.append(self._receive(item, now))
            except ReceiveMessageError as exc:
                ready.append(exc)
                return

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
            payload = raw if self._inflated else self._raw_payloads.feed(raw)
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
        inflater = compression_module.create(self._config.compression)
        try:
            conn = await Connection.open(
                url, ssl=self._ssl, timeout=self._config.connect_timeout,
                max_size=self._config.max_message_size, on_data=self._wake, inflater=inflater,
            )  # fmt: skip
        except _CONNECT_ERRORS as exc:
            log.warning("shard %s: connecting failed: %s", self._id, exc)
            p.connect_failed()
            return
        self._conn = conn
        self._inflated = inflater is not None
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

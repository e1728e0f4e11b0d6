"""Many shards: create them (a range, a bucket, Discord's recommended count) and merge them.

``create_*`` build :class:`~gateway.Shard` objects without connecting; shards connect when
polled. :class:`ShardEventStream` / :class:`ShardMessageStream` merge many shards into one
async iterator of ``(shard, item)``. The cost per item is O(1) whatever the number of
shards: a shard tells the stream when it has something, and the stream takes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl as ssl_module
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Generic, TypeVar

from .config import DEFAULT_GATEWAY_URL, Config
from .errors import ReceiveMessageError, ReceiveMessageErrorKind
from .events import Event
from .http import DEFAULT_API_BASE_URL, GatewayBot, get_gateway_bot
from .message import Message
from .queue import IDENTIFY_INTERVAL, InMemoryQueue
from .shard import Shard
from .shard_id import ShardId

__all__ = [
    "ConfigCallback",
    "create_range",
    "create_bucket",
    "create_recommended",
    "queue_for",
    "ShardEventStream",
    "ShardMessageStream",
]

log = logging.getLogger(__name__)

#: Builds the configuration of one shard from its id.
ConfigCallback = Callable[[ShardId], Config]

T = TypeVar("T", Event, Message)


def create_range(
    shards: range | tuple[int, int], total: int, config_callback: ConfigCallback
) -> list[Shard]:
    """Shards ``[start, stop)`` of ``total``: ``create_range(range(0, 4), 8, cb)``."""
    numbers = range(*shards) if isinstance(shards, tuple) else shards
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    if numbers.step != 1 or numbers.start < 0 or numbers.stop > total:
        raise ValueError(f"shards must be a contiguous range within 0-{total}, got {numbers}")
    return [Shard(sid, config=config_callback(sid)) for sid in _ids(numbers, total)]


def create_bucket(
    bucket_id: int, concurrency: int, total: int, config_callback: ConfigCallback
) -> list[Shard]:
    """The shards of one identify bucket: ``bucket_id``, ``bucket_id + concurrency``, ...

    For shards spread over machines by bucket: machine ``k`` of ``concurrency`` runs
    ``create_bucket(k, concurrency, total, cb)`` and needs no shared identify queue, as no
    other machine identifies in its bucket (protocol.md 7.4).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if not 0 <= bucket_id < concurrency or bucket_id >= total:
        raise ValueError(f"bucket_id must be 0-{min(concurrency, total) - 1}, got {bucket_id}")
    numbers = range(bucket_id, total, concurrency)
    return [Shard(sid, config=config_callback(sid)) for sid in _ids(numbers, total)]


async def create_recommended(
    token: str,
    config_callback: ConfigCallback,
    *,
    api_base_url: str = DEFAULT_API_BASE_URL,
    ssl: ssl_module.SSLContext | None = None,
    identify_interval: float = IDENTIFY_INTERVAL,
) -> list[Shard]:
    """Discord's recommended number of shards, from ``GET /gateway/bot``.

    The shards share one :class:`InMemoryQueue` built from the response's
    ``max_concurrency`` and session-start budget (unless a config names its own queue), and
    connect to the response's URL (unless a config sets another ``gateway_url``). Raises
    :class:`gateway.http.HTTPError` if the request fails.
    """
    bot = await get_gateway_bot(token, api_base_url=api_base_url, ssl=ssl)
    queue = queue_for(bot, identify_interval)

    def configure(sid: ShardId) -> Config:
        config = config_callback(sid)
        url = bot.url if config.gateway_url == DEFAULT_GATEWAY_URL else config.gateway_url
        return dataclasses.replace(config, queue=config.queue or queue, gateway_url=url)

    return create_range(range(bot.shards), bot.shards, configure)


def queue_for(bot: GatewayBot, interval: float = IDENTIFY_INTERVAL) -> InMemoryQueue:
    """The identify queue ``/gateway/bot`` asks for: its max_concurrency and budget."""
    limit = bot.session_start_limit
    return InMemoryQueue(
        limit.max_concurrency,
        limit.total,
        min(limit.remaining, limit.total),
        limit.reset_after,
        interval=interval,
    )


def _ids(numbers: range, total: int) -> list[ShardId]:
    return [ShardId(number, total) for number in numbers]


class _ShardStream(Generic[T]):
    """Merges shards with no task and no queue of its own: a shard with something to give
    tells the stream (a callback), the stream takes from the shards it was told about, in
    turn. Each item costs O(1) whatever the number of shards, and every shard holds (and
    bounds) its own backlog, so a slow reader never stops any shard's heartbeats.
    """

    def __init__(self, shards: Iterable[Shard]) -> None:
        self._shards = list(shards)
        if not self._shards:
            raise ValueError("a stream needs at least one shard")
        if len(set(map(id, self._shards))) != len(self._shards):
            raise ValueError("a shard appears twice in the stream")
        self._live: set[Shard] = set()
        self._pending: deque[Shard] = deque()  # shards that may have something
        self._listed: set[Shard] = set()
        self._waiter: asyncio.Future[None] | None = None
        self._started = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def shards(self) -> list[Shard]:
        """The shards still in the stream (a fatally closed or closed shard leaves it)."""
        if not self._started:
            return list(self._shards)
        return [shard for shard in self._shards if shard in self._live]

    def _poll(self, shard: Shard) -> T | None:
        raise NotImplementedError

    def _start(self) -> None:
        self._started = True
        # Kept: asyncio.get_running_loop() is a getpid() syscall per call.
        self._loop = asyncio.get_running_loop()
        for shard in self._shards:  # in order, so shards queue to identify in order
            if shard._listener is not None:
                raise RuntimeError(f"shard {shard.id} is already in another stream")
            shard._listener = self._notify
            self._live.add(shard)
            self._listed.add(shard)
            self._pending.append(shard)
            shard.start()

    def _notify(self, shard: Shard) -> bool:
        """A shard may have something: list it; whether a reader is waiting."""
        if shard not in self._listed and shard in self._live:
            self._listed.add(shard)
            self._pending.append(shard)
        waiter = self._waiter
        if waiter is None:
            return False
        if not waiter.done():
            waiter.set_result(None)
        return True

    def _leave(self, shard: Shard) -> None:
        self._live.discard(shard)
        self._listed.discard(shard)
        if shard._listener == self._notify:
            shard._listener = None

    def __aiter__(self) -> AsyncIterator[tuple[Shard, T | ReceiveMessageError]]:
        return self

    async def __anext__(self) -> tuple[Shard, T | ReceiveMessageError]:
        if not self._started and not self._closed:
            self._start()
        pending = self._pending
        while True:
            while pending:
                shard = pending.popleft()
                if shard not in self._live:
                    continue
                try:
                    item = self._poll(shard)
                except ReceiveMessageError as exc:
                    if exc.is_fatal() or exc.kind is ReceiveMessageErrorKind.CLOSED:
                        self._leave(shard)
                    else:
                        pending.append(shard)
                    return shard, exc
                except BaseException:  # a bug, raised to the reader: the shard is listed
                    self._listed.discard(shard)  # again when it next has something
                    raise
                if item is None:
                    self._listed.discard(shard)
                    continue
                if shard._has_more():
                    pending.append(shard)  # in turn: the next item comes from the next shard
                else:  # the shard tells when it has more: no empty poll per item
                    self._listed.discard(shard)
                return shard, item
            if self._closed or not self._live:
                raise StopAsyncIteration
            assert self._loop is not None
            self._waiter = waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    async def aclose(self) -> None:
        """Stop the iteration (the shards stay open; close them with ``Shard.close``)."""
        self._closed = True
        for shard in list(self._live):
            self._leave(shard)
        self._pending.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def __aenter__(self) -> _ShardStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class ShardEventStream(_ShardStream[Event]):
    """``async for shard, event in ShardEventStream(shards)``: every shard's events.

    ``event`` is an :class:`Event`, or a :class:`ReceiveMessageError` delivered as a value:
    a non-fatal one (corrupt data; the shard reconnects) keeps the shard in the stream, a
    fatal close or ``shard.close()`` takes it out. The iteration ends when no shard is left
    or after ``aclose()``. Shards take turns, so a busy shard cannot starve a quiet one.
    Each shard keeps its session alive by itself while the reader is busy, holding up to
    ``Config.read_high_water`` bytes before it stops reading its socket.

    Many shards with enough traffic between them read their sockets in batches (the
    default ``Config.read_interval="auto"``, see :mod:`gateway.autoread`): the reader then
    wakes once per batch, not once per event.
    """

    def _poll(self, shard: Shard) -> Event | None:
        return shard.poll_event()


class ShardMessageStream(_ShardStream[Message]):
    """``async for shard, message in ShardMessageStream(shards)``: every shard's raw messages
    (:class:`~gateway.Text` or :class:`~gateway.Close`), errors as values as in
    :class:`ShardEventStream`.
    """

    def _poll(self, shard: Shard) -> Message | None:
        return shard.poll_message()

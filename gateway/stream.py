"""Many shards: create them (a range, a bucket, Discord's recommended count) and merge them.

``create_*`` build :class:`~gateway.Shard` objects without connecting; shards connect when
polled. :class:`ShardEventStream` / :class:`ShardMessageStream` poll many shards at once and
yield ``(shard, item)`` in arrival order. The cost per item is O(1) whatever the number of
shards: every shard is polled by its own task into one shared buffer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl as ssl_module
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Generic, TypeVar, cast

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


_DONE = object()
# (shard, item): item is a T, a BaseException, or _DONE once no shard is left.
_Item = tuple[Shard, object]


class _ShardStream(Generic[T]):
    """Polls every shard in its own task into one bounded buffer."""

    def __init__(self, shards: Iterable[Shard], *, buffer: int = 256) -> None:
        self._shards = list(shards)
        self._buffer = max(buffer, len(self._shards), 1)
        self._queue: asyncio.Queue[_Item] | None = None
        self._tasks: dict[Shard, asyncio.Task[None]] = {}

    @property
    def shards(self) -> list[Shard]:
        """The shards still in the stream (a fatally closed or closed shard leaves it)."""
        if self._queue is None:
            return list(self._shards)
        return list(self._tasks)

    def _poll(self, shard: Shard) -> Awaitable[T]:
        raise NotImplementedError

    def _start(self) -> asyncio.Queue[_Item]:
        self._queue = asyncio.Queue(self._buffer)
        for shard in self._shards:  # in order, so shards queue to identify in order
            self._tasks[shard] = asyncio.create_task(self._pump(shard, self._queue))
        if not self._shards:
            raise ValueError("a stream needs at least one shard")
        return self._queue

    async def _pump(self, shard: Shard, queue: asyncio.Queue[_Item]) -> None:
        item: T | BaseException
        while True:
            try:
                item = await self._poll(shard)
            except ReceiveMessageError as exc:
                item = exc
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: end the stream loudly, not silently
                log.exception("shard %s: unexpected error", shard.id)
                item = exc
            leaving = isinstance(item, BaseException) and _leaves(item)
            if leaving:
                del self._tasks[shard]
            await queue.put((shard, item))
            if leaving:
                if not self._tasks:
                    await queue.put((shard, _DONE))
                return

    def __aiter__(self) -> AsyncIterator[tuple[Shard, T | ReceiveMessageError]]:
        return self

    async def __anext__(self) -> tuple[Shard, T | ReceiveMessageError]:
        queue = self._queue or self._start()
        shard, item = await queue.get()
        if item is _DONE:
            queue.put_nowait((shard, _DONE))  # later calls end too
            raise StopAsyncIteration
        if isinstance(item, BaseException) and not isinstance(item, ReceiveMessageError):
            raise item
        return shard, cast("T | ReceiveMessageError", item)

    async def aclose(self) -> None:
        """Stop polling (the shards stay open; close them with ``Shard.close``)."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> _ShardStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _leaves(item: BaseException) -> bool:
    if isinstance(item, ReceiveMessageError):
        return item.is_fatal() or item.kind is ReceiveMessageErrorKind.CLOSED
    return True


class ShardEventStream(_ShardStream[Event]):
    """``async for shard, event in ShardEventStream(shards)``: every shard's events.

    ``event`` is an :class:`Event`, or a :class:`ReceiveMessageError` delivered as a value:
    a non-fatal one (corrupt data; the shard reconnects) keeps the shard in the stream, a
    fatal close or ``shard.close()`` takes it out. The iteration ends when no shard is left.
    At most ``buffer`` items wait unread; then the shards pause until you read on.
    """

    def _poll(self, shard: Shard) -> Awaitable[Event]:
        return shard.next_event()


class ShardMessageStream(_ShardStream[Message]):
    """``async for shard, message in ShardMessageStream(shards)``: every shard's raw messages
    (:class:`~gateway.Text` or :class:`~gateway.Close`), errors as values as in
    :class:`ShardEventStream`.
    """

    def _poll(self, shard: Shard) -> Awaitable[Message]:
        return shard.next_message()

"""``python -m gateway run``: shards to JSON lines on stdout, for piping into other programs.

The token comes from ``DISCORD_TOKEN`` (never from the command line, where ``ps`` would show
it). Each event is one line ``{"shard": N, "t": name, "s": seq, "d": data}``; logs go to
stderr. A missing token, bad intents or a fatal close code gives one line on stderr and a
non-zero exit status (2: usage, 1: the gateway refused us).

With ``--redis URL`` the process is one worker of many (``--shards A-B/T`` each): identifies
go through the cluster-wide :class:`gateway.redis.RedisQueue`, sessions are saved in Redis
and resumed at the next start (even after ``kill -9``), and SIGTERM closes every shard with
``CloseFrame.RESUME`` and saves its session. ``--publish`` sends each wanted dispatch to a
Redis Stream instead of stdout (see :class:`gateway.redis.Publisher`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import queue
import re
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from .. import codec
from ..autoread import AUTO, ReadInterval
from ..close import CloseFrame
from ..config import Config
from ..errors import GatewayError, ReceiveMessageError
from ..events import Event, EventType, EventTypeFlags
from ..http import DEFAULT_API_BASE_URL, GatewayBot, get_gateway_bot
from ..intents import Intents
from ..queue import IDENTIFY_INTERVAL, InMemoryQueue
from ..session import SavedSession
from ..shard import Shard
from ..shard_id import ShardId
from ..state import ShardState
from ..stream import ShardEventStream, create_range, queue_for
from .cli import add_loop_argument, loop_name, run_on_loop

__all__ = [
    "register",
    "LineWriter",
    "OUTPUT_BUFFER",
    "RedisOptions",
    "ShardSpec",
    "parse_shards",
    "run",
    "run_worker",
    "write_events",
]

log = logging.getLogger(__name__)

#: Characters of output held for a slow reader (a paused pipe) before ``run`` stops taking
#: events, so that the shards pause reading their sockets (their ``read_high_water``).
OUTPUT_BUFFER = 256 * 1024
#: Seconds ``run`` waits, when stopped by a signal, for a paused reader to take the lines
#: still held; past that they are dropped with the process (the events stay in the
#: gateway's resumable session only if the shard's session was saved before them).
OUTPUT_DRAIN_TIMEOUT = 5.0


@dataclass(frozen=True)
class ShardSpec:
    """Which shards to run: ``auto`` (Discord's count), ``N`` (all N) or ``A-B/T``."""

    start: int | None = None
    stop: int | None = None
    total: int | None = None

    @property
    def auto(self) -> bool:
        return self.total is None


@dataclass(frozen=True)
class RedisOptions:
    """``--redis`` and friends: where the cluster's queue, sessions and stream live."""

    url: str
    publish: bool = False
    stream: str = "gateway:events"
    maxlen: int = 1_000_000
    identify_interval: float = IDENTIFY_INTERVAL
    session_ttl: float = 180.0
    save_every: float = 5.0


def parse_shards(text: str) -> ShardSpec:
    """``auto``, ``N`` or ``A-B/T`` (shards A to B inclusive, of T)."""
    text = text.strip().lower()
    if text == "auto":
        return ShardSpec()
    if text.isdigit() and int(text) >= 1:
        return ShardSpec(0, int(text), int(text))
    match = re.fullmatch(r"(\d+)-(\d+)/(\d+)", text)
    if match:
        first, last, total = map(int, match.groups())
        if first <= last < total:
            return ShardSpec(first, last + 1, total)
    raise ValueError(f"--shards must be auto, N or A-B/T (e.g. 0-3/8), got {text!r}")


def _read_interval(text: str) -> ReadInterval:
    """``--read-interval``: ``auto`` or seconds (the range is Config's to check)."""
    return AUTO if text == AUTO else float(text)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``run`` subcommand."""
    p = sub.add_parser(
        "run",
        help="run shards and print events as JSON lines (token from DISCORD_TOKEN)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--intents", required=True, help="e.g. GUILDS,GUILD_MESSAGES or a number")
    p.add_argument("--shards", default="auto", help="auto (default), N, or A-B/T")
    p.add_argument("--events", default=None, help="only these, e.g. MESSAGE_CREATE,READY")
    p.add_argument("--format", choices=("jsonl", "pretty"), default="jsonl")
    p.add_argument("--gateway-url", default=None, help="connect here instead (e.g. the emulator)")
    p.add_argument("--api-url", default=None,
                   help=f"API base for /gateway/bot (default {DEFAULT_API_BASE_URL}; "
                        "not asked when --gateway-url is given without it)")  # fmt: skip
    p.add_argument("--limit", type=int, default=None, help="exit 0 after this many events")
    p.add_argument("--read-interval", type=_read_interval, default="auto", metavar="SECONDS",
                   help="read the shards' sockets in batches every SECONDS (e.g. 0.005), "
                        "0: as data arrives; default auto: batched where it pays")  # fmt: skip
    p.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")
    add_loop_argument(p)
    r = p.add_argument_group("several processes or hosts (gateway[redis])")
    r.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="coordinate through Redis (redis://host:port/db): shared identify "
        "queue, sessions resumed across restarts",
    )
    r.add_argument(
        "--publish",
        action="store_true",
        help="with --redis: add each wanted dispatch to a Redis Stream, not stdout",
    )
    r.add_argument("--stream", default="gateway:events", help="stream name (--publish)")
    r.add_argument(
        "--maxlen",
        type=int,
        default=1_000_000,
        help="approximate stream length cap (0: none; default 1000000)",
    )
    r.add_argument(
        "--identify-interval",
        type=float,
        default=IDENTIFY_INTERVAL,
        help="seconds between identifies of one bucket (default 5)",
    )
    r.add_argument(
        "--session-ttl",
        type=float,
        default=180.0,
        help="seconds a saved session outlives its last save (default 180)",
    )
    r.add_argument("--save-every", type=float, default=5.0,
                   help="seconds between session saves and TTL refreshes (default 5)")  # fmt: skip
    p.set_defaults(func=_main)


def _fail(message: str, status: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status


def _main(args: argparse.Namespace) -> int:
    token = os.environ.get("DISCORD_TOKEN", "").strip()
    if not token:
        return _fail("set the DISCORD_TOKEN environment variable to your bot token")
    try:
        intents = Intents.parse(args.intents)
        wanted = EventTypeFlags.parse(args.events) if args.events else None
        spec = parse_shards(args.shards)
        url = args.gateway_url or "wss://gateway.discord.gg"
        config = Config(token, intents, gateway_url=url, read_interval=args.read_interval)
        redis = _redis_options(args)
    except ValueError as exc:
        return _fail(str(exc))
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        return run_on_loop(
            lambda: run(config, spec, wanted, args.format, args.limit, args.api_url, redis=redis),
            args.loop,
        )
    except GatewayError as exc:
        return _fail(str(exc), 1)


def _redis_options(args: argparse.Namespace) -> RedisOptions | None:
    if args.redis is None:
        if args.publish:
            raise ValueError("--publish needs --redis URL")
        return None
    if args.identify_interval <= 0 or args.session_ttl <= 0 or args.save_every <= 0:
        raise ValueError("--identify-interval, --session-ttl and --save-every must be > 0")
    if args.maxlen < 0:
        raise ValueError("--maxlen must be >= 0")
    return RedisOptions(
        args.redis, args.publish, args.stream, args.maxlen, args.identify_interval,
        args.session_ttl, args.save_every,
    )  # fmt: skip


async def run(
    config: Config,
    spec: ShardSpec,
    wanted: EventTypeFlags | None = None,
    fmt: str = "jsonl",
    limit: int | None = None,
    api_url: str | None = None,
    out: TextIO = sys.stdout,
    *,
    redis: RedisOptions | None = None,
) -> int:
    """Run the shards, write events to ``out``; returns the exit status."""
    log.info("event loop: %s", loop_name())
    if redis is not None:
        return await run_worker(config, spec, wanted, fmt, limit, api_url, out, redis)
    shards = await _create(config, spec, wanted, api_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    stream = ShardEventStream(shards)
    consumer = asyncio.create_task(write_events(stream, fmt, limit, out))
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait((consumer, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        consumer.cancel()
        # Let it hand over what it holds (bounded by OUTPUT_DRAIN_TIMEOUT) before closing.
        await asyncio.gather(consumer, return_exceptions=True)
        await stream.aclose()
        await asyncio.gather(*(s.close() for s in shards))
    if consumer.cancelled():
        return 0  # stopped by a signal
    fatal = consumer.result()
    if fatal is not None:
        return _fail(f"shard {fatal[0]}: {fatal[1]}", 1)
    return 0


async def _create(
    config: Config, spec: ShardSpec, wanted: EventTypeFlags | None, api_url: str | None
) -> list[Shard]:
    config, bot = await _discover(config, wanted, api_url)
    config = dataclasses.replace(config, queue=queue_for(bot) if bot else InMemoryQueue(1))
    numbers, total = shard_numbers(spec, bot)
    return create_range(numbers, total, lambda sid: config)


async def _discover(
    config: Config, wanted: EventTypeFlags | None, api_url: str | None
) -> tuple[Config, GatewayBot | None]:
    """The config with the event filter and gateway URL; ``/gateway/bot`` unless the
    gateway URL was given without an API URL.
    """
    if wanted is not None:
        config = dataclasses.replace(config, event_types=wanted | EventTypeFlags.GATEWAY_CLOSE)
    custom_url = config.gateway_url != "wss://gateway.discord.gg"
    if api_url or not custom_url:
        bot = await get_gateway_bot(config.token, api_base_url=api_url or DEFAULT_API_BASE_URL)
        url = config.gateway_url if custom_url else bot.url
        return dataclasses.replace(config, gateway_url=url), bot
    return config, None


def shard_numbers(spec: ShardSpec, bot: GatewayBot | None) -> tuple[range, int]:
    """The shard numbers to run and the total, from ``spec`` or Discord's count."""
    if not spec.auto:
        assert spec.start is not None and spec.stop is not None and spec.total is not None
        return range(spec.start, spec.stop), spec.total
    total = bot.shards if bot else 1
    return range(total), total


def with_sessions(config: Config, saved: SavedSession | None) -> Config:
    """``config`` resuming ``saved`` (as is without one)."""
    if saved is None:
        return config
    return dataclasses.replace(config, session=saved.session, resume_url=saved.resume_url)


# ---- the worker (python -m gateway run --redis URL) ------------------------------------------


def _limit(bot: GatewayBot) -> dict[str, int]:
    lim = bot.session_start_limit
    return {
        "total": lim.total,
        "remaining": lim.remaining,
        "reset_after": int(lim.reset_after * 1000),
        "max_concurrency": lim.max_concurrency,
    }


async def run_worker(
    config: Config,
    spec: ShardSpec,
    wanted: EventTypeFlags | None,
    fmt: str,
    limit: int | None,
    api_url: str | None,
    out: TextIO,
    options: RedisOptions,
) -> int:
    """``python -m gateway run --redis URL [--publish]``: one worker of a cluster."""
    from ..redis import Publisher, RedisQueue, RedisSessionStore, close_for_handover, connect
    from ..redis.client import _retrying
    from ..redis.sessions import _keep_alive

    client = connect(options.url)
    config, bot = await _discover(config, wanted, api_url)
    token = config.token

    async def refresh() -> Mapping[str, Any]:
        fresh = await get_gateway_bot(token, api_base_url=api_url or DEFAULT_API_BASE_URL)
        return _limit(fresh)

    if bot is not None:
        lim = bot.session_start_limit
        queue = RedisQueue(
            client, token, max(1, lim.max_concurrency), lim.total,
            min(lim.remaining, lim.total), lim.reset_after,
            interval=options.identify_interval, refresh=refresh,
        )  # fmt: skip
    else:
        queue = RedisQueue(client, token, 1, interval=options.identify_interval)
    if bot is not None:  # this host's reading of the budget, merged into the shared one
        reading = _limit(bot)
        await _retrying(
            "reading the identify budget waits", client, lambda: queue.sync_budget(reading)
        )
    numbers, total = shard_numbers(spec, bot)
    store = RedisSessionStore(client, token, namespace=str(total), ttl=options.session_ttl)
    saved: dict[int, SavedSession] = await _retrying(
        "loading the saved sessions waits", client, lambda: store.load_many(numbers)
    )
    config = dataclasses.replace(config, queue=queue)
    if not options.publish:
        # The shard's own hook saves (on a cadence, on close(RESUME)) and deletes (when the
        # session ends). Not with --publish: the publisher's checkpoint, committed with
        # the XADDs, is the one to resume from; the shard's view can run ahead of it.
        config = dataclasses.replace(
            config, session_store=store, session_save_interval=options.save_every
        )
    shards = [Shard(ShardId(n, total), config=with_sessions(config, saved.get(n))) for n in numbers]
    log.info(
        "worker: shards %d-%d of %d: %d resume a saved session, %d identify",
        numbers.start, numbers.stop - 1, total, len(saved), len(numbers) - len(saved),
    )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.create_task(stop.wait())
    fatal: tuple[ShardId, str] | None = None
    try:
        if options.publish:
            publishers = [
                Publisher(
                    shard,
                    client,
                    store,
                    stream=options.stream,
                    maxlen=options.maxlen,
                    wanted=wanted,
                    saved=saved.get(shard.id.number),
                )
                for shard in shards
            ]
            tasks = [asyncio.create_task(p.run()) for p in publishers]
            everything = asyncio.gather(*tasks)
            keeper = asyncio.create_task(_keep_alive(shards, store, options.save_every))
            await asyncio.wait((everything, stopper), return_when=asyncio.FIRST_COMPLETED)
            keeper.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(everything, return_exceptions=True)
            for task in tasks:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            await close_for_handover(shards, store, publishers)
            log.info("worker: published %d events", sum(p.published for p in publishers))
        else:
            stream = ShardEventStream(shards)
            consumer = asyncio.create_task(write_events(stream, fmt, limit, out))
            saver = asyncio.create_task(_keep_alive(shards, store, options.save_every))
            try:
                await asyncio.wait((consumer, stopper), return_when=asyncio.FIRST_COMPLETED)
            finally:
                saver.cancel()
                consumer.cancel()
                # It hands over the lines it holds (bounded) before it ends.
                await asyncio.gather(consumer, return_exceptions=True)
                await stream.aclose()
            await close_for_handover(shards, store)
            if not consumer.cancelled():
                fatal = consumer.result()
        for shard in shards:
            if shard.state is ShardState.FATALLY_CLOSED:
                await store.delete(shard.id.number)  # that session is gone for good
                fatal = fatal or (shard.id, "fatally closed")
    finally:
        stopper.cancel()
        # A crash above (a bug, or Redis refusing writes) still leaves resumable sessions.
        left = [s for s in shards if s.state not in (ShardState.CLOSED, ShardState.FATALLY_CLOSED)]
        await asyncio.gather(*(s.close(CloseFrame.RESUME) for s in left), return_exceptions=True)
        await queue.aclose()
    if fatal is not None:
        print(f"error: shard {fatal[0]}: {fatal[1]}", file=sys.stderr)
        return 1
    return 0


class LineWriter:
    """Writes text to a blocking file (stdout) from its own thread, so that a reader who
    pauses (a full pipe) never blocks the event loop, and every shard keeps heartbeating.

    At most ``max_held`` characters wait for the thread (documented cap,
    :data:`OUTPUT_BUFFER`): :meth:`write` returns at once below it and waits above it, until
    the thread has written half of it. Its caller, not taking events meanwhile, is the
    backpressure: the shards pause reading at their high-water mark. A write that fails
    (the reader has gone: ``BrokenPipeError``) is raised by the next :meth:`write` or
    :meth:`drain`. The thread is a daemon: a reader that never comes back cannot keep the
    process alive. A file with a descriptor is written with ``os.write`` on it, not through
    its Python buffer, whose lock a daemon thread blocked at exit would hold (the
    interpreter aborts flushing it); text that cannot be encoded is backslash-escaped (in
    a JSON string, ``\\udc80`` is what a lone surrogate should read anyway).
    """

    def __init__(self, out: TextIO, max_held: int = OUTPUT_BUFFER) -> None:
        if max_held < 1:
            raise ValueError("max_held must be >= 1")
        self._out = out
        self._fd: int | None = None
        try:
            fd = out.fileno()
        except (AttributeError, OSError, ValueError):  # io.StringIO and friends
            pass
        else:
            out.flush()  # anything written before goes first
            self._fd = fd
        self._encoding = getattr(out, "encoding", None) or "utf-8"
        self._max = max_held
        self._loop = asyncio.get_running_loop()
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.held = 0
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gateway-output", daemon=True)
        self._thread.start()

    async def write(self, text: str) -> None:
        """Hand ``text`` to the thread; wait only while ``max_held`` characters are held."""
        self._raise()
        self.held += len(text)
        self._idle.clear()
        self._lines.put(text)
        while self.held >= self._max and self._error is None:
            self._room.clear()
            await self._room.wait()
        self._raise()

    async def drain(self) -> None:
        """Wait until the thread has written (and flushed) everything handed to it."""
        while self.held and self._error is None:
            self._idle.clear()
            await self._idle.wait()
        self._raise()

    def close(self) -> None:
        """Stop the thread once it has written what it holds (no wait)."""
        self._lines.put(None)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:  # the writer thread
        while True:
            first = self._lines.get()
            if first is None:
                return
            parts = [first]
            done = False
            while len(parts) < 4096:
                try:
                    more = self._lines.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    done = True
                    break
                parts.append(more)
            text = "".join(parts)
            try:
                self._write(text)
            except BaseException as exc:  # reported on the loop, by the next write
                self._report(self._failed, exc)
                return
            self._report(self._written, len(text))
            if done:
                return

    def _write(self, text: str) -> None:  # the writer thread
        if self._fd is None:
            self._out.write(text)
            self._out.flush()
            return
        data = memoryview(text.encode(self._encoding, "backslashreplace"))
        while data:
            data = data[os.write(self._fd, data) :]

    def _report(self, callback: object, arg: object) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, arg)  # type: ignore[arg-type]
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def _written(self, count: int) -> None:
        self.held -= count
        if self.held <= self._max // 2:
            self._room.set()
        if self.held == 0:
            self._idle.set()

    def _failed(self, exc: BaseException) -> None:
        self._error = exc
        self._room.set()
        self._idle.set()


async def write_events(
    stream: ShardEventStream, fmt: str, limit: int | None, out: TextIO
) -> tuple[ShardId, str] | None:
    """Write events until ``limit``; return (shard, reason) on a fatal close.

    Lines go through a :class:`LineWriter`: the loop never blocks on ``out``, and while
    the reader lags, no event is taken from the shards (they pause reading). Cancelled
    (a signal), it still hands over what it holds, for up to :data:`OUTPUT_DRAIN_TIMEOUT`.
    """
    writer = LineWriter(out)
    count = 0
    try:
        async for shard, item in stream:
            if isinstance(item, ReceiveMessageError):
                if item.is_fatal():
                    return shard.id, str(item)
                log.warning("shard %s: %s", shard.id, item)
                continue
            if item.sequence is None or item.type is EventType.GATEWAY_CLOSE:
                continue  # gateway-level events are the shard's business, not the pipe's
            try:
                await writer.write(_format(shard, item, fmt))
            except BrokenPipeError:  # the reader has gone (``| head``): a normal end
                log.info("output: the reader closed the pipe; stopping")
                return None
            count += 1
            if limit is not None and count >= limit:
                return None
        return None
    finally:
        try:
            await asyncio.wait_for(writer.drain(), OUTPUT_DRAIN_TIMEOUT)
        except TimeoutError:
            log.warning("output: the reader took nothing for %.0f s; %d characters dropped",
                        OUTPUT_DRAIN_TIMEOUT, writer.held)  # fmt: skip
        except BrokenPipeError:
            pass  # said above
        except (OSError, ValueError) as exc:
            log.warning("output: %s", exc)
        finally:
            writer.close()


def _format(shard: Shard, event: Event, fmt: str) -> str:
    line = {"shard": shard.id.number, "t": event.name, "s": event.sequence, "d": event.data}
    if fmt == "pretty":
        return json.dumps(line, indent=2, ensure_ascii=False) + "\n"
    return str(codec.dumps(line)) + "\n"

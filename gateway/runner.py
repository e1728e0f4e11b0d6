"""``python -m gateway run``: shards to JSON lines on stdout, for piping into other programs.

The token comes from ``DISCORD_TOKEN`` (never from the command line, where ``ps`` would show
it). Each event is one line ``{"shard": N, "t": name, "s": seq, "d": data}``; logs go to
stderr. A missing token, bad intents or a fatal close code gives one line on stderr and a
non-zero exit status (2: usage, 1: the gateway refused us).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import signal
import sys
from dataclasses import dataclass
from typing import TextIO

from . import codec
from .cli import add_loop_argument, loop_name, run_on_loop
from .config import Config
from .errors import GatewayError, ReceiveMessageError
from .events import Event, EventType, EventTypeFlags
from .http import DEFAULT_API_BASE_URL, get_gateway_bot
from .intents import Intents
from .queue import InMemoryQueue
from .shard import Shard
from .shard_id import ShardId
from .stream import ShardEventStream, create_range, queue_for

__all__ = ["register", "ShardSpec", "parse_shards", "run"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardSpec:
    """Which shards to run: ``auto`` (Discord's count), ``N`` (all N) or ``A-B/T``."""

    start: int | None = None
    stop: int | None = None
    total: int | None = None

    @property
    def auto(self) -> bool:
        return self.total is None


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
    p.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")
    add_loop_argument(p)
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
        config = Config(token, intents, gateway_url=args.gateway_url or "wss://gateway.discord.gg")
    except ValueError as exc:
        return _fail(str(exc))
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        return run_on_loop(
            lambda: run(config, spec, wanted, args.format, args.limit, args.api_url), args.loop
        )
    except GatewayError as exc:
        return _fail(str(exc), 1)


async def run(
    config: Config,
    spec: ShardSpec,
    wanted: EventTypeFlags | None = None,
    fmt: str = "jsonl",
    limit: int | None = None,
    api_url: str | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Run the shards, write events to ``out``; returns the exit status."""
    log.info("event loop: %s", loop_name())
    shards = await _create(config, spec, wanted, api_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    stream = ShardEventStream(shards)
    consumer = asyncio.create_task(_write(stream, fmt, limit, out))
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait((consumer, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        consumer.cancel()
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
    if wanted is not None:
        config = dataclasses.replace(config, event_types=wanted | EventTypeFlags.GATEWAY_CLOSE)
    custom_url = config.gateway_url != "wss://gateway.discord.gg"
    if api_url or not custom_url:
        bot = await get_gateway_bot(config.token, api_base_url=api_url or DEFAULT_API_BASE_URL)
        url = config.gateway_url if custom_url else bot.url
        config = dataclasses.replace(config, queue=queue_for(bot), gateway_url=url)
        total = bot.shards
    else:
        config = dataclasses.replace(config, queue=InMemoryQueue(1))
        total = 1
    if not spec.auto:
        assert spec.start is not None and spec.stop is not None and spec.total is not None
        return create_range(range(spec.start, spec.stop), spec.total, lambda sid: config)
    return create_range(range(total), total, lambda sid: config)


async def _write(
    stream: ShardEventStream, fmt: str, limit: int | None, out: TextIO
) -> tuple[ShardId, str] | None:
    """Write events until ``limit``; return (shard, reason) on a fatal close."""
    count = 0
    async for shard, item in stream:
        if isinstance(item, ReceiveMessageError):
            if item.is_fatal():
                return shard.id, str(item)
            log.warning("shard %s: %s", shard.id, item)
            continue
        if item.sequence is None or item.type is EventType.GATEWAY_CLOSE:
            continue  # gateway-level events are the shard's business, not the pipe's
        out.write(_format(shard, item, fmt))
        out.flush()
        count += 1
        if limit is not None and count >= limit:
            return None
    return None


def _format(shard: Shard, event: Event, fmt: str) -> str:
    line = {"shard": shard.id.number, "t": event.name, "s": event.sequence, "d": event.data}
    if fmt == "pretty":
        return json.dumps(line, indent=2, ensure_ascii=False) + "\n"
    return str(codec.dumps(line)) + "\n"

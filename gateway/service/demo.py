"""``python -m gateway demo``: a group of shards against the built-in emulator, live.

No token needed: the emulator (:mod:`gateway.testing`) runs in this process, and the shards
reach it exactly as they would reach Discord (``create_recommended`` over HTTP, then one
websocket each). With ``DISCORD_TOKEN`` set and ``--discord``, the same view shows real
shards. ``--faults`` makes the emulator misbehave (reconnect requests, zombie connections,
TCP drops, invalid sessions, corrupt zlib) so you can watch the shards heal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import random
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from ..config import Config
from ..errors import ReceiveMessageError, ReceiveMessageErrorKind
from ..events import Event, EventType
from ..http import DEFAULT_API_BASE_URL
from ..intents import Intents
from ..shard import Shard
from ..stream import ShardEventStream, create_recommended
from .cli import add_loop_argument, loop_name, run_on_loop

__all__ = ["register", "run_demo"]

DEMO_TOKEN = "demo-token"
EMULATOR_INTENTS = (
    Intents.GUILDS
    | Intents.GUILD_MESSAGES
    | Intents.GUILD_MESSAGE_REACTIONS
    | Intents.GUILD_MESSAGE_TYPING
    | Intents.GUILD_PRESENCES
    | Intents.MESSAGE_CONTENT
)
FAULTS = ("reconnect", "zombie", "drop", "invalid session (resumable)", "invalid session",
          "corrupt zlib")  # fmt: skip


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser("demo", help="run shards against the built-in emulator and watch them")
    p.add_argument("--shards", type=int, default=4, help="number of shards (default 4)")
    p.add_argument("--seconds", type=float, default=20.0, help="how long to run (default 20)")
    p.add_argument("--rate", type=float, default=100.0, help="events/s per shard (default 100)")
    p.add_argument("--faults", action="store_true", help="inject faults and watch shards heal")
    p.add_argument(
        "--discord", action="store_true", help="use Discord (DISCORD_TOKEN), not the emulator"
    )
    add_loop_argument(p)
    p.set_defaults(func=_main)


@dataclass
class ShardStats:
    """What the view shows of one shard."""

    shard: Shard
    events: int = 0
    window: int = 0
    identifies: int = 0
    resumes: int = 0
    reconnects: int = 0
    errors: int = 0
    gone: str | None = None

    def record(self, item: Event | ReceiveMessageError) -> None:
        if isinstance(item, ReceiveMessageError):
            self.errors += 1
            if item.is_fatal() or item.kind is ReceiveMessageErrorKind.CLOSED:
                self.gone = self.gone or str(item)  # the shard left the stream
            return
        if item.type is EventType.READY:
            self.identifies += 1
        elif item.type is EventType.RESUMED:
            self.resumes += 1
        elif item.type is EventType.GATEWAY_CLOSE:
            self.reconnects += 1
        if item.sequence is not None:
            self.events += 1
            self.window += 1


@dataclass
class Demo:
    """The running demo: shards, their statistics and the fault log."""

    shards: list[Shard]
    target: str
    seconds: float
    stats: dict[Shard, ShardStats] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def __post_init__(self) -> None:
        self.stats = {s: ShardStats(s) for s in self.shards}

    async def consume(
        self, stream: AsyncIterator[tuple[Shard, Event | ReceiveMessageError]]
    ) -> None:
        async for shard, item in stream:
            self.stats[shard].record(item)

    def _rates(self, interval: float) -> list[float]:
        """Events/s of each shard since the last call."""
        rates = [s.window / interval if interval else 0.0 for s in self.stats.values()]
        for s in self.stats.values():
            s.window = 0
        return rates

    def line(self, interval: float) -> str:
        """The status as one plain line (for logs and pipes)."""
        stats = self.stats.values()
        reconnects, resumes = sum(s.reconnects for s in stats), sum(s.resumes for s in stats)
        line = (
            f"[{self.elapsed:5.1f} s] {sum(s.events for s in stats):,} events "
            f"({sum(self._rates(interval)):,.0f}/s), {_states(self)}, "
            f"{reconnects} reconnects, {resumes} resumes"
        )
        return line + (f"; last fault: {self.faults[-1]}" if self.faults else "")

    def table(self, interval: float) -> list[str]:
        """The status view: one line per shard and a total."""
        head = f"{'shard':>5}  {'state':<12} {'events':>9} {'events/s':>9} {'latency':>9}"
        lines = [
            f"gateway demo: {len(self.shards)} shards on {self.target}, "
            f"{self.elapsed:4.1f} s of {self.seconds:g} s",
            head + f" {'reconnects':>10} {'resumes':>7} {'errors':>6}",
        ]
        total = rate = 0.0
        for s, per_s in zip(self.stats.values(), self._rates(interval), strict=True):
            total += s.events
            rate += per_s
            latency = s.shard.latency.average
            shown = f"{latency * 1000:.1f} ms" if latency is not None else "-"
            lines.append(
                f"{s.shard.id.number:>5}  {s.shard.state.value:<12} {s.events:>9,} {per_s:>9,.0f}"
                f" {shown:>9} {s.reconnects:>10} {s.resumes:>7} {s.errors:>6}"
            )
        lines.append(f"{'total':>5}  {'':<12} {int(total):>9,} {rate:>9,.0f}")
        if self.faults:
            lines.append("last fault: " + self.faults[-1])
        return lines

    def summary(self) -> list[str]:
        """The closing lines: totals, then one line per shard."""
        events = sum(s.events for s in self.stats.values())
        per_s = events / self.elapsed if self.elapsed else 0.0
        lines = [
            f"summary: {len(self.shards)} shards, {events:,} events in {self.elapsed:.1f} s "
            f"({per_s:,.0f}/s), {len(self.faults)} faults injected"
        ]
        for s in self.stats.values():
            lines.append(
                f"shard {s.shard.id.number}: {s.events:,} events, identifies {s.identifies}, "
                f"resumes {s.resumes}, reconnects {s.reconnects}, errors {s.errors}"
                + (f", stopped: {s.gone}" if s.gone else "")
            )
        return lines


class _Notes(logging.Handler):
    """Keeps the library's log lines for the view, so they do not tear the redrawn table."""

    def __init__(self, notes: list[str]) -> None:
        super().__init__(logging.INFO)
        self.notes = notes

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(_NOISE):
            self.notes.append(record.getMessage())


# websockets' "connection open/closed" lines and the emulator's own logs.
_NOISE = ("gateway.transport.websockets", "gateway.testing")


class View:
    """Redraws in place on a terminal; prints a plain line now and then otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.interval = 0.5 if self.tty else 2.0
        self._drawn = 0

    @contextlib.contextmanager
    def logging_to(self, demo: Demo) -> Iterator[None]:
        """On a terminal, route the library's logs into the view; elsewhere, to stderr."""
        logger = logging.getLogger("gateway")
        handler: logging.Handler = (
            _Notes(demo.notes) if self.tty else logging.StreamHandler(sys.stderr)
        )
        handler.setLevel(logging.INFO if self.tty else logging.WARNING)
        level, propagate = logger.level, logger.propagate
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate

    def show(self, demo: Demo) -> None:
        if self.tty:
            lines = demo.table(self.interval) + [f"log: {note}" for note in demo.notes[-3:]]
            if self._drawn:
                self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self.out.write("\n".join(lines) + "\n")
            self._drawn = len(lines)
        else:
            self.out.write(demo.line(self.interval) + "\n")
        self.out.flush()


def _states(demo: Demo) -> str:
    counts: dict[str, int] = {}
    for shard in demo.shards:
        counts[shard.state.value] = counts.get(shard.state.value, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


async def _inject_faults(emulator: object, demo: Demo, every: float) -> None:
    from ..testing import GatewayEmulator

    assert isinstance(emulator, GatewayEmulator)
    rng = random.Random(0)
    for fault in itertools.cycle(FAULTS):
        await asyncio.sleep(every)
        live = emulator.live_connections()
        if not live:
            continue
        conn = rng.choice(live)
        number = conn.session.shard[0] if conn.session else "?"
        demo.faults.append(f"{fault} on shard {number} at {demo.elapsed:.1f} s")
        if fault == "reconnect":
            await conn.reconnect()
        elif fault == "zombie":
            conn.ack_heartbeats = False
        elif fault == "drop":
            conn.drop()
        elif fault.startswith("invalid session"):
            await conn.invalidate_session(resumable=fault.endswith("(resumable)"))
        else:
            await conn.send_corrupt_zlib()


async def run_demo(
    shards: int = 4,
    seconds: float = 20.0,
    rate: float = 100.0,
    faults: bool = False,
    discord_token: str | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Run the demo; returns the exit status (0: every shard received events)."""
    async with contextlib.AsyncExitStack() as stack:
        if discord_token:
            token, api, target = discord_token, DEFAULT_API_BASE_URL, "Discord"
            intents = Intents.all_non_privileged()
        else:
            from ..testing import GatewayEmulator

            emulator = await stack.enter_async_context(GatewayEmulator(
                shards=shards, guilds=3 * shards, max_concurrency=shards, heartbeat_interval=3.0,
                events_per_second=rate, seed=1,
            ))  # fmt: skip
            token, api, target = DEMO_TOKEN, emulator.api_url, f"the emulator ({emulator.url})"
            intents = EMULATOR_INTENTS
        group = await create_recommended(
            token, lambda sid: Config(token, intents), api_base_url=api
        )
        demo = Demo(group, target, seconds)
        view = View(out)
        stream = ShardEventStream(group)
        tasks = [asyncio.create_task(demo.consume(stream))]
        if faults and not discord_token:
            tasks.append(
                asyncio.create_task(_inject_faults(emulator, demo, max(1.0, seconds / 12)))
            )
        loop = asyncio.get_running_loop()
        start = loop.time()
        stack.enter_context(view.logging_to(demo))
        try:
            while demo.elapsed < seconds and not tasks[0].done():
                await asyncio.wait([tasks[0]], timeout=min(view.interval, seconds - demo.elapsed))
                demo.elapsed = loop.time() - start
                view.show(demo)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await stream.aclose()
            await asyncio.gather(*(s.close() for s in group))
        out.write("\n".join(demo.summary()) + f"\nevent loop: {loop_name()}\n")
        out.flush()
        healthy = all(s.events > 0 and s.gone is None for s in demo.stats.values())
        return 0 if healthy else 1
    raise AssertionError("unreachable")  # pragma: no cover


def _main(args: argparse.Namespace) -> int:
    if args.shards < 1 or args.seconds <= 0 or args.rate < 0:
        print("error: --shards must be >= 1, --seconds > 0 and --rate >= 0", file=sys.stderr)
        return 2
    token = None
    if args.discord:
        token = os.environ.get("DISCORD_TOKEN", "").strip()
        if not token:
            print("error: --discord needs the DISCORD_TOKEN environment variable", file=sys.stderr)
            return 2
    return run_on_loop(
        lambda: run_demo(args.shards, args.seconds, args.rate, args.faults, token), args.loop
    )

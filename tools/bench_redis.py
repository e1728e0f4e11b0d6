"""Redis coordination, measured: publish throughput and a Redis outage during identifies.

    pip install '.[fast,dev]' && python tools/bench_redis.py [--shards 4] [--events 50000]
        [--outage 10]

``throughput``: one worker (``python -m gateway run --redis URL``, its own process) against
the emulator (its own process, firehose: each session's events sent as fast as read) and a
real Redis. Rows: ``--publish`` (every dispatch XADDed to a stream, checkpoint in the same
script), and the same run without it (JSON lines to stdout, read by this script and thrown
away; this path decodes every event and encodes it again, the publish path decodes none).
One emulator and one Redis (flushed before each run) serve a warm-up run (the emulator
builds and caches its bursts) and then two runs of each kind, alternated. Rates are over
the last 90% of each run's events (stream length polled every 20 ms, or lines read); CPU
seconds are the whole worker process's and redis-server's during the run.

``outage``: 16 shards, max_concurrency 1, identify window 0.25 s (queue 0.3 s), emulator
in this process as referee; Redis is killed after the 3rd IDENTIFY and started again
(empty) ``--outage`` seconds later. Prints what the log said, the violations (0 expected)
and the identify gap across the outage.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib

from gateway.testing.redis_server import RedisServer

STREAM = "bench:events"
ALL_INTENTS = "53608447"


def _worker_argv(emu: benchlib.Emulator, redis_url: str, shards: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "gateway", "run", "--intents", ALL_INTENTS,
        "--shards", f"0-{shards - 1}/{shards}", "--api-url", emu.api_url,
        "--redis", redis_url, "--identify-interval", "0.3", "--log-level", "WARNING", *extra,
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {**benchlib._env(), "DISCORD_TOKEN": benchlib.TOKEN}


def _wait4(proc: subprocess.Popen[Any]) -> float:
    """Reap ``proc``; its CPU seconds (user + system)."""
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    return usage.ru_utime + usage.ru_stime


def _run(emu: benchlib.Emulator, server: RedisServer, shards: int, events: int,
         publish: bool) -> dict[str, Any]:  # fmt: skip
    """One worker run; the rate over its last 90% of events."""
    import redis

    total = shards * events
    client = redis.Redis.from_url(server.url)
    client.flushall()  # no saved session: every run identifies and gets the whole burst
    extra = ["--publish", "--stream", STREAM] if publish else []
    redis_cpu = server.cpu_seconds()
    proc = subprocess.Popen(
        _worker_argv(emu, server.url, shards, *extra), env=_env(),
        cwd=benchlib._gateway_home(), stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        return _measure(proc, client, server, total, publish, redis_cpu)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        client.close()


def _measure(proc: subprocess.Popen[bytes], client: Any, server: RedisServer, total: int,
             publish: bool, redis_cpu: float) -> dict[str, Any]:  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + 600
    start: tuple[float, int] | None = None
    count = 0
    if publish:
        seen: tuple[float, int] | None = None
        while (count := int(client.xlen(STREAM))) < total:  # type: ignore[arg-type]
            if seen is None and count > 0:
                seen = time.perf_counter(), count
            if start is None and count >= total // 10:
                start = time.perf_counter(), count
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the publishing worker did not finish")
            time.sleep(0.02)  # polling the stream's length
        end = time.perf_counter()
        start = start or seen  # a tiny run can finish between two polls
    else:
        # A few dispatches may never become lines (the pipe skips what the shard does not
        # deliver as an event): stop at the total, or 2 s after the last line past 99%.
        lines = _LineCounter(proc.stdout, total)
        while lines.count < total:
            quiet = time.perf_counter() - lines.last
            if lines.count >= total * 0.99 and quiet > 2.0:
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the worker did not finish")
            time.sleep(0.05)  # polling the reader thread's count
        count, start, end = lines.count, lines.start, lines.last
    redis_cpu = server.cpu_seconds() - redis_cpu
    proc.terminate()
    proc.stdout.close()
    cpu = _wait4(proc)
    # A tiny run can finish between two looks: then it has no rate.
    timed = start is not None and end > start[0]
    seconds = end - start[0] if start is not None and timed else None
    rate = (count - start[1]) / seconds if start is not None and seconds else None
    return {
        "run": "--publish (XADD, checkpoint)" if publish else "no --publish (JSON lines)",
        "events": count, "seconds": seconds, "events/s": rate, "worker CPU s": cpu,
        "redis-server CPU s": redis_cpu,
    }  # fmt: skip


def throughput(shards: int, events: int) -> None:
    server = RedisServer()
    server.start_blocking()
    try:
        with benchlib.emulator(
            shards=shards, max_concurrency=shards, identify_window=0.25, guilds=shards * 8,
            events_per_second=0, total_events=events, firehose=True,
        ) as emu:  # fmt: skip
            _run(emu, server, shards, events, False)  # warm-up: the emulator builds its bursts
            rows = [_run(emu, server, shards, events, p) for p in (True, False, True, False)]
    finally:
        server.cleanup()
    print(f"\n## Publish throughput: 1 worker, {shards} shards x {events:,} events (firehose)\n")
    columns = ["run", "events", "seconds", "events/s", "worker CPU s", "redis-server CPU s"]
    print(benchlib.table(rows, columns))


class _LineCounter:
    """Counts a pipe's lines in a thread (select() cannot see Python's read buffer)."""

    def __init__(self, pipe: Any, total: int) -> None:
        self.count = 0
        self.last = time.perf_counter()
        self.start: tuple[float, int] | None = None
        self._total = total
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe: Any) -> None:
        for _ in pipe:
            self.count += 1
            self.last = time.perf_counter()
            if self.count == self._total // 10:
                self.start = self.last, self.count
            if self.count >= self._total:
                return


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


async def outage(seconds: float, shards: int = 16) -> None:
    from gateway import Config, EventType, Shard, ShardId
    from gateway.http import get_gateway_bot
    from gateway.redis import RedisQueue
    from gateway.testing import GatewayEmulator

    lines = _Lines()
    logging.getLogger("gateway.redis").addHandler(lines)
    logging.getLogger("gateway.redis").setLevel(logging.INFO)
    token = benchlib.TOKEN
    async with (
        RedisServer() as server,
        GatewayEmulator(max_concurrency=1, identify_window=0.25, shards=shards) as emu,
    ):

        async def refresh() -> dict[str, int]:
            lim = (await get_gateway_bot(token, api_base_url=emu.api_url)).session_start_limit
            return {"total": lim.total, "remaining": lim.remaining,
                    "reset_after": int(lim.reset_after * 1000), "max_concurrency": 1}  # fmt: skip

        queue = RedisQueue(server.url, token, 1, interval=0.3, refresh=refresh, retry_max=2.0)
        config = Config(token, gateway_url=emu.url, queue=queue)
        fleet = [Shard(ShardId(n, shards), config=config) for n in range(shards)]

        async def ready(shard: Shard) -> None:
            while (await shard.next_event()).type is not EventType.READY:
                pass

        tasks = [asyncio.create_task(ready(s)) for s in fleet]
        await emu.wait_for(lambda: len(emu.identifies) >= min(3, shards - 1), 30)
        await server.stop()
        down_at = time.monotonic()
        during = len(emu.identifies)
        await asyncio.sleep(seconds)  # the outage itself
        identifies_during = len(emu.identifies) - during
        await server.start()
        up_at = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        times = [r.time for r in emu.identifies]
        gap_after = min(t for t in times if t > up_at) - up_at
        await asyncio.gather(*(s.close() for s in fleet))
        await queue.aclose()
    print(f"\n## Redis stopped {seconds:g} s during identifies ({shards} shards, mc 1)\n")
    print(f"- identifies before the outage: {during}; during it: {identifies_during}")
    print(f"- first identify {gap_after:.2f} s after Redis came back (empty: one window held)")
    print(f"- all {len(emu.identifies)} shards READY; violations: {len(emu.violations)}")
    print(f"- outage {up_at - down_at:.1f} s; what the log said:")
    for line in lines.lines:
        print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--events", type=int, default=50_000, help="per shard")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds (0: skip)")
    parser.add_argument("--outage-shards", type=int, default=16)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    print(benchlib.machine())
    if not args.skip_throughput:
        throughput(args.shards, args.events)
    if args.outage > 0:
        asyncio.run(outage(args.outage, args.outage_shards))


if __name__ == "__main__":
    main()

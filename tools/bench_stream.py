"""Many shards in one process: memory per idle shard, and events/s through ShardEventStream.

    python tools/bench_stream.py [--shards 1000] [--events 200000] [--tls]
                                 [--only memory|rates] [--loop asyncio|uvloop]

The emulator runs in its own process; every measurement runs in a fresh worker process.
Memory: RSS after N shards are READY and quiet, minus RSS before the first shard, divided
by N, for our shards (driven by one ShardEventStream) and hikari's GatewayShardImpl (stub
event manager, one HTTPSettings for all shards as in hikari's GatewayBot). ``--tls`` adds
the same over ``wss://``: the emulator serves a trustme certificate and the workers trust
its CA through ``SSL_CERT_FILE`` (verification stays on); all our shards share the default
context (``gateway.backends.default_ssl_context()``), all hikari's share one too.
Throughput: the same number of ~1 KB events read by one shard directly (and, with
``--tls``, over ``wss://``), by one shard through ShardEventStream, and spread over N shards
through one ShardEventStream. ``--loop`` runs every worker on that event loop.
hikari comes from ``pip install '.[bench]'``; without it its rows say so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import json
import os
import sys
from typing import Any

from benchlib import (
    TOKEN,
    Clock,
    emulator,
    hikari_shard,
    machine,
    raise_fd_limit,
    rss,
    run_worker,
    table,
    test_certificate,
)

QUIET = 0.5  # seconds without an event that count as "idle"


# ---- workers (each runs in a fresh process) ----------------------------------------------------


async def ours_idle(shards: int, api: str) -> dict[str, Any]:
    from gateway import Config, EventType, Intents, ShardEventStream, backends, create_recommended

    gc.collect()
    base = rss()
    clock = Clock()
    # Over wss:// every shard uses the one default context (made here, within the measure).
    ssl = backends.default_ssl_context() if api.startswith("https:") else None
    group = await create_recommended(
        TOKEN, lambda sid: Config(TOKEN, Intents.GUILDS, ssl=ssl), api_base_url=api
    )
    stream = ShardEventStream(group)
    iterator = aiter(stream)
    ready = 0
    while ready < shards:
        _, event = await anext(iterator)
        ready += getattr(event, "type", None) is EventType.READY
    startup = clock.elapsed()[0]
    await _quiet(iterator)
    gc.collect()
    return {"per_shard": (rss() - base) / shards, "startup_s": startup}


async def hikari_idle(shards: int, url: str) -> dict[str, Any]:
    from hikari.impl import config as hconfig

    gc.collect()
    base = rss()
    clock = Clock()
    settings = hconfig.HTTPSettings()
    group = [hikari_shard(url, n, shards, 1, http_settings=settings) for n in range(shards)]
    await asyncio.gather(*(s.start() for s in group))
    startup = clock.elapsed()[0]
    await asyncio.sleep(QUIET)  # hikari polls by itself; let the GUILD_CREATEs drain
    assert all(s.is_alive for s in group)
    gc.collect()
    return {"per_shard": (rss() - base) / shards, "startup_s": startup}


async def ours_rate(shards: int, events: int, api: str, mode: str) -> dict[str, Any]:
    from gateway import Config, EventType, Intents, ShardEventStream, backends, create_recommended

    intents = Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.GUILD_PRESENCES
    ssl = backends.default_ssl_context() if api.startswith("https:") else None
    group = await create_recommended(
        TOKEN, lambda sid: Config(TOKEN, intents, ssl=ssl), api_base_url=api
    )
    skip = {EventType.READY, EventType.GUILD_CREATE, EventType.GATEWAY_HELLO}
    count = 0
    clock: Clock | None = None
    if mode == "direct":
        (shard,) = group
        while count < events:
            event = await shard.next_event()
            if event.type not in skip:
                clock = clock or Clock()
                count += 1
    else:
        # Stop at `events`, or after 20 s of quiet: a shard without guilds gets no traffic,
        # and one Python emulator sets up 1000 sessions' traffic slowly and unevenly.
        loop = asyncio.get_running_loop()
        last = (0.0, 0.0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60) as deadline:
                async for _, event in ShardEventStream(group):
                    if getattr(event, "type", None) not in skip:
                        clock = clock or Clock()
                        count += 1
                        if count % 256 == 0:
                            last = clock.elapsed()
                            deadline.reschedule(loop.time() + 20)
                        if count >= events:
                            break
    assert clock is not None
    wall, cpu = clock.elapsed() if count >= events else last
    count = count if count >= events else count - count % 256
    return {"events": count, "events_per_s": count / wall, "cpu_s": cpu}


async def _quiet(iterator: Any) -> None:
    """Read on until no dispatch came for QUIET seconds (heartbeat ACKs keep coming)."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(QUIET) as deadline:
            while True:
                _, event = await anext(iterator)
                if getattr(event, "sequence", None) is not None:
                    deadline.reschedule(loop.time() + QUIET)


def worker(argv: list[str]) -> None:
    raise_fd_limit()
    kind, *rest = argv
    factory = None
    if os.environ.get("BENCH_LOOP") == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        if kind == "ours-idle":
            result = runner.run(ours_idle(int(rest[0]), rest[1]))
        elif kind == "hikari-idle":
            result = runner.run(hikari_idle(int(rest[0]), rest[1]))
        else:
            result = runner.run(ours_rate(int(rest[0]), int(rest[1]), rest[2], rest[3]))
    print(json.dumps(result))


# ---- the benchmark ------------------------------------------------------------------------------


def _memory(
    n: int, schemes: list[tuple[str, str | None, str | None]], loop_env: dict[str, str]
) -> list[dict[str, Any]]:
    """Idle-shard rows for each (scheme, certfile, cafile); "x ours": against our row of the
    same scheme.
    """
    memory = []
    opts = dict(shards=n, guilds=n, max_concurrency=n, identify_window=5)
    has_hikari = importlib.util.find_spec("hikari") is not None
    for scheme, certfile, cafile in schemes:
        env = {**loop_env, **({"SSL_CERT_FILE": cafile} if cafile else {})}
        with emulator(**opts, certfile=certfile or False) as emu:
            memory.append({"shards": f"gateway {scheme} ({n})", **run_worker(
                "bench_stream.py", "ours-idle", n, emu.api_url, env=env)})  # fmt: skip
        if has_hikari:
            with emulator(**opts, certfile=certfile or False) as emu:
                memory.append({"shards": f"hikari {scheme} ({n})", **run_worker(
                    "bench_stream.py", "hikari-idle", n, emu.url, env=env)})  # fmt: skip
    if not has_hikari:
        memory.append({"shards": "hikari: not installed (pip install '.[bench]')"})
    ours = {
        row["shards"].split()[1]: row["per_shard"] for row in memory if "gateway" in row["shards"]
    }
    for row in memory:
        if "per_shard" in row:
            row["KiB/shard"] = row["per_shard"] / 1024
            row["x ours"] = row["per_shard"] / ours[row["shards"].split()[1]]
    return memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--tls", action="store_true", help="measure over wss:// too")
    parser.add_argument("--only", choices=("memory", "rates"), help="one of the two tables")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    n = args.shards
    print(f"# bench_stream: {n} shards, {args.events:,} events, {args.loop}; {machine()}\n")
    loop_env = {"BENCH_LOOP": args.loop}

    with contextlib.ExitStack() as stack:
        schemes: list[tuple[str, str | None, str | None]] = [("ws", None, None)]
        if args.tls:
            schemes.append(("wss", *stack.enter_context(test_certificate())))
        if args.only != "rates":
            memory = _memory(n, schemes, loop_env)
            print("Memory per idle shard (RSS delta / shards)")
            print(table(memory, ["shards", "KiB/shard", "x ours", "startup_s"]))
        if args.only != "memory":
            _rates(n, args.events, schemes, loop_env)


def _rates(
    n: int, events: int, schemes: list[tuple[str, str | None, str | None]], loop_env: dict[str, str]
) -> None:
    runs = [("1 shard, next_event()", 1, "direct", schemes[0])]
    runs += [(f"1 shard, next_event(), {s[0]}", 1, "direct", s) for s in schemes[1:]]
    runs += [
        ("1 shard, ShardEventStream", 1, "stream", schemes[0]),
        (f"{n} shards, ShardEventStream", n, "stream", schemes[0]),
    ]
    rates = []
    for label, shards, mode, (_, certfile, cafile) in runs:
        per_session = events // shards + 10
        options = dict(shards=shards, guilds=4 * shards, max_concurrency=shards,
                       events_per_second=0, total_events=per_session, firehose=True)  # fmt: skip
        env = {**loop_env, **({"SSL_CERT_FILE": cafile} if cafile else {})}
        with emulator(**options, certfile=certfile or False) as emu:
            result = run_worker("bench_stream.py", "ours-rate", shards, events,
                                emu.api_url, mode, env=env)  # fmt: skip
        rates.append({"reader": label, **result})
    for row in rates:
        row["x 1 shard"] = row["events_per_s"] / rates[0]["events_per_s"]
        row["cpu_us_per_event"] = row["cpu_s"] / row["events"] * 1e6
    print("\nThroughput of ~1 KB events (emulator in another process, firehose)")
    print(table(rates, ["reader", "events", "events_per_s", "cpu_s", "cpu_us_per_event",
                        "x 1 shard"]))  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
    else:
        main()

"""Thousands of quiet shards: client CPU per event when every event arrives alone.

    python tools/bench_trickle.py [--shards 200] [--rate 20] [--seconds 10] [--repeat 3]
                                  [--loops asyncio,uvloop] [--clients floor,gateway,...]

N shards each receive R events/s (zlib-stream, the default traffic mix) from an emulator in
its own process; each client runs in a fresh process and, once every shard is READY and
traffic flows, counts events and its own CPU time (user and system) over a fixed window.

Clients, measured in the same run:

- ``gateway``: our shards through one ``ShardEventStream`` (every event decoded), with
  the default ``read_interval="auto"`` (``batching``: whether it batched at the end);
- ``gateway-direct``: the same with ``Config(read_interval=0)``: always as data arrives;
- ``gateway-batched``: the same with ``Config(read_interval=0.005)``: the loop's poller
  reads every shard's socket in one batch per 5 ms;
- ``gateway-auto-interval``: always batched at the automatic mode's interval (``AUTO_INTERVAL``):
  with ``gateway-direct``, where the automatic rule's crossover lies;
- ``floor``: N bare ``gateway.transport.Connection``\\ s that identify once and then
  inflate and JSON-decode every message in the data callback: no shard, no task, no
  heartbeat logic (what any client must at least pay on this loop);
- ``floor-task``: the floor plus one reader task that the callback wakes for each event
  (a future per wake): the least any client with an async consumer pays;
- ``floor-batched``: floor-task with its sockets read in batches every 5 ms (the
  connections' ``read_interval``): the least a batched client pays;
- ``hikari``: hikari's ``GatewayShardImpl`` (``pip install '.[bench]'``).

The emulator stamps every dispatch with its send time (``--stamp``: one monotonic clock for
every process here); ``p50_lag_ms`` / ``p99_lag_ms`` are from that stamp to the event's
delivery, for our clients (the difference between two of them is the latency one reading
mode adds over the other).

Each runs on the default asyncio loop and on uvloop (when installed). The table gives CPU
microseconds per event (user, system, total), events/s, RSS per shard and the ratios to the
floor and to floor-task of the same loop. With ``--repeat N`` every client runs N times,
interleaved, and the row is the run with the median CPU (``cpu_range``: all N runs): this
machine's neighbours move single runs by +-20%.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import resource
import sys
import time
from typing import Any

from benchlib import TOKEN, emulator, hikari_shard, machine, raise_fd_limit, rss, run_worker, table

WARMUP = 2.0  # seconds of traffic before the window opens


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


class Window:
    """Counts events between ``open()`` and ``close()``, with the CPU spent meanwhile."""

    def __init__(self) -> None:
        self.count = 0
        self.open_at: float | None = None

    def open(self) -> None:
        self.count = 0
        self.cpu = _cpu()
        self.open_at = time.perf_counter()

    def result(self, shards: int, base_rss: int) -> dict[str, Any]:
        assert self.open_at is not None
        wall = time.perf_counter() - self.open_at
        user, sys_ = (b - a for a, b in zip(self.cpu, _cpu(), strict=True))
        n = max(self.count, 1)
        return {
            "events": self.count,
            "events_per_s": self.count / wall,
            "user_us": user / n * 1e6,
            "sys_us": sys_ / n * 1e6,
            "cpu_us": (user + sys_) / n * 1e6,
            "kib_per_shard": (rss() - base_rss) / shards / 1024,
        }


async def _measure(window: Window, seconds: float, shards: int, base: int) -> dict[str, Any]:
    await asyncio.sleep(WARMUP)
    window.open()
    await asyncio.sleep(seconds)
    return window.result(shards, base)


async def ours(
    shards: int, url: str, seconds: float, read_interval: float | str = "auto"
) -> dict[str, Any]:
    from gateway import (
        Config,
        EventTypeFlags,
        InMemoryQueue,
        Intents,
        ShardEventStream,
        create_range,
    )
    from gateway.autoread import auto_reading

    base = rss()
    intents = Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.GUILD_PRESENCES
    queue = InMemoryQueue(0)
    # Dispatches only, as the floor and hikari count: no HELLO or ACK events.
    dispatches = EventTypeFlags.ALL & ~EventTypeFlags.GATEWAY
    config = Config(TOKEN, intents, gateway_url=url, queue=queue, event_types=dispatches,
                    read_interval=read_interval)  # type: ignore[arg-type]  # fmt: skip
    group = create_range(range(shards), shards, lambda sid: config)
    window = Window()
    lags: list[float] = []
    ready = asyncio.Event()
    clock = time.monotonic

    async def read() -> None:
        stream = ShardEventStream(group)
        readies = 0
        async for _, event in stream:
            if event.name == "READY":
                readies += 1
                if readies == shards:
                    break
        ready.set()  # the others start before measuring too
        # Every variant of ours pays the same lag bookkeeping (a dict lookup and a clock
        # read per event), so their CPU figures compare; the floor and hikari do not.
        async for _, event in stream:
            window.count += 1
            sent_at = event.data.get("sent_at") if type(event.data) is dict else None
            if sent_at is not None and window.open_at is not None:
                lags.append(clock() - sent_at)

    reader = asyncio.create_task(read())
    await asyncio.wait_for(ready.wait(), 120)
    result = await _measure(window, seconds, shards, base)
    reader.cancel()
    lags.sort()
    if lags:
        result["p50_lag_ms"] = lags[len(lags) // 2] * 1000
        result["p99_lag_ms"] = lags[int(len(lags) * 0.99)] * 1000
    auto = auto_reading(asyncio.get_running_loop())
    result["batching"] = (
        ("auto: yes" if auto.batching else "auto: no")
        if read_interval == "auto"
        else ("yes" if read_interval else "no")
    )
    return result


async def ours_direct(shards: int, url: str, seconds: float) -> dict[str, Any]:
    return await ours(shards, url, seconds, read_interval=0.0)


async def ours_batched(shards: int, url: str, seconds: float) -> dict[str, Any]:
    return await ours(shards, url, seconds, read_interval=0.005)


async def ours_batched_auto_interval(shards: int, url: str, seconds: float) -> dict[str, Any]:
    from gateway.autoread import AUTO_INTERVAL

    return await ours(shards, url, seconds, read_interval=AUTO_INTERVAL)


async def floor(
    shards: int, url: str, seconds: float, reader: bool = False, read_interval: float = 0.0
) -> dict[str, Any]:
    import zlib
    from collections import deque

    from gateway import codec
    from gateway.transport import Connection

    base = rss()
    window = Window()
    loads = codec.loads
    properties = {"os": "linux", "browser": "b", "device": "d"}
    identify = {"op": 2, "d": {"token": TOKEN, "intents": 1 | 512 | 256, "properties": properties}}
    queued: deque[Any] = deque()
    waiter: list[asyncio.Future[None] | None] = [None]

    async def take() -> None:
        loop = asyncio.get_running_loop()
        while True:
            while queued:
                queued.popleft()
                window.count += 1
            waiter[0] = future = loop.create_future()
            await future
            waiter[0] = None

    if reader:
        task = asyncio.create_task(take())

    async def one(number: int) -> Connection:
        inflate = zlib.decompressobj().decompress
        conn: Connection | None = None
        payload = dict(identify, d={**identify["d"], "shard": [number, shards]})

        def on_data() -> None:
            if conn is None:
                return  # during the handshake: open() returns, then one() calls us
            messages = conn.messages
            while messages:
                body = loads(inflate(messages.popleft()))
                if body["op"] == 0:
                    if not reader:
                        window.count += 1
                        continue
                    queued.append(body)
                    future = waiter[0]
                    if future is not None and not future.done():
                        future.set_result(None)
                elif body["op"] == 10:
                    conn.send(json.dumps(payload))

        conn = await Connection.open(url + "/?v=10&encoding=json&compress=zlib-stream",
                                     ssl=None, timeout=30, on_data=on_data,
                                     read_interval=read_interval)  # fmt: skip
        on_data()  # HELLO may have come with the handshake
        return conn

    conns = await asyncio.gather(*(one(n) for n in range(shards)))
    result = await _measure(window, seconds, shards, base)
    for conn in conns:
        conn.abort()
    if reader:
        task.cancel()
    return result


async def floor_task(shards: int, url: str, seconds: float) -> dict[str, Any]:
    """The floor plus the least an async consumer costs: the callback queues each decoded
    event and wakes one reader task (a future per wake), which takes what is queued.
    """
    return await floor(shards, url, seconds, reader=True)


async def hikari(shards: int, url: str, seconds: float) -> dict[str, Any]:
    base = rss()
    window = Window()

    def on_event(name: str) -> None:
        window.count += 1

    group = [hikari_shard(url, n, shards, 1 | 512 | 256, on_event) for n in range(shards)]
    await asyncio.gather(*(s.start() for s in group))
    result = await _measure(window, seconds, shards, base)
    await asyncio.gather(*(s.close() for s in group), return_exceptions=True)
    return result


async def floor_batched(shards: int, url: str, seconds: float) -> dict[str, Any]:
    """floor-task with the sockets read in batches every 5 ms (``read_interval``)."""
    return await floor(shards, url, seconds, reader=True, read_interval=0.005)


CLIENTS = {
    "floor": floor,
    "floor-task": floor_task,
    "gateway": ours,
    "gateway-direct": ours_direct,
    "floor-batched": floor_batched,
    "gateway-batched": ours_batched,
    "gateway-auto-interval": ours_batched_auto_interval,
    "hikari": hikari,
}


def worker(argv: list[str]) -> None:
    raise_fd_limit()
    client, loop, shards, url, seconds = argv
    run = CLIENTS[client](int(shards), url, float(seconds))
    if loop == "uvloop":
        import uvloop

        result = uvloop.run(run)
    else:
        result = asyncio.run(run)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="events/s per shard")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window")
    parser.add_argument("--loops", default="asyncio,uvloop")
    clients = "floor,floor-task,gateway,gateway-direct,floor-batched,gateway-batched,hikari"
    parser.add_argument("--clients", default=clients)
    parser.add_argument("--repeat", type=int, default=1, help="runs per client (the median)")
    args = parser.parse_args()
    loops = [
        x for x in args.loops.split(",") if x != "uvloop" or importlib.util.find_spec("uvloop")
    ]
    clients = [
        c for c in args.clients.split(",") if c != "hikari" or importlib.util.find_spec("hikari")
    ]
    n = args.shards
    print(f"# bench_trickle: {n} shards x {args.rate:g} events/s, {args.seconds:g} s window, "
          f"median of {args.repeat}; {machine()}\n")  # fmt: skip
    rows = []
    for loop in loops:
        runs: dict[str, list[dict[str, Any]]] = {client: [] for client in clients}
        for _ in range(args.repeat):  # interleaved, so the machine's drift hits every client
            for client in clients:
                options = dict(shards=n, guilds=2 * n, max_concurrency=n, identify_window=0,
                               events_per_second=args.rate, heartbeat_interval=41.25,
                               stamp=True)  # fmt: skip
                with emulator(**options) as emu:
                    runs[client].append(
                        run_worker("bench_trickle.py", client, loop, n, emu.url, args.seconds)
                    )
        medians = {client: _median(results) for client, results in runs.items()}
        floor_cpu = medians["floor"]["cpu_us"] if "floor" in medians else None
        task_cpu = medians["floor-task"]["cpu_us"] if "floor-task" in medians else None
        for client, result in medians.items():
            result["x_floor"] = result["cpu_us"] / floor_cpu if floor_cpu else None
            result["x_floor_task"] = result["cpu_us"] / task_cpu if task_cpu else None
            spread = [r["cpu_us"] for r in runs[client]]
            result["cpu_range"] = f"{min(spread):.1f}-{max(spread):.1f}"
            rows.append({"client": f"{client} ({loop})", **result})
    print(table(rows, ["client", "events", "events_per_s", "user_us", "sys_us", "cpu_us",
                       "cpu_range", "x_floor", "x_floor_task", "batching", "p50_lag_ms",
                       "p99_lag_ms", "kib_per_shard"]))  # fmt: skip


def _median(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median CPU per event (a real run, so its columns agree)."""
    ordered = sorted(results, key=lambda r: r["cpu_us"])
    return dict(ordered[(len(ordered) - 1) // 2])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
    else:
        main()

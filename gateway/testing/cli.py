"""``python -m gateway emulator``: serve the local gateway until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import ssl

from .corpus import MIXES
from .emulator import GatewayEmulator

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``emulator`` subcommand."""
    p = sub.add_parser("emulator", help="run a local Discord gateway emulator on loopback")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    p.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    p.add_argument("--token", action="append", help="accepted token (repeatable; default any)")
    p.add_argument("--shards", type=int, default=1, help="recommended shard count over HTTP")
    p.add_argument("--guilds", type=int, default=2, help="number of guilds")
    p.add_argument("--max-concurrency", type=int, default=1, help="identify buckets")
    p.add_argument(
        "--events-per-second", type=float, default=None,
        help="generated traffic per session (0: as fast as the client reads; default none)",
    )  # fmt: skip
    p.add_argument("--total-events", type=int, default=None, help="stop traffic at this seq")
    p.add_argument("--large-every", type=int, default=0, help="a large GUILD_CREATE every N")
    p.add_argument(
        "--firehose", action="store_true", help="with rate 0 and --total-events: one burst"
    )
    p.add_argument("--mix", choices=sorted(MIXES), default="default", help="traffic mix")
    p.add_argument(
        "--stamp", action="store_true", help='dispatches carry "sent_at": monotonic seconds'
    )
    p.add_argument("--identify-window", type=float, default=5.0, help="seconds per bucket")
    p.add_argument("--heartbeat-interval", type=float, default=41.25, help="seconds")
    p.add_argument("--split-frames", type=int, default=1, help="zlib frames per message")
    p.add_argument("--seed", type=int, default=0, help="traffic seed")
    p.add_argument("--certfile", help="serve wss:// and https:// with this PEM certificate chain")
    p.add_argument("--keyfile", help="the certificate's private key (default: in --certfile)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    context = None
    if args.certfile:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.certfile, args.keyfile)

    async def serve() -> None:
        emulator = GatewayEmulator(
            host=args.host,
            port=args.port,
            tokens=args.token,
            shards=args.shards,
            guilds=args.guilds,
            max_concurrency=args.max_concurrency,
            events_per_second=args.events_per_second,
            total_events=args.total_events,
            large_every=args.large_every,
            identify_window=args.identify_window,
            firehose=args.firehose,
            mix=args.mix,
            stamp=args.stamp,
            heartbeat_interval=args.heartbeat_interval,
            split_frames=args.split_frames,
            seed=args.seed,
            ssl=context,
        )
        async with emulator:
            print(f"gateway emulator listening on {emulator.url}", flush=True)
            print(f"HTTP API: {emulator.api_url}/gateway/bot", flush=True)
            await emulator.serve_forever()

    asyncio.run(serve())
    return 0

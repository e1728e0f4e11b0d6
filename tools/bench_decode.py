"""Raw server frames to events in one process: our pipeline (Cython, pure) vs the limit.

    python tools/bench_decode.py [--events 50000] [--seconds 2]

The corpus is seeded gateway traffic (a busy guild's mix of ~1 KB events with a ~300 KB
GUILD_CREATE every 100 events) as one zlib-stream in server websocket frames, cut into
64 KiB reads as a socket delivers them. Our pipeline is what a shard runs: FrameReader
queues the frames of a read; the Dispatcher's drain inflates (ZlibStream), scans op/s/t and
sequences a batch of plain dispatches in one call (anything else takes
ShardProtocol.receive); each wanted event is JSON-decoded into an Event as it is taken.
The limit is the least any client must do: inflate each message and JSON-decode it with
the fastest installed backends. Also shown: the same pipeline when only
MESSAGE_CREATE is wanted (other events are scanned, never decoded).
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:  # the installed package; from a bare checkout, the source tree
    import gateway  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import machine, table

from gateway import Config, EventTypeFlags, ShardId, backends, codec, protocol
from gateway._speedups import twins
from gateway.events import Event
from gateway.shard import BATCH
from gateway.testing.corpus import MIXES, Corpus, guild_ids
from gateway.testing.firehose import server_frame

READ = 64 * 1024


def build(events: int, mix: str) -> tuple[list[bytes], list[bytes], int]:
    """(socket reads, per-message compressed frames, payload bytes) of the corpus."""
    large = 100 if mix == "default" else 0
    corpus = Corpus(guild_ids(8, seed=0), seed=0, large_every=large, mix=mix)
    compressor = zlib.compressobj()
    messages: list[bytes] = []
    raw = 0
    for s in range(1, events + 1):
        event = corpus.next()
        payload = b'{"t":"%s","s":%d,"op":0,"d":%s}' % (event.name.encode(), s, event.data)
        raw += len(payload)
        messages.append(compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))
    wire = b"".join(server_frame(m, 2) for m in messages)
    return [wire[i : i + READ] for i in range(0, len(wire), READ)], messages, raw


def pipeline(twin: Any, reads: list[bytes], flags: EventTypeFlags) -> Callable[[], int]:
    """What a shard runs: the reader queues frames; drain inflates and scans a batch; the
    rest takes ShardProtocol.receive; each wanted event is decoded as it is taken.
    """

    def run() -> int:
        protocol.scan = twin.scan  # the protocol's envelope scanner, this twin's
        shard = protocol.ShardProtocol(ShardId(0, 1), Config("t", event_types=flags))
        dispatcher = twin.Dispatcher(shard.dispatch_table, codec.fast_loads, Event)
        decode = dispatcher.event
        frames: deque[Any] = deque()
        payloads: deque[Any] = deque()
        ready: deque[Any] = deque()
        reader = twin.FrameReader(0, None, frames)
        inflater = twin.ZlibStream(backends.zlib.decompressobj())
        count = 0
        for chunk in reads:
            reader.feed(chunk)
            while frames or payloads:
                taken, seq = dispatcher.drain(frames, payloads, ready, BATCH, inflater)
                shard.record_sequence(seq)
                count += taken
                for item in ready:
                    if type(item) is bytes:  # wanted
                        decode(item)
                ready.clear()
                if payloads:
                    shard.receive(payloads.popleft(), 0.0)
                    count += 1
        assert reader.error is None
        return count

    return run


def limit(messages: list[bytes]) -> Callable[[], int]:
    def run() -> int:
        decompress = backends.zlib.decompressobj().decompress
        loads = codec.loads
        for m in messages:
            loads(decompress(m))
        return len(messages)

    return run


def interleaved(runs: list[Callable[[], int]], seconds: float) -> list[tuple[float, int]]:
    """Fastest run of each, measured in alternation for about ``seconds`` each (the machine
    is shared: alternating spreads any slow spell over every path alike).
    """
    best = [(float("inf"), 0)] * len(runs)
    deadline = time.perf_counter() + seconds * len(runs)
    rounds = 0
    while rounds < 3 or time.perf_counter() < deadline:
        for i, fn in enumerate(runs):
            start = time.perf_counter()
            n = fn()
            best[i] = min(best[i], (time.perf_counter() - start, n))
        rounds += 1
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument(
        "--mix", choices=sorted(MIXES), default="default", help="messages: ~1 KB events only"
    )
    args = parser.parse_args()
    reads, messages, raw = build(args.events, args.mix)
    wire = sum(map(len, reads))
    info = backends.describe()
    print(f"# bench_decode: {args.events:,} events ({args.mix}), {raw / 2**20:.1f} MiB JSON, "
          f"{wire / 2**20:.1f} MiB on the wire; zlib={info['zlib']}, json={info['json']}; "
          f"{machine()}\n")  # fmt: skip
    found = twins()
    runs: list[tuple[str, Callable[[], int]]] = [("limit: inflate + JSON decode", limit(messages))]
    for name in ("cython", "python"):
        if name in found:
            runs.append((f"pipeline ({name}), all events", pipeline(found[name], reads,
                         EventTypeFlags.ALL)))  # fmt: skip
    for name in ("cython", "python"):
        if name in found:
            wanted = EventTypeFlags.MESSAGE_CREATE
            runs.append((f"pipeline ({name}), MESSAGE_CREATE only", pipeline(found[name], reads,
                         wanted)))  # fmt: skip
    rows = []
    for (label, _), (seconds, n) in zip(runs, interleaved([fn for _, fn in runs], args.seconds),
                                        strict=True):  # fmt: skip
        rows.append({"path": label, "events_per_s": n / seconds, "MB_per_s": raw / seconds / 1e6})
    for row in rows:
        row["x limit"] = row["events_per_s"] / rows[0]["events_per_s"]
    print(table(rows, ["path", "events_per_s", "MB_per_s", "x limit"]))
    print("\nMB/s counts inflated JSON bytes.")


if __name__ == "__main__":
    main()

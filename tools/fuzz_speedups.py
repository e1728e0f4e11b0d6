"""Fuzz the compiled speedups against their pure twins: same results, never a crash.

    python tools/fuzz_speedups.py [--inputs 1000000] [--seed 0]

Inputs are mutations (bit flips, truncations, insertions, splices, random cuts) of valid
gateway traffic: websocket frame streams, zlib-stream frames and JSON payloads. Each input
goes through the Cython FrameReader (with and without a ZlibStream), ZlibStream, scan and
the Dispatcher (drain over zlib-stream frames, then event() on what it took), and through
the pure twins; any difference in messages or error text is printed and makes
the exit status 1. A crash of the interpreter would end the run (CI would see it).
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import time
import zlib
from pathlib import Path
from typing import Any

try:  # the installed package; from a bare checkout, the source tree
    import gateway  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collections import deque

from gateway import EventTypeFlags, backends, codec
from gateway._speedups import CompressionError, FrameError, ScanError, twins
from gateway.events import Event
from gateway.protocol import _dispatch_table

TABLE = _dispatch_table(int(EventTypeFlags.MESSAGE_CREATE | EventTypeFlags.GUILD_CREATE))

PAYLOADS = Path(__file__).resolve().parent.parent / "gateway" / "testing" / "payloads"


def corpus() -> list[bytes]:
    out = []
    for path in sorted(PAYLOADS.glob("*.json")):
        text = json.dumps(json.loads(path.read_text()), separators=(",", ":"))
        out.append(text.encode()[:4000])
    return out


def frame(payload: bytes, opcode: int, fin: bool = True) -> bytes:
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        return struct.pack("!BB", first, n) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if not b:
            b += rng.randbytes(rng.randint(1, 8))
        elif choice < 0.35:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif choice < 0.5:
            del b[rng.randrange(len(b)) :]
        elif choice < 0.7:
            i = rng.randrange(len(b) + 1)
            b[i:i] = rng.randbytes(rng.randint(1, 6))
        elif choice < 0.85:
            i, j = sorted(rng.randrange(len(b) + 1) for _ in range(2))
            b[i:i] = b[i:j]
        else:
            i = rng.randrange(len(b))
            b[i] = rng.choice(b'{}[]":,\\0x\xff\x7f\x7e\x80\x00')
    return bytes(b)


def run_scan(twin: Any, data: bytes) -> Any:
    try:
        return twin.scan(data)
    except ScanError as exc:
        return ("ScanError", exc.args)


def run_inflate(twin: Any, frames: list[bytes]) -> Any:
    stream = twin.ZlibStream(backends.zlib.decompressobj(), 512)
    out = []
    for f in frames:
        try:
            out.append(stream.feed(f))
        except CompressionError as exc:
            return out, str(exc)
    return out, None


def run_frames(twin: Any, data: bytes, cuts: list[int], inflate: bool) -> Any:
    inflater = twin.ZlibStream(backends.zlib.decompressobj()) if inflate else None
    reader = twin.FrameReader(4096, inflater)
    out = []
    last = 0
    for cut in [*cuts, len(data)]:
        out += reader.feed(data[last:cut])
        last = cut
    error = reader.error
    kind = None if error is None else (type(error).__name__, str(error.args[0]))
    assert error is None or isinstance(error, (FrameError, CompressionError))
    return out, kind, reader.closed


def run_dispatch(twin: Any, frames: list[bytes], limit: int) -> Any:
    """Drain as the shard does (the slow path pops what the drain leaves); then event()."""
    dispatcher = twin.Dispatcher(TABLE, codec.fast_loads, Event)
    inflater = twin.ZlibStream(backends.zlib.decompressobj(), 512)
    source: deque[Any] = deque(frames)
    payloads: deque[Any] = deque()
    ready: deque[Any] = deque()
    trace: list[Any] = []
    while True:
        count, seq = dispatcher.drain(source, payloads, ready, limit, inflater)
        trace.append((count, seq))
        for item in ready:
            if type(item) is bytes:  # wanted: decode it
                try:
                    trace.append(dispatcher.event(item))
                except ValueError:
                    trace.append("ValueError")
            else:
                trace.append(item)
        ready.clear()
        if payloads:
            item = payloads.popleft()
            trace.append(item if isinstance(item, bytes) else str(item))
            if not isinstance(item, bytes):
                return trace
        elif count == 0:
            return trace


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    found = twins()
    if "cython" not in found:
        print("the compiled speedups are not built: nothing to fuzz", file=sys.stderr)
        return 2
    cy, py = found["cython"], found["python"]
    rng = random.Random(args.seed)
    payloads = corpus()
    compressor = zlib.compressobj()
    zframes = [compressor.compress(p) + compressor.flush(zlib.Z_SYNC_FLUSH) for p in payloads]
    wire = [frame(z, 2) for z in zframes]
    dispatches = [p for p in payloads if p.startswith(b'{"t":"')] or payloads
    dispatches = dispatches * 3  # repeats: later messages refer back to earlier ones
    dcompressor = zlib.compressobj()
    dframes = [dcompressor.compress(p) + dcompressor.flush(zlib.Z_SYNC_FLUSH) for p in dispatches]
    counts = {"scan": 0, "inflate": 0, "frames": 0, "frames+inflate": 0, "dispatch": 0}
    mismatches = 0
    started = time.perf_counter()
    for i in range(args.inputs):
        kind = i % 5
        if kind == 4:
            k = rng.randint(1, len(dframes))
            frames = [mutate(rng, f) if rng.random() < 0.1 else f for f in dframes[:k]]
            limit = rng.randint(1, 4)
            a, b = run_dispatch(cy, frames, limit), run_dispatch(py, frames, limit)
            name = "dispatch"
        elif kind == 0:
            data = mutate(rng, rng.choice(payloads))
            a, b, name = run_scan(cy, data), run_scan(py, data), "scan"
        elif kind == 1:
            k = rng.randint(1, 4)
            frames = [mutate(rng, f) if rng.random() < 0.5 else f for f in zframes[:k]]
            a, b, name = run_inflate(cy, frames), run_inflate(py, frames), "inflate"
        else:
            k = rng.randint(1, 3)
            if kind == 2:
                base = b"".join(frame(p[:300], rng.choice([1, 2, 9, 10])) for p in payloads[:k])
            else:
                base = b"".join(wire[:k])
            data = mutate(rng, base)
            cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randint(0, 3)))
            inflate = kind == 3
            a, b = run_frames(cy, data, cuts, inflate), run_frames(py, data, cuts, inflate)
            name = "frames+inflate" if inflate else "frames"
        counts[name] += 1
        if a != b:
            mismatches += 1
            if mismatches <= 10:
                print(f"MISMATCH in {name} (input {i}):")
                print(f"  cython: {a!r:.300}\n  python: {b!r:.300}")
    elapsed = time.perf_counter() - started
    total = sum(counts.values())
    detail = ", ".join(f"{k} {v:,}" for k, v in counts.items())
    print(f"{total:,} inputs in {elapsed:.0f} s ({detail}); {mismatches} mismatches; no crash")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())

"""Fuzz the compiled speedups against their pure twins: same results, never a crash.

    python tools/fuzz_speedups.py --atheris --seconds 150         # coverage-guided (CI)
    python tools/fuzz_speedups.py --atheris --seconds 60 --target dispatch
    python tools/fuzz_speedups.py --inputs 100000 [--seed 0]      # seeded random mutations

Each target decodes one input (a few control bytes, then data) into a scenario, runs it
through the Cython twin and the pure twin, and raises on any difference in results,
errors (type and text) or state afterwards:

- ``scan``: payloads, with ``#`` optionally grown into 4300/4400 digits (the int() limit);
- ``frames``: a frame stream cut anywhere, fed as bytes/bytearray/memoryview, max_size
  values and a max_size changed between feeds;
- ``reentrant``: a sink that feeds the reader again (large frames that grow its buffer),
  changes max_size, or raises, on the Nth message;
- ``inflater``: FrameReader and Dispatcher with a scripted inflater that returns bytes,
  bytearray, memoryview, None or an int, raises, or calls feed/drain from inside;
- ``zlib``: mutated valid zlib-stream frames through ZlibStream alone and inside the
  frame reader (mixed twin pairs too), any keep_buffer, with or without a cap on the
  inflated size;
- ``dispatch``: drain + event() over mutated payloads or zlib-stream frames, with huge
  numbers, escaped names, tables of several mapping types and any limit, and with typed
  decoders (msgspec, when installed) for some names.

With ``--atheris`` each target runs in its own process under libFuzzer (atheris) for its
share of ``--seconds``, guided by coverage of the instrumented pure twins and helpers
(the Cython code is not instrumented: see tools/sanitize.sh for the native side); a
difference or a crash makes the exit status 1 and prints the input. Without atheris the
same targets run on seeded random mutations of the same seeds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import re
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import deque
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAYLOADS = ROOT / "gateway" / "testing" / "payloads"
SEP = b"\xfe\x00\xfe"  # between the parts of one input
TARGETS = ("scan", "frames", "reentrant", "inflater", "zlib", "dispatch")

# Filled by load(): imported late, so a child can instrument them for atheris first.
CY: Any = None
PY: Any = None
G: Any = SimpleNamespace()


def load() -> None:
    global CY, PY
    try:  # the installed package; from a bare checkout, the source tree
        import gateway  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT))
    from gateway import EventTypeFlags, backends, codec
    from gateway._speedups import CompressionError, FrameError, ScanError, twins
    from gateway.events import Event
    from gateway.protocol import _dispatch_table

    found = twins()
    if "cython" not in found:
        print("the compiled speedups are not built: nothing to fuzz", file=sys.stderr)
        sys.exit(2)
    CY, PY = found["cython"], found["python"]
    flags = EventTypeFlags.MESSAGE_CREATE | EventTypeFlags.GUILD_CREATE
    G.table = dict(_dispatch_table(int(flags)))
    G.decompressobj = backends.zlib.decompressobj
    G.loads = codec.fast_loads
    G.Event = Event
    G.errors = (CompressionError, FrameError, ScanError)
    G.CompressionError = CompressionError
    G.decoders = None
    if importlib.util.find_spec("msgspec") is not None:
        import msgspec

        from gateway.models import decoder

        class Slim(msgspec.Struct):
            id: int
            content: str = ""

        # MESSAGE_CREATE typed, GUILD_CREATE left to loads: both paths of a typed event().
        G.decoders = {"MESSAGE_CREATE": decoder(Slim)}


class Divergence(AssertionError):
    """The twins disagreed on one input."""


# ---- helpers ---------------------------------------------------------------------------------


class Input:
    """Control bytes from the front of an input (0 once it is used up), then the rest."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def rest(self) -> bytes:
        rest = self.data[self.pos :]
        self.pos = len(self.data)
        return rest


def frame(payload: bytes, opcode: int, fin: bool = True) -> bytes:
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        return struct.pack("!BB", first, n) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def outcome(fn: Any, *args: Any) -> Any:
    """What a call did: its result, or the exception's type and text."""
    try:
        return ("ok", fn(*args))
    except Exception as exc:
        return ("raised", type(exc).__name__, _ADDRESS.sub("", str(exc)))


def same(target: str, data: bytes, cy: Any, py: Any) -> None:
    if cy != py:
        raise Divergence(
            f"{target}: input {data[:400]!r}\n  cython: {cy!r:.600}\n  python: {py!r:.600}"
        )


def grow_numbers(payload: bytes, mode: int) -> bytes:
    """Replace each ``#`` with a long digit run: past int()'s limit, at it, or short."""
    digits = (b"1", b"9" * 4300, b"9" * 4400, b"-" + b"9" * 4400)[mode % 4]
    return payload.replace(b"#", digits)


def cuts_of(inp: Input, size: int) -> list[int]:
    return sorted((inp.byte() << 8 | inp.byte()) % (size + 1) for _ in range(inp.byte() % 4))


def feed_all(reader: Any, data: bytes, cuts: list[int], kind: int) -> list[Any]:
    """Feed ``data`` cut at ``cuts``, as bytes, bytearray or memoryview; each feed's outcome."""
    convert = (bytes, bytearray, memoryview)[kind % 3]
    steps = []
    last = 0
    for cut in [*cuts, len(data)]:
        steps.append(outcome(reader.feed, convert(data[last:cut])))
        last = cut
    return steps


def reader_state(reader: Any) -> Any:
    error = reader.error
    return (None if error is None else (type(error).__name__, error.args), reader.closed)


# ---- targets ---------------------------------------------------------------------------------


def t_scan(data: bytes) -> None:
    inp = Input(data)
    mode = inp.byte()
    payload = grow_numbers(inp.rest(), mode)
    results = []
    for twin in (CY, PY):
        dispatcher = twin.Dispatcher(G.table, G.loads, G.Event)
        results.append((outcome(twin.scan, payload), outcome(dispatcher.event, payload)))
    same("scan", data, *results)


MAX_SIZES = (0, None, 1, 16, 125, 4096, 2**64, 2**70)


def t_frames(data: bytes) -> None:
    inp = Input(data)
    ctl = inp.byte()
    max_size = MAX_SIZES[ctl % 8]
    later = (None, 0, 8, 300)[(ctl >> 3) % 4]  # max_size set again after the first feed
    kind = inp.byte()
    stream = inp.rest()
    cuts = cuts_of(Input(data[-8:]), len(stream))
    results = []
    for twin in (CY, PY):
        reader = twin.FrameReader(max_size)
        steps = feed_all(reader, stream[: cuts[0]] if cuts else b"", [], kind)
        if later is not None:
            reader.max_size = later
        steps += feed_all(reader, stream[cuts[0] if cuts else 0 :], cuts[1:], kind)
        results.append((steps, reader_state(reader), reader.max_size))
    same("frames", data, *results)


class ReenteringSink:
    """On its Nth append: feed the reader again, change max_size, or raise."""

    def __init__(self, nth: int, action: int, swallow: bool, nested: bytes) -> None:
        self.reader: Any = None
        self.got: list[Any] = []
        self.nth, self.action, self.swallow, self.nested = nth, action, swallow, nested

    def append(self, payload: bytes) -> None:
        self.got.append(payload)
        if len(self.got) != self.nth:
            return
        if self.action == 0:
            try:
                self.got.append(("nested", self.reader.feed(self.nested)))
            except RuntimeError as exc:
                self.got.append(("nested", type(exc).__name__, str(exc)))
                if not self.swallow:
                    raise
        elif self.action == 1:
            self.reader.max_size = len(payload) // 2
        elif self.action == 2:
            raise ValueError("sink failed")
        else:
            self.got.append(("nested", outcome(self.reader.feed, b"")))


def t_reentrant(data: bytes) -> None:
    inp = Input(data)
    ctl = inp.byte()
    nth, action, swallow = 1 + ctl % 4, (ctl >> 2) % 4, bool(ctl & 0x10)
    nested = frame(b"Z" * (inp.byte() * 300), 2)  # up to 76 KB: grows the reader's buffer
    max_size = MAX_SIZES[inp.byte() % 8]
    stream = inp.rest()
    cuts = cuts_of(Input(data[-8:]), len(stream))
    results = []
    for twin in (CY, PY):
        sink = ReenteringSink(nth, action, swallow, nested)
        reader = sink.reader = twin.FrameReader(max_size, None, sink)
        steps = feed_all(reader, stream, cuts, 0)
        steps.append(outcome(reader.feed, frame(b"after", 1)))
        results.append((steps, sink.got, reader_state(reader)))
    same("reentrant", data, *results)


class ScriptedInflater:
    """The Nth feed follows script[N % len]: bytes, bytearray, memoryview, None, an int,
    CompressionError, ValueError, or a nested call of its reader/dispatcher.
    """

    def __init__(self, script: list[int]) -> None:
        self.script = script
        self.calls = 0
        self.owner: Any = None

    def feed(self, payload: bytes) -> Any:
        step = self.script[self.calls % len(self.script)] % 9
        self.calls += 1
        if step == 1:
            return bytearray(payload)
        if step == 2:
            return memoryview(payload)[1:]
        if step == 3:
            return None
        if step == 4:
            return len(payload)
        if step == 5:
            raise G.CompressionError("scripted")
        if step == 6:
            raise ValueError("scripted")
        if step == 7:
            if hasattr(self.owner, "drain"):
                self.owner.drain(deque(), deque(), deque(), 1)
            else:
                self.owner.feed(b"\x81\x01x")
        return payload


def t_inflater(data: bytes) -> None:
    inp = Input(data)
    script = [inp.byte() for _ in range(6)] or [0]
    use_sink = bool(script[0] & 0x80)
    parts = inp.rest().split(SEP)
    stream = b"".join(frame(p[:70000], 2) for p in parts)
    results = []
    for twin in (CY, PY):
        inflater = ScriptedInflater(script)
        sink: list[Any] = []
        reader = inflater.owner = twin.FrameReader(0, inflater, sink if use_sink else None)
        steps = feed_all(reader, stream, cuts_of(Input(data[-8:]), len(stream)), 0)
        read = (steps, sink, reader_state(reader), inflater.calls)
        inflater = ScriptedInflater(script)
        dispatcher = inflater.owner = twin.Dispatcher(G.table, G.loads, G.Event)
        frames, payloads, ready = deque(parts), deque(), deque()  # type: ignore[var-annotated]
        drained = []
        for _ in range(len(parts) + 2):
            drained.append(outcome(dispatcher.drain, frames, payloads, ready, 3, inflater))
            drained.append((list(ready), [_item(p) for p in payloads], len(frames)))
            ready.clear()
            if payloads:
                payloads.popleft()
        results.append((read, drained))
    same("inflater", data, *results)


def _item(item: Any) -> Any:
    return item if isinstance(item, bytes) else (type(item).__name__, str(item))


KEEPS = (0, 1, 512, 2**64)
#: ZlibStream's inflated-size cap (0: none), against decompression bombs.
INFLATED_MAX = (0, 0, 16, 600)
#: ZlibStream's cap on one message's compressed bytes (0: none), against endless messages.
PENDING_MAX = (0, 0, 64, 5000)


def t_zlib(data: bytes) -> None:
    inp = Input(data)
    ctl = inp.byte()
    keep = KEEPS[ctl % 4]
    caps = inp.byte()
    cap = INFLATED_MAX[caps % 4]
    pending = PENDING_MAX[(caps >> 2) % 4]
    frames = inp.rest().split(SEP)
    wire = b"".join(frame(f[:70000], 2) for f in frames)
    cuts = cuts_of(Input(data[-8:]), len(wire))
    results = []
    for twin, other in ((CY, PY if ctl & 4 else CY), (PY, CY if ctl & 4 else PY)):
        stream = twin.ZlibStream(G.decompressobj(), keep, cap, pending)
        alone = []
        for f in frames:
            alone.append(outcome(stream.feed, f))
            if alone[-1][0] == "raised":
                break
        inflater = other.ZlibStream(G.decompressobj(), keep, cap, pending)
        reader = twin.FrameReader(4096 if ctl & 8 else 0, inflater)
        steps = feed_all(reader, wire, cuts, ctl >> 4)
        results.append((alone, stream.buffered, steps, reader_state(reader)))
    same("zlib", data, *results)


def _table(kind: int) -> Any:
    if kind == 1:
        return MappingProxyType(G.table)
    if kind == 2:
        return {k: v for k, v in G.table.items() if k != "GUILD_CREATE"}
    return G.table


def run_dispatch(twin: Any, frames: list[bytes], limit: int, compressed: bool, kind: int) -> Any:
    """Drain as the shard does (the slow path pops what the drain leaves); then event()."""
    table = dict(_table(kind))
    typed = kind == 3 and G.decoders is not None
    dispatcher = twin.Dispatcher(table, G.loads, G.Event, G.decoders if typed else None)
    if kind == 2:
        table.clear()  # a later change to the caller's dict: neither twin sees it
    inflater = twin.ZlibStream(G.decompressobj(), 512) if compressed else None
    source: deque[Any] = deque(frames)
    payloads: deque[Any] = deque()
    ready: deque[Any] = deque()
    trace: list[Any] = []
    for _ in range(len(frames) + 2):
        result = outcome(dispatcher.drain, source, payloads, ready, limit, inflater)
        trace.append(result)
        if result[0] == "raised":
            return trace
        for item in ready:
            trace.append(outcome(dispatcher.event, item) if type(item) is bytes else item)
        ready.clear()
        if payloads:
            item = payloads.popleft()
            trace.append(_item(item))
            trace.append(outcome(twin.scan, item) if type(item) is bytes else None)
        elif result[1][0] == 0:
            break
    return trace


def t_dispatch(data: bytes) -> None:
    inp = Input(data)
    ctl = inp.byte()
    limit = (1, 2, 3, 64, 2**63, 0)[ctl % 6]
    compressed = bool(ctl & 8)
    kind = (ctl >> 4) % 4
    rest = inp.rest()
    parts = rest.split(SEP) if compressed else grow_numbers(rest, ctl >> 6).split(SEP)
    results = [run_dispatch(twin, parts, limit, compressed, kind) for twin in (CY, PY)]
    same("dispatch", data, *results)


TARGET_FUNCTIONS = {
    "scan": t_scan,
    "frames": t_frames,
    "reentrant": t_reentrant,
    "inflater": t_inflater,
    "zlib": t_zlib,
    "dispatch": t_dispatch,
}


# ---- seeds -----------------------------------------------------------------------------------


def corpus() -> list[bytes]:
    out = []
    for path in sorted(PAYLOADS.glob("*.json")):
        text = json.dumps(json.loads(path.read_text()), separators=(",", ":"))
        out.append(text.encode()[:4000])
    return out


EXTRA = [  # the shapes the fuzzing run found trouble in
    b'{"t":"MESSAGE_CREATE","s":#,"op":0,"d":{}}',
    b'{"t":"MESSAGE_CREATE","s":1,"op":#,"d":{}}',
    b'{"op":0,"t":"MESSAGE\\u005fCREATE","s":#,"d":null}',
    b' { "d" : {"op": 5}, "op" : 0 , "s":#,"t":"GUILD\\u005FCREATE"} ',
    b'{"t":"\\ud83d\\ude00","s":1,"op":0}',
    b'{"op":#,"op":0,"s":2,"t":"MESSAGE_CREATE"}',
    b'{"t":"MESSAGE_CREATE","s":-0,"op":-0}',
]


def seeds(target: str) -> list[bytes]:
    payloads = corpus() + EXTRA
    compressor = zlib.compressobj()
    zframes = [compressor.compress(p) + compressor.flush(zlib.Z_SYNC_FLUSH) for p in payloads]
    if target == "scan":
        return [bytes([m]) + p for p in payloads for m in (0, 1, 2)]
    if target == "frames":
        ops = [1, 2, 9, 10] * len(payloads)
        streams = [b"".join(frame(p[:300], op) for p, op in zip(payloads, ops, strict=False))]
        streams.append(frame(b"ab", 1, fin=False) + frame(b"\x03\xe8", 9) + frame(b"cd", 0))
        streams.append(frame(b"x" * 300, 2) + frame(b"\x03\xe8bye", 8) + frame(b"late", 1))
        # UTF-8 edges of text messages (the compiled validator against the decoder)
        utf8 = [b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe0\x9f\xbf", "é🔥".encode(), b"ab\xc3"]
        streams.append(b"".join(frame(b"abcdefg" + u, 1) for u in utf8))
        streams.append(frame("🔥".encode()[:2], 1, fin=False) + frame("🔥".encode()[2:], 0))
        return [bytes([ctl, kind]) + s for s in streams for ctl in (0, 0x0B) for kind in (0, 1, 2)]
    if target == "reentrant":
        stream = b"".join(frame(p[:200], 1) for p in payloads[:6])
        return [bytes([ctl, 200, 0]) + stream for ctl in (0x00, 0x10, 0x05, 0x0A, 0x0F)]
    if target == "inflater":
        return [bytes(script) + SEP.join(payloads[:5])
                for script in ([0] * 6, [1, 2, 3, 0, 0, 0], [4, 0, 0, 0, 0, 0x80],
                               [7, 0, 0, 0, 0, 0], [0, 5, 6, 1, 2, 0x80])]  # fmt: skip
    if target == "zlib":
        return [bytes([ctl]) + SEP.join(zframes[i : i + 4]) for ctl in (0, 5, 14)
                for i in range(0, len(zframes), 4)]  # fmt: skip
    dispatches = [p for p in payloads if b'"t":"' in p] * 2
    dcompressor = zlib.compressobj()
    dframes = [dcompressor.compress(p) + dcompressor.flush(zlib.Z_SYNC_FLUSH) for p in dispatches]
    plain = [bytes([ctl]) + SEP.join(dispatches) for ctl in (0x03, 0x40, 0x80, 0x11, 0xA0)]
    return plain + [bytes([ctl]) + SEP.join(dframes) for ctl in (0x0B, 0x18, 0x29)]


# ---- random mode -----------------------------------------------------------------------------


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if not b:
            b += rng.randbytes(rng.randint(1, 8))
        elif choice < 0.3:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif choice < 0.4:
            del b[rng.randrange(len(b)) :]
        elif choice < 0.6:
            i = rng.randrange(len(b) + 1)
            b[i:i] = rng.randbytes(rng.randint(1, 6))
        elif choice < 0.75:
            i, j = sorted(rng.randrange(len(b) + 1) for _ in range(2))
            b[i:i] = b[i:j]
        elif choice < 0.85:
            b[0] = rng.randrange(256)  # the control byte
        else:
            i = rng.randrange(len(b))
            b[i] = rng.choice(b'{}[]":,\\0x#\xff\x7f\x7e\x80\x00\xfe')
    return bytes(b)


def random_mode(inputs: int, seed: int, targets: list[str]) -> int:
    rng = random.Random(seed)
    pools = {name: seeds(name) for name in targets}
    counts = dict.fromkeys(targets, 0)
    mismatches = 0
    started = time.perf_counter()
    for i in range(inputs):
        name = targets[i % len(targets)]
        data = mutate(rng, rng.choice(pools[name]))
        counts[name] += 1
        try:
            TARGET_FUNCTIONS[name](data)
        except Exception as exc:  # a Divergence, or one twin failed where the other did not
            mismatches += 1
            if mismatches <= 10:
                print(f"MISMATCH (input {i}): {type(exc).__name__}: {exc}")
    elapsed = time.perf_counter() - started
    detail = ", ".join(f"{k} {v:,}" for k, v in counts.items())
    print(f"{inputs:,} inputs in {elapsed:.0f} s ({detail}); {mismatches} mismatches; no crash")
    return 1 if mismatches else 0


# ---- atheris mode ----------------------------------------------------------------------------


def atheris_child(target: str, seconds: int, workdir: Path) -> None:
    import atheris

    # Not the "RegEx" hook: its pattern proxy breaks pattern.match(data, pos) in the scanner.
    atheris.enabled_hooks.add("str")
    with atheris.instrument_imports(include=["gateway"]):
        load()
    atheris.instrument_func(TARGET_FUNCTIONS[target])
    corpus_dir = workdir / "corpus"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(seeds(target)):
        (corpus_dir / f"seed{i:03d}").write_bytes(data)
    argv = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        "-timeout=30",
        "-rss_limit_mb=3072",
        "-max_len=12000",
        "-print_final_stats=1",
        f"-artifact_prefix={workdir}/",
        str(corpus_dir),
    ]
    atheris.Setup(argv, TARGET_FUNCTIONS[target])
    atheris.Fuzz()


_RUNS = re.compile(r"stat::number_of_executed_units:\s*(\d+)")


def atheris_mode(seconds: int, targets: list[str]) -> int:
    if importlib.util.find_spec("atheris") is None:
        print("atheris is not installed: pip install atheris (Linux x86_64 wheels for CPython "
              "3.11-3.13), or run without --atheris", file=sys.stderr)  # fmt: skip
        return 2
    per = max(1, seconds // len(targets))
    failed = 0
    total = 0
    started = time.perf_counter()
    for name in targets:
        with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as tmp:
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, __file__, "--atheris-child", name, "--seconds", str(per),
                 "--workdir", tmp],
                capture_output=True, text=True, timeout=per + 120,
            )  # fmt: skip
            took = time.perf_counter() - t0
            found = _RUNS.search(done.stderr)
            runs = int(found.group(1)) if found else 0
            total += runs
            ok = done.returncode == 0 and found is not None
            print(f"{name:10} {runs:>10,} inputs in {took:5.1f} s  {'ok' if ok else 'FAILED'}")
            if not ok:
                failed += 1
                print("\n".join(done.stderr.splitlines()[-60:]), file=sys.stderr)
                for crash in Path(tmp).glob("crash-*"):
                    print(f"  input: {crash.read_bytes()[:2000]!r}", file=sys.stderr)
    elapsed = time.perf_counter() - started
    print(f"{total:,} inputs in {elapsed:.0f} s over {len(targets)} targets; "
          f"{failed} failed (divergence or crash)")  # fmt: skip
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--atheris", action="store_true", help="coverage-guided, per target")
    parser.add_argument("--seconds", type=int, default=150, help="atheris: total time budget")
    parser.add_argument("--target", action="append", choices=TARGETS, help="default: all")
    parser.add_argument("--inputs", type=int, default=100_000, help="random mode: inputs")
    parser.add_argument("--seed", type=int, default=0, help="random mode: seed")
    parser.add_argument("--atheris-child", choices=TARGETS, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    targets = args.target or list(TARGETS)
    if args.atheris_child:
        atheris_child(args.atheris_child, args.seconds, args.workdir)
        return 0
    if args.atheris:
        return atheris_mode(args.seconds, targets)
    load()
    return random_mode(args.inputs, args.seed, targets)


if __name__ == "__main__":
    sys.exit(main())

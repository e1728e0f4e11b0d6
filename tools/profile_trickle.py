"""Where a quiet shard's CPU goes: ``perf`` samples of a bench_trickle client, by Python function.

    python3.12 tools/profile_trickle.py [--clients floor-task,gateway] [--loop uvloop]
                                        [--shards 200] [--rate 20] [--seconds 12]

Runs each client of ``tools/bench_trickle.py`` under ``perf record --call-graph dwarf``
with Python's perf trampolines (``-X perf``, Python 3.12+), once traffic flows, and
attributes every sample to the innermost Python function on its stack (its C callees
included: ``Shard._refill`` holds the compiled drain and zlib, ``Shard.poll_event`` the JSON
decode). Samples in no Python frame but asyncio.run's are the loop's C code (uvloop) and
the kernel; on asyncio's loop its Python frames show by name. Columns:
microseconds of CPU per event for each function, per client, so two clients compare line
by line. Needs Linux ``perf`` (``apt-get install linux-perf``) that may sample this process.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import ROOT, _env, emulator, machine, table

DELAY_MS = 5000  # start sampling once every shard is READY and traffic flows


def profile(client: str, loop: str, shards: int, rate: float, seconds: float,
            freq: int) -> tuple[collections.Counter[str], float]:  # fmt: skip
    """Samples per innermost Python function, and the events the profile covers."""
    options = dict(shards=shards, guilds=2 * shards, max_concurrency=shards, identify_window=0,
                   events_per_second=rate, heartbeat_interval=41.25)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, emulator(**options) as emu:
        data = str(Path(tmp) / "perf.data")
        argv = ["perf", "record", "-q", "-F", str(freq), "--call-graph", "dwarf,32768",
                "-D", str(DELAY_MS), "-o", data, "--", sys.executable, "-X", "perf",
                str(ROOT / "tools" / "bench_trickle.py"), "--worker", client, loop,
                str(shards), emu.url, str(seconds)]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=_env())
        if done.returncode != 0:
            raise SystemExit(f"perf record failed:\n{done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        script = subprocess.run(["perf", "script", "-i", data, "-F", "time,ip,sym"],
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
    counts: collections.Counter[str] = collections.Counter()
    first = last = None
    for block in script.split("\n\n"):
        lines = block.strip().splitlines()
        if not lines:
            continue
        stamp = float(lines[0].split()[0].rstrip(":"))
        first = stamp if first is None else first
        last = stamp
        counts[_innermost(lines[1:])] += 1
    covered = (last - first) if first is not None and last is not None else 0.0
    return counts, covered * result["events_per_s"]


LOOP = "(the event loop's C code, the kernel)"
_LOOP_FRAMES = {"Runner.run", "run"}  # uvloop's loop runs below asyncio.run's frame


def _innermost(frames: list[str]) -> str:
    for frame in frames:
        if "py::" in frame:
            name = frame.split("py::", 1)[1].split(":", 1)[0]
            return LOOP if name in _LOOP_FRAMES else name
    return LOOP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="floor-task,gateway")
    parser.add_argument("--loop", default="uvloop", choices=["asyncio", "uvloop"])
    parser.add_argument("--shards", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--freq", type=int, default=999, help="samples per second")
    parser.add_argument("--top", type=int, default=14, help="functions listed")
    args = parser.parse_args()
    if sys.version_info < (3, 12):
        raise SystemExit("needs Python 3.12+ (-X perf); run it with python3.12")
    clients = args.clients.split(",")
    per_event: dict[str, dict[str, float]] = {}
    for client in clients:
        counts, events = profile(client, args.loop, args.shards, args.rate, args.seconds,
                                 args.freq)  # fmt: skip
        scale = 1e6 / args.freq / max(events, 1)  # one sample is 1/freq s of CPU
        per_event[client] = {name: n * scale for name, n in counts.items()}
    totals = {c: sum(v.values()) for c, v in per_event.items()}
    names = collections.Counter[str]()
    for values in per_event.values():
        names.update(values)
    rows = [{"function": name, **{c: per_event[c].get(name, 0.0) for c in clients}}
            for name, _ in names.most_common(args.top)]  # fmt: skip
    rows.append({"function": "(all)", **totals})
    print(f"# profile_trickle: {args.shards} shards x {args.rate:g} events/s on {args.loop}, "
          f"CPU us per event by innermost Python function; {machine()}\n")  # fmt: skip
    print(table(rows, ["function", *clients]))


if __name__ == "__main__":
    main()

"""Measure every installed zlib and JSON backend on gateway-shaped data.

    python tools/bench_backends.py [--seconds 0.5]

zlib: inflate a zlib-stream (one decompressobj, sync-flushed messages) of ~1 KB events and
of large ~200 KB GUILD_CREATE-like messages. JSON: loads of the same payloads. Prints MB/s
per backend and its ratio to the stdlib; gateway.backends' default order follows the result.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PAYLOADS = Path(__file__).resolve().parent.parent / "gateway" / "testing" / "payloads"
ZLIBS = {"zlib": "zlib", "zlib-ng": "zlib_ng.zlib_ng", "isal": "isal.isal_zlib"}
JSONS = {"json": "json", "ujson": "ujson", "orjson": "orjson"}


def small_messages() -> list[bytes]:
    names = ["message_create", "presence_update", "typing_start", "message_reaction_add"]
    return [json.dumps(json.loads((PAYLOADS / f"{n}.json").read_text())).encode() for n in names]


def large_message() -> bytes:
    guild = json.loads((PAYLOADS / "guild_create.json").read_text())
    members = guild["d"]["members"]
    guild["d"]["members"] = [dict(members[0], nick=f"member {i}") for i in range(1500)]
    return json.dumps(guild).encode()


def zlib_stream(messages: list[bytes]) -> list[bytes]:
    import zlib

    co = zlib.compressobj()
    return [co.compress(m) + co.flush(zlib.Z_SYNC_FLUSH) for m in messages]


def rate(work: Callable[[], int], seconds: float) -> float:
    """MB/s of ``work`` (which returns the bytes it produced), best of three runs."""
    best = 0.0
    for _ in range(3):
        done = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 3:
            done += work()
        best = max(best, done / elapsed / 1e6)
    return best


def bench_zlib(module: Any, chunks: list[bytes]) -> int:
    d = module.decompressobj()
    return sum(len(d.decompress(c)) for c in chunks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.6, help="per measurement")
    args = parser.parse_args()
    small = small_messages() * 50
    large = [large_message()] * 2
    cases = {"~1 KB": small, f"~{len(large[0]) // 1000} KB": large}

    rows: list[tuple[str, str, str, float]] = []
    for name, module_name in ZLIBS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for label, messages in cases.items():
            chunks = zlib_stream(messages)
            rows.append(
                (
                    "zlib",
                    name,
                    label,
                    rate(lambda m=module, c=chunks: bench_zlib(m, c), args.seconds),
                )
            )
    for name, module_name in JSONS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for label, messages in cases.items():
            loads = module.loads
            total = sum(map(len, messages))

            def work(
                loads: Any = loads, messages: list[bytes] = messages, total: int = total
            ) -> int:
                for m in messages:
                    loads(m)
                return total

            rows.append(("json", name, label, rate(work, args.seconds)))

    print(f"{'kind':<5} {'backend':<8} {'payload':<8} {'MB/s':>8} {'vs stdlib':>9}")
    for kind, name, label, mbps in rows:
        base = next(
            r[3] for r in rows if r[0] == kind and r[2] == label and r[1] in ("zlib", "json")
        )
        print(f"{kind:<5} {name:<8} {label:<8} {mbps:>8.0f} {mbps / base:>8.2f}x")
    for kind in ("zlib", "json"):
        order = sorted(
            {r[1] for r in rows if r[0] == kind},
            key=lambda n: -next(r[3] for r in rows if r[:3] == (kind, n, "~1 KB")),
        )
        print(f"fastest {kind} order on ~1 KB messages: {', '.join(order)}")


if __name__ == "__main__":
    main()

"""One shard end to end: ours (Cython, pure) against hikari's, and our event filter.

    pip install '.[fast,bench]' && python tools/bench_shard.py [--events 200000]

Same emulator (own process, firehose) and workers as bench_peers.py. Scenarios: ``mix``
(a busy guild: 50% MESSAGE_CREATE, presences, typing, reactions, voice; ~1% large
GUILD_CREATE) and ``messages`` (~1 KB MESSAGE_CREATEs). The filtered rows give our shard
an ``event_types`` filter: events outside it are scanned for op/s/t and never decoded.
hikari has no such filter: its shard decodes every payload.
"""

from __future__ import annotations

import argparse
import time

from bench_peers import PEERS, SCENARIOS, run

FILTERED = [
    ("gateway (Cython), wants MESSAGE_CREATE", "ours", {}, "MESSAGE_CREATE"),
    ("gateway (Cython), wants ~8% (reactions)", "ours", {}, "MESSAGE_REACTION_ADD"),
    ("gateway (pure), wants ~8% (reactions)", "ours", {"GATEWAY_NO_EXTENSIONS": "1"},
     "MESSAGE_REACTION_ADD"),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append")
    args = parser.parse_args()
    started = time.perf_counter()
    peers = [p for p in PEERS if p[1] != "discordpy"]
    scenarios = args.scenario or ["mix", "messages"]
    for scenario in scenarios:
        # The filters pick events of the mix; the messages corpus has no reactions to wait for.
        run([scenario], args.events, peers, FILTERED if scenario == "mix" else [])
    print(f"(took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()

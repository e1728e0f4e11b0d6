"""Faults composed at random over one long session: clause 5 (once, in order) and clause 2.

A seeded generator picks, per connection, one fault among a TCP reset, op 7, op 9 true,
a zombie (no ACK, no close echo), a corrupt frame and a resumable close code, while
numbered dispatches flow. ``GATEWAY_HOSTILE_SEED`` replays a failing seed (printed in the
failure message).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable

from test_hostile import INTERVAL, Run, both_loops, hostile

from gateway.testing.hostile import HostileConnection, HostileServer, Script

CONNECTIONS = 40


def faults() -> dict[str, Callable[[HostileConnection], None]]:
    def zombie(conn: HostileConnection) -> None:
        conn.echo_close = False  # a dead peer: no ACK, no close echo
        conn.ack_heartbeats = False

    return {
        "drop": lambda c: c.drop(),
        "op7": lambda c: c.send_op(7),
        "op9-true": lambda c: c.send_op(9, True),
        "zombie": zombie,
        "corrupt": lambda c: c.send_corrupt(),
        "close-4000": lambda c: c.send_close(4000),
        "close-1001": lambda c: c.send_close(1001),
    }


def script(rng: random.Random, plan: list[str]) -> Script:
    choices = faults()

    async def run(conn: HostileConnection) -> None:
        server = conn.server
        serving = asyncio.get_running_loop().create_task(server.serve_normally(conn))
        try:
            await server.wait_for(lambda: conn.session is not None or conn.closed, timeout=10)
            if not conn.closed:
                await server.emit(rng.randint(0, 4))
                await asyncio.sleep(rng.uniform(0.0, 0.15))  # the hostile timing
                name = rng.choice(list(choices))
                plan.append(name)
                if not conn.closed:
                    choices[name](conn)
                    await server.emit(rng.randint(0, 2))  # logged for the replay
            await conn.wait_closed(timeout=10)
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)

    return run


@both_loops
async def test_random_faults_over_one_long_session_lose_and_repeat_nothing() -> None:
    seed = int(os.environ.get("GATEWAY_HOSTILE_SEED") or random.randrange(1 << 32))
    rng = random.Random(seed)
    plan: list[str] = []
    server = HostileServer(
        [script(rng, plan) for _ in range(CONNECTIONS)], heartbeat_interval=INTERVAL // 2
    )
    run: Run | None = None
    try:
        async with hostile(server=server, min_reconnect_interval=0.05) as run:
            await run.until(lambda: len(server.connections) > CONNECTIONS, timeout=60)
            await run.live(timeout=10)
            await server.emit(3)
            await run.delivered(timeout=10)
            assert len(server.identifies) == 1, "every fault here keeps the session"
    except BaseException as exc:
        summary = run.summary() if run is not None else ""
        raise AssertionError(
            f"seed {seed} (GATEWAY_HOSTILE_SEED={seed} replays it); faults {plan}; {summary}"
        ) from exc

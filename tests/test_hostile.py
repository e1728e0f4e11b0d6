"""The receive-path contract (docs/explanation/contract.md) against a hostile server.

Every case drives a real Shard over loopback against :class:`gateway.testing.hostile.
HostileServer`, on both loops, and checks the contract's clauses that apply:

1. ``next_event()`` / ``next_message()`` raise only ReceiveMessageError, and nothing reaches
   the loop's exception handler (checked by :func:`hostile` for every case);
2. the shard reaches a live session again (READY or RESUMED on a later connection) within
   a bounded time, or is FATALLY_CLOSED for the fatal codes only;
3. no spin (CPU time while waiting) and no flood (heartbeats at most one per 100 ms,
   at most 120 payloads per connection: checked for every case);
4. bounded memory (RSS sampled while a flood or bomb is in flight);
5. numbered dispatches (``d.n``) arrive once and in order (checked for every case);
6. the loop is never blocked for more than ~100 ms (loop lag sampled with the memory).

Cases are written against the contract and protocol.md (sections 3, 5 and 12), not
against today's behaviour: see the issue 21 report for the ones that fail and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import resource
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import gateway.codec
import gateway.compression
from conftest import LOOPS
from gateway import (
    InMemoryQueue,
    Intents,
    ReceiveMessageError,
    ReceiveMessageErrorKind,
    Shard,
    ShardId,
    ShardState,
)
from gateway.config import Config
from gateway.message import Close, Text
from gateway.testing.hostile import (
    OP_BINARY,
    OP_CONTINUATION,
    OP_PING,
    OP_TEXT,
    HostileConnection,
    HostileServer,
    Script,
    encode_frame,
)

TOKEN = "hostile-token-do-not-log"
INTENTS = Intents.GUILDS | Intents.GUILD_MESSAGES
#: HELLO's interval (ms) from a well-behaved server in these tests.
INTERVAL = 300
#: The shortest heartbeat interval a shard may accept (protocol.md 12), in seconds.
MIN_INTERVAL = 0.1
FATAL = [4004, 4010, 4011, 4012, 4013, 4014]
KIND = ReceiveMessageErrorKind
both_loops = pytest.mark.asyncio(loop_factories=LOOPS)


# ---- the harness --------------------------------------------------------------------------


@dataclass
class Run:
    """One shard against one hostile server, with a consumer taking everything."""

    server: HostileServer
    shard: Shard
    #: (name, data) of every dispatch or synthetic event taken, in order.
    seen: list[tuple[str | None, Any]] = field(default_factory=list)
    errors: list[ReceiveMessageError] = field(default_factory=list)
    #: Anything else next_event()/next_message() raised (clause 1: must stay empty).
    bad: list[BaseException] = field(default_factory=list)
    loop_errors: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def consume(self, mode: str = "event") -> None:
        while True:
            try:
                if mode == "event":
                    event = await self.shard.next_event()
                    self.seen.append((event.name, event.data))
                else:
                    message = await self.shard.next_message()
                    if isinstance(message, Text):
                        try:
                            payload = json.loads(message.text)
                        except ValueError:
                            payload = None
                        if isinstance(payload, dict) and payload.get("op") == 0:
                            self.seen.append((payload.get("t"), payload.get("d")))
                    elif isinstance(message, Close):
                        self.seen.append(("GATEWAY_CLOSE", None))
            except ReceiveMessageError as exc:
                self.errors.append(exc)
                if exc.is_fatal() or exc.kind is KIND.CLOSED:
                    return
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # clause 1
                self.bad.append(exc)
                return

    def start(self, mode: str = "event") -> None:
        self.task = asyncio.get_running_loop().create_task(self.consume(mode))

    def mark(self) -> int:
        return len(self.seen)

    @property
    def numbers(self) -> list[int]:
        return [d["n"] for name, d in self.seen if name == "MESSAGE_CREATE" and "n" in d]

    def kinds(self) -> list[ReceiveMessageErrorKind]:
        return [e.kind for e in self.errors]

    async def until(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        def check() -> Any:
            assert not self.bad, f"clause 1: an untyped error escaped: {self.bad!r}"
            try:
                return predicate()
            except IndexError:  # the connection asked about is not there yet
                return False

        try:
            return await self.server.wait_for(check, timeout)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout} s; {self.summary()}") from None

    def summary(self) -> str:
        """What happened, for a failure's message."""
        conns = [
            (c.number, [r.op for r in c.received][:12], c.client_close and c.client_close.code)
            for c in self.server.connections
        ]
        names = [name for name, _ in self.seen if name != "GATEWAY_HEARTBEAT_ACK"]
        return (
            f"state {self.shard.state.value}; taken {names[-12:]}; errors {self.errors[-4:]}; "
            f"connections (number, ops sent, close code) {conns[-6:]}"
        )

    async def live(self, count: int = 1, timeout: float = 5.0) -> None:
        """Clause 2: the ``count``-th READY or RESUMED taken, and the shard ACTIVE."""

        def healed() -> bool:
            sessions = sum(1 for name, _ in self.seen if name in ("READY", "RESUMED"))
            return sessions >= count and self.shard.state is ShardState.ACTIVE

        await self.until(healed, timeout)

    async def delivered(self, timeout: float = 5.0) -> None:
        """Clause 5: every numbered dispatch emitted so far taken, once and in order."""
        await self.until(lambda: len(self.numbers) >= self.server.emitted, timeout)
        assert self.numbers == list(range(1, self.server.emitted + 1))

    async def error(
        self, kind: ReceiveMessageErrorKind | None = None, timeout: float = 5.0
    ) -> ReceiveMessageError:
        """The first typed error (of ``kind``)."""
        found = await self.until(
            lambda: [e for e in self.errors if kind is None or e.kind is kind], timeout
        )
        return found[0]  # type: ignore[no-any-return]

    def check(self) -> None:
        """The clauses every case checks (1, 3's flood half, 5)."""
        assert not self.bad, f"clause 1: an untyped error escaped: {self.bad!r}"
        assert not self.loop_errors, (
            f"clause 1: the loop's exception handler got {self.loop_errors!r}"
        )
        assert not self.server.errors, f"the hostile script failed: {self.server.errors!r}"
        numbers = self.numbers
        assert numbers == list(range(1, len(numbers) + 1)), f"clause 5: {numbers}"
        for conn in self.server.connections:
            beats = [r.time for r in conn.heartbeats]
            if len(beats) >= 2:  # clause 3: at most one heartbeat per 100 ms
                assert len(beats) - 1 <= (beats[-1] - beats[0]) / MIN_INTERVAL + 1, (
                    f"clause 3: {len(beats)} heartbeats in {beats[-1] - beats[0]:.2f} s"
                )
            assert len(conn.received) <= 120, (
                f"clause 3: {len(conn.received)} payloads on one connection"
            )


def config(server: HostileServer, **options: Any) -> Config:
    base: dict[str, Any] = {
        "gateway_url": server.url,
        "queue": InMemoryQueue(max_concurrency=0),
        "backoff_base": 0.05,
        "backoff_max": 0.5,
        "hello_timeout": 1.0,
        "connect_timeout": 1.0,
        "loop_watchdog": None,
        "max_message_size": 1 << 20,
        "max_inflated_size": 1 << 20,
        "read_high_water": 1 << 20,
        # Server-asked reconnects (op 7, op 9 true, a resumable close after READY) wait
        # at least this long; the default (1 s) would make the suite slow.
        "min_reconnect_interval": 0.1,
    }
    base.update(options)
    return Config(TOKEN, INTENTS, **base)


@contextlib.asynccontextmanager
async def hostile(
    scripts: list[Script] | None = None,
    default: Script | None = None,
    *,
    consume: str | None = "event",
    server: HostileServer | None = None,
    rng: Callable[[], float] | None = None,
    **options: Any,
) -> AsyncIterator[Run]:
    """A started hostile server, a shard on it and a consumer; clause checks at the end."""
    loop = asyncio.get_running_loop()
    old_handler = loop.get_exception_handler()
    server = server or HostileServer(scripts or [], default, heartbeat_interval=INTERVAL)
    await server.start()
    extra: dict[str, Any] = {} if rng is None else {"rng": rng}
    shard = Shard(ShardId.ONE, config=config(server, **options), **extra)
    run = Run(server, shard)
    loop.set_exception_handler(lambda _, context: run.loop_errors.append(context))
    try:
        if consume is not None:
            run.start(consume)
        else:
            shard.start()
        yield run
        run.check()
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await shard.close()
        if run.task is not None:
            run.task.cancel()
            await asyncio.gather(run.task, return_exceptions=True)
        await server.stop()
        loop.set_exception_handler(old_handler)


def normal(**options: Any) -> Script:
    """A connection served like Discord (see HostileServer.serve_normally)."""

    async def script(conn: HostileConnection) -> None:
        await conn.server.serve_normally(conn, **options)

    return script


def after_live(
    fault: Callable[[HostileConnection], Awaitable[None] | None], **options: Any
) -> Script:
    """Serve normally; once READY/RESUMED is sent, run ``fault`` (ACKs go on meanwhile)."""

    async def script(conn: HostileConnection) -> None:
        server = conn.server
        task = asyncio.get_running_loop().create_task(server.serve_normally(conn, **options))
        try:
            await server.wait_for(lambda: conn.session is not None or conn.closed, timeout=10)
            if not conn.closed:
                result = fault(conn)
                if result is not None:
                    await result
            await conn.wait_closed(timeout=30)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return script


def before_identify(fault: Callable[[HostileConnection], Awaitable[None] | None]) -> Script:
    """HELLO, wait for IDENTIFY or RESUME, then ``fault``."""

    async def script(conn: HostileConnection) -> None:
        conn.send_hello(INTERVAL)
        while True:
            item = await conn.recv(10)
            if getattr(item, "op", None) in (2, 6) or not hasattr(item, "op"):
                break
        result = fault(conn)
        if result is not None:
            await result
        await conn.wait_closed(timeout=30)

    return script


def first(fault: Callable[[HostileConnection], Awaitable[None] | None]) -> Script:
    """``fault`` right after the handshake, before anything else."""

    async def script(conn: HostileConnection) -> None:
        conn.accept()
        result = fault(conn)
        if result is not None:
            await result
        await conn.wait_closed(timeout=30)

    return script


@contextlib.contextmanager
def cpu_share(limit: float = 0.2) -> Iterator[None]:
    """Clause 3: the process's CPU time over the wall time of the block stays under ``limit``."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    figure(f"cpu {cpu:.3f} s in {wall:.3f} s")
    assert cpu <= limit * wall + 0.02, f"clause 3: {cpu:.2f} s of CPU in {wall:.2f} s of waiting"


def figure(text: str) -> None:
    """With GATEWAY_HOSTILE_FIGURES=FILE, append what a case measured (for the notes)."""
    path = os.environ.get("GATEWAY_HOSTILE_FIGURES")
    if path:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        with open(path, "a") as out:
            out.write(f"{test}\t{text}\n")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


class Sampler:
    """Clauses 4 and 6: peak RSS growth over a baseline and the longest loop stall,
    sampled every 5 ms while the block runs.
    """

    def __init__(self) -> None:
        self.base = 0
        self.peak = 0
        self.lag = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Sampler:
        self.base = self.peak = rss()
        self._task = asyncio.get_running_loop().create_task(self._sample())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.peak = max(self.peak, rss())
        figure(f"rss +{self.growth / 2**20:.1f} MiB, longest loop stall {self.lag * 1000:.0f} ms")

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            self.lag = max(self.lag, loop.time() - before - 0.005)
            self.peak = max(self.peak, rss())

    @property
    def growth(self) -> int:
        return self.peak - self.base


def bad_dispatch(raw: bytes, how: str = "payload") -> Callable[[HostileConnection], None]:
    """A fault sending ``raw`` with ``$S`` replaced by the session's next sequence; the
    session logs a stand-in, so the numbered dispatches after it keep their own numbers.
    """

    def send(conn: HostileConnection) -> None:
        session = conn.session
        assert session is not None
        s = session.seq + 1
        session.log.append((s, {"op": 0, "t": "GUILD_DELETE", "s": s, "d": {"id": "0"}}))
        data = raw.replace(b"$S", str(s).encode())
        if how == "payload":  # compressed when the connection is
            conn.send_payload(data)
        elif how == "text":  # a text frame as it is
            conn.send_text(data)
        else:  # a fragmented text message, the invalid bytes in the second fragment
            conn.send_frame(OP_TEXT, data[:40], fin=False)
            conn.send_frame(OP_CONTINUATION, data[40:])

    return send


def never_hello(conn: HostileConnection) -> None:
    """Accept the websocket and say nothing."""


# ---- HELLO ------------------------------------------------------------------------------


@both_loops
async def test_hello_missing_reconnects_after_hello_timeout_without_spinning() -> None:
    async with hostile([first(never_hello)], hello_timeout=0.4) as run:
        with cpu_share():
            await run.until(lambda: run.server.connections[0].closed, timeout=3)
        conn = run.server.connections[0]
        assert conn.closed_at is not None and conn.closed_at - conn.opened_at < 0.4 + 1.0
        await run.live(timeout=5)


@both_loops
async def test_late_hello_within_the_timeout_is_accepted() -> None:
    async def late(conn: HostileConnection) -> None:
        conn.accept()
        await asyncio.sleep(0.3)  # the hostile timing itself, not a wait for a condition
        await conn.server.serve_normally(conn)

    async with hostile([late], hello_timeout=1.0) as run:
        await run.live(timeout=5)
        assert len(run.server.connections) == 1 and not run.errors


@both_loops
async def test_second_hello_is_a_typed_error_or_ignored_and_the_shard_heals() -> None:
    async with hostile([after_live(lambda conn: conn.send_hello(INTERVAL))]) as run:
        await run.live(timeout=5)
        await run.server.emit(3)
        # Either ignored (same session goes on) or a typed error and a resume: never wedged.
        await run.delivered(timeout=5)
        if run.errors:
            assert run.kinds()[0] is KIND.DESERIALIZING
            await run.live(2, timeout=5)
            assert run.server.resumes, "the session was kept: a RESUME, not a new IDENTIFY"
        await run.server.emit(3)
        await run.delivered(timeout=5)


BAD_INTERVALS = {
    "zero": b"0",
    "negative": b"-41250",
    "thousandth-ms": b"0.001",
    "2**64": str(2**64).encode(),
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "1e400": b"1e400",
    "string": b'"41250"',
    "bool": b"true",
    "null": b"null",
}


@both_loops
@pytest.mark.parametrize("value", list(BAD_INTERVALS), ids=list(BAD_INTERVALS))
async def test_malformed_hello_interval_is_a_typed_error_and_a_reconnect(value: str) -> None:
    raw = b'{"op":10,"s":null,"t":null,"d":{"heartbeat_interval":' + BAD_INTERVALS[value] + b"}}"

    async def bad_hello(conn: HostileConnection) -> None:
        conn.send_payload(raw)

    async with hostile([first(bad_hello)]) as run:
        error = await run.error(timeout=3)
        assert error.kind is KIND.DESERIALIZING
        await run.live(timeout=5)
        first_conn = run.server.connections[0]
        assert len(first_conn.heartbeats) <= 1, "clause 3: heartbeats on a bad interval"
        assert not first_conn.identifies, "no IDENTIFY on a connection whose HELLO was bad"


# ---- the opening handshake --------------------------------------------------------------


def respond(head: bytes) -> Script:
    async def script(conn: HostileConnection) -> None:
        conn.send_raw(head)
        await asyncio.sleep(0)

    return script


@both_loops
async def test_handshake_non_101_reconnects() -> None:
    head = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
    async with hostile([respond(head), respond(head)]) as run:
        await run.live(timeout=5)
        assert len(run.server.connections) == 3


@both_loops
async def test_handshake_bad_accept_key_reconnects() -> None:
    async def bad_accept(conn: HostileConnection) -> None:
        conn.accept(accept_key="not-the-right-key=")
        conn.send_hello(INTERVAL)
        await conn.wait_closed(timeout=5)

    async with hostile([bad_accept]) as run:
        await run.live(timeout=5)
        assert not run.server.connections[0].identifies, (
            "token sent to a server that failed the handshake"
        )


@both_loops
async def test_handshake_huge_head_is_refused_with_bounded_memory() -> None:
    async def huge(conn: HostileConnection) -> None:
        conn.send_raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")
        for _ in range(64):  # 8 MiB of header lines, never ending the head
            conn.send_raw(b"X-Pad: " + b"a" * (128 * 1024 - 9) + b"\r\n")
            await asyncio.sleep(0)

    async with hostile([huge]) as run, Sampler() as sampler:
        await run.live(timeout=5)
    assert sampler.growth < 32 << 20, f"clause 4: {sampler.growth >> 20} MiB"


@both_loops
async def test_handshake_slow_head_times_out_without_spinning() -> None:
    async def slow(conn: HostileConnection) -> None:
        for byte in b"HTTP/1.1 101 Switching Protocols\r\n":
            if conn.closed:
                return
            conn.send_raw(bytes([byte]))
            await asyncio.sleep(0.1)  # the hostile timing

    async with hostile([slow], connect_timeout=0.5) as run:
        with cpu_share():
            await run.until(lambda: run.server.connections[0].closed, timeout=3)
        await run.live(timeout=5)


# ---- framing ----------------------------------------------------------------------------

FRAMES: dict[str, Callable[[HostileConnection], None]] = {
    "reserved-bits": lambda c: c.send_frame(OP_TEXT, b'{"op":11}', rsv=4),
    "masked": lambda c: c.send_frame(OP_TEXT, b'{"op":11}', masked=True),
    "unknown-opcode": lambda c: c.send_frame(3, b"x"),
    "fragmented-control": lambda c: c.send_frame(OP_PING, b"x", fin=False),
    "control-over-125": lambda c: c.send_frame(OP_PING, b"x" * 126),
    "length-msb": lambda c: c.send_raw(b"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x10" + b"x" * 16),
    "continuation-first": lambda c: c.send_frame(OP_CONTINUATION, b"x"),
    "new-message-inside-fragmented": lambda c: c.send_raw(
        encode_frame(OP_BINARY, b"x", fin=False) + encode_frame(OP_BINARY, b"y")
    ),
}


@both_loops
@pytest.mark.parametrize("fault", list(FRAMES), ids=list(FRAMES))
async def test_framing_violation_fails_the_connection_with_1002_and_resumes(fault: str) -> None:
    async with hostile([after_live(FRAMES[fault])]) as run:
        await run.live(timeout=5)
        error = await run.error(timeout=3)
        assert error.kind is KIND.DESERIALIZING
        await run.until(lambda: run.server.connections[0].closed, timeout=3)
        close = run.server.connections[0].client_close
        assert close is not None and close.code == 1002, close
        await run.live(2, timeout=5)
        assert run.server.resumes and len(run.server.identifies) == 1
        assert error.close_code == 1002, "the error carries the FrameError's close code"


@both_loops
async def test_oversized_message_is_refused_with_1009_bounded_and_resumes() -> None:
    big = os.urandom(4 << 20)

    async with hostile([after_live(lambda c: c.send_frame(OP_BINARY, big))]) as run:
        await run.live(timeout=5)
        async with Sampler() as sampler:
            error = await run.error(timeout=5)
        assert error.kind is KIND.DESERIALIZING
        await run.live(2, timeout=5)
        close = run.server.connections[0].client_close
        assert close is not None and close.code == 1009, close
        assert run.server.resumes
    assert sampler.growth < 8 << 20, f"clause 4: {sampler.growth >> 20} MiB for a 1 MiB limit"
    assert error.close_code == 1009, "the error carries the FrameError's close code"


# ---- UTF-8 ------------------------------------------------------------------------------

BAD_UTF8 = b'{"op":0,"t":"MESSAGE_CREATE","s":$S,"d":{"content":"\xff\xfe"}}'


@both_loops
@pytest.mark.parametrize("mode", ["event", "message"])
async def test_invalid_utf8_text_frame_fails_with_1007_and_resumes(mode: str) -> None:
    async with hostile(
        [after_live(bad_dispatch(BAD_UTF8, "text"))], consume=mode, compression=None
    ) as run:
        await run.live(timeout=5)
        error = await run.error(timeout=3)
        assert error.kind is KIND.DESERIALIZING
        await run.until(lambda: run.server.connections[0].closed, timeout=3)
        close = run.server.connections[0].client_close
        assert close is not None and close.code == 1007, close
        await run.live(2, timeout=5)
        await run.server.emit(3)
        await run.delivered()


@both_loops
async def test_invalid_utf8_in_a_fragmented_text_message_fails_with_1007() -> None:
    async with hostile([after_live(bad_dispatch(BAD_UTF8, "fragments"))], compression=None) as run:
        await run.live(timeout=5)
        error = await run.error(timeout=3)
        assert error.kind is KIND.DESERIALIZING
        await run.until(lambda: run.server.connections[0].closed, timeout=3)
        close = run.server.connections[0].client_close
        assert close is not None and close.code == 1007, close
        await run.live(2, timeout=5)


@both_loops
@pytest.mark.parametrize("mode", ["event", "message"])
async def test_invalid_utf8_inside_a_compressed_payload_is_typed(mode: str) -> None:
    async with hostile([after_live(bad_dispatch(BAD_UTF8))], consume=mode) as run:
        await run.live(timeout=5)
        await run.error(timeout=3)
        await run.server.emit(3)
        await run.delivered(timeout=5)
        if len(run.server.connections) > 1:
            await run.live(2, timeout=5)


@both_loops
async def test_lone_surrogate_escape_is_typed_or_delivered_and_later_events_flow() -> None:
    surrogate = bad_dispatch(b'{"op":0,"t":"GUILD_DELETE","s":$S,"d":{"id":"\\ud800"}}')
    async with hostile([after_live(surrogate)]) as run:
        await run.live(timeout=5)
        await run.server.emit(5)
        await run.delivered(timeout=5)
        assert all(e.kind is KIND.DESERIALIZING for e in run.errors)
        for name, data in run.seen:  # what is delivered can be encoded again
            if name == "GUILD_DELETE":
                json.dumps(data).encode()


@both_loops
async def test_invalid_utf8_close_reason_does_not_wedge_the_shard() -> None:
    async with hostile([after_live(lambda c: c.send_close(4000, b"\xff" * 60))]) as run:
        await run.live(timeout=5)
        await run.until(lambda: len(run.server.connections) >= 2, timeout=3)
        await run.live(2, timeout=5)
        assert run.server.resumes, "4000 keeps the session: RESUME"
        await run.server.emit(3)
        await run.delivered()


# ---- compression ------------------------------------------------------------------------


def raw_deflate(data: bytes) -> bytes:
    """Raw deflate blocks ending at a sync point: valid at any sync point of a zlib-stream."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    return co.compress(data) + co.flush(zlib.Z_SYNC_FLUSH)


@both_loops
@pytest.mark.parametrize("compression", ["zlib-stream", "zstd-stream"])
async def test_corrupt_compression_is_a_compression_error_and_a_resume(compression: str) -> None:
    async with hostile([after_live(lambda c: c.send_corrupt())], compression=compression) as run:
        await run.live(timeout=5)
        await run.error(KIND.COMPRESSION, timeout=3)
        await run.live(2, timeout=5)
        assert run.server.resumes and len(run.server.identifies) == 1
        await run.server.emit(3)
        await run.delivered()


@both_loops
async def test_missing_zlib_suffix_flood_is_bounded_and_heals() -> None:
    # The cap (Config.max_message_size, 64 MiB, also caps the compressed bytes of one
    # zlib-stream payload) made small for a quick test.
    chunk = os.urandom(512 * 1024)  # never ends with 00 00 ff ff

    async def flood(conn: HostileConnection) -> None:
        for _ in range(48):  # 24 MiB for one message that never completes
            if conn.closed:
                return
            conn.send_frame(OP_BINARY, chunk)
            await asyncio.sleep(0.002)  # paced: the server's own buffer stays small

    async with hostile([after_live(flood)], max_message_size=2 << 20) as run:
        await run.live(timeout=5)
        async with Sampler() as sampler:
            await run.error(KIND.COMPRESSION, timeout=5)
        await run.live(2, timeout=5)
    assert sampler.growth < 12 << 20, (
        f"clause 4: {sampler.growth >> 20} MiB of compressed input held"
    )


@both_loops
@pytest.mark.parametrize("compression", ["zlib-stream", "zstd-stream"])
async def test_decompression_bomb_is_capped_while_inflating(compression: str) -> None:
    zeros = bytes(64 << 20)
    if compression == "zlib-stream":
        bomb = raw_deflate(zeros)

        def fire(conn: HostileConnection) -> None:
            conn.send_frame(OP_BINARY, bomb)

        script = after_live(fire)
    else:
        zstandard = pytest.importorskip("zstandard")
        c = zstandard.ZstdCompressor().compressobj()
        bomb = c.compress(zeros) + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

        def fire(conn: HostileConnection) -> None:  # the first message: the frame's start
            conn.send_frame(OP_BINARY, bomb)

        script = first(fire)
    del zeros
    async with hostile([script], compression=compression) as run, Sampler() as sampler:
        await run.error(KIND.COMPRESSION, timeout=5)
        await run.live(timeout=5)
    assert sampler.growth < 16 << 20, f"clause 4: {sampler.growth >> 20} MiB for a 1 MiB cap"
    assert sampler.lag < 0.1 + 0.05, f"clause 6: the loop stalled {sampler.lag * 1000:.0f} ms"


# ---- close frames -----------------------------------------------------------------------


@both_loops
@pytest.mark.parametrize("code", FATAL)
async def test_fatal_close_code_stops_the_shard_for_good(code: int) -> None:
    async with hostile([after_live(lambda c: c.send_close(code, b"fatal"))]) as run:
        error = await run.error(KIND.FATALLY_CLOSED, timeout=5)
        assert error.close_code == code and error.is_fatal()
        assert run.shard.state is ShardState.FATALLY_CLOSED
        with pytest.raises(TimeoutError):  # no reconnect, ever
            await run.server.wait_for(lambda: len(run.server.connections) > 1, timeout=0.3)


@both_loops
@pytest.mark.parametrize("code", [4007, 4009])
async def test_invalid_seq_or_session_timeout_identifies_anew(code: int) -> None:
    async with hostile([after_live(lambda c: c.send_close(code))]) as run:
        await run.live(timeout=5)
        await run.live(2, timeout=5)
        second = run.server.connections[1]
        assert second.identifies and not second.resumes
        assert KIND.FATALLY_CLOSED not in run.kinds()


@both_loops
@pytest.mark.parametrize("code", [1000, 1001, 4000, 4003, 4008])
async def test_resumable_close_from_the_server_resumes(code: int) -> None:
    async with hostile([after_live(lambda c: c.send_close(code))]) as run:
        await run.live(timeout=5)
        await run.server.emit(2)
        await run.live(2, timeout=5)
        second = run.server.connections[1]
        assert second.resumes and not second.identifies
        await run.server.emit(2)
        await run.delivered()


@both_loops
@pytest.mark.parametrize(
    "payload",
    [b"\x03", b"\x03\xed", b"\x03\xee", b"\x03\xe7", b"\x13\x88"],
    ids=["one-byte", "1005", "1006", "999", "5000"],
)
async def test_invalid_close_payload_fails_with_1002_and_resumes(payload: bytes) -> None:
    async with hostile([after_live(lambda c: c.send_close(None, payload))]) as run:
        await run.live(timeout=5)
        await run.until(lambda: run.server.connections[0].closed, timeout=3)
        close = run.server.connections[0].client_close
        assert close is not None and close.code == 1002, close
        await run.live(2, timeout=5)
        assert run.server.resumes
        assert KIND.FATALLY_CLOSED not in run.kinds()


@both_loops
async def test_close_with_a_123_byte_reason_resumes() -> None:
    async with hostile([after_live(lambda c: c.send_close(4000, b"r" * 123))]) as run:
        await run.live(timeout=5)
        await run.live(2, timeout=5)
        assert run.server.resumes


# ---- TCP resets and half-open peers -----------------------------------------------------


@both_loops
async def test_reset_in_the_middle_of_ready_identifies_again() -> None:
    async def half_ready(conn: HostileConnection) -> None:
        conn.send_hello(INTERVAL)
        await conn.expect_op(2)
        ready = {
            "op": 0,
            "t": "READY",
            "s": 1,
            "d": {"session_id": "x" * 16, "v": 10, "guilds": []},
        }
        frame = encode_frame(OP_BINARY, conn.compress(json.dumps(ready).encode()))
        conn.send_raw(frame[: len(frame) // 2])
        await asyncio.sleep(0.05)  # the hostile timing
        conn.drop()

    async with hostile([half_ready]) as run:
        await run.live(timeout=5)
        assert run.server.connections[1].identifies


@both_loops
async def test_reset_in_the_middle_of_a_frame_resumes_and_loses_nothing() -> None:
    async def half_frame(conn: HostileConnection) -> None:
        await conn.server.emit(3)
        frame = encode_frame(
            OP_BINARY, conn.compress(b'{"op":0,"t":"MESSAGE_CREATE","s":99,"d":{}}')
        )
        conn.send_raw(frame[:5])
        conn.drop()

    async with hostile([after_live(half_frame)]) as run:
        await run.live(timeout=5)
        await run.until(lambda: len(run.server.connections) >= 2, timeout=3)
        await run.server.emit(3)
        await run.delivered(timeout=5)
        assert run.server.resumes


@both_loops
async def test_half_close_after_ready_resumes() -> None:
    async with hostile([after_live(lambda c: c.half_close())]) as run:
        await run.live(timeout=5)
        await run.live(2, timeout=5)
        assert run.server.resumes


@both_loops
async def test_resume_url_that_never_says_hello_falls_back_to_the_gateway_url() -> None:
    trap = HostileServer([], first(never_hello))
    await trap.start()
    try:
        server = HostileServer([after_live(lambda c: c.drop())], heartbeat_interval=INTERVAL)
        server.resume_url = trap.url
        async with hostile(server=server, hello_timeout=0.3) as run:
            await run.live(timeout=5)
            with cpu_share(0.3):
                await run.live(2, timeout=10)
            assert len(run.server.connections) >= 2
            later = run.server.connections[1]
            assert later.resumes or later.identifies
    finally:
        await trap.stop()


# ---- ping floods ------------------------------------------------------------------------


@both_loops
async def test_ping_flood_to_a_peer_that_never_reads_is_bounded_and_ends() -> None:
    async def flood(conn: HostileConnection) -> None:
        conn.stop_reading()
        await conn.flood_pings(200_000, b"p" * 125)  # 25 MiB of pongs asked for

    server = HostileServer([after_live(flood)], heartbeat_interval=1000)
    async with hostile(server=server) as run:
        await run.live(timeout=5)
        async with Sampler() as sampler:
            await run.live(2, timeout=15)
    assert sampler.growth < 16 << 20, f"clause 4: {sampler.growth >> 20} MiB of pongs held"


# ---- JSON edge cases --------------------------------------------------------------------

NOT_ENVELOPES = {
    "string": b'"hello"',
    "array": b"[1,2,3]",
    "number": b"42",
    "null": b"null",
    "not-json": b"{op:0,",
    "op-missing": b'{"t":null,"s":null,"d":null}',
    "op-string": b'{"op":"11","d":null}',
    "op-huge": b'{"op":100000000000000000000000000000,"d":null}',
    "s-huge": b'{"op":0,"t":"GUILD_DELETE","s":1e400,"d":{"id":"1"}}',
    "s-bigint": b'{"op":0,"t":"GUILD_DELETE","s":' + b"9" * 400 + b',"d":{"id":"1"}}',
    "invalid-session-d-string": b'{"op":9,"d":"yes"}',
    "deep-nesting": b'{"op":0,"t":"GUILD_DELETE","s":$S,"d":'
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}",
}


@both_loops
@pytest.mark.parametrize("payload", list(NOT_ENVELOPES), ids=list(NOT_ENVELOPES))
async def test_malformed_payload_is_typed_and_the_session_heals(payload: str) -> None:
    async with hostile([after_live(bad_dispatch(NOT_ENVELOPES[payload]))]) as run:
        await run.live(timeout=5)
        await run.server.emit(3)
        await run.delivered(timeout=5)
        assert all(e.kind is KIND.DESERIALIZING for e in run.errors), run.errors
        await run.until(lambda: run.shard.state is ShardState.ACTIVE, timeout=5)


@both_loops
async def test_deep_nesting_under_the_stdlib_json_backend_is_typed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stdlib = gateway.codec.decoder("json")
    monkeypatch.setattr(gateway.codec, "loads", stdlib)
    monkeypatch.setattr(gateway.codec, "fast_loads", stdlib)
    deep = b'{"op":0,"t":"MESSAGE_CREATE","s":$S,"d":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    async with hostile([after_live(bad_dispatch(deep))]) as run:
        await run.live(timeout=5)
        await run.error(KIND.DESERIALIZING, timeout=5)
        await run.server.emit(3)
        await run.delivered(timeout=5)


DUPLICATES = {
    "t": b'{"op":0,"t":"GUILD_DELETE","s":2,"t":"MESSAGE_CREATE","d":{"n":1}}',
    "s": b'{"op":0,"t":"MESSAGE_CREATE","s":2,"s":2,"d":{"n":1}}',
    "op": b'{"op":0,"t":"MESSAGE_CREATE","s":2,"op":7,"d":{"n":1}}',
}


@both_loops
@pytest.mark.parametrize("key", list(DUPLICATES), ids=list(DUPLICATES))
async def test_duplicate_envelope_keys_are_consistent_or_bad_data(key: str) -> None:
    async def dup(conn: HostileConnection) -> None:
        assert conn.session is not None
        conn.session.log.append((2, {"op": 0, "t": "MESSAGE_CREATE", "s": 2, "d": {"n": 1}}))
        conn.server.emitted = 1
        conn.send_payload(DUPLICATES[key])

    async with hostile([after_live(dup)]) as run:
        await run.live(timeout=5)
        await run.server.emit(3)
        # d.n = 1 went out once, as a dispatch with two readings: whichever the shard takes,
        # it is delivered at most once, typed, and the events after it once and in order.
        await run.until(lambda: len(run.numbers) >= 3 and run.numbers[-1] == 4, timeout=5)
        numbers = run.numbers
        assert numbers in ([1, 2, 3, 4], [2, 3, 4]), numbers
        for name, data in run.seen:
            if isinstance(data, dict) and data.get("n") == 1:
                assert name in ("MESSAGE_CREATE", "GUILD_DELETE")
        assert all(e.kind is KIND.DESERIALIZING for e in run.errors)
        run.server.emitted = max(numbers)  # for the common check: the prefix starts where it did
        if numbers[0] == 2:
            run.seen.insert(0, ("MESSAGE_CREATE", {"n": 1}))


# ---- READY contents ---------------------------------------------------------------------

READY_FAULTS = {
    "no-session-id": {"session_id": None},
    "session-id-number": {"session_id": 42},
    "resume-url-number": {"resume_gateway_url": 123},
    "resume-url-not-ws": {"resume_gateway_url": "ftp://127.0.0.1:1"},
}


@both_loops
@pytest.mark.parametrize("fault", list(READY_FAULTS), ids=list(READY_FAULTS))
async def test_bad_ready_is_never_used_to_resume(fault: str) -> None:
    bad_ready = after_live(lambda c: c.drop(), ready=READY_FAULTS[fault])
    async with hostile([bad_ready]) as run:
        await run.until(lambda: len(run.server.connections) >= 2, timeout=5)
        await run.live(timeout=5)
        for conn in run.server.connections:
            for resume in conn.resumes:
                assert isinstance(resume.d["session_id"], str) and resume.d["session_id"], resume


@both_loops
async def test_resume_url_that_downgrades_wss_to_ws_is_refused(certs: Any) -> None:
    trap = HostileServer([], first(never_hello))
    await trap.start()
    try:
        server = HostileServer(
            [after_live(lambda c: c.drop())], ssl=certs.server, heartbeat_interval=INTERVAL
        )
        server.resume_url = trap.url  # ws:// while the gateway is wss://
        async with hostile(server=server, ssl=certs.client) as run:
            await run.live(timeout=5)
            await run.live(2, timeout=5)
            assert not trap.connections, "the token would have travelled in clear"
            assert run.server.resumes
    finally:
        await trap.stop()


# ---- storms -----------------------------------------------------------------------------


def storm(n: int, fault: Callable[[HostileConnection], None]) -> list[Script]:
    async def hit(conn: HostileConnection) -> None:
        await conn.server.emit(2)
        await asyncio.sleep(0.05)  # the hostile timing: a little session, then the fault
        fault(conn)

    return [after_live(hit) for _ in range(n)]


@both_loops
@pytest.mark.parametrize(
    "fault",
    [lambda c: c.send_op(7), lambda c: c.send_op(9, True)],
    ids=["op7", "op9-true"],
)
async def test_reconnect_storm_is_prompt_floored_and_does_not_escalate(
    fault: Callable[[HostileConnection], None],
) -> None:
    floor = 0.2
    async with hostile(storm(6, fault), min_reconnect_interval=floor) as run:
        await run.until(lambda: len(run.server.connections) >= 7, timeout=15)
        await run.live(7, timeout=5)
        await run.server.emit(2)
        await run.delivered(timeout=5)
        opened = [c.opened_at for c in run.server.connections[:7]]
        gaps = [b - a for a, b in itertools.pairwise(opened)]
        # Each hit is ~0.05 s after RESUMED: a prompt reconnect makes every gap about the
        # floor plus the session's own time; a doubling backoff would make them grow.
        assert all(g >= floor - 0.02 for g in gaps), f"hammering: {gaps}"
        assert max(gaps) < floor + 1.0, f"escalating backoff: {gaps}"
        assert len(run.server.identifies) == 1, "every server-asked reconnect resumes"


@both_loops
async def test_identify_after_op9_false_waits_1_to_5_s_across_a_reconnect_without_spinning() -> (
    None
):
    async def invalidate_then_close(conn: HostileConnection) -> None:
        conn.send_op(9, False)
        await asyncio.sleep(0.05)  # the hostile timing: close 50 ms after op 9
        conn.send_close(4000)

    async with hostile([after_live(invalidate_then_close)], rng=lambda: 0.0) as run:
        await run.live(timeout=5)
        await run.until(lambda: run.server.connections[0].closed, timeout=3)
        with cpu_share():
            await run.until(lambda: len(run.server.identifies) >= 2, timeout=8)
        op9_at = (
            run.server.connections[0].received[-1].time
            if run.server.connections[0].received
            else 0.0
        )
        invalidated = max(op9_at, run.server.connections[0].opened_at)
        second = run.server.identifies[1].time
        assert second - invalidated >= 1.0 - 0.1, (
            f"IDENTIFY {second - invalidated:.2f} s after op 9"
        )
        assert second - invalidated <= 5.0 + 1.5
        await run.live(2, timeout=5)


# ---- sequence, RESUME, zombie -----------------------------------------------------------


@both_loops
async def test_sequence_going_backwards_is_not_taken() -> None:
    async def backwards(conn: HostileConnection) -> None:
        await conn.server.emit(8)  # s = 2..9
        conn.send_dispatch("MESSAGE_CREATE", {"n": -1, "stale": True}, s=6)
        await asyncio.sleep(0.05)
        conn.drop()

    async with hostile([after_live(backwards)]) as run:
        await run.live(timeout=5)
        await run.until(lambda: run.server.resumes, timeout=5)
        assert run.server.resumes[0].d["seq"] == 9
        await run.live(2, timeout=5)
        await run.server.emit(2)
        await run.until(lambda: len([n for n in run.numbers if n > 0]) >= 10, timeout=5)
        assert [n for n in run.numbers if n > 0] == list(range(1, 11))
        run.seen = [
            (name, d) for name, d in run.seen if not (isinstance(d, dict) and d.get("n") == -1)
        ]


@both_loops
async def test_resume_ignored_by_a_server_that_acks_times_out_and_reconnects() -> None:
    async with hostile(
        [after_live(lambda c: c.drop()), normal(resume=False)], ready_timeout=0.5
    ) as run:
        await run.live(timeout=5)
        await run.until(
            lambda: len(run.server.connections) >= 2 and run.server.connections[1].resumes,
            timeout=5,
        )
        ignored = run.server.connections[1]
        await run.live(2, timeout=5)
        assert ignored.closed_at is not None
        assert ignored.closed_at - ignored.resumes[0].time < 0.5 + 1.0


@both_loops
async def test_zombie_reconnects_at_once_without_waiting_for_a_close_echo() -> None:
    def deaf(conn: HostileConnection) -> None:
        conn.echo_close = False  # a dead peer: no ACK, no echo

    async with hostile([after_live(deaf, ack=False)], rng=lambda: 0.0) as run:
        await run.live(timeout=5)
        await run.until(lambda: len(run.server.connections) >= 2, timeout=5)
        zombie = run.server.connections[0]
        close = zombie.client_close
        assert close is not None and close.code not in (1000, 1001), close
        verdict = close.time
        assert run.server.connections[1].opened_at - verdict < 1.0, "waited for a close echo"
        await run.live(2, timeout=5)
        assert run.server.resumes


# ---- reconnect cycles and a consumer that is behind ---------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@both_loops
async def test_thirty_reconnect_cycles_leak_no_fd_task_or_memory() -> None:
    cycles = 30
    scripts = [after_live(lambda c: c.drop()) for _ in range(cycles)]
    async with hostile(scripts, min_reconnect_interval=0.05) as run:
        await run.live(timeout=5)
        await run.until(lambda: run.server.connections[0].closed, timeout=3)
        await run.until(
            lambda: len(run.server.connections) >= 2 and run.server.connections[1].session,
            timeout=5,
        )
        fds, tasks, memory = open_fds(), len(asyncio.all_tasks()), rss()
        await run.until(lambda: len(run.server.connections) > cycles, timeout=30)
        await run.live(cycles + 1, timeout=5)
        await run.until(lambda: run.server.connections[cycles].session is not None, timeout=5)
        await run.server.emit(5)
        await run.delivered()
        assert open_fds() <= fds + 1, f"fds {fds} -> {open_fds()}"
        assert len(asyncio.all_tasks()) <= tasks + 1, f"tasks {tasks} -> {len(asyncio.all_tasks())}"
        assert rss() - memory < 8 << 20
        assert len(run.server.identifies) == 1


@both_loops
async def test_a_consumer_that_is_behind_keeps_its_session_across_a_reconnect() -> None:
    async def fill_then_drop(conn: HostileConnection) -> None:
        for _ in range(60):  # 60 KiB+ held: past the 16 KiB high-water mark
            conn.server.session.dispatch("GUILD_DELETE", {"id": "1", "pad": "x" * 1024})  # type: ignore[union-attr]
            await asyncio.sleep(0)
        await conn.server.emit(3)
        await asyncio.sleep(0.1)
        conn.drop()

    async with hostile(
        [after_live(fill_then_drop)], consume=None, read_high_water=16 * 1024
    ) as run:
        await run.until(lambda: len(run.server.connections) >= 2, timeout=5)
        second = run.server.connections[1]
        # Nobody consumes: HELLO must still be processed, heartbeats sent, RESUME sent.
        await run.until(lambda: second.resumes and len(second.heartbeats) >= 2, timeout=5)
        assert not run.server.identifies[1:], "the session was lost"
        await run.server.emit(3)
        run.start()
        await run.delivered(timeout=10)
        assert run.shard.state is ShardState.ACTIVE

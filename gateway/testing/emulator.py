"""A faithful local Discord gateway: a real websocket server on loopback.

Implements the server side of protocol.md sections 1-5, 7, 8 and 11: HELLO, heartbeats,
IDENTIFY/RESUME validation, READY and the GUILD_CREATE burst, sequencing and replay,
every protocol violation closed with Discord's code, identify concurrency and the daily
session-start budget, the three compression modes, generated or scripted traffic, fault
injection, and a record of everything for assertions::

    async with GatewayEmulator(heartbeat_interval=0.5) as emulator:
        shard = Shard(ShardId.ONE, "token", intents, gateway_url=emulator.url)
        ...
        await emulator.wait_for(lambda: emulator.identifies, timeout=5)
        assert not emulator.violations

Time is a parameter (heartbeat interval, identify window, session TTL), never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from ssl import SSLContext
from typing import Any
from urllib.parse import parse_qs, urlsplit

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ..events import INTENT_EVENTS, EventType
from ..intents import Intents
from ..transport import QuietLogger
from .corpus import Corpus, CorpusEvent, guild_ids, guild_payload, load_payload, make_event
from .firehose import Firehose
from .firehose import build as build_firehose

__all__ = [
    "GatewayEmulator",
    "EmulatedConnection",
    "EmulatedSession",
    "Record",
    "Violation",
]

log = logging.getLogger(__name__)

VALID_INTENTS_MASK = 53608447
PRIVILEGED_MASK = 33026
#: After op 9 ``d: false`` a client waits a random 1-5 s before it IDENTIFYs again
#: (protocol.md 8): the identify timeout restarts after this much.
INVALID_SESSION_WAIT = 5.0
_SEND_OPS = {1, 2, 3, 4, 6, 8, 31, 43}
_AUTHENTICATED_OPS = {3, 4, 8, 31, 43}
_TRACE = ['["gateway-emulator",{"micros":0.0}]']


@dataclass(frozen=True, slots=True)
class Record:
    """One thing that happened: ``kind`` is received, identify, resume, close, violation..."""

    time: float
    connection: int
    kind: str
    data: Any = None


@dataclass(frozen=True, slots=True)
class Violation:
    """A protocol rule the client broke, and the close code the emulator answered with."""

    connection: int
    code: int
    reason: str


@dataclass(eq=False)
class EmulatedSession:
    """Server-side session state: kept across connections until destroyed or expired."""

    session_id: str
    token: str
    shard: tuple[int, int]
    intents: int
    guilds: list[int]
    seq: int = 0
    #: Every dispatch still replayable: (seq, encoded payload).
    buffer: deque[tuple[int, bytes]] = field(default_factory=deque)
    #: Sequence numbers written to a socket, in order (replays included).
    delivered: list[int] = field(default_factory=list)
    connection: EmulatedConnection | None = None
    detached_at: float | None = None
    overflowed: bool = False
    destroyed: bool = False


class EmulatedConnection:
    """One client connection: its state, its compression, and the fault-injection hooks."""

    def __init__(self, emulator: GatewayEmulator, ws: ServerConnection, number: int) -> None:
        self.emulator = emulator
        self.ws = ws
        self.number = number
        self.path = ""
        self.compress: str | None = None
        self.payload_compression = False
        self.session: EmulatedSession | None = None
        self.state = "ACCEPTED"  # AWAIT_AUTH, LIVE, CLOSED
        self.ack_heartbeats = emulator.ack_heartbeats
        self.heartbeats: list[Any] = []
        self.last_heartbeat = time.monotonic()
        # IDENTIFY or RESUME is due by then (None: identify_timeout after the connection
        # opened); op 9 false moves it past the wait the client is told to make.
        self.auth_due: float | None = None
        self.close_code: int | None = None
        self.closed_by: str | None = None
        self._received: deque[float] = deque()
        self._zlib: Any = None
        self._zstd: Any = None
        self._send_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    # ---- sending --------------------------------------------------------------------------

    def _compress(self, payload: bytes) -> list[bytes | str]:
        if self.compress == "zlib-stream":
            data = self._zlib.compress(payload) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
            parts = self.emulator.split_frames
            if parts > 1 and len(data) >= parts:
                step = -(-len(data) // parts)
                return [data[i : i + step] for i in range(0, len(data), step)]
            return [data]
        if self.compress == "zstd-stream":
            return [self._zstd_frame(payload)]
        if self.payload_compression and len(payload) >= self.emulator.payload_compression_min:
            return [zlib.compress(payload)]
        return [payload.decode()]

    def _zstd_frame(self, payload: bytes) -> bytes:
        import zstandard

        if self._zstd is None:
            self._zstd = zstandard.ZstdCompressor().compressobj()
        frame: bytes = self._zstd.compress(payload) + self._zstd.flush(
            zstandard.COMPRESSOBJ_FLUSH_BLOCK
        )
        return frame

    async def send_payload(self, payload: bytes) -> None:
        """Send one gateway payload (JSON bytes), compressed as this connection asked."""
        async with self._send_lock:
            for frame in self._compress(payload):
                await self.ws.send(frame)

    async def send_op(self, op: int, d: Any = None) -> None:
        """Send a non-dispatch payload in Discord's key order."""
        if op == 9 and d is False:
            wait = INVALID_SESSION_WAIT + self.emulator.identify_timeout
            self.auth_due = time.monotonic() + wait
        await self.send_payload(_envelope(None, None, op, json.dumps(d).encode()))

    async def send_raw(self, frame: bytes | str) -> None:
        """Send a frame as is, bypassing compression (for corrupt-data faults)."""
        async with self._send_lock:
            await self.ws.send(frame)

    # ---- faults ---------------------------------------------------------------------------

    async def reconnect(self) -> None:
        """Send op 7 Reconnect."""
        await self.send_op(7)

    async def invalidate_session(self, resumable: bool) -> None:
        """Send op 9 with ``d = resumable``; not resumable also forgets the session."""
        if not resumable and self.session is not None:
            self.emulator._destroy(self.session)
            self.session.connection = None
            self.session = None
            self.state = "AWAIT_AUTH"  # the client may IDENTIFY again on this connection
        await self.send_op(9, resumable)

    async def request_heartbeat(self) -> None:
        """Send op 1: the client must heartbeat at once."""
        await self.send_op(1)

    async def close(self, code: int = 4000, reason: str = "") -> None:
        """Close with ``code``; the session stays resumable unless the code ends it."""
        self.emulator._server_closing(self, code)
        await self.ws.close(code, reason)

    def drop(self) -> None:
        """Drop TCP without a close frame; the session stays resumable."""
        self.emulator._server_closing(self, None)
        self.ws.transport.abort()

    async def send_corrupt_zlib(self) -> None:
        """Send bytes that are not a continuation of the zlib stream."""
        await self.send_raw(b"\x00\x01garbage-not-deflate\x00\x00\xff\xff")

    async def send_invalid_json(self) -> None:
        """Send a payload that is not JSON, compressed like any other."""
        await self.send_payload(b'{"t":null,"s":null,"op":')


def _envelope(t: str | None, s: int | None, op: int, d: bytes) -> bytes:
    """A payload in the key order real traffic uses: ``t``, ``s``, ``op``, ``d``."""
    t_part = b"null" if t is None else b'"' + t.encode() + b'"'
    s_part = b"null" if s is None else str(s).encode()
    return (
        b'{"t":' + t_part + b',"s":' + s_part + b',"op":' + str(op).encode() + b',"d":' + d + b"}"
    )


class GatewayEmulator:
    """A local Discord gateway (websocket + the two HTTP discovery routes) on loopback.

    Use as an async context manager; :attr:`url` is the gateway URL to give a client and
    :attr:`api_url` the HTTP API base. Every option has Discord's value as default except
    where a test needs another. Times are in seconds.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Iterable[str] | None = None,
        heartbeat_interval: float = 41.25,
        heartbeat_grace: float = 10.0,
        heartbeat_timeout_code: int | None = 4000,
        identify_timeout: float | None = None,
        identify_window: float = 5.0,
        max_concurrency: int = 1,
        session_start_total: int = 1000,
        session_start_remaining: int | None = None,
        session_start_reset_after: float = 86400.0,
        session_ttl: float = 180.0,
        replay_buffer_max: int = 100_000,
        guilds: int = 2,
        shards: int = 1,
        max_guilds_per_shard: int = 2500,
        allowed_privileged: int = PRIVILEGED_MASK,
        valid_intents: int = VALID_INTENTS_MASK,
        send_limit: int = 120,
        send_window: float = 60.0,
        max_payload_size: int = 4096,
        events_per_second: float | None = None,
        total_events: int | None = None,
        large_every: int = 0,
        unknown_every: int = 0,
        seed: int = 0,
        split_frames: int = 1,
        payload_compression_min: int = 512,
        ack_heartbeats: bool = True,
        guild_create_delay: float = 0.0,
        unavailable_guilds: Iterable[int] = (),
        drop_guild_creates: bool = False,
        on_connect: Callable[[EmulatedConnection], Awaitable[None]] | None = None,
        firehose: bool = False,
        mix: str = "default",
        ssl: SSLContext | None = None,
        stamp: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.tokens = set(tokens) if tokens is not None else None
        self.revoked_tokens: set[str] = set()
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_grace = heartbeat_grace
        self.heartbeat_timeout_code = heartbeat_timeout_code
        self.identify_timeout = heartbeat_interval if identify_timeout is None else identify_timeout
        self.identify_window = identify_window
        self.max_concurrency = max_concurrency
        self.session_start_total = session_start_total
        self.session_start_remaining = (
            session_start_total if session_start_remaining is None else session_start_remaining
        )
        self.session_start_reset_after = session_start_reset_after
        self.session_ttl = session_ttl
        self.replay_buffer_max = replay_buffer_max
        self.guild_ids = guild_ids(guilds, seed=seed)
        self.recommended_shards = shards
        self.max_guilds_per_shard = max_guilds_per_shard
        self.allowed_privileged = allowed_privileged
        self.valid_intents = valid_intents
        self.send_limit = send_limit
        self.send_window = send_window
        self.max_payload_size = max_payload_size
        self.events_per_second = events_per_second
        self.total_events = total_events
        self.large_every = large_every
        self.unknown_every = unknown_every
        self.seed = seed
        self.split_frames = split_frames
        self.payload_compression_min = payload_compression_min
        self.ack_heartbeats = ack_heartbeats
        self.guild_create_delay = guild_create_delay
        self.unavailable_guilds = set(unavailable_guilds)
        self.drop_guild_creates = drop_guild_creates
        self.on_connect = on_connect
        self.firehose = firehose
        self.mix = mix
        self.ssl = ssl
        #: Every dispatch's ``d`` (an object) starts with ``"sent_at"``: this process's
        #: ``time.monotonic()`` when it was sent. For latency benchmarks on one machine
        #: (Linux's monotonic clock is one clock for every process).
        self.stamp = stamp
        self._hoses: dict[tuple[Any, ...], Firehose] = {}

        self.sessions: dict[str, EmulatedSession] = {}
        self.connections: list[EmulatedConnection] = []
        self.records: list[Record] = []
        self.violations: list[Violation] = []
        self._bucket_last: dict[int, float] = {}
        self._started = time.monotonic()
        self._reset_at = self._started + session_start_reset_after
        self._counter = itertools.count(1)
        self._changed = asyncio.Event()
        self._server: Server | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> GatewayEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start listening (port 0 picks a free port; see :attr:`url`)."""
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            compression=None,
            max_size=None,
            ping_interval=None,
            close_timeout=2,
            server_header="gateway-emulator",
            ssl=self.ssl,
            logger=QuietLogger(logging.getLogger("gateway.testing.websockets")),
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]

    async def stop(self) -> None:
        """Close every connection (1001) and stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def serve_forever(self) -> None:
        """Serve until cancelled (for the command line)."""
        assert self._server is not None
        await self._server.serve_forever()

    @property
    def url(self) -> str:
        """The gateway URL, ``ws://127.0.0.1:PORT`` (``wss://`` with ``ssl``)."""
        return f"{self._ws_scheme}://{self.host}:{self.port}"

    @property
    def _ws_scheme(self) -> str:
        return "wss" if self.ssl is not None else "ws"

    @property
    def resume_url(self) -> str:
        """The URL READY gives as ``resume_gateway_url`` (a distinct path)."""
        return f"{self._ws_scheme}://{self.host}:{self.port}/resume"

    @property
    def api_url(self) -> str:
        """The HTTP API base, ``http://127.0.0.1:PORT/api/v10``."""
        scheme = "https" if self.ssl is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/api/v10"

    # ---- records ---------------------------------------------------------------------------

    def _record(self, connection: int, kind: str, data: Any = None) -> None:
        self.records.append(Record(time.monotonic(), connection, kind, data))
        self._changed.set()

    def records_of(self, kind: str) -> list[Record]:
        """Every record of one kind (``received``, ``identify``, ``resume``, ``close``...)."""
        return [r for r in self.records if r.kind == kind]

    @property
    def identifies(self) -> list[Record]:
        """Every IDENTIFY received (data: the identify ``d`` with the token removed)."""
        return self.records_of("identify")

    @property
    def resumes(self) -> list[Record]:
        """Every RESUME received (data: ``{"session_id", "seq", "path"}``)."""
        return self.records_of("resume")

    @property
    def closes(self) -> list[Record]:
        """Every closed connection (data: ``{"code", "by"}``; code None for a bare drop)."""
        return self.records_of("close")

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Wait until ``predicate()`` is truthy (checked on every change); return its value."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not (value := predicate()):
            self._changed.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return value

    def live_connections(self) -> list[EmulatedConnection]:
        """Connections whose session is established and not closed."""
        return [c for c in self.connections if c.state == "LIVE"]

    # ---- HTTP -------------------------------------------------------------------------------

    def _session_start_limit(self) -> dict[str, int]:
        now = time.monotonic()
        if now >= self._reset_at:
            self.session_start_remaining = self.session_start_total
            self._reset_at = now + self.session_start_reset_after
        return {
            "total": self.session_start_total,
            "remaining": self.session_start_remaining,
            "reset_after": int((self._reset_at - now) * 1000),
            "max_concurrency": self.max_concurrency,
        }

    def _token_ok(self, token: Any) -> bool:
        if not isinstance(token, str) or not token or token in self.revoked_tokens:
            return False
        return self.tokens is None or token in self.tokens

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path.rstrip("/")
        if path.startswith("/api/"):
            return self._http(path, request.headers)
        if path not in ("", "/resume"):
            return _json_response(HTTPStatus.NOT_FOUND, {"message": "404: Not Found", "code": 0})
        query = parse_qs(urlsplit(request.path).query)
        encoding = query.get("encoding", ["json"])[0]
        compress = query.get("compress", [None])[0]
        if encoding != "json" or compress not in (None, "zlib-stream", "zstd-stream"):
            return _json_response(HTTPStatus.BAD_REQUEST, {"message": "bad query", "code": 0})
        return None

    def _http(self, path: str, headers: Headers) -> Response:
        if path in ("/api/v10/gateway", "/api/v9/gateway"):
            return _json_response(HTTPStatus.OK, {"url": self.url})
        if path in ("/api/v10/gateway/bot", "/api/v9/gateway/bot"):
            auth = headers.get("Authorization", "")
            if not auth.startswith("Bot ") or not self._token_ok(auth[4:]):
                body = {"message": "401: Unauthorized", "code": 0}
                return _json_response(HTTPStatus.UNAUTHORIZED, body)
            body = {
                "url": self.url,
                "shards": self.recommended_shards,
                "session_start_limit": self._session_start_limit(),
            }
            return _json_response(HTTPStatus.OK, body)
        return _json_response(HTTPStatus.NOT_FOUND, {"message": "404: Not Found", "code": 0})

    # ---- websocket --------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        conn = EmulatedConnection(self, ws, next(self._counter))
        self.connections.append(conn)
        assert ws.request is not None
        split = urlsplit(ws.request.path)
        conn.path = split.path.rstrip("/") or "/"
        query = parse_qs(split.query)
        conn.compress = query.get("compress", [None])[0]
        if conn.compress == "zlib-stream":
            conn._zlib = zlib.compressobj()
        self._record(conn.number, "connect", {"path": conn.path, "query": split.query})
        try:
            if self.on_connect is not None:
                await self.on_connect(conn)
            if query.get("v", [None])[0] not in ("9", "10"):
                await self._violate(conn, 4012, "invalid API version")
                return
            await conn.send_payload(
                _envelope(
                    None,
                    None,
                    10,
                    _json(
                        {
                            "heartbeat_interval": int(self.heartbeat_interval * 1000),
                            "_trace": _TRACE,
                        }
                    ),
                )
            )
            conn.state = "AWAIT_AUTH"
            conn.last_heartbeat = time.monotonic()
            conn._tasks.append(asyncio.create_task(self._watchdog(conn)))
            async for message in ws:
                await self._on_message(conn, message)
        except websockets.ConnectionClosed:
            pass
        finally:
            self._on_closed(conn)

    async def _watchdog(self, conn: EmulatedConnection) -> None:
        """Heartbeat timeout and identify timeout."""
        opened = time.monotonic()
        limit = self.heartbeat_interval + self.heartbeat_grace
        while conn.state not in ("CLOSED",):
            now = time.monotonic()
            due = conn.auth_due if conn.auth_due is not None else opened + self.identify_timeout
            if conn.state == "AWAIT_AUTH" and conn.session is None and now > due:
                await self._violate(conn, 4003, "no IDENTIFY or RESUME in time")
                return
            if self.heartbeat_timeout_code is not None and now - conn.last_heartbeat > limit:
                self._record(conn.number, "heartbeat_timeout")
                await conn.close(self.heartbeat_timeout_code, "heartbeat timeout")
                return
            await asyncio.sleep(min(0.05, self.heartbeat_interval / 10))

    async def _violate(self, conn: EmulatedConnection, code: int, reason: str) -> None:
        self.violations.append(Violation(conn.number, code, reason))
        self._record(conn.number, "violation", {"code": code, "reason": reason})
        log.info("connection %d: %s -> close %d", conn.number, reason, code)
        await conn.close(code, reason)

    async def _on_message(self, conn: EmulatedConnection, message: str | bytes) -> None:
        now = time.monotonic()
        raw = message.encode() if isinstance(message, str) else message
        window = conn._received
        window.append(now)
        while window and now - window[0] > self.send_window:
            window.popleft()
        if len(window) > self.send_limit:
            await self._violate(conn, 4008, "more than 120 payloads in 60 s")
            return
        if len(raw) > self.max_payload_size:
            await self._violate(conn, 4002, f"payload of {len(raw)} bytes > 4096")
            return
        try:
            payload = json.loads(raw)
        except ValueError:
            await self._violate(conn, 4002, "payload is not valid JSON")
            return
        if not isinstance(payload, dict) or not isinstance(payload.get("op"), int):
            await self._violate(conn, 4001, "payload has no integer op")
            return
        op, d = payload["op"], payload.get("d")
        self._record(conn.number, "received", {"op": op, "d": _redact(op, d)})
        if op not in _SEND_OPS:
            await self._violate(conn, 4001, f"unknown opcode {op}")
        elif op == 1:
            await self._on_heartbeat(conn, d)
        elif op == 2:
            await self._on_identify(conn, d)
        elif op == 6:
            await self._on_resume(conn, d)
        elif conn.state != "LIVE":
            await self._violate(conn, 4003, f"op {op} before IDENTIFY/RESUME")
        else:
            await self._on_command(conn, op, d)

    async def _on_heartbeat(self, conn: EmulatedConnection, d: Any) -> None:
        if d is not None and (not isinstance(d, int) or isinstance(d, bool)):
            await self._violate(conn, 4001, "heartbeat d is not an integer or null")
            return
        conn.last_heartbeat = time.monotonic()
        conn.heartbeats.append(d)
        if conn.ack_heartbeats:
            await conn.send_op(11)

    # ---- identify / resume -----------------------------------------------------------------

    async def _on_identify(self, conn: EmulatedConnection, d: Any) -> None:
        if conn.session is not None:
            await self._violate(conn, 4005, "IDENTIFY on an authenticated connection")
            return
        if not isinstance(d, dict) or not isinstance(d.get("properties"), dict):
            await self._violate(conn, 4001, "malformed IDENTIFY")
            return
        self._record(conn.number, "identify", {k: v for k, v in d.items() if k != "token"})
        if not self._token_ok(d.get("token")):
            await self._violate(conn, 4004, "authentication failed")
            return
        threshold = d.get("large_threshold", 50)
        if not isinstance(threshold, int) or not 50 <= threshold <= 250:
            await self._violate(conn, 4001, "large_threshold outside 50-250")
            return
        shard = d.get("shard", [0, 1])
        if (
            not isinstance(shard, list)
            or len(shard) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in shard)
            or not 0 <= shard[0] < shard[1]
        ):
            await self._violate(conn, 4010, "invalid shard")
            return
        intents = d.get("intents")
        if (
            not isinstance(intents, int)
            or isinstance(intents, bool)
            or intents < 0
            or intents & ~self.valid_intents
        ):
            await self._violate(conn, 4013, "invalid intents")
            return
        if intents & PRIVILEGED_MASK & ~self.allowed_privileged:
            await self._violate(conn, 4014, "disallowed intents")
            return
        guilds = [g for g in self.guild_ids if (g >> 22) % shard[1] == shard[0]]
        if len(guilds) > self.max_guilds_per_shard:
            await self._violate(conn, 4011, "sharding required")
            return
        now = time.monotonic()
        bucket = shard[0] % self.max_concurrency if self.max_concurrency else 0
        last = self._bucket_last.get(bucket)
        if last is not None and now - last < self.identify_window:
            self.violations.append(
                Violation(conn.number, 0, f"identify concurrency (bucket {bucket})")
            )
            self._record(conn.number, "identify_ratelimited", {"bucket": bucket})
            await conn.send_op(9, False)
            return
        self._session_start_limit()
        if self.session_start_remaining <= 0:
            await self._budget_exhausted(conn, d["token"])
            return
        self.session_start_remaining -= 1
        self._bucket_last[bucket] = now
        session = EmulatedSession(
            session_id=secrets.token_hex(16),
            token=d["token"],
            shard=(shard[0], shard[1]),
            intents=intents,
            guilds=guilds,
        )
        self.sessions[session.session_id] = session
        conn.payload_compression = bool(d.get("compress")) and conn.compress is None
        self._attach(conn, session)
        ready = load_payload("ready")["d"]
        ready.update(
            session_id=session.session_id,
            resume_gateway_url=self.resume_url,
            shard=list(shard),
            guilds=[{"id": str(g), "unavailable": True} for g in guilds],
            _trace=_TRACE,
        )
        await self._dispatch(session, make_event("READY", ready))
        conn._tasks.append(asyncio.create_task(self._after_ready(conn, session)))

    async def _budget_exhausted(self, conn: EmulatedConnection, token: str) -> None:
        """Discord ends every session and resets the token (protocol.md 4.3)."""
        self.violations.append(Violation(conn.number, 4004, "daily session-start limit used up"))
        self._record(conn.number, "token_reset")
        self.revoked_tokens.add(token)
        for other in list(self.connections):
            if other.state != "CLOSED" and other is not conn:
                await other.close(4000, "session start limit")
        await conn.close(4004, "authentication failed")

    async def _after_ready(self, conn: EmulatedConnection, session: EmulatedSession) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            if session.intents & Intents.GUILDS and not self.drop_guild_creates:
                for guild in session.guilds:
                    if self.guild_create_delay:
                        await asyncio.sleep(self.guild_create_delay)
                    if guild in self.unavailable_guilds:
                        event = make_event("GUILD_DELETE", {"id": str(guild), "unavailable": True})
                    else:
                        event = make_event("GUILD_CREATE", guild_payload(guild))
                    await self._dispatch(session, event)
            if conn.session is session and conn.state == "LIVE":
                await self._traffic(conn, session)

    async def _on_resume(self, conn: EmulatedConnection, d: Any) -> None:
        if conn.session is not None:
            await self._violate(conn, 4005, "RESUME on an authenticated connection")
            return
        if (
            not isinstance(d, dict)
            or not isinstance(d.get("session_id"), str)
            or not isinstance(d.get("seq"), int | None)
        ):
            await self._violate(conn, 4001, "malformed RESUME")
            return
        seq = d.get("seq") or 0
        self._record(
            conn.number, "resume", {"session_id": d["session_id"], "seq": seq, "path": conn.path}
        )
        if not self._token_ok(d.get("token")):
            await self._violate(conn, 4004, "authentication failed")
            return
        session = self.sessions.get(d["session_id"])
        if session is not None and self._expired(session):
            self._destroy(session)
            session = None
        if session is None or session.token != d.get("token") or session.overflowed:
            self._record(conn.number, "resume_failed")
            await conn.send_op(9, False)
            return
        if seq > session.seq:
            await self._violate(conn, 4007, "invalid seq")
            self._destroy(session)
            return
        if session.connection is not None and session.connection is not conn:
            old = session.connection
            session.connection = None
            with contextlib.suppress(websockets.ConnectionClosed):
                await old.close(4000, "session resumed elsewhere")
        self._attach(conn, session)
        for s, payload in list(session.buffer):
            if s > seq:
                await conn.send_payload(payload)
                session.delivered.append(s)
        await self._dispatch(session, make_event("RESUMED", {"_trace": _TRACE}))
        conn._tasks.append(asyncio.create_task(self._traffic(conn, session)))

    def _attach(self, conn: EmulatedConnection, session: EmulatedSession) -> None:
        conn.session = session
        conn.state = "LIVE"
        session.connection = conn
        session.detached_at = None

    def _expired(self, session: EmulatedSession) -> bool:
        return session.destroyed or (
            session.detached_at is not None
            and time.monotonic() - session.detached_at > self.session_ttl
        )

    def _destroy(self, session: EmulatedSession) -> None:
        session.destroyed = True
        self.sessions.pop(session.session_id, None)

    def _server_closing(self, conn: EmulatedConnection, code: int | None) -> None:
        if conn.closed_by is None:
            conn.closed_by = "server"
            conn.close_code = code
            if (
                code is not None
                and conn.session is not None
                and (code in (4007, 4009) or 4010 <= code <= 4014 or code == 4004)
            ):
                self._destroy(conn.session)

    def _on_closed(self, conn: EmulatedConnection) -> None:
        if conn.state == "CLOSED":
            return
        conn.state = "CLOSED"
        for task in conn._tasks:
            task.cancel()
        if conn.closed_by is None:
            conn.closed_by = "client"
            rcvd = conn.ws.protocol.close_rcvd
            conn.close_code = rcvd.code if rcvd is not None else None
        session = conn.session
        if session is not None and session.connection is conn:
            session.connection = None
            session.detached_at = time.monotonic()
            if conn.closed_by == "client" and conn.close_code in (1000, 1001):
                self._destroy(session)
        self._record(conn.number, "close", {"code": conn.close_code, "by": conn.closed_by})

    # ---- commands --------------------------------------------------------------------------

    async def _on_command(self, conn: EmulatedConnection, op: int, d: Any) -> None:
        session = conn.session
        assert session is not None
        if not isinstance(d, dict):
            await self._violate(conn, 4001, f"op {op} without an object d")
            return
        self._record(conn.number, "command", {"op": op, "d": d})
        if op == 8:
            guild = d.get("guild_id")
            chunk = load_payload("guild_members_chunk")["d"]
            chunk["guild_id"] = str(guild)
            nonce = d.get("nonce")
            if isinstance(nonce, str) and len(nonce.encode()) <= 32:
                chunk["nonce"] = nonce
            else:
                chunk.pop("nonce", None)
            await self._dispatch(session, make_event("GUILD_MEMBERS_CHUNK", chunk))
        elif op == 4:
            voice = load_payload("voice_state_update")["d"]
            voice.update(guild_id=str(d.get("guild_id")), channel_id=d.get("channel_id"))
            await self._dispatch(session, make_event("VOICE_STATE_UPDATE", voice))

    # ---- dispatching -----------------------------------------------------------------------

    def _wants(self, session: EmulatedSession, name: str, guild: int | None) -> bool:
        """Whether ``session`` receives event ``name`` (routing by shard and intent)."""
        shard, total = session.shard
        if guild is None:
            if shard != 0:
                return False
        elif (guild >> 22) % total != shard:
            return False
        try:
            event_type = EventType(name)
        except ValueError:
            return True  # unknown names are sent to everyone they route to
        needed = [
            intent
            for intent, events in INTENT_EVENTS.items()
            if event_type in events and (intent.name or "").startswith("DIRECT_") == (guild is None)
        ]
        return not needed or any(session.intents & intent for intent in needed)

    async def _dispatch(self, session: EmulatedSession, event: CorpusEvent) -> int:
        session.seq += 1
        s = session.seq
        content = session.intents & Intents.MESSAGE_CONTENT
        data = event.data if content else event.data_without_content
        if self.stamp and data[:1] == b"{" and data != b"{}":
            data = b'{"sent_at":%r,' % time.monotonic() + data[1:]
        payload = _envelope(event.name, s, 0, data)
        session.buffer.append((s, payload))
        if len(session.buffer) > self.replay_buffer_max:
            session.buffer.popleft()
            if session.connection is None:
                session.overflowed = True
        conn = session.connection
        if conn is not None and conn.state == "LIVE":
            try:
                await conn.send_payload(payload)
                session.delivered.append(s)
            except websockets.ConnectionClosed:
                pass
        return s

    async def dispatch(
        self, name: str, d: Any, *, session: EmulatedSession | None = None
    ) -> list[int]:
        """Send dispatch ``name`` with data ``d`` to every session it routes to.

        Routing follows ``d["guild_id"]`` (no guild: shard 0 only) and each session's
        intents; with ``session``, only that one (routing still applies). Returns the
        sequence numbers used.
        """
        event = make_event(name, d)
        targets = [session] if session is not None else list(self.sessions.values())
        return [
            await self._dispatch(s, event)
            for s in targets
            if not s.destroyed and self._wants(s, name, event.guild_id)
        ]

    async def _traffic(self, conn: EmulatedConnection, session: EmulatedSession) -> None:
        """Generated traffic for one live connection, at the configured rate."""
        if self.events_per_second is None:
            return
        corpus = Corpus(
            session.guilds,
            seed=self.seed + session.shard[0],
            large_every=self.large_every,
            unknown_every=self.unknown_every,
            mix=self.mix,
        )
        if not corpus:
            return
        if self._can_firehose(conn):
            await self._firehose(conn, session, corpus)
            return
        delay = 1 / self.events_per_second if self.events_per_second > 0 else 0.0
        start = time.monotonic()
        sent = 0
        with contextlib.suppress(websockets.ConnectionClosed):
            while conn.state == "LIVE" and session.connection is conn:
                if self.total_events is not None and session.seq >= self.total_events:
                    return
                event = corpus.next()
                if self._wants(session, event.name, event.guild_id):
                    await self._dispatch(session, event)
                sent += 1
                if delay:
                    ahead = start + sent * delay - time.monotonic()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                elif sent % 64 == 0:
                    await asyncio.sleep(0)

    def _can_firehose(self, conn: EmulatedConnection) -> bool:
        return (
            self.firehose
            and self.events_per_second == 0
            and self.total_events is not None
            and conn.compress in (None, "zlib-stream")
            and not conn.payload_compression
        )

    async def _firehose(
        self, conn: EmulatedConnection, session: EmulatedSession, corpus: Corpus
    ) -> None:
        """Up to ``total_events`` as one pre-built burst (for benchmarks; no faults meanwhile)."""
        assert self.total_events is not None
        count = self.total_events - session.seq
        if count <= 0:
            return
        content = bool(session.intents & Intents.MESSAGE_CONTENT)
        key = (session.shard, session.seq, session.intents, conn.compress, count)
        hose = self._hoses.get(key)
        if hose is None:
            hose = self._hoses[key] = await asyncio.to_thread(
                build_firehose,
                corpus,
                lambda e: self._wants(session, e.name, e.guild_id),
                lambda e, s: _envelope(e.name, s, 0, e.data if content else e.data_without_content),
                session.seq + 1,
                count,
                conn.compress,
            )
        # Dispatched now, as far as the session (and a later resume) is concerned.
        first = session.seq + 1
        session.seq += len(hose.payloads)
        session.buffer.extend(zip(range(first, session.seq + 1), hose.payloads, strict=True))
        while len(session.buffer) > self.replay_buffer_max:
            session.buffer.popleft()
        for chunk in hose.chunks:
            async with conn._send_lock:
                if conn.state != "LIVE" or session.connection is not conn:
                    return
                conn.ws.transport.write(chunk)
                if conn.compress == "zlib-stream":
                    # What is sent next (heartbeat ACKs between chunks, then live traffic)
                    # must not refer back past the burst: a fresh raw compressor each time.
                    conn._zlib = zlib.compressobj(wbits=-15)
            await conn.ws.drain()
        session.delivered.extend(range(first, session.seq + 1))


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _json_response(status: HTTPStatus, body: Any) -> Response:
    data = _json(body)
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return Response(status.value, status.phrase, headers, data)


def _redact(op: int, d: Any) -> Any:
    if op in (2, 6) and isinstance(d, dict) and "token" in d:
        return {**d, "token": "<redacted>"}
    return d

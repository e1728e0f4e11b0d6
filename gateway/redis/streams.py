"""Dispatches fanned out to a Redis Stream (:class:`Publisher`) and read back through a
consumer group (:func:`consume`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError, ResponseError

from .. import codec
from .._speedups import scan
from ..close import CloseFrame
from ..errors import ReceiveMessageError, ReceiveMessageErrorKind
from ..events import EventType, EventTypeFlags
from ..message import Close
from ..session import SavedSession
from ..shard import Shard
from .client import Client, _Outage, connect
from .sessions import RedisSessionStore

__all__ = [
    "DEFAULT_STREAM",
    "Publisher",
    "StreamEntry",
    "close_for_handover",
    "consume",
    "split_dispatch",
]

log = logging.getLogger("gateway.redis")  # one logger for the package, as before the split

#: The stream ``python -m gateway run --publish`` writes to unless ``--stream`` says.
DEFAULT_STREAM = "gateway:events"

# ---- fan-out to Redis Streams -------------------------------------------------------------

# One batch of one shard's dispatches: XADD each one newer than the checkpoint, then move the
# checkpoint, all in one script, so a resumed worker (which resumes from the checkpoint)
# never adds a (session, sequence) twice. An entry with an empty name only moves the
# checkpoint (a dispatch not wanted on the stream).
# KEYS: stream, checkpoint hash. ARGV: maxlen (0: none), ttl ms, shard, resume_url,
# then session_id, s, t, d per dispatch.
_PUBLISH = """
local sid = redis.call('HGET', KEYS[2], 'session_id')
local seq = tonumber(redis.call('HGET', KEYS[2], 'sequence') or '0')
local maxlen = tonumber(ARGV[1])
local url = ARGV[4]
local added = 0
for i = 5, #ARGV, 4 do
  local s = tonumber(ARGV[i + 1])
  if ARGV[i] ~= sid or s > seq then
    if ARGV[i + 2] ~= '' then
      local fields = {'t', ARGV[i + 2], 's', ARGV[i + 1], 'shard', ARGV[3],
                      'session', ARGV[i], 'd', ARGV[i + 3]}
      if maxlen > 0 then
        redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(fields))
      else
        redis.call('XADD', KEYS[1], '*', unpack(fields))
      end
      added = added + 1
    end
    sid, seq = ARGV[i], s
  end
end
if sid then
  redis.call('HSET', KEYS[2], 'session_id', sid, 'sequence', seq, 'resume_url', url)
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
end
return added
"""

# Discord's layout puts d last: {"t":"NAME","s":N,"op":0,"d":...}; d is the rest.
_DISPATCH_HEAD = re.compile(rb'\{"t":"([A-Za-z0-9_]+)","s":([0-9]+),"op":0,"d":')


def split_dispatch(payload: bytes) -> tuple[str, int, bytes] | None:
    """``(t, s, raw d)`` of a dispatch payload, or None for any other payload.

    In Discord's key order the raw ``d`` is sliced out without decoding; any other layout
    is decoded and ``d`` encoded again.
    """
    head = _DISPATCH_HEAD.match(payload)
    if head is not None and payload.endswith(b"}"):
        return head[1].decode(), int(head[2]), payload[head.end() : -1]
    op, s, t = scan(payload)
    if op != 0 or s is None or t is None:
        return None
    body = codec.loads(payload)
    return t, s, codec.dumps(body.get("d")).encode()


#: A dispatch waiting to be committed: session id, sequence, name ("" when only the
#: checkpoint moves), raw d. A plain tuple: the publish script's arguments, in order.
_Pending = tuple[str, int, str, bytes]


class Publisher:
    """Reads one shard's raw messages and adds each wanted dispatch to a Redis Stream.

    Entries hold ``t``, ``s``, ``shard``, ``session`` and ``d`` (the raw JSON bytes of the
    payload's ``d``). The shard's checkpoint (its :class:`RedisSessionStore` hash:
    ``session_id``, ``sequence`` of the last dispatch committed, ``resume_url``) moves in
    the same script as the ``XADD``s, so resuming from it neither loses nor repeats an event.
    The session is tracked from the messages themselves (READY's ``session_id`` and
    ``resume_gateway_url``), not from the shard's bookkeeping, which may run ahead.

    One commit is in flight per shard; what arrives meanwhile goes in the next batch (so a
    busy shard commits in batches, a quiet one at once). A dispatch stays held until its
    batch is committed, and batches commit in order: when Redis fails a commit, whether
    unreachable (down, restarting) or refusing writes (``OOM`` under ``maxmemory``,
    ``MISCONF``, ``READONLY``), the same batch is retried with backoff (``retry_min`` to
    ``retry_max`` seconds) and everything after it waits. Retrying is safe: the script skips
    what a commit whose reply was lost already added. The checkpoint therefore never runs
    ahead of the stream.

    What it holds is capped: at most ``max_pending`` dispatches and ``max_pending_bytes``
    bytes of ``d`` (plus the one dispatch that crossed the cap). At the cap, :meth:`run`
    stops taking messages from the shard until a commit makes room, so the shard pauses
    reading its socket (its ``Config.read_high_water``) and the gateway holds the rest for
    a resume: backpressure, never a drop.

    A failure is logged once per outage (an error if unreachable, a warning if refused; a
    notice when commits succeed again) and readable as state: :attr:`healthy`,
    :attr:`failures` (failed commit attempts so far), :attr:`last_error` and
    :attr:`pending`.
    """

    def __init__(
        self,
        shard: Shard,
        client: Client,
        store: RedisSessionStore,
        *,
        stream: str = DEFAULT_STREAM,
        maxlen: int = 0,
        wanted: EventTypeFlags | None = None,
        saved: SavedSession | None = None,
        max_batch: int = 2048,
        max_pending: int = 10_000,
        max_pending_bytes: int = 64 * 1024 * 1024,
        retry_min: float = 0.05,
        retry_max: float = 5.0,
    ) -> None:
        if max_batch < 1 or max_pending < 1 or max_pending_bytes < 1:
            raise ValueError("max_batch, max_pending and max_pending_bytes must be >= 1")
        self.shard = shard
        self.redis = client
        self.stream = stream
        self.maxlen = maxlen
        self.published = 0
        self._store = store
        self._script = client.register_script(_PUBLISH)
        self._wanted = wanted
        self._names: dict[str, bool] = {}
        self._session_id = saved.session.session_id if saved else None
        self._resume_url = saved.resume_url if saved else None
        self._batch: list[_Pending] = []  # held, oldest first; removed once committed
        self._bytes = 0
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._max_pending_bytes = max_pending_bytes
        self._committing = asyncio.Lock()
        self._kick = asyncio.Event()  # the committer: something to commit
        self._room = asyncio.Event()  # run(): below the caps again (or the committer died)
        self._committer: asyncio.Task[None] | None = None
        self._outage = _Outage(
            client, f"shard {shard.id.number}'s events wait to be published", retry_min, retry_max
        )

    @property
    def healthy(self) -> bool:
        """False from a failed commit until the next one succeeds."""
        return self._outage.healthy

    @property
    def failures(self) -> int:
        """Failed commit attempts so far (each retry of an outage counts)."""
        return self._outage.failures

    @property
    def last_error(self) -> str | None:
        """The latest commit failure (``"ResponseError: OOM ..."``), None if none yet."""
        return self._outage.last_error

    @property
    def pending(self) -> int:
        """Dispatches held, not committed yet."""
        return len(self._batch)

    def _is_wanted(self, name: str) -> bool:
        wanted = self._names.get(name)
        if wanted is None:
            try:
                wanted = self._wanted is None or EventType(name) in self._wanted
            except ValueError:
                wanted = True  # names this library does not know yet pass through
            self._names[name] = wanted
        return wanted

    def _full(self) -> bool:
        return len(self._batch) >= self._max_pending or self._bytes >= self._max_pending_bytes

    async def run(self) -> None:
        """Publish until the shard closes or fails fatally (cancel to stop; then :meth:`flush`).

        Raises what stopped the committer if it was not Redis (a bug): never silently.
        """
        committer = self._committer = asyncio.create_task(self._commit_loop())
        committer.add_done_callback(lambda _: self._room.set())
        try:
            await self._read()
        finally:
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            self._committer = None

    async def _read(self) -> None:
        shard = self.shard
        while True:
            try:
                message = await shard.next_message()
            except ReceiveMessageError as exc:
                if exc.is_fatal() or exc.kind is ReceiveMessageErrorKind.CLOSED:
                    return
                log.warning("shard %s: %s", shard.id, exc)
                continue
            if isinstance(message, Close):
                continue
            payload = message.text.encode()
            parts = split_dispatch(payload)
            if parts is None:
                continue
            name, seq, data = parts
            if name == "READY":
                ready = codec.loads(data)
                if isinstance(ready, dict) and isinstance(ready.get("session_id"), str):
                    self._session_id = ready["session_id"]
                    self._resume_url = ready.get("resume_gateway_url") or None
            if self._session_id is None:
                continue  # cannot happen with a well-behaved gateway
            if self._is_wanted(name):
                self._batch.append((self._session_id, seq, name, data))
                self._bytes += len(data)
            else:
                self._batch.append((self._session_id, seq, "", b""))
            self._kick.set()
            self._raise_if_dead()
            while self._full():
                # Redis is slow or failing: stop reading the shard until a commit makes room.
                self._room.clear()
                await self._room.wait()
                self._raise_if_dead()

    def _raise_if_dead(self) -> None:
        committer = self._committer
        if committer is not None and committer.done() and not committer.cancelled():
            exc = committer.exception()
            if exc is not None:
                raise exc

    async def _commit_loop(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            await self._commit_held()

    async def flush(self) -> None:
        """Commit what is still held (call after cancelling :meth:`run`). Waits through a
        Redis outage, retrying with backoff: cancel it to give up (what is held is then
        lost to the stream; the checkpoint still names the last dispatch committed).
        """
        await self._commit_held()

    async def _commit_held(self) -> None:
        # One committer at a time (the loop, or flush): a batch leaves ``_batch`` only once
        # committed, so two at once would commit it twice and drop the next one.
        async with self._committing:
            while self._batch:
                batch = self._batch[: self._max_batch]
                await self._commit(batch)
                del self._batch[: len(batch)]
                self._bytes -= sum(len(item[3]) for item in batch)
                if not self._full():
                    self._room.set()

    async def _commit(self, batch: list[_Pending]) -> None:
        args: list[Any] = [
            self.maxlen,
            int(self._store.ttl * 1000),
            self.shard.id.number,
            self._resume_url or "",
        ]
        for item in batch:
            args += item
        keys = [self.stream, self._store.key(self.shard.id.number)]
        while True:
            try:
                added = await self._script(keys=keys, args=args)
            except (RedisError, OSError) as exc:
                # The script is atomic (a refused write fails at its first XADD, before any
                # change) and skips what is committed: retrying the same batch is safe.
                await asyncio.sleep(self._outage.failed(exc))
                continue
            self._outage.ok()
            self.published += int(added)
            return


async def close_for_handover(
    shards: list[Shard],
    store: RedisSessionStore,
    publishers: list[Publisher] | None = None,
) -> None:
    """Stop a worker so that another resumes its shards: flush the publishers, close every
    shard with ``CloseFrame.RESUME`` and save its session, unless the shard's own
    ``Config.session_store`` hook does, or a publisher's checkpoint (exact by construction)
    already holds it.
    """
    if publishers:
        await asyncio.gather(*(p.flush() for p in publishers))
    sessions = await asyncio.gather(*(s.close(CloseFrame.RESUME) for s in shards))
    if publishers:
        return
    for shard, session in zip(shards, sessions, strict=True):
        if session is not None and shard.config.session_store is None:
            await store.save(shard.id.number, SavedSession(session, shard.resume_url))


# ---- consuming -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One published dispatch: the stream entry ``id``, ``t``, ``s``, the shard number, the
    session id, and ``d`` (raw JSON bytes; :meth:`data` decodes it).
    """

    id: str
    name: str
    sequence: int
    shard: int
    session_id: str
    raw: bytes

    def data(self) -> Any:
        """``d``, decoded. Raises :class:`~gateway.errors.ReceiveMessageError` (kind
        ``DESERIALIZING``) if it is not valid JSON (or not UTF-8): decoding is left to the
        consumer, so a bad ``d`` surfaces here, typed.
        """
        try:
            return codec.loads(self.raw)
        except (ValueError, TypeError, RecursionError, OverflowError) as exc:
            raise ReceiveMessageError(
                ReceiveMessageErrorKind.DESERIALIZING,
                f"stream entry id {self.id}: d is not valid JSON ({type(exc).__name__})",
            ) from None


def _entry(entry_id: bytes, fields: Mapping[bytes, bytes]) -> StreamEntry | ReceiveMessageError:
    """The entry, or a typed error naming it if a field is missing or malformed (written by
    something other than :class:`Publisher`, or damaged).
    """
    try:
        raw = fields[b"d"]
        if not isinstance(raw, bytes):
            raise TypeError("d is not a string")
        return StreamEntry(
            entry_id.decode("ascii"),
            fields[b"t"].decode(),
            int(fields[b"s"]),
            int(fields[b"shard"]),
            fields[b"session"].decode(),
            raw,
        )
    except KeyError as exc:
        why = f"the field {exc.args[0]!r} is missing"
    except (ValueError, TypeError, AttributeError) as exc:  # UnicodeDecodeError included
        why = f"a field is malformed ({type(exc).__name__})"
    name = entry_id.decode("ascii", "replace") if isinstance(entry_id, bytes) else repr(entry_id)
    return ReceiveMessageError(
        ReceiveMessageErrorKind.STREAM_ENTRY, f"stream entry id {name}: {why}; skipped"
    )


def _live(
    entries: list[tuple[bytes, Mapping[bytes, bytes] | None]], done: list[bytes]
) -> list[tuple[bytes, Mapping[bytes, bytes]]]:
    # An entry trimmed away (MAXLEN) while pending comes back without fields: ack it unseen.
    live = []
    for entry_id, fields in entries:
        if fields:
            live.append((entry_id, fields))
        else:
            done.append(entry_id)
    return live


async def consume(
    client: Client | str,
    group: str,
    consumer: str,
    *,
    stream: str = DEFAULT_STREAM,
    count: int = 100,
    block: float = 1.0,
    claim_idle: float = 30.0,
    start: str = "0",
) -> AsyncIterator[StreamEntry | ReceiveMessageError]:
    """``async for entry in consume(url, group, consumer)``: the stream's entries through a
    consumer group, each acknowledged once the loop body that got it has finished (when the
    next entry is asked for; acknowledgements go in one ``XACK`` per batch, and at
    ``aclose()``: use ``contextlib.aclosing`` to stop early).

    The group is created (at ``start``, default the stream's beginning) if missing, and
    created again if it vanishes (the stream deleted, Redis restarted empty). This consumer
    first takes back its own unacknowledged entries (a restart under the same name), then
    reads new ones; every ``claim_idle`` seconds it also claims entries another consumer
    left unacknowledged for that long (``XAUTOCLAIM``: that consumer died), so every entry
    is processed at least once. A body that raises leaves its entry unacknowledged, for a
    later claim.

    Bad input never ends the iteration: an entry with a field missing or malformed comes
    as a :class:`~gateway.errors.ReceiveMessageError` of kind ``STREAM_ENTRY`` naming its
    id (and is acknowledged like the rest), a ``d`` that is not JSON raises one of kind
    ``DESERIALIZING`` from :meth:`StreamEntry.data`. While Redis is unreachable or refuses
    (``OOM``, ``MISCONF``, ``READONLY``: reading through a group is a write), the consumer
    logs once and retries with backoff.
    """
    redis_client = connect(client) if isinstance(client, str) else client
    outage = _Outage(redis_client, f"consumer {consumer} waits")
    done: list[bytes] = []
    own: bytes | None = b"0"  # our own pending entries first (None once they are drained)
    next_claim = 0.0
    grouped = False
    try:
        while True:
            try:
                if not grouped:
                    await _create_group(redis_client, stream, group, start)
                    grouped = True
                if done:
                    await redis_client.xack(stream, group, *done)
                    done.clear()
                batch: list[tuple[bytes, Mapping[bytes, bytes]]] = []
                now = time.monotonic()
                if now >= next_claim:
                    next_claim = now + claim_idle / 2
                    reply: Any = await redis_client.xautoclaim(
                        stream, group, consumer, int(claim_idle * 1000), start_id="0-0",
                        count=count,
                    )  # fmt: skip
                    batch = _live(reply[1], done)
                    if batch:
                        log.info("consumer %s claimed %d idle entries", consumer, len(batch))
                if not batch:
                    last = own if own is not None else b">"
                    streams: Any = await redis_client.xreadgroup(
                        group, consumer, {stream: last}, count=count,
                        block=None if own is not None else int(block * 1000),
                    )  # fmt: skip
                    entries = [e for _, part in streams or () for e in part]
                    if own is not None:
                        own = entries[-1][0] if entries else None
                    batch = _live(entries, done)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    # The stream and its group are gone (deleted, or Redis restarted empty):
                    # what was acknowledged went with them.
                    log.warning("consumer %s: the group %s is gone; creating it", consumer, group)
                    grouped, own, next_claim = False, b"0", 0.0
                    done.clear()
                    continue
                await asyncio.sleep(outage.failed(exc))
                continue
            except (RedisError, OSError) as exc:
                await asyncio.sleep(outage.failed(exc))
                continue
            outage.ok()
            for entry_id, fields in batch:
                yield _entry(entry_id, fields)
                done.append(entry_id)
    finally:
        # Stopped (aclose, or a break then aclose): acknowledge what was finished. The entry
        # in hand when it stopped stays pending, for a claim.
        if done:
            with contextlib.suppress(RedisError, OSError):
                await redis_client.xack(stream, group, *done)
        if isinstance(client, str):
            await redis_client.aclose()


async def _create_group(client: Client, stream: str, group: str, start: str) -> None:
    try:
        await client.xgroup_create(stream, group, id=start, mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise

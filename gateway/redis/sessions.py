"""Each shard's session in Redis: :class:`RedisSessionStore`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from ..session import SavedSession, Session
from .client import DEFAULT_PREFIX, Client, _describe, connect, token_namespace

if TYPE_CHECKING:
    from ..shard import Shard

__all__ = ["RESUMABLE_WINDOW", "RedisSessionStore"]

log = logging.getLogger("gateway.redis")  # one logger for the package, as before the split

#: Seconds a saved session is kept after its last save. Discord keeps a dropped session
#: resumable for "a few minutes" (protocol.md 5.2): past that, a resume fails anyway.
RESUMABLE_WINDOW = 180.0


class RedisSessionStore:
    """Each shard's session in a Redis hash (``session_id``, ``sequence``, ``resume_url``),
    expiring ``ttl`` seconds after its last save (default: the resumable window).

    ``namespace`` separates shard sets of different totals (``"64"`` for shard 3 of 64), so
    that a reshard never resumes a session of the other set. Implements
    :class:`~gateway.session.SessionStore`; the publish path writes the same hashes
    (:class:`~gateway.redis.Publisher`).
    """

    def __init__(
        self,
        client: Client | str,
        token: str,
        *,
        namespace: str = "",
        ttl: float = RESUMABLE_WINDOW,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.redis = connect(client) if isinstance(client, str) else client
        self.ttl = ttl
        base = token_namespace(token, prefix) + ":session"
        self._base = f"{base}:{namespace}" if namespace else base

    def __repr__(self) -> str:
        return f"RedisSessionStore({_describe(self.redis)}, ttl={self.ttl})"

    def key(self, shard: int) -> str:
        """The hash holding shard ``shard``'s session."""
        return f"{self._base}:{shard}"

    async def load(self, shard: int) -> SavedSession | None:
        reply: Any = await self.redis.hgetall(self.key(shard))
        return _saved(reply)

    async def load_many(self, shards: range | list[int]) -> dict[int, SavedSession]:
        """The saved sessions of ``shards`` in one round trip (shards without one left out)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in shards:
                pipe.hgetall(self.key(shard))
            replies = await pipe.execute()
        found = {shard: _saved(reply) for shard, reply in zip(shards, replies, strict=True)}
        return {shard: saved for shard, saved in found.items() if saved is not None}

    async def save(self, shard: int, saved: SavedSession) -> None:
        key = self.key(shard)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=_fields(saved))  # type: ignore[arg-type]
            pipe.pexpire(key, int(self.ttl * 1000))
            await pipe.execute()

    async def delete(self, shard: int) -> None:
        await self.redis.delete(self.key(shard))

    async def touch(self, shards: list[int]) -> None:
        """Restart the TTL of these shards' saved sessions (a quiet shard's checkpoint must
        not expire while its session lives).
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in shards:
                pipe.pexpire(self.key(shard), int(self.ttl * 1000))
            await pipe.execute()


def _fields(saved: SavedSession) -> dict[str, str | int]:
    return {
        "session_id": saved.session.session_id,
        "sequence": saved.session.sequence,
        "resume_url": saved.resume_url or "",
    }


def _saved(reply: Mapping[bytes, bytes]) -> SavedSession | None:
    try:
        session = Session(reply[b"session_id"].decode(), int(reply[b"sequence"]))
    except (KeyError, ValueError):
        return None
    url = reply.get(b"resume_url", b"").decode() or None
    return SavedSession(session, url)


async def _keep_alive(shards: list[Shard], store: RedisSessionStore, every: float) -> None:
    """Restart the TTL of every live shard's saved session on a cadence: the checkpoint of a
    quiet shard (no event, so no save) must not expire while its session lives.
    """
    while True:
        await asyncio.sleep(every)
        try:
            await store.touch([s.id.number for s in shards if s.session is not None])
        except (RedisError, OSError) as exc:
            log.warning("refreshing the saved sessions failed (retried in %.0f s): %s", every, exc)

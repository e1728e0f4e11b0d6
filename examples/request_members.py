"""Request a guild's members and collect every chunk of the reply, matched by nonce.

    DISCORD_TOKEN=... python examples/request_members.py
    python examples/request_members.py --emulator

Discord answers op 8 (Request Guild Members) with GUILD_MEMBERS_CHUNK events of up to
1000 members each, on the shard that serves the guild. Several requests may be in flight,
so each carries a ``nonce`` and each chunk echoes it. A request for all members
(``query=""``) needs the privileged GUILD_MEMBERS intent and is limited to one per guild
per 30 s: an extra one gets a RATE_LIMITED dispatch (with the nonce) instead of chunks.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from target import target

from gateway import EventType, Intents, RequestGuildMembers, Shard, ShardId
from gateway.payloads import GuildMember, GuildMembersChunk, RateLimited, typed


class RateLimitedError(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass
class _Pending:
    future: asyncio.Future[list[GuildMember]]
    members: list[GuildMember] = field(default_factory=list)
    chunks: set[int] = field(default_factory=set)


class MemberRequests:
    """Sends member requests on one shard and routes the replies back by nonce.

    Feed it every GUILD_MEMBERS_CHUNK and RATE_LIMITED event of that shard (the shard's
    event loop must keep running while a request waits).
    """

    def __init__(self, shard: Shard) -> None:
        self._shard = shard
        self._pending: dict[str, _Pending] = {}
        self._nonces = (f"members-{n}" for n in itertools.count())

    async def all_members(self, guild_id: str, timeout: float = 60) -> list[GuildMember]:
        nonce = next(self._nonces)
        pending = _Pending(asyncio.get_running_loop().create_future())
        self._pending[nonce] = pending
        self._shard.command(RequestGuildMembers(guild_id, query="", limit=0, nonce=nonce))
        try:
            return await asyncio.wait_for(pending.future, timeout)
        finally:
            del self._pending[nonce]

    def on_chunk(self, chunk: GuildMembersChunk) -> None:
        pending = self._pending.get(chunk.get("nonce", ""))
        if pending is None or pending.future.done():
            return  # not ours (no nonce, or a request that timed out)
        pending.members += chunk["members"]
        pending.chunks.add(chunk["chunk_index"])
        if len(pending.chunks) == chunk["chunk_count"]:  # chunks may come in any order
            pending.future.set_result(pending.members)

    def on_rate_limited(self, data: RateLimited) -> None:
        pending = self._pending.get(data["meta"].get("nonce", ""))
        if pending is not None and not pending.future.done():
            pending.future.set_exception(RateLimitedError(data["retry_after"]))


async def main() -> None:
    async with target(guilds=3) as t:
        intents = Intents.GUILDS | Intents.GUILD_MEMBERS  # GUILD_MEMBERS is privileged
        shard = Shard(ShardId.ONE, t.token, intents, gateway_url=t.gateway_url)
        requests = MemberRequests(shard)
        fetched = 0

        async def fetch(guild_id: str) -> None:
            nonlocal fetched
            while True:
                try:
                    members = await requests.all_members(guild_id)
                    break
                except RateLimitedError as exc:
                    await asyncio.sleep(exc.retry_after)
                except TimeoutError:
                    print(f"guild {guild_id}: no complete reply")
                    return
            names = ", ".join(m["user"]["username"] for m in members if "user" in m)
            print(f"guild {guild_id}: {len(members)} members ({names})")
            fetched += 1
            if t.enough(fetched, 3):
                await shard.close()  # ends the `async for` below

        tasks: set[asyncio.Task[None]] = set()
        async for event in shard:
            event = typed(event)
            if event.type is EventType.GUILD_CREATE:
                task = asyncio.create_task(fetch(event.data["id"]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            elif event.type is EventType.GUILD_MEMBERS_CHUNK:
                requests.on_chunk(event.data)
            elif event.type is EventType.RATE_LIMITED:
                requests.on_rate_limited(event.data)


if __name__ == "__main__":
    asyncio.run(main())

"""Config.session_store: a shard loads, saves and deletes its session through the hook."""

from __future__ import annotations

import asyncio

from gateway import CloseFrame, EventType, InMemoryQueue, Intents, Shard, ShardId
from gateway.session import SavedSession, SessionStore
from gateway.testing import GatewayEmulator

TOKEN = "store-token"


class MemoryStore:
    def __init__(self) -> None:
        self.saved: dict[int, SavedSession] = {}
        self.calls: list[str] = []

    async def load(self, shard: int) -> SavedSession | None:
        self.calls.append("load")
        return self.saved.get(shard)

    async def save(self, shard: int, saved: SavedSession) -> None:
        self.calls.append("save")
        self.saved[shard] = saved

    async def delete(self, shard: int) -> None:
        self.calls.append("delete")
        self.saved.pop(shard, None)


def shard_for(emu: GatewayEmulator, store: MemoryStore, **options: object) -> Shard:
    return Shard(ShardId.ONE, TOKEN, Intents.GUILDS, gateway_url=emu.url,
                 queue=InMemoryQueue(0), session_store=store, **options)  # fmt: skip


async def next_of(shard: Shard, wanted: EventType) -> None:
    async with asyncio.timeout(10):
        while (await shard.next_event()).type is not wanted:
            pass


async def test_a_restarted_process_resumes_from_the_store() -> None:
    store = MemoryStore()
    assert isinstance(store, SessionStore)
    async with GatewayEmulator(heartbeat_interval=0.1, guilds=1) as emu:
        shard = shard_for(emu, store, session_save_interval=0.05)
        await next_of(shard, EventType.GUILD_CREATE)
        await emu.wait_for(lambda: 0 in store.saved, timeout=5)  # saved on the cadence
        saved = store.saved[0]
        assert saved.session.session_id == next(iter(emu.sessions))
        assert saved.resume_url == emu.resume_url
        shard._conn.abort()  # type: ignore[union-attr]  # the process dies: no close
        shard._task.cancel()  # type: ignore[union-attr]
        again = shard_for(emu, store)
        await next_of(again, EventType.RESUMED)
        assert len(emu.identifies) == 1 and len(emu.resumes) == 1
        session = await again.close(CloseFrame.RESUME)
        assert store.saved[0].session == session  # saved on close(RESUME)
        third = shard_for(emu, store)
        await next_of(third, EventType.RESUMED)
        await third.close()  # 1000: the session is over
        assert 0 not in store.saved and store.calls[-1] == "delete"

"""Resume a session after a process restart: nothing missed, no new IDENTIFY spent.

    DISCORD_TOKEN=... python examples/resume_after_restart.py   # Ctrl-C, then run it again
    python examples/resume_after_restart.py --emulator          # two "processes" in one

On the way out, ``shard.close(CloseFrame.RESUME)`` keeps the session open on Discord's side
and returns it (``session_id`` and the last ``sequence``); saved with READY's
``resume_gateway_url``, it lets the next process pass ``Config(session=..., resume_url=...)``
and RESUME: Discord replays what was sent meanwhile, then RESUMED. A session lives for a
few minutes after its connection closes; an expired one is refused (op 9) and the shard
identifies afresh by itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path

from target import Target, emulated, target

from gateway import CloseFrame, Config, EventType, Intents, Session, Shard, ShardId
from gateway.payloads import typed

INTENTS = Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.MESSAGE_CONTENT


def load(path: Path) -> tuple[Session, str] | None:
    """The saved session and resume URL, if any."""
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    return Session(saved["session_id"], saved["sequence"]), saved["resume_url"]


def save(path: Path, session: Session, resume_url: str) -> None:
    # No token in here: only what RESUME needs besides it.
    body = {"session_id": session.session_id, "sequence": session.sequence}
    path.write_text(json.dumps({**body, "resume_url": resume_url}))


async def run(t: Target, path: Path, messages: int) -> None:
    """One process's life: resume (or identify), handle events, keep the session on exit."""
    saved = load(path)
    session, resume_url = saved if saved else (None, None)
    if session is not None:
        print(f"resuming at sequence {session.sequence}")
    config = Config(
        t.token, INTENTS, gateway_url=t.gateway_url, session=session, resume_url=resume_url
    )
    shard = Shard(ShardId.ONE, config=config)
    # The last sequence this process handled: resuming from it replays everything after.
    # (The shard receives ahead of what you take, so its own sequence may be further on.)
    handled = session.sequence if session else 0
    seen = 0
    try:
        async for event in shard:
            handled = event.sequence or handled
            event = typed(event)
            if event.type is EventType.READY:
                print(f"identified: new session {event.data['session_id'][:8]}")
            elif event.type is EventType.RESUMED:
                print(f"sequence {event.sequence}: resumed, the replay is complete")
            elif event.type is EventType.MESSAGE_CREATE:
                print(f"sequence {event.sequence}: {event.data['content'][:20]}")
                seen += 1
                if t.enough(seen, messages):
                    break
    finally:  # also on Ctrl-C
        url = shard.resume_url
        kept = await shard.close(CloseFrame.RESUME)
        if kept is not None and url is not None:
            save(path, Session(kept.session_id, handled), url)
            print(f"saved session at sequence {handled}")


async def main() -> None:
    async with target(guilds=1, events_per_second=1000, mix="messages") as t:
        if not emulated():
            await run(t, Path(os.environ.get("SESSION_FILE", "session.json")), 0)
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "session.json")
            await run(t, path, 3)
            print("-- the process restarts --")
            await run(t, path, 3)


if __name__ == "__main__":
    asyncio.run(main())

"""Seeded traffic for the emulator, built from the example payloads shipped beside this module.

Events are pre-encoded once (the ``d`` part as bytes) so that generating traffic costs a
dictionary lookup and a byte join, never a JSON encode: the emulator must not be the
bottleneck of a benchmark.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["CorpusEvent", "Corpus", "load_payload", "MIXES", "UNKNOWN_EVENT_NAMES"]

#: Event names the real gateway sends but the bot docs do not list.
UNKNOWN_EVENT_NAMES = ("GUILD_APPLICATION_COMMAND_INDEX_UPDATE", "GUILD_JOIN_REQUEST_UPDATE")

_TRAFFIC_MIX = (
    ("message_create", 50),
    ("presence_update", 20),
    ("typing_start", 15),
    ("message_reaction_add", 8),
    ("voice_state_update", 5),
)
#: Named traffic mixes: ``default`` (a busy guild) and ``messages`` (~1 KB MESSAGE_CREATEs).
MIXES = {"default": _TRAFFIC_MIX, "messages": (("message_create", 1),)}


def load_payload(name: str) -> Any:
    """One shipped example payload (``name`` without ``.json``), decoded."""
    text = resources.files("gateway.testing").joinpath(f"payloads/{name}.json").read_text()
    return json.loads(text)


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class CorpusEvent:
    """One dispatch ready to send: name, guild, encoded ``d`` (and its content-less twin)."""

    name: str
    guild_id: int | None
    data: bytes
    data_without_content: bytes


def _strip_content(name: str, d: Any) -> Any:
    """What a session without MESSAGE_CONTENT receives (protocol.md section 8)."""
    if name not in ("MESSAGE_CREATE", "MESSAGE_UPDATE") or not isinstance(d, dict):
        return d
    d = dict(d)
    d.update(content="", embeds=[], attachments=[], components=[])
    d.pop("poll", None)
    return d


def make_event(name: str, d: Any) -> CorpusEvent:
    """Pre-encode a dispatch; the guild comes from ``d["guild_id"]`` when present."""
    guild = d.get("guild_id") if isinstance(d, dict) else None
    return CorpusEvent(
        name,
        int(guild) if guild is not None else None,
        _encode(d),
        _encode(_strip_content(name, d)),
    )


class Corpus:
    """A seeded stream of realistic dispatches for the guilds of one shard.

    ``large_every`` inserts a large GUILD_CREATE every N events (0: never); ``unknown_every``
    inserts an event with an undocumented name every N events (0: never); ``mix`` names the
    traffic (:data:`MIXES`).
    """

    def __init__(
        self,
        guild_ids: list[int],
        *,
        seed: int = 0,
        variants: int = 64,
        large_every: int = 0,
        unknown_every: int = 0,
        mix: str = "default",
    ) -> None:
        self._rng = random.Random(seed)
        self._large_every = large_every
        self._unknown_every = unknown_every
        self._count = 0
        self._events: list[CorpusEvent] = []
        self._large: list[CorpusEvent] = []
        self._unknown: list[CorpusEvent] = []
        if not guild_ids:
            return
        names = [n for n, _ in MIXES[mix]]
        weights = [w for _, w in MIXES[mix]]
        templates = {n: load_payload(n)["d"] for n in names}
        for i in range(variants):
            kind = self._rng.choices(names, weights)[0]
            d = copy.deepcopy(templates[kind])
            guild = guild_ids[i % len(guild_ids)]
            d["guild_id"] = str(guild)
            if kind == "message_create":
                d["id"] = str((1 << 40) + i)
                d["content"] = f"message {i} " + "x" * self._rng.randrange(0, 200)
            self._events.append(make_event(load_payload(kind)["t"], d))
        if large_every:
            for guild in guild_ids[:4]:
                self._large.append(make_event("GUILD_CREATE", large_guild(guild)))
        if unknown_every:
            for name in UNKNOWN_EVENT_NAMES:
                self._unknown.append(
                    make_event(name, {"guild_id": str(guild_ids[0]), "index": self._rng.random()})
                )

    def __bool__(self) -> bool:
        return bool(self._events)

    def next(self) -> CorpusEvent:
        """The next event of the stream."""
        self._count += 1
        if self._large_every and self._count % self._large_every == 0:
            return self._rng.choice(self._large)
        if self._unknown_every and self._count % self._unknown_every == 0:
            return self._rng.choice(self._unknown)
        return self._events[self._count % len(self._events)]


def guild_payload(guild_id: int, *, members: int = 0) -> dict[str, Any]:
    """A GUILD_CREATE ``d`` for ``guild_id`` based on the example guild."""
    d: dict[str, Any] = copy.deepcopy(load_payload("guild_create")["d"])
    d["id"] = str(guild_id)
    if members:
        template = d["members"][0]
        d["members"] = [
            dict(template, nick=f"member {i}", user=dict(template["user"], id=str(10**17 + i)))
            for i in range(members)
        ]
        d["member_count"] = members
    return d


def large_guild(guild_id: int) -> dict[str, Any]:
    """A GUILD_CREATE of roughly 300 KB (many members), as large guilds produce."""
    return guild_payload(guild_id, members=1000)


def guild_ids(count: int, *, seed: int = 0) -> list[int]:
    """``count`` distinct, realistic guild snowflakes (spread over every shard)."""
    rng = random.Random(seed)
    base = 197038439483310086 >> 22
    return [((base + i * 7919 + rng.randrange(7919)) << 22) | rng.randrange(1 << 22)
            for i in range(count)]  # fmt: skip

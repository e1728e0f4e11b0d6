"""Typed events vs dicts: decode time per payload, every competitor in the same run.

    python tools/bench_models.py [--seconds 0.2] [--repeat 7]

For each of the corpus's MESSAGE_CREATE (~1 KB, the ``messages`` mix), PRESENCE_UPDATE (the
``default`` mix), GUILD_CREATE (the example guild, ~5 KB) and a large GUILD_CREATE
(~300 KB, 1,000 members): the same whole wire payloads decoded by

- ``orjson.loads``: today's dict (the baseline of every ratio), and ``msgspec dict``
  (msgspec's own untyped decode);
- ``full model``: the shipped :mod:`gateway.models` model, one ``Envelope[Model]`` decode
  with ``strict=False`` (snowflakes to int), as ``Config.models`` does;
- ``slim Struct``: a bot's own Struct with the few fields it reads (snowflakes int), and
  ``slim, str ids``: the same with snowflakes left as strings in strict mode (what the
  int conversion costs);
- ``event(): ...``: the Cython Dispatcher's ``event()`` as the shard calls it when the
  event is taken (scan, decode, Event) with dicts, the full model and the slim Struct.

Each figure is µs per payload over 32 distinct payloads of the kind (4 large guilds): the
best of ``--repeat`` rounds of at least ``--seconds`` each, the competitors taking turns
within each round so that a shared machine's load falls on all of them alike. The issue's
bars are checked at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:  # the installed package; from a bare checkout, the source tree
    import gateway  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec
import orjson
from benchlib import machine, table

from gateway import Event, EventType, EventTypeFlags, backends, codec, models
from gateway._speedups import twins
from gateway.protocol import _dispatch_table
from gateway.testing.corpus import Corpus, guild_ids, guild_payload, large_guild

# ---- what a bot declares --------------------------------------------------------------------


class Author(msgspec.Struct, gc=False):
    id: int


class SlimMessage(msgspec.Struct, gc=False):
    """The five fields a bot reads (the issue's figure)."""

    id: int
    channel_id: int
    author: Author
    content: str
    guild_id: int | None = None


class AuthorStr(msgspec.Struct, gc=False):
    id: str


class SlimMessageStr(msgspec.Struct, gc=False):
    id: str
    channel_id: str
    author: AuthorStr
    content: str
    guild_id: str | None = None


class SlimPresence(msgspec.Struct, gc=False):
    user: Author
    guild_id: int
    status: str


class SlimPresenceStr(msgspec.Struct, gc=False):
    user: AuthorStr
    guild_id: str
    status: str


class SlimGuild(msgspec.Struct, gc=False):
    id: int
    name: str | None = None
    member_count: int | None = None


class SlimGuildStr(msgspec.Struct, gc=False):
    id: str
    name: str | None = None
    member_count: int | None = None


def _envelope(name: str, seq: int, d: bytes) -> bytes:
    return b'{"t":"%s","s":%d,"op":0,"d":%s}' % (name.encode(), seq, d)


def payloads(large: bool = True) -> dict[str, tuple[EventType, list[bytes]]]:
    """32 distinct wire payloads of each kind, as the emulator's corpus makes them (and 4
    large GUILD_CREATEs unless ``large`` is false).
    """
    guilds = guild_ids(8, seed=0)
    out: dict[str, tuple[EventType, list[bytes]]] = {}
    for label, mix, name in (
        ("MESSAGE_CREATE", "messages", "MESSAGE_CREATE"),
        ("PRESENCE_UPDATE", "default", "PRESENCE_UPDATE"),
    ):
        corpus = Corpus(guilds, seed=0, variants=256, mix=mix)
        found = [e.data for e in corpus._events if e.name == name][:32]
        out[label] = (EventType(name), [_envelope(name, i + 1, d) for i, d in enumerate(found)])
    guild = [json.dumps(guild_payload(g)).encode() for g in guild_ids(32, seed=1)]
    out["GUILD_CREATE"] = (EventType.GUILD_CREATE, [_envelope("GUILD_CREATE", 1, d) for d in guild])
    if not large:
        return out
    big = [json.dumps(large_guild(g)).encode() for g in guilds[:4]]
    out["GUILD_CREATE large"] = (
        EventType.GUILD_CREATE,
        [_envelope("GUILD_CREATE", 1, d) for d in big],
    )
    return out


SLIM: dict[EventType, tuple[type[Any], type[Any]]] = {
    EventType.MESSAGE_CREATE: (SlimMessage, SlimMessageStr),
    EventType.PRESENCE_UPDATE: (SlimPresence, SlimPresenceStr),
    EventType.GUILD_CREATE: (SlimGuild, SlimGuildStr),
}


def calibrate(fn: Callable[[bytes], Any], items: list[bytes], seconds: float) -> int:
    """How many passes over ``items`` take at least ``seconds``."""
    n = 1
    while True:
        if _round(fn, items, n) >= seconds:
            return n
        n *= 2


def _round(fn: Callable[[bytes], Any], items: list[bytes], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        for p in items:
            fn(p)
    return time.perf_counter() - start


def interleaved(
    competitors: dict[str, Callable[[bytes], Any]], items: list[bytes], seconds: float, repeat: int
) -> dict[str, float]:
    """µs per payload for each competitor: the best of ``repeat`` rounds, every round
    running every competitor once in turn (a shared machine's load hits them alike).
    """
    passes = {name: calibrate(fn, items, seconds) for name, fn in competitors.items()}
    best = dict.fromkeys(competitors, float("inf"))
    for _ in range(repeat):
        for name, fn in competitors.items():
            took = _round(fn, items, passes[name]) / (passes[name] * len(items))
            best[name] = min(best[name], took)
    return {name: t * 1e6 for name, t in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-large", action="store_true", help="skip the ~400 KB GUILD_CREATE")
    args = parser.parse_args()
    table_all = _dispatch_table(int(EventTypeFlags.ALL))
    found = twins()
    twin_name = "cython" if "cython" in found else "python"
    twin = found[twin_name]
    print(machine())
    print(f"JSON backend: {backends.JSON}; Dispatcher: {twin_name}; msgspec {msgspec.__version__}")
    rows = []
    verdicts = []
    for label, (event_type, items) in payloads(not args.no_large).items():
        slim, slim_str = SLIM[event_type]
        full = models.DEFAULT[event_type]
        plain = twin.Dispatcher(table_all, codec.fast_loads, Event)
        typed_full = twin.Dispatcher(
            table_all, codec.fast_loads, Event, models.decoders({event_type: full})
        )
        typed_slim = twin.Dispatcher(
            table_all, codec.fast_loads, Event, models.decoders({event_type: slim})
        )
        competitors: dict[str, Callable[[bytes], Any]] = {
            "orjson.loads": orjson.loads,
            "msgspec dict": msgspec.json.decode,
            "full model": models.decoder(full),
            "slim Struct": models.decoder(slim),
            "slim, str ids": msgspec.json.Decoder(models.Envelope[slim_str]).decode,
            "event(): dict": plain.event,
            "event(): full": typed_full.event,
            "event(): slim": typed_slim.event,
        }
        for fn in competitors.values():  # every competitor decodes every payload
            for p in items:
                fn(p)
        times = interleaved(competitors, items, args.seconds, args.repeat)
        base = times["orjson.loads"]
        size = sum(map(len, items)) // len(items)
        for name, us in times.items():
            rows.append({"payload": f"{label} ({size:,} B)", "decoder": name, "µs": us,
                         "vs orjson": us / base})  # fmt: skip
        if label != "GUILD_CREATE large":
            ratio = times["slim Struct"] / base
            verdicts.append(f"{label}: slim Struct {ratio:.2f}x orjson (bar <= 0.6): "
                            + ("ok" if ratio <= 0.6 else "MISSED"))  # fmt: skip
        if event_type is EventType.GUILD_CREATE:
            ratio = times["full model"] / base
            verdicts.append(f"{label}: full model {ratio:.2f}x orjson (bar <= 1.0): "
                            + ("ok" if ratio <= 1.0 else "MISSED"))  # fmt: skip
    print(table(rows, ["payload", "decoder", "µs", "vs orjson"]))
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()

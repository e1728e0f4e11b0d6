"""Where the examples connect: Discord, or the local gateway emulator.

- ``DISCORD_TOKEN=... python examples/one_shard.py``: Discord, until Ctrl-C.
- ``python examples/one_shard.py --emulator`` (or ``GATEWAY_EXAMPLE_EMULATOR=1``): the
  emulator from :mod:`gateway.testing`, in this process; no token needed, and each example
  stops by itself once it has shown what it shows.

Your own bot needs none of this: give ``Shard``/``Config`` your token, and leave
``gateway_url`` and ``api_base_url`` at their defaults.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from gateway.config import DEFAULT_GATEWAY_URL
from gateway.http import DEFAULT_API_BASE_URL
from gateway.testing import GatewayEmulator

__all__ = ["Target", "target", "emulated"]


def emulated() -> bool:
    """Whether to run against the emulator (``--emulator`` or GATEWAY_EXAMPLE_EMULATOR=1)."""
    return "--emulator" in sys.argv[1:] or os.environ.get("GATEWAY_EXAMPLE_EMULATOR") == "1"


@dataclass(frozen=True)
class Target:
    """A token and the URLs to use it with."""

    token: str
    gateway_url: str
    api_url: str
    #: The emulator, or None on Discord.
    emulator: GatewayEmulator | None

    def enough(self, count: int, wanted: int) -> bool:
        """On the emulator, whether ``count`` reached ``wanted``; on Discord, never."""
        return self.emulator is not None and count >= wanted


@asynccontextmanager
async def target(**emulator_options: Any) -> AsyncIterator[Target]:
    """Discord with ``DISCORD_TOKEN``, or an emulator started with ``emulator_options``."""
    if emulated():
        async with GatewayEmulator(**emulator_options) as emulator:
            yield Target("emulator-token", emulator.url, emulator.api_url, emulator)
        return
    token = os.environ.get("DISCORD_TOKEN")
    if not token:
        sys.exit("set DISCORD_TOKEN, or pass --emulator (GATEWAY_EXAMPLE_EMULATOR=1)")
    yield Target(token, DEFAULT_GATEWAY_URL, DEFAULT_API_BASE_URL, None)

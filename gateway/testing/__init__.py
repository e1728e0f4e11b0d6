"""gateway.testing: a local Discord gateway emulator for tests, benchmarks and demos.

    from gateway.testing import GatewayEmulator

    async with GatewayEmulator(heartbeat_interval=1.0, guilds=10) as emulator:
        ...  # point a shard at emulator.url, or HTTP discovery at emulator.api_url

See :class:`GatewayEmulator` for the options, the fault hooks and the records.
:class:`HostileServer` (:mod:`gateway.testing.hostile`) is the scriptable server that
misbehaves down to the byte level, for testing a bot against a hostile or odd gateway.
"""

from __future__ import annotations

from .corpus import Corpus, load_payload
from .emulator import EmulatedConnection, EmulatedSession, GatewayEmulator, Record, Violation
from .hostile import HostileConnection, HostileServer

__all__ = [
    "Corpus",
    "EmulatedConnection",
    "EmulatedSession",
    "GatewayEmulator",
    "HostileConnection",
    "HostileServer",
    "Record",
    "Violation",
    "load_payload",
]

"""A bare websockets client for testing the emulator without the project's shard."""

from __future__ import annotations

import json
import zlib
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


class BareClient:
    """Speaks the gateway protocol by hand: decode every compression mode, send dicts."""

    def __init__(self, ws: ClientConnection, compress: str | None) -> None:
        self.ws = ws
        self.compress = compress
        self._inflate = zlib.decompressobj()
        self._buffer = bytearray()
        self._zstd: Any = None
        if compress == "zstd-stream":
            import zstandard

            self._zstd = zstandard.ZstdDecompressor().decompressobj()

    @classmethod
    async def open(
        cls, base: str, compress: str | None = None, query: str | None = None
    ) -> BareClient:
        if query is None:
            query = "v=10&encoding=json" + (f"&compress={compress}" if compress else "")
        ws = await connect(f"{base}/?{query}", compression=None, max_size=None, ping_interval=None)
        return cls(ws, compress)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next whole gateway payload."""
        import asyncio

        while True:
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
            if self.compress == "zlib-stream":
                assert isinstance(frame, bytes)
                self._buffer += frame
                if not self._buffer.endswith(b"\x00\x00\xff\xff"):
                    continue
                text = self._inflate.decompress(bytes(self._buffer))
                self._buffer.clear()
            elif self.compress == "zstd-stream":
                assert isinstance(frame, bytes)
                text = self._zstd.decompress(frame)
            elif isinstance(frame, bytes):
                text = zlib.decompress(frame)
            else:
                text = frame.encode()
            return json.loads(text)  # type: ignore[no-any-return]

    async def recv_until(self, t: str | None = None, op: int | None = None) -> dict[str, Any]:
        while True:
            payload = await self.recv()
            if (t is None or payload["t"] == t) and (op is None or payload["op"] == op):
                return payload

    async def send(self, payload: Any) -> None:
        await self.ws.send(payload if isinstance(payload, str) else json.dumps(payload))

    async def identify(
        self, token: str = "token", intents: int = 513, shard: list[int] | None = None, **extra: Any
    ) -> None:
        d = {"token": token, "intents": intents, "properties": {"os": "linux", "browser": "t",
             "device": "t"}, **extra}  # fmt: skip
        if shard is not None:
            d["shard"] = shard
        await self.send({"op": 2, "d": d})

    async def closed_code(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; the close code (None for a bare drop)."""
        import asyncio

        import websockets

        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None

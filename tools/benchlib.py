"""Shared pieces of the benchmarks: the emulator in its own process, workers, measures, tables.

Every benchmark runs the emulator in a separate process (so the client's CPU time is its
own) and each competitor in a fresh worker process (so RSS and imports do not mix).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "benchmark-token"


@dataclass
class Emulator:
    url: str
    api_url: str
    process: subprocess.Popen[str]


@contextlib.contextmanager
def emulator(**options: Any) -> Iterator[Emulator]:
    """``python -m gateway emulator`` on a free loopback port with ``--option value`` each."""
    argv = [sys.executable, "-m", "gateway", "emulator", "--port", "0"]
    for key, value in options.items():
        if value is True:
            argv.append(f"--{key.replace('_', '-')}")
        elif value is not False:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=_gateway_home(),
                            env=_env())  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the emulator did not start: {line!r}")
        url = line.split()[-1]  # ws:// or, with --certfile, wss://
        yield Emulator(url, url.replace("ws", "http", 1) + "/api/v10", proc)
    finally:
        proc.terminate()
        proc.wait(10)


def _gateway_home() -> str:
    """Where the gateway this process imports lives (an install, or the source tree)."""
    try:
        import gateway
    except ImportError:
        return str(ROOT)
    return str(Path(gateway.__file__).resolve().parent.parent)


def _env() -> dict[str, str]:
    """Children import the same gateway as this process (with its compiled speedups)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = _gateway_home() + os.pathsep + env.get("PYTHONPATH", "")
    return env


@contextlib.contextmanager
def test_certificate() -> Iterator[tuple[str, str]]:
    """A trustme CA and a leaf for 127.0.0.1/localhost: ``(certfile, cafile)`` paths (the
    leaf's chain with its key, for the emulator's ``--certfile``; the CA, for clients, e.g.
    as ``SSL_CERT_FILE``, which every default context honours). Needs ``trustme`` (dev).
    """
    import tempfile

    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    with tempfile.TemporaryDirectory() as folder:
        certfile, cafile = os.path.join(folder, "leaf.pem"), os.path.join(folder, "ca.pem")
        leaf.private_key_and_cert_chain_pem.write_to_path(certfile)
        ca.cert_pem.write_to_path(cafile)
        yield certfile, cafile


def run_worker(script: str, *args: object, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``script --worker args...`` in a fresh interpreter; its last stdout line is JSON."""
    argv = [sys.executable, str(ROOT / "tools" / script), "--worker", *map(str, args)]
    full_env = _env()
    full_env.update(env or {})
    done = subprocess.run(argv, capture_output=True, text=True, cwd=_gateway_home(),
                          env=full_env, timeout=600)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def raise_fd_limit() -> None:
    """Allow thousands of sockets in one process."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss() -> int:
    """Resident set size now, in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """Peak resident set size of this process, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Clock:
    """Wall and CPU seconds since creation."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def elapsed(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain text table (the first column left-aligned, the others right-aligned)."""
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]

    def line(row: Sequence[str]) -> str:
        pairs = enumerate(zip(row, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine() -> str:
    """One line about this machine and Python."""
    import platform

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def hikari_shard(url: str, shard_id: int, shard_count: int, intents: int,
                 on_event: Any = None, http_settings: Any = None) -> Any:  # fmt: skip
    """hikari's GatewayShardImpl with stub event manager/factory (raw events to ``on_event``).

    zlib-stream like ours; hikari needs no bot object to run a shard this way. Give many
    shards one ``http_settings`` (as hikari's GatewayBot does): each ``HTTPSettings()``
    builds its own SSLContext (~840 KB), used or not.
    """
    import hikari
    from hikari.impl import config as hconfig
    from hikari.impl import shard as hshard

    class Anything:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kwargs: None

    class Manager:
        def consume_raw_event(self, name: str, shard: object, data: object) -> None:
            if on_event is not None:
                on_event(name)

        async def dispatch(self, event: object, **kwargs: Any) -> None:
            pass

    return hshard.GatewayShardImpl(
        intents=hikari.Intents(intents), shard_id=shard_id, shard_count=shard_count,
        http_settings=http_settings or hconfig.HTTPSettings(),
        proxy_settings=hconfig.ProxySettings(),
        event_manager=Manager(), event_factory=Anything(), token=TOKEN, url=url,
        compression=hikari.api.GatewayCompression.TRANSPORT_ZLIB_STREAM,
    )  # fmt: skip

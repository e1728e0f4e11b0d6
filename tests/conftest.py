"""Shared fixtures: the payload corpus, both speedup implementations, the event loop.

``GATEWAY_TEST_LOOP=uvloop`` runs every async test on uvloop (default: asyncio's own loop).
A test marked ``@pytest.mark.asyncio(loop_factories=LOOPS)`` runs on both, whatever the
variable says (uvloop's run is skipped where uvloop is not installed).

``GATEWAY_TEST_READ_INTERVAL=0.005`` makes every shard read its socket in batches (as
``Config(read_interval=0.005)`` does, through the loop's poller) unless its config names an
interval: the end-to-end tests then check batched reading too.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import gateway
from gateway import _speedups

PAYLOADS = Path(__file__).resolve().parent.parent / "gateway" / "testing" / "payloads"

#: The loops a test can ask for with ``@pytest.mark.asyncio(loop_factories=LOOPS)``.
LOOPS = ["asyncio", "uvloop"]


def _loop_factories() -> dict[str, Any]:
    factories: dict[str, Any] = {"asyncio": asyncio.new_event_loop}
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        factories["uvloop"] = uvloop.new_event_loop
    return factories


LOOP = os.environ.get("GATEWAY_TEST_LOOP", "asyncio").strip() or "asyncio"
READ_INTERVAL = float(os.environ.get("GATEWAY_TEST_READ_INTERVAL", "0") or 0)


@pytest.fixture(autouse=True)
def _batched_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """With GATEWAY_TEST_READ_INTERVAL: shards whose config reads as data arrives read in
    batches (connections a test opens itself keep what they ask for).
    """
    if not READ_INTERVAL:
        return
    import gateway.shard
    from gateway.transport import Connection

    class Batched(Connection):
        @classmethod
        async def open(cls, url: str, **kwargs: Any) -> Connection:
            if kwargs.get("read_interval", 0) in (0, "auto"):
                kwargs["read_interval"] = READ_INTERVAL
            return await Connection.open.__func__(cls, url, **kwargs)  # type: ignore[attr-defined,no-any-return]

    monkeypatch.setattr(gateway.shard, "Connection", Batched)


def pytest_configure(config: pytest.Config) -> None:
    if LOOP not in LOOPS:
        raise pytest.UsageError(f"GATEWAY_TEST_LOOP={LOOP!r}: choose one of {', '.join(LOOPS)}")
    if LOOP not in _loop_factories():
        raise pytest.UsageError(f"GATEWAY_TEST_LOOP={LOOP!r} but it is not installed")


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """The loop of every async test: GATEWAY_TEST_LOOP's, or each installed one for a test
    that names loops in its asyncio marker.
    """
    factories = _loop_factories()
    marker = item.get_closest_marker("asyncio")
    if marker is not None and "loop_factories" in marker.kwargs:
        return factories
    return {LOOP: factories[LOOP]}


def load_payload(name: str) -> Any:
    """One example payload from the corpus, decoded."""
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def payload_names() -> list[str]:
    return sorted(p.stem for p in PAYLOADS.glob("*.json"))


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A trustme CA and TLS contexts for loopback tests: ``server`` (a leaf for 127.0.0.1
    and localhost), ``client`` (trusts only that CA, verifies as usual), ``ca`` (to issue
    more leaves) and ``cafile`` (the CA in PEM).
    """
    import ssl

    import trustme

    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    cafile = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    return SimpleNamespace(ca=ca, server=server, client=client, cafile=str(cafile))


def server_context(leaf: Any) -> Any:
    """A server context presenting ``leaf`` (a trustme LeafCert)."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(context)
    return context


@pytest.fixture(params=sorted(_speedups.twins()))
def speedups(request: pytest.FixtureRequest) -> SimpleNamespace:
    """Each available implementation of the speedups (pure Python, and Cython when built)."""
    return _speedups.twins()[request.param]


def child_env(**env: str) -> tuple[dict[str, str], str]:
    """Environment and working directory for a child interpreter that imports the same
    gateway package as this process (source tree or install), without GATEWAY_* variables.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    home = str(Path(gateway.__file__).resolve().parent.parent)
    full_env["PYTHONPATH"] = home
    full_env.update(env)
    return full_env, home


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with extra environment variables."""
    full_env, home = child_env(**env)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, env=full_env, timeout=60, cwd=home,
    )  # fmt: skip

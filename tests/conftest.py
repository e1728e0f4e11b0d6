"""Shared fixtures: the payload corpus and both speedup implementations."""

from __future__ import annotations

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


def load_payload(name: str) -> Any:
    """One example payload from the corpus, decoded."""
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def payload_names() -> list[str]:
    return sorted(p.stem for p in PAYLOADS.glob("*.json"))


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

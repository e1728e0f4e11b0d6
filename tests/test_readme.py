"""The README's runnable examples (those using the emulator) run as they are written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import child_env

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
RUNNABLE = [b for b in BLOCKS if "GatewayEmulator(" in b and "asyncio.run(" in b]


def test_the_readme_has_runnable_examples() -> None:
    assert len(RUNNABLE) >= 2
    assert any("create_recommended" in b and "ShardEventStream" in b for b in RUNNABLE)


@pytest.mark.parametrize("code", RUNNABLE, ids=[f"example{i}" for i in range(len(RUNNABLE))])
def test_readme_example_runs(code: str) -> None:
    env, home = child_env()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=home,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()

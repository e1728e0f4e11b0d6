"""The sans-I/O rooms import no I/O: asyncio, socket, websockets, time (design.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gateway"
PURE = [
    "protocol",
    "state",
    "ratelimit",
    "latency",
    "session",
    "events",
    "commands",
    "intents",
    "config",
    "errors",
    "close",
    "opcode",
    "shard_id",
]
FORBIDDEN = {"asyncio", "socket", "websockets", "time", "selectors", "ssl", "threading"}


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module: str) -> None:
    path = PACKAGE / f"{module}.py"
    if not path.exists():
        pytest.skip(f"{module}.py does not exist yet")
    tree = ast.parse(path.read_text())
    # Imports only seen by type checkers (under `if TYPE_CHECKING:`) never run.
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, f"{module}.py imports {imported & FORBIDDEN}"


def test_every_module_declares_all() -> None:
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__main__.py":
            continue
        assert "__all__" in path.read_text(), f"{path} has no __all__"

"""The rooms of the library (design.md): the sans-I/O ones import no I/O (asyncio, socket,
websockets, time), and nothing outside gateway/service/ imports the command line.
"""

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


def imports(path: Path, module: str | None = None) -> set[str]:
    """Every module ``path`` imports, absolute, wherever the import is (module level,
    functions, ``if TYPE_CHECKING:``); ``from X import y`` counts as ``X`` and ``X.y``, since
    ``y`` may be a submodule. A literal ``importlib.import_module("...")`` counts too.
    ``module``: the file's dotted name (default: from its place under gateway/).
    """
    if module is None:
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        module = module.removesuffix(".__init__")
    parts = module.split(".")
    package = parts if path.name == "__init__.py" else parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            found.add(source)
            found |= {f"{source}.{alias.name}" for alias in node.names}
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def library_modules() -> list[Path]:
    """Every module of the library: all of gateway/ but the command line."""
    service = PACKAGE / "service"
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if service not in path.parents and path != PACKAGE / "__main__.py"
    ]


def is_service(name: str) -> bool:
    return name == "gateway.service" or name.startswith("gateway.service.")


def test_the_command_line_lives_in_gateway_service() -> None:
    for name in ("__init__", "cli", "run", "demo"):
        assert (PACKAGE / "service" / f"{name}.py").exists(), name
    for gone in ("cli", "runner", "demo", "redis"):
        assert not (PACKAGE / f"{gone}.py").exists(), f"gateway/{gone}.py is back"
    assert "gateway.service.cli" in imports(PACKAGE / "__main__.py")


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("gateway.shard", "from .service.run import ShardSpec"),
        ("gateway.shard", "from . import service"),
        ("gateway.redis.streams", "from ..service import cli"),
        ("gateway.redis", "from ..service.run import run_worker"),
        ("gateway.stream", "import gateway.service.demo"),
        ("gateway.stream", "from gateway.service import run"),
        ("gateway.stream", "import importlib\nimportlib.import_module('gateway.service.run')"),
        (
            "gateway.stream",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .service import run",
        ),
        ("gateway.stream", "def later() -> None:\n    from .service.cli import main"),
    ],
)
def test_the_checker_sees_every_kind_of_import(tmp_path: Path, module: str, source: str) -> None:
    path = tmp_path / ("__init__.py" if module == "gateway.redis" else "module.py")
    path.write_text(source + "\n")
    assert any(is_service(name) for name in imports(path, module)), source
    path.write_text(source.replace("service", "queue") + "\n")
    assert not any(is_service(name) for name in imports(path, module)), source


def test_the_library_never_imports_the_command_line() -> None:
    modules = library_modules()
    assert PACKAGE / "redis" / "streams.py" in modules and PACKAGE / "shard.py" in modules
    for path in modules:
        bad = sorted(filter(is_service, imports(path)))
        assert not bad, f"{path.relative_to(PACKAGE.parent)} imports the command line: {bad}"


def test_the_redis_package_is_library_only() -> None:
    paths = sorted((PACKAGE / "redis").glob("*.py"))
    assert {p.name for p in paths} >= {"__init__.py", "queue.py", "sessions.py", "streams.py"}
    assert "gateway.queue" in imports(PACKAGE / "redis" / "queue.py")  # from ..queue import
    for path in paths:
        bad = sorted(name for name in imports(path) if name == "argparse" or is_service(name))
        assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {bad}"

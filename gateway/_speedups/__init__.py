"""Speedups: pure-Python modules with compiled (Cython) twins, chosen once at import.

Each concern is a pair ``_x_py.py`` / ``_x_c.pyx`` with the same functions and errors.
``BACKEND`` is ``"cython"`` when the compiled twins are used and ``"python"`` otherwise.

- ``GATEWAY_NO_EXTENSIONS=1`` forces the pure-Python twins.
- ``GATEWAY_REQUIRE_EXTENSIONS=1`` makes a missing or broken compiled twin an ImportError
  (CI uses it to catch a build that silently fell back).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from . import _scan_py
from ._errors import ScanError

__all__ = ["BACKEND", "ScanError", "scan", "env_flag", "twins"]


def env_flag(name: str) -> bool:
    """Read a 0/1 environment flag; anything else is an ImportError naming the variable."""
    value = os.environ.get(name, "").strip()
    if value in ("", "0"):
        return False
    if value == "1":
        return True
    raise ImportError(f"{name}={value!r} is not valid: use 1 (on) or 0 / unset (off)")


def _load_compiled() -> ModuleType | None:
    require = env_flag("GATEWAY_REQUIRE_EXTENSIONS")
    if env_flag("GATEWAY_NO_EXTENSIONS"):
        if require:
            raise ImportError(
                "GATEWAY_NO_EXTENSIONS=1 and GATEWAY_REQUIRE_EXTENSIONS=1 contradict each other"
            )
        return None
    try:
        compiled = importlib.import_module("gateway._speedups._scan_c")
    except ImportError as exc:
        if require:
            raise ImportError(
                "GATEWAY_REQUIRE_EXTENSIONS=1 but the compiled speedups are not importable "
                f"({exc}); reinstall with a C compiler: pip install --force-reinstall "
                "--no-binary gateway 'gateway[fast]'"
            ) from exc
        return None
    return compiled


_compiled = _load_compiled()
BACKEND: str = "python" if _compiled is None else "cython"
scan = _scan_py.scan if _compiled is None else _compiled.scan


def twins() -> dict[str, ModuleType]:
    """Every available implementation of the scanner, by backend name (for tests)."""
    found: dict[str, ModuleType] = {"python": _scan_py}
    try:
        found["cython"] = importlib.import_module("gateway._speedups._scan_c")
    except ImportError:
        pass
    return found

"""Speedups: pure-Python modules with compiled (Cython) twins, chosen once at import.

Each concern is a pair ``_x_py.py`` / ``_x_c.pyx`` with the same functions and errors.
``BACKEND`` is ``"cython"`` when the compiled twins are used and ``"python"`` otherwise.
Both twins check and convert their arguments through the same ``_args`` functions, so they
accept and reject the same inputs alike (``_args`` lists what each entry point takes).

- ``GATEWAY_NO_EXTENSIONS=1`` forces the pure-Python twins.
- ``GATEWAY_REQUIRE_EXTENSIONS=1`` makes a missing or broken compiled twin an ImportError
  (CI uses it to catch a build that silently fell back).
"""

from __future__ import annotations

import importlib
import os
from types import SimpleNamespace

from . import _dispatch_py, _frames_py, _inflate_py, _scan_py
from ._errors import CompressionError, FrameError, ScanError

__all__ = [
    "BACKEND",
    "CompressionError",
    "Dispatcher",
    "FrameError",
    "FrameReader",
    "ScanError",
    "ZlibStream",
    "scan",
    "env_flag",
    "twins",
]

#: The compiled twins, each beside its pure module of the same stem.
_COMPILED = (
    "gateway._speedups._scan_c",
    "gateway._speedups._frames_c",
    "gateway._speedups._inflate_c",
    "gateway._speedups._dispatch_c",
)


def env_flag(name: str) -> bool:
    """Read a 0/1 environment flag; anything else is an ImportError naming the variable."""
    value = os.environ.get(name, "").strip()
    if value in ("", "0"):
        return False
    if value == "1":
        return True
    raise ImportError(f"{name}={value!r} is not valid: use 1 (on) or 0 / unset (off)")


def _import_compiled() -> SimpleNamespace:
    scan_c, frames_c, inflate_c, dispatch_c = (importlib.import_module(n) for n in _COMPILED)
    return SimpleNamespace(
        scan=scan_c.scan,
        FrameReader=frames_c.FrameReader,
        ZlibStream=inflate_c.ZlibStream,
        Dispatcher=dispatch_c.Dispatcher,
    )


def _load_compiled() -> SimpleNamespace | None:
    require = env_flag("GATEWAY_REQUIRE_EXTENSIONS")
    if env_flag("GATEWAY_NO_EXTENSIONS"):
        if require:
            raise ImportError(
                "GATEWAY_NO_EXTENSIONS=1 and GATEWAY_REQUIRE_EXTENSIONS=1 contradict each other"
            )
        return None
    try:
        compiled = _import_compiled()
    except ImportError as exc:
        if require:
            raise ImportError(
                "GATEWAY_REQUIRE_EXTENSIONS=1 but the compiled speedups are not importable "
                f"({exc}); reinstall with a C compiler: pip install --force-reinstall "
                "--no-binary gateway 'gateway[fast]'. In a source checkout, `python -m "
                "pytest` imports the checkout before the installed build: run `pytest`, or "
                "build in place (python setup.py build_ext --inplace)"
            ) from exc
        return None
    return compiled


_compiled = _load_compiled()
BACKEND: str = "python" if _compiled is None else "cython"
_PURE = SimpleNamespace(
    scan=_scan_py.scan,
    FrameReader=_frames_py.FrameReader,
    ZlibStream=_inflate_py.ZlibStream,
    Dispatcher=_dispatch_py.Dispatcher,
)
_chosen = _PURE if _compiled is None else _compiled
scan = _chosen.scan
FrameReader = _chosen.FrameReader
ZlibStream = _chosen.ZlibStream
Dispatcher = _chosen.Dispatcher


def twins() -> dict[str, SimpleNamespace]:
    """Every implementation (``.scan``, ``.FrameReader``, ``.ZlibStream``, ``.Dispatcher``)
    by backend.
    """
    found = {"python": _PURE}
    try:
        found["cython"] = _import_compiled()
    except ImportError:
        pass
    return found

"""The suite tests the build it means to: not a source checkout that shadows the install.

``python -m pytest`` puts the current directory first on ``sys.path``. Run in a checkout,
it imports the source tree (pure-Python twins only, unless built in place) instead of
the installed build, so the compiled twins go untested while every test passes. This
module makes that loud: it fails when the imported ``gateway`` has no compiled twins but
another ``gateway`` on ``sys.path`` has them, and, with ``GATEWAY_REQUIRE_EXTENSIONS=1``,
whenever the pure twins are in use. It imports nothing from conftest, so that a child
pytest can run it alone (the last test does, in a checkout that shadows an install).
"""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gateway
from gateway import _speedups

HOW_TO_FIX = (
    "`python -m pytest` puts the current directory (the checkout) first on sys.path, so "
    "the tests import the source tree instead of the installed build and the compiled "
    "twins go untested. Run `pytest` (the installed build), or build the twins in place: "
    "`python setup.py build_ext --inplace`."
)


def _has_compiled_twins(package: Path) -> bool:
    """Whether ``package`` (a ``gateway`` directory) holds compiled twins this interpreter
    can load (an extension suffix of this Python: ``.cpython-311-x86_64-linux-gnu.so``...).
    """
    folder = package / "_speedups"
    return any(
        (folder / f"_scan_c{suffix}").exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES
    )


def _shadowed_builds() -> list[Path]:
    """Other ``gateway`` packages on ``sys.path`` with compiled twins than the one imported."""
    imported = Path(gateway.__file__).resolve().parent
    found = []
    for entry in sys.path:
        candidate = Path(entry or os.getcwd()) / "gateway"
        try:
            resolved = candidate.resolve()
        except OSError:
            continue
        if resolved != imported and (candidate / "__init__.py").exists():
            if _has_compiled_twins(candidate) and resolved not in found:
                found.append(resolved)
    return found


def test_the_compiled_twins_are_not_shadowed_by_a_source_checkout() -> None:
    if _speedups.env_flag("GATEWAY_NO_EXTENSIONS"):
        pytest.skip("GATEWAY_NO_EXTENSIONS=1: the pure twins are asked for")
    if _speedups.BACKEND == "cython":
        return
    shadowed = _shadowed_builds()
    assert not shadowed, (
        f"the tests import gateway from {Path(gateway.__file__).parent}, which has no "
        f"compiled twins, while {', '.join(map(str, shadowed))} has them. {HOW_TO_FIX}"
    )


def test_the_compiled_twins_are_in_use_when_required() -> None:
    if not _speedups.env_flag("GATEWAY_REQUIRE_EXTENSIONS"):
        pytest.skip("GATEWAY_REQUIRE_EXTENSIONS is not set (CI sets it)")
    assert _speedups.BACKEND == "cython", (
        f"GATEWAY_REQUIRE_EXTENSIONS=1 but gateway from {Path(gateway.__file__).parent} "
        f"runs its pure-Python twins. {HOW_TO_FIX}"
    )


def test_python_m_pytest_in_a_checkout_that_shadows_a_build_fails_loudly(
    tmp_path: Path,
) -> None:
    """The trap itself: a checkout without compiled twins, a build with them on
    PYTHONPATH (where an install would be), ``python -m pytest`` run in the checkout.
    """
    source = Path(gateway.__file__).resolve().parent
    if not _has_compiled_twins(source):
        pytest.skip("the compiled twins are not built here: no build to shadow")
    ignore_sources = shutil.ignore_patterns("*.c", "*.html", "__pycache__")
    site, checkout = tmp_path / "site", tmp_path / "checkout"
    shutil.copytree(source, site / "gateway", ignore=ignore_sources)
    shutil.copytree(
        source,
        checkout / "gateway",
        ignore=shutil.ignore_patterns("*.c", "*.html", "__pycache__", "*.so", "*.pyd"),
    )
    shutil.copy(Path(__file__), checkout / "test_build_import.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PYTEST_"))}
    env["PYTHONPATH"] = str(site)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "test_build_import.py", "-k", "shadowed"],
        capture_output=True, text=True, timeout=60, cwd=checkout, env=env,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    out = " ".join(done.stdout.split())
    assert "1 failed" in out and "python setup.py build_ext --inplace" in out, out
    assert str(site / "gateway") in out, out

"""The optional Cython build: no compiler gives a working pure-Python install, with a warning."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _have_build_tools() -> bool:
    try:
        import Cython  # noqa: F401
        import setuptools  # noqa: F401
        import wheel  # noqa: F401
    except ImportError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _have_build_tools(), reason="needs setuptools, wheel, Cython")


def _site_packages() -> str:
    import websockets

    return str(Path(websockets.__file__).resolve().parent.parent)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without GATEWAY_* variables (CI sets some), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(extra)
    return env


def build_wheel(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Build a wheel from a copy of the source tree (no network, no build isolation)."""
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "*.so", "*.c", "__pycache__", ".*_cache", "*.egg-info"
        ),
    )
    full_env = clean_env(**env)
    out = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(out), str(src)],
        capture_output=True, text=True, env=full_env, timeout=300,
    )  # fmt: skip
    return result, out


def wheel_files(out: Path) -> list[str]:
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel).namelist()


def test_no_compiler_gives_pure_install_with_one_warning(tmp_path: Path) -> None:
    result, out = build_wheel(tmp_path, CC="false")
    assert result.returncode == 0, result.stderr[-2000:]
    log = result.stdout + result.stderr
    assert log.count("WARNING: could not compile gateway._speedups._scan_c") == 1
    files = wheel_files(out)
    assert not [f for f in files if f.endswith((".so", ".pyd", ".c"))]
    # The wheel works: its speedups backend is the pure one.
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         "--target", str(target), *map(str, out.glob("*.whl"))],
        check=True, timeout=120,
    )  # fmt: skip
    probe = subprocess.run(
        # -S: no site hooks (an editable install's finder would win over PYTHONPATH); the
        # dependencies come from this interpreter's site-packages, after the new install.
        [sys.executable, "-S", "-c", "import gateway.backends as b; print(b.SPEEDUPS, b.__file__)"],
        capture_output=True, text=True,
        env=clean_env(PYTHONPATH=os.pathsep.join([str(target), _site_packages()])),
        cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    speedups, path = probe.stdout.split()
    assert speedups == "python" and path.startswith(str(target))


def test_no_extensions_skips_build_silently(tmp_path: Path) -> None:
    result, out = build_wheel(tmp_path, GATEWAY_NO_EXTENSIONS="1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "WARNING: could not" not in result.stdout + result.stderr
    assert not [f for f in wheel_files(out) if f.endswith(".so")]


def test_require_extensions_turns_failed_build_into_error(tmp_path: Path) -> None:
    result, _ = build_wheel(tmp_path, CC="false", GATEWAY_REQUIRE_EXTENSIONS="1")
    assert result.returncode != 0


def test_build_with_compiler_ships_extension(tmp_path: Path) -> None:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    result, out = build_wheel(tmp_path, GATEWAY_REQUIRE_EXTENSIONS="1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert [f for f in wheel_files(out) if "_scan_c" in f and f.endswith(".so")]

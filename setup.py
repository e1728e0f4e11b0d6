"""Build script: the Cython speedups are optional extensions.

- No Cython, no compiler, or a failed compile: one clear warning, a pure-Python install.
- ``GATEWAY_NO_EXTENSIONS=1``: do not even try.
- ``GATEWAY_REQUIRE_EXTENSIONS=1``: a failed build is an error (CI uses this).
"""

from __future__ import annotations

import glob
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip() == "1"


REQUIRE = _flag("GATEWAY_REQUIRE_EXTENSIONS")
SKIP = _flag("GATEWAY_NO_EXTENSIONS") and not REQUIRE


def _warn(message: str) -> None:
    line = "=" * 74
    sys.stderr.write(
        f"\n{line}\nWARNING: {message}\n"
        "The pure-Python speedups will be used; everything works, only slower.\n"
        f"{line}\n\n"
    )


class OptionalBuildExt(build_ext):
    """Build the extensions, but fall back to pure Python if that fails."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler at all
            if REQUIRE:
                raise
            _warn(f"could not build the gateway Cython speedups ({exc}).")

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRE:
                raise
            _warn(f"could not compile {ext.name} ({exc}).")


def _extensions() -> list:  # type: ignore[type-arg]
    if SKIP:
        return []
    sources = sorted(glob.glob("gateway/_speedups/*_c.pyx"))
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE:
            raise
        _warn("Cython is not installed, so the speedups cannot be built.")
        return []
    from setuptools import Extension

    extensions = [
        Extension(path[:-4].replace("/", "."), [path], extra_compile_args=["-O3"])
        for path in sources
    ]
    return cythonize(extensions, language_level=3, quiet=True)


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})

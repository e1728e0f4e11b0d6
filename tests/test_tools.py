"""The fuzzer and the benchmarks' shared pieces work (the benchmarks themselves are tools)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import child_env
from gateway import _speedups

TOOLS = Path(__file__).resolve().parent.parent / "tools"

# The fuzzer compares the compiled twins with the pure ones, in a child importing the same
# gateway as this process: without compiled twins there it has nothing to fuzz (exit 2).
# Under `python -m pytest` in a checkout that is the source tree, even when the installed
# build has them (test_build_import.py fails loudly for that case).
NEEDS_COMPILED_TWINS = pytest.mark.skipif(
    "cython" not in _speedups.twins(),
    reason=(
        f"the imported gateway ({Path(_speedups.__file__).parent.parent}) has no compiled "
        "twins to fuzz: build them in place (python setup.py build_ext --inplace), or run "
        "`pytest` against an installed build (`python -m pytest` in a checkout imports the "
        "source tree)"
    ),
)


@NEEDS_COMPILED_TWINS
def test_fuzzer_finds_no_difference_on_a_short_run() -> None:
    done = subprocess.run(
        [sys.executable, str(TOOLS / "fuzz_speedups.py"), "--inputs", "12000", "--seed", "7"],
        capture_output=True, text=True, timeout=120, env=child_env()[0],
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "12,000 inputs" in done.stdout and "0 mismatches" in done.stdout
    for target in ("scan", "frames", "reentrant", "inflater", "zlib", "dispatch"):
        assert f"{target} 2,000" in done.stdout


@NEEDS_COMPILED_TWINS
@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_coverage_guided_fuzzer_runs_every_target() -> None:
    done = subprocess.run(
        [sys.executable, str(TOOLS / "fuzz_speedups.py"), "--atheris", "--seconds", "6"],
        capture_output=True, text=True, timeout=120, env=child_env()[0],
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "0 failed" in done.stdout
    for target in ("scan", "frames", "reentrant", "inflater", "zlib", "dispatch"):
        assert re.search(rf"^{target} +[0-9,]+ inputs in .* ok$", done.stdout, re.M), done.stdout


def test_fuzz_targets_catch_a_divergence(monkeypatch: pytest.MonkeyPatch) -> None:
    """A twin that differs (here: scan off by one) fails the target, so CI would fail."""
    sys.path.insert(0, str(TOOLS))
    try:
        import fuzz_speedups as fuzz
    finally:
        sys.path.remove(str(TOOLS))
    fuzz.load()
    pure = fuzz.PY.scan
    monkeypatch.setattr(fuzz, "CY", SimpleNamespace(**{**vars(fuzz.PY), "scan": pure}))
    fuzz.t_scan(b'\x00{"op":1}')  # the same function on both sides: no difference
    monkeypatch.setattr(
        fuzz, "CY", SimpleNamespace(**{**vars(fuzz.PY), "scan": lambda d: (pure(d)[0] + 1,)})
    )
    with pytest.raises(fuzz.Divergence, match="scan: input"):
        fuzz.t_scan(b'\x00{"op":1}')


def test_bench_decode_runs_small() -> None:
    done = subprocess.run(
        [sys.executable, str(TOOLS / "bench_decode.py"), "--events", "300", "--seconds", "0"],
        capture_output=True, text=True, timeout=120, env=child_env()[0],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "limit: inflate + JSON decode" in done.stdout and "pipeline (python)" in done.stdout


def test_bench_models_runs_small() -> None:
    done = subprocess.run(
        [sys.executable, str(TOOLS / "bench_models.py"), "--seconds", "0", "--repeat", "1",
         "--no-large"],
        capture_output=True, text=True, timeout=120, env=child_env()[0],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for row in ("orjson.loads", "full model", "slim Struct", "event(): slim"):
        assert row in done.stdout
    assert "GUILD_CREATE: full model" in done.stdout


def test_bench_stream_measures_idle_memory_over_wss() -> None:
    done = subprocess.run(
        [sys.executable, str(TOOLS / "bench_stream.py"), "--shards", "3", "--tls",
         "--only", "memory"],
        capture_output=True, text=True, timeout=120, env=child_env()[0],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {line.split("  ")[0].strip(): line.split() for line in done.stdout.splitlines()}
    assert "gateway ws (3)" in rows and "gateway wss (3)" in rows, done.stdout
    float(rows["gateway wss (3)"][3])  # KiB/shard: a number

"""The fuzzer and the benchmarks' shared pieces work (the benchmarks themselves are tools)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import child_env
from gateway import _speedups

TOOLS = Path(__file__).resolve().parent.parent / "tools"


@pytest.mark.skipif("cython" not in _speedups.twins(), reason="the Cython speedups are not built")
def test_fuzzer_finds_no_difference_on_a_short_run() -> None:
    done = subprocess.run(
        [sys.executable, str(TOOLS / "fuzz_speedups.py"), "--inputs", "20000", "--seed", "7"],
        capture_output=True, text=True, timeout=120, env=child_env()[0],
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "20,000 inputs" in done.stdout and "0 mismatches" in done.stdout


def test_bench_decode_runs_small() -> None:
    done = subprocess.run(
        [sys.executable, str(TOOLS / "bench_decode.py"), "--events", "300", "--seconds", "0"],
        capture_output=True, text=True, timeout=120, env=child_env()[0],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "limit: inflate + JSON decode" in done.stdout and "pipeline (python)" in done.stdout


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

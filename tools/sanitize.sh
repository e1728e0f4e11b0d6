#!/usr/bin/env bash
# Build the Cython speedups with AddressSanitizer + UndefinedBehaviorSanitizer and run the
# twin tests and a short fuzz under them. Prints the number of sanitizer reports; exits 1
# on any report, a test failure or a divergence.
#
#   bash tools/sanitize.sh                 # twin tests + 60 s atheris fuzz + 60,000 random
#   FUZZ_SECONDS=300 FUZZ_INPUTS=0 bash tools/sanitize.sh
#
# Needs gcc (libasan, libubsan) and the dev extra (pytest, hypothesis, Cython, atheris).
# The sanitized build goes to build/sanitize/ (a copy of gateway/), never the source tree.
# CPython itself is not instrumented: PYTHONMALLOC=malloc sends every Python allocation
# (bytes, bytearray buffers) through the sanitizer's malloc, so a read of a freed or
# reallocated buffer is caught; leak checking is off (the interpreter keeps memory at exit).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
CC=${CC:-gcc}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_INPUTS=${FUZZ_INPUTS:-60000}
OUT=build/sanitize
LOGS=$OUT/logs

rm -rf "$OUT"
mkdir -p "$OUT" "$LOGS"
cp -r gateway tests setup.py pyproject.toml README.md "$OUT"/
find "$OUT/gateway" \( -name '*.so' -o -name '*.c' -o -name __pycache__ \) -prune -exec rm -rf {} +

echo "== build with -fsanitize=address,undefined ($CC)"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
(cd "$OUT" && CC="$CC" CFLAGS="$SAN" LDFLAGS="$SAN" GATEWAY_REQUIRE_EXTENSIONS=1 \
    "$PYTHON" setup.py -q build_ext --inplace >build.log 2>&1) || {
    tail -30 "$OUT/build.log"
    exit 1
}

LIBASAN=$("$CC" -print-file-name=libasan.so)
LIBUBSAN=$("$CC" -print-file-name=libubsan.so)
# The sanitizer runtimes must come first in the process (python is not linked to them).
export LD_PRELOAD="$LIBASAN:$LIBUBSAN"
export PYTHONMALLOC=malloc
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:log_path=$PWD/$LOGS/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$PWD/$LOGS/ubsan"
export PYTHONPATH="$PWD/$OUT"
export GATEWAY_REQUIRE_EXTENSIONS=1
FUZZ="$PWD/tools/fuzz_speedups.py"
cd "$OUT"  # so "python -m pytest" (cwd first on sys.path) imports the sanitized copy

status=0
"$PYTHON" -c 'import gateway._speedups._frames_c as f; print("sanitized build:", f.__file__)'

echo "== twin tests under ASan/UBSan"
"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_frames.py tests/test_inflate.py \
    tests/test_scan.py tests/test_dispatch.py || status=1

if [ "$FUZZ_INPUTS" != 0 ]; then
    echo "== random-mutation fuzz under ASan/UBSan ($FUZZ_INPUTS inputs)"
    "$PYTHON" "$FUZZ" --inputs "$FUZZ_INPUTS" --seed "${FUZZ_SEED:-1}" || status=1
fi
if [ "$FUZZ_SECONDS" != 0 ]; then
    echo "== coverage-guided fuzz under ASan/UBSan ($FUZZ_SECONDS s)"
    "$PYTHON" "$FUZZ" --atheris --seconds "$FUZZ_SECONDS" || status=1
fi

reports=$(find logs -type f | wc -l)
echo "== sanitizer reports: $reports (logs in $LOGS)"
if [ "$reports" != 0 ]; then
    head -60 logs/*
    status=1
fi
exit $status

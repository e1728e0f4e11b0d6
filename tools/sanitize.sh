#!/usr/bin/env bash
# Build the Cython speedups with AddressSanitizer + UndefinedBehaviorSanitizer and run the
# twin tests and a short fuzz under them. Prints the number of sanitizer reports; exits 1
# on any report, a test failure or a divergence.
#
#   bash tools/sanitize.sh                 # twin tests + 60,000 random + 60 s atheris fuzz
#   FUZZ_SECONDS=300 FUZZ_INPUTS=0 bash tools/sanitize.sh
#   CC=gcc bash tools/sanitize.sh          # force gcc (the default is clang when installed)
#
# With clang (apt-get install clang), the extensions are also built with
# -fsanitize=fuzzer-no-link and libFuzzer is preloaded, so atheris is guided by the
# coverage of the compiled code itself, not only of the pure twins. With gcc, the same
# sanitizers without that native coverage.
#
# Needs the dev extra (pytest, hypothesis, Cython, atheris). The sanitized build goes to
# build/sanitize/ (a copy of gateway/ and tests/), never the source tree. CPython is not
# instrumented: PYTHONMALLOC=malloc sends every Python allocation (bytes, bytearray
# buffers) through the sanitizer's malloc, so a read of a freed or reallocated buffer is
# caught; leak checking is off (the interpreter keeps memory at exit).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
if [ -z "${CC:-}" ]; then
    CC=gcc
    for candidate in clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do
        if command -v "$candidate" >/dev/null; then CC=$candidate; break; fi
    done
fi
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_INPUTS=${FUZZ_INPUTS:-60000}
OUT=build/sanitize
LOGS=$OUT/logs

rm -rf "$OUT"
mkdir -p "$OUT" "$LOGS"
cp -r gateway tests setup.py pyproject.toml README.md "$OUT"/
find "$OUT/gateway" \( -name '*.so' -o -name '*.c' -o -name __pycache__ \) -prune -exec rm -rf {} +

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
ASAN_EXTRA=""
if "$CC" --version | grep -q clang; then
    SAN="${SAN/undefined/undefined,fuzzer-no-link} -shared-libsan"
    # libFuzzer as a shared library: atheris then uses it ("preloaded libfuzzer") and the
    # extensions' coverage counters register with it. It must come before the ASan
    # runtime, whose weak coverage callbacks would otherwise win.
    FUZZER_A=$("$CC" -print-file-name=libclang_rt.fuzzer_no_main-x86_64.a)
    "$CC" -shared -o "$OUT/libfuzzer.so" -Wl,--whole-archive "$FUZZER_A" \
        -Wl,--no-whole-archive -lstdc++ -lpthread
    RUNTIMES="$PWD/$OUT/libfuzzer.so:$("$CC" -print-file-name=libclang_rt.asan-x86_64.so)"
    ASAN_EXTRA=":verify_asan_link_order=0"
else
    RUNTIMES="$("$CC" -print-file-name=libasan.so):$("$CC" -print-file-name=libubsan.so)"
fi

echo "== build with $SAN ($CC)"
(cd "$OUT" && CC="$CC" LDSHARED="$CC -shared" CFLAGS="$SAN" LDFLAGS="$SAN" \
    GATEWAY_REQUIRE_EXTENSIONS=1 "$PYTHON" setup.py -q build_ext --inplace >build.log 2>&1) || {
    tail -30 "$OUT/build.log"
    exit 1
}

# The sanitizer runtimes must come first in the process (python is not linked to them).
export LD_PRELOAD="$RUNTIMES"
export PYTHONMALLOC=malloc
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:log_path=$PWD/$LOGS/asan$ASAN_EXTRA"
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

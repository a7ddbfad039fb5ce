#!/usr/bin/env bash
# Builds and runs the whole test suite: the Release build's tests, then the
# unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer in a
# separate build directory. Run ./scripts/setup.sh first (the README's test
# command does).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

./scripts/make-gpt2-fixtures.sh

echo "== Release build: tests" >&2
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== Independent reference: re-derive a stored golden" >&2
/usr/bin/python3 tools/reference/check_goldens.py

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build: tests" >&2
if [ ! -f build-asan/build.ninja ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVINFER_SANITIZE=ON \
    -DKVINFER_BUILD_BENCH=OFF -DKVINFER_WERROR=ON >/dev/null
fi
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs"

#!/usr/bin/env bash
# Builds and runs the whole test suite: every test in the Release build
# (the model-level goldens included), the independent NumPy reference, the
# tests again under AddressSanitizer + UndefinedBehaviorSanitizer, then the
# concurrency tests (AsyncEngine, ThreadPool, the HTTP server) under
# ThreadSanitizer, each sanitizer in a build directory of its own. Run ./scripts/setup.sh first
# (the README's test command does).
#
# The sanitizers run what they catch bugs in: parsers and their corpora, KV
# bookkeeping, the scheduler, kernels on small shapes, tiny-model goldens,
# the command line on the tiny model, concurrency. Tests whose work is the
# 135M / 124M-parameter models (the full goldens, allocation counting, the
# signal tests that need a long generation) run in the Release pass only:
# under ASan they cost most of the time and exercise no code the small
# shapes do not. So does the KV-pool out-of-memory test, which caps the
# address space with `ulimit -v` (ASan reserves far more for its shadow),
# and the server's Python tests over HTTP (server.python), which drive the
# 135M model through `kvinfer serve`.
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
release_only='server\.python|smollm2|gpt2_124m|NoAllocationPerToken|MultiEngineTest|GgufRealFiles|CliFailures\.ASignal|Cli\.ChatKeepsTheCache|Cli\.KvPoolOutOfMemory'
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -E "$release_only"

echo "== ThreadSanitizer build: concurrency tests" >&2
if [ ! -f build-tsan/build.ninja ]; then
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVINFER_TSAN=ON \
    -DKVINFER_BUILD_BENCH=OFF -DKVINFER_WERROR=ON >/dev/null
fi
cmake --build build-tsan -j "$jobs" --target kvinfer_concurrency_tests
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ./build-tsan/kvinfer_concurrency_tests

#!/usr/bin/env bash
# The KV-cache lab: regenerates every figure and table of docs/kv-cache-lab.md
# from fresh measurements.
#
#   ./scripts/lab.sh            # default model, all cores; ~5-10 minutes on 2 cores
#
# Environment: BUILD (build folder, default build), MODEL (GGUF file, default
# the SmolLM2-135M-Instruct Q4_1 of ./scripts/setup.sh), THREADS (default
# nproc). Results (JSON) go to bench/results/, figures to docs/img/lab-*.png,
# the report's tables to bench/results/tables.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${THREADS:-$(nproc)}
RESULTS=bench/results
PY=/usr/bin/python3

if [ ! -f "$MODEL" ]; then
  echo "lab.sh: model '$MODEL' not found: run ./scripts/setup.sh or set MODEL=" >&2
  exit 1
fi
if [ ! -f "$BUILD/build.ninja" ] && [ ! -f "$BUILD/Makefile" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD" --target kvinfer_cli
K="$BUILD/kvinfer"
mkdir -p "$RESULTS" docs/img

echo "== bench speed (pp512 + tg128, 3 repetitions)" >&2
for kv in contiguous paged; do
  "$K" bench speed --model "$MODEL" --threads "$THREADS" --kv "$kv" --json >"$RESULTS/speed-$kv.json"
done

echo "== bench kv-modes (none at 1024 generated tokens alone takes ~15 minutes)" >&2
"$K" bench kv-modes --model "$MODEL" --threads "$THREADS" --out "$RESULTS/kv-modes" --no-plot

echo "== bench memory (64 mixed-length requests, fixed KV budget)" >&2
"$K" bench memory --model "$MODEL" --threads "$THREADS" --out "$RESULTS/memory" --no-plot

echo "== bench concurrency (batched decode, 1..64 sequences)" >&2
"$K" bench concurrency --model "$MODEL" --threads "$THREADS" --out "$RESULTS/concurrency" --no-plot

echo "== bench prefix (64 requests sharing a 1000-token system prompt, cache off vs on)" >&2
"$K" bench prefix --model "$MODEL" --threads "$THREADS" --out "$RESULTS/prefix" --no-plot

echo "== figures and tables" >&2
$PY tools/plot_bench.py kv-modes "$RESULTS/kv-modes/results.json" docs/img
$PY tools/plot_bench.py memory "$RESULTS/memory/results.json" docs/img
$PY tools/plot_bench.py concurrency "$RESULTS/concurrency/results.json" docs/img
$PY tools/plot_bench.py prefix "$RESULTS/prefix/results.json" docs/img
$PY tools/plot_bench.py tables "$RESULTS" >"$RESULTS/tables.md"
echo "lab.sh: done; tables in $RESULTS/tables.md, figures in docs/img/lab-*.png" >&2

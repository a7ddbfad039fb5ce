#!/usr/bin/env bash
# The speed table of docs/performance.md: kvinfer vs llama.cpp for every
# weight type at the default model's shape, llama.cpp measured on this
# machine in the same run (and the published reference figures beside it).
#
#   ./scripts/speed.sh            # THREADS=2 by default; ~12 minutes on 2 cores
#   LLAMA_CPP=0 ./scripts/speed.sh    # kvinfer only (~5 minutes)
#
# llama.cpp comes from scripts/llama-cpp.sh (built from PyPI's source of
# llama-cpp-python the first time, ~4 minutes more) and runs right after
# kvinfer on each model with llama-bench's defaults: the same pp512/tg128,
# the same decode depths (tg64 after 128 and 2048 tokens, f16 KV with flash
# attention off and on, q8_0 and q4_0 KV with it on, as llama.cpp needs for
# a quantized V cache) and llama-batched-bench for batching. JSON in
# bench/results/speed/llama.cpp/.
#
# Makes the random-weight comparison models if missing
# (tools/bench/make_bench_model.py: every type, Q4_1 included, as llama.cpp's
# figures were taken: random weights of exactly the default model's shape,
# every matrix of the one type), then per type: pp512 (one batched prefill of 512 tokens) and tg128
# (128 tokens decoded from an empty context), 3 repetitions after a warm-up;
# then decode at 128 and 2048 tokens of context (the default model, f32, f16, q8_0 and q4_0 KV,
# `bench context`), batched decode
# throughput for 1..64 sequences (Q4_1); Q4_1 with --f32-activations, and the
# GPT-2 124M shape (F16, F32) for reference. JSON in bench/results/speed/, the
# table in bench/results/speed/table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
THREADS=${THREADS:-2}
OUT=bench/results/speed
PY=/usr/bin/python3
K="$BUILD/kvinfer"
LLAMA_CPP=${LLAMA_CPP:-1}
mkdir -p "$OUT"
rm -rf "$OUT/llama.cpp"
if [ "$LLAMA_CPP" = 1 ]; then
  LB=$(./scripts/llama-cpp.sh)
  mkdir -p "$OUT/llama.cpp"
fi
# llama-bench NAME ARGS...: llama.cpp's figures into $OUT/llama.cpp/NAME.json.
llama_bench() {
  [ "$LLAMA_CPP" = 1 ] || return 0
  local name=$1
  shift
  "$LB/llama-bench" -t "$THREADS" -r 3 -o json "$@" >"$OUT/llama.cpp/$name.json" 2>/dev/null
}
cmake --build "$BUILD" --target kvinfer_cli kvinfer_bench >/dev/null
# The machine's read bandwidth now, the ceiling of every memory-bound decode
# figure (the host is shared: it varies from run to run), before and after.
bandwidth() {
  "$BUILD/kvinfer_bench" --benchmark_filter='MemoryRead' --benchmark_min_time=0.5 \
    --benchmark_format=json >"$OUT/memory-read-$1.json"
}
bandwidth before

model_for() {
  local m="models/bench-smollm2-shape-$1.gguf"
  [ -f "$m" ] || $PY tools/bench/make_bench_model.py --type "$1" >&2
  echo "$m"
}

for t in q4_0 q4_1 q8_0 f16; do
  m=$(model_for $t)
  echo "== $t: pp512, tg128" >&2
  "$K" bench speed -m "$m" -t "$THREADS" -p 512 -n 2 -r 3 --json >"$OUT/$t-pp512.json"
  "$K" bench speed -m "$m" -t "$THREADS" -p 1 -n 129 -r 3 --json >"$OUT/$t-tg128.json"
  llama_bench "$t" -m "$m" -p 512 -n 128
done
m=$(model_for q4_1)
real=models/SmolLM2-135M-Instruct.Q4_1.gguf
echo "== the default model: decode at 128 and 2048 tokens of context" >&2
# Depths and K/V types interleaved in each repetition, the 2048/128 ratio
# paired per repetition: the host's speed drifts over minutes.
"$K" bench context -m "$real" -t "$THREADS" --depths 128,2048 -n 64 -r 5 \
  --kv-dtype f32,f16,q8_0,q4_0 --json >"$OUT/context.json"
rm -f "$OUT"/q4_1-depth*-kv*.json  # per-depth files that context.json replaces
llama_bench depth-kvf16 -m "$real" -p 0 -n 64 -d 128,2048 -fa 0,1
llama_bench depth-kvq8_0 -m "$real" -p 0 -n 64 -d 128,2048 -ctk q8_0 -ctv q8_0 -fa 1
llama_bench depth-kvq4_0 -m "$real" -p 0 -n 64 -d 128,2048 -ctk q4_0 -ctv q4_0 -fa 1
echo "== the real SmolLM2-135M-Instruct Q4_1 (its token embedding is Q8_0, vocabulary 49152)" >&2
"$K" bench speed -m "$real" -t "$THREADS" -p 512 -n 2 -r 3 --json >"$OUT/real-q4_1-pp512.json"
"$K" bench speed -m "$real" -t "$THREADS" -p 1 -n 129 -r 3 --json >"$OUT/real-q4_1-tg128.json"
llama_bench real-q4_1 -m "$real" -p 512 -n 128
echo "== q4_1 with f32 activations (the exact path), for comparison" >&2
"$K" bench speed -m "$m" -t "$THREADS" -p 512 -n 2 -r 3 --f32-activations --json >"$OUT/q4_1-f32act-pp512.json"
"$K" bench speed -m "$m" -t "$THREADS" -p 1 -n 129 -r 3 --f32-activations --json >"$OUT/q4_1-f32act-tg128.json"
echo "== GPT-2 124M shape (random weights), F16 and F32" >&2
./scripts/make-gpt2-fixtures.sh 124m
for t in f16 f32; do
  "$K" bench speed -m models/gpt2-124m-$t -t "$THREADS" -p 512 -n 2 -r 3 --json >"$OUT/gpt2-124m-$t-pp512.json"
  "$K" bench speed -m models/gpt2-124m-$t -t "$THREADS" -p 1 -n 129 -r 3 --json >"$OUT/gpt2-124m-$t-tg128.json"
done
echo "== q4_1: batched decode" >&2
"$K" bench concurrency -m "$m" -t "$THREADS" --out "$OUT/concurrency" --no-plot >/dev/null
if [ "$LLAMA_CPP" = 1 ]; then
  # One JSON line per batch size; the context holds all 64 sequences.
  "$LB/llama-batched-bench" -m "$m" -t "$THREADS" -c 16640 -b 2048 -ub 512 \
    -npp 128 -ntg 128 -npl 1,2,4,8,16,32,64 --output-format jsonl 2>/dev/null |
    grep '^{' >"$OUT/llama.cpp/batched-q4_1.jsonl"
fi
bandwidth after
$PY tools/plot_bench.py speed-table "$OUT" docs/img >"$OUT/table.md"
cat "$OUT/table.md"

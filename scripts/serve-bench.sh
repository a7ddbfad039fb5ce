#!/usr/bin/env bash
# Serving benchmark: kvinfer serve against llama.cpp's llama-server (built by
# scripts/llama-cpp.sh), same model, same threads, same prompts, measured in
# the same run by tools/bench_serve.py at 1, 4, 16 and 64 concurrent streams.
# Also records `kvinfer generate`'s single-stream decode speed, to compare
# one stream through HTTP with the CLI.
#
#   ./scripts/serve-bench.sh                    # -> docs/img/serve-bench.png, docs/serve-bench.json
#   LEVELS=1,4 MAX_TOKENS=64 ./scripts/serve-bench.sh
#
# Environment: MODEL (default the installed SmolLM2-135M-Instruct), THREADS
# (default nproc), LEVELS (1,4,16,64), MAX_TOKENS (128), NUM_PROMPTS (per
# level; default max(16, 2 x level)), OUT_PNG, OUT_JSON, SKIP_LLAMA=1 (kvinfer
# only). Runs under nice; the servers listen on loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=/usr/bin/python3
MODEL=${MODEL:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${THREADS:-$(nproc)}
LEVELS=${LEVELS:-1,4,16,64}
MAX_TOKENS=${MAX_TOKENS:-128}
NUM_PROMPTS=${NUM_PROMPTS:-0}
OUT_PNG=${OUT_PNG:-$ROOT/docs/img/serve-bench.png}
OUT_JSON=${OUT_JSON:-$ROOT/docs/serve-bench.json}
KVINFER=${KVINFER_BIN:-$ROOT/build/kvinfer}
WORK=$ROOT/build/serve-bench
mkdir -p "$WORK" "$(dirname "$OUT_PNG")" "$(dirname "$OUT_JSON")"
MAX_LEVEL=$(tr ',' '\n' <<<"$LEVELS" | sort -n | tail -n1)

[ -x "$KVINFER" ] || { echo "serve-bench: $KVINFER missing (build the kvinfer target)" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "serve-bench: $MODEL missing (scripts/setup.sh)" >&2; exit 1; }
if [ "${SKIP_LLAMA:-0}" != "1" ]; then
  LLAMA_BIN=$(nice ./scripts/llama-cpp.sh)
fi

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
stop_last() {  # stops the server started last and forgets it
  local pid=${PIDS[-1]}
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset 'PIDS[-1]'
}

wait_health() {  # URL PID LOG
  for _ in $(seq 1200); do
    kill -0 "$2" 2>/dev/null || { echo "serve-bench: server exited:" >&2; tail -n 30 "$3" >&2; exit 1; }
    if $PY -c "import sys,urllib.request; sys.exit(0 if urllib.request.urlopen(sys.argv[1]+'/health',timeout=2).status==200 else 1)" "$1" 2>/dev/null; then
      return 0
    fi
    sleep 0.25
  done
  echo "serve-bench: $1/health never answered 200" >&2
  exit 1
}

bench() {  # LABEL URL JSON; failed requests are counted in the JSON and the table, not fatal
  nice $PY tools/bench_serve.py --base-url "$2" --label "$1" --concurrency "$LEVELS" \
    --num-prompts "$NUM_PROMPTS" --max-tokens "$MAX_TOKENS" --json-out "$3" ||
    echo "serve-bench: $1: some requests failed (see the table)" >&2
  [ -f "$3" ]
}

# 1. kvinfer generate, one stream, for the HTTP-overhead comparison.
nice "$KVINFER" generate --model "$MODEL" --threads "$THREADS" --temperature 0 --ignore-eos \
  --max-tokens "$MAX_TOKENS" --prompt "Explain the water cycle to a ten-year-old." \
  --stats-json "$WORK/generate.json" >/dev/null 2>"$WORK/generate.log"

# 2. kvinfer serve.
LOG=$WORK/kvinfer-serve.log
: >"$LOG"
nice "$KVINFER" serve --model "$MODEL" --host 127.0.0.1 --port 0 --threads "$THREADS" \
  --max-seqs "$MAX_LEVEL" </dev/null >/dev/null 2>"$LOG" &
PIDS+=($!)
URL=""
for _ in $(seq 1200); do
  URL=$(sed -n 's/.*kvinfer serve: listening on \(http:\/\/[^ ]*\).*/\1/p' "$LOG" | head -n1 || true)
  [ -n "$URL" ] && break
  kill -0 "${PIDS[-1]}" 2>/dev/null || { echo "serve-bench: kvinfer serve exited:" >&2; cat "$LOG" >&2; exit 1; }
  sleep 0.25
done
[ -n "$URL" ] || { echo "serve-bench: kvinfer serve printed no address" >&2; exit 1; }
wait_health "$URL" "${PIDS[-1]}" "$LOG"
bench kvinfer "$URL" "$WORK/kvinfer.json"
stop_last
RUNS=("$WORK/kvinfer.json")

# 3. llama-server: one slot per stream of the highest level, each with room
#    for a prompt and MAX_TOKENS (llama-server splits -c among its slots).
if [ "${SKIP_LLAMA:-0}" != "1" ]; then
  PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  CTX_PER_SLOT=$(( (MAX_TOKENS + 256 + 255) / 256 * 256 ))
  LOG=$WORK/llama-server.log
  nice "$LLAMA_BIN/llama-server" -m "$MODEL" --host 127.0.0.1 --port "$PORT" -t "$THREADS" \
    -np "$MAX_LEVEL" -c $((MAX_LEVEL * CTX_PER_SLOT)) </dev/null >"$LOG" 2>&1 &
  PIDS+=($!)
  wait_health "http://127.0.0.1:$PORT" "${PIDS[-1]}" "$LOG"
  bench llama-server "http://127.0.0.1:$PORT" "$WORK/llama-server.json"
  stop_last
  RUNS+=("$WORK/llama-server.json")
fi

# 4. The plot and one JSON with the host and every run.
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -n1)
L3=$(lscpu | sed -n 's/^L3 cache: *//p' | head -n1)
TITLE="$(basename "$MODEL"), $THREADS threads, max_tokens $MAX_TOKENS | $CPU, L3 $L3, nproc $(nproc)"
$PY tools/bench_serve.py --plot-from "${RUNS[@]}" --plot-out "$OUT_PNG" --title "$TITLE"
$PY - "$OUT_JSON" "$WORK/generate.json" "$MODEL" "$THREADS" "$CPU" "$L3" "$(nproc)" \
  "$LEVELS" "$MAX_TOKENS" "${RUNS[@]}" <<'PY'
import json, os, sys
out, gen, model, threads, cpu, l3, nproc, levels, max_tokens, *runs = sys.argv[1:]
g = json.load(open(gen))
doc = {
    "host": {"cpu": cpu, "l3": l3, "nproc": int(nproc)},
    "model": os.path.basename(model), "threads": int(threads), "levels": levels,
    "max_tokens": int(max_tokens),
    "kvinfer_generate": {"decode_tokens_per_s": g["decode_tokens_per_s"],
                         "generated_tokens": g["generated_tokens"]},
    "runs": [json.load(open(r)) for r in runs],
}
with open(out, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
one = next(lv for lv in doc["runs"][0]["levels"] if lv["concurrency"] == min(lv["concurrency"] for lv in doc["runs"][0]["levels"]))
http_tps = 1000.0 / one["tpot_ms"]["mean"] if one["tpot_ms"]["mean"] else float("nan")
print(f"kvinfer generate decode: {g['decode_tokens_per_s']:.1f} tok/s; "
      f"kvinfer serve, {one['concurrency']} stream(s), 1/TPOT: {http_tps:.1f} tok/s")
print(f"wrote {out}")
PY

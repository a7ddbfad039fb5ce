#!/usr/bin/env bash
# Soak test of kvinfer serve: STREAMS concurrent streaming clients
# (tools/bench_serve.py, round after round) for DURATION seconds, the
# server's resident memory sampled every 5 s. Reports errors, requests and
# the RSS growth from the end of the first round (warm-up: the KV pool's
# pages touched, the thread stacks made) to the end, as JSON and a PNG.
#
#   ./scripts/serve-soak.sh                       # 300 s at 64 streams
#   DURATION=60 STREAMS=16 ./scripts/serve-soak.sh
#
# Environment: MODEL, THREADS (nproc), DURATION (300), STREAMS (64),
# MAX_TOKENS (64), OUT_JSON (docs/serve-soak.json), OUT_PNG
# (docs/img/serve-soak.png). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODEL=${MODEL:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${THREADS:-$(nproc)}
DURATION=${DURATION:-300}
STREAMS=${STREAMS:-64}
MAX_TOKENS=${MAX_TOKENS:-64}
OUT_JSON=${OUT_JSON:-$ROOT/docs/serve-soak.json}
OUT_PNG=${OUT_PNG:-$ROOT/docs/img/serve-soak.png}
KVINFER=${KVINFER_BIN:-$ROOT/build/kvinfer}
WORK=$ROOT/build/serve-soak
rm -rf "$WORK"
mkdir -p "$WORK"
[ -x "$KVINFER" ] || { echo "serve-soak: $KVINFER missing (build the kvinfer target)" >&2; exit 1; }

"$KVINFER" serve --model "$MODEL" --port 0 --threads "$THREADS" --max-seqs "$STREAMS" \
  2> "$WORK/server.log" &
SERVER=$!
SAMPLER=""
trap 'kill -TERM $SERVER 2>/dev/null || true; [ -n "$SAMPLER" ] && kill $SAMPLER 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  grep -q "listening on" "$WORK/server.log" 2>/dev/null && break
  kill -0 $SERVER 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.1
done
URL=$(grep -o 'http://[0-9.]*:[0-9]*' "$WORK/server.log" | head -n1)
echo "serve-soak: $URL, $STREAMS streams for $DURATION s" >&2

start=$(date +%s)
( while kill -0 $SERVER 2>/dev/null; do
    echo "$(( $(date +%s) - start )) $(awk '/VmRSS/ {print $2}' /proc/$SERVER/status)"
    sleep 5
  done ) > "$WORK/rss.txt" &
SAMPLER=$!

round=0
while [ $(( $(date +%s) - start )) -lt "$DURATION" ]; do
  round=$((round + 1))
  /usr/bin/python3 tools/bench_serve.py --base-url "$URL" --concurrency "$STREAMS" \
    --num-prompts $((STREAMS * 2)) --max-tokens "$MAX_TOKENS" --seed "$round" \
    --json-out "$WORK/round-$round.json" > "$WORK/round-$round.txt"
  echo "$(( $(date +%s) - start ))" > "$WORK/round-$round.end"
  echo "serve-soak: round $round done at $(cat "$WORK/round-$round.end") s" >&2
done
kill -TERM $SERVER
wait $SERVER || true
kill $SAMPLER 2>/dev/null || true

/usr/bin/python3 - "$WORK" "$OUT_JSON" "$OUT_PNG" "$DURATION" "$STREAMS" <<'PY'
import glob, json, os, platform, sys
work, out_json, out_png, duration, streams = sys.argv[1:6]
rss = [tuple(map(int, l.split())) for l in open(os.path.join(work, "rss.txt")) if len(l.split()) == 2]
rounds = []
for f in sorted(glob.glob(os.path.join(work, "round-*.json")), key=lambda p: int(p.split("-")[-1][:-5])):
    lv = json.load(open(f))["levels"][0]
    end = int(open(f[:-5] + ".end").read())
    rounds.append({"end_s": end, "completed": lv["completed"], "failed": lv["failed"],
                   "output_throughput": lv["output_throughput"], "ttft_p99_ms": lv["ttft_ms"]["p99"]})
warm_end = rounds[0]["end_s"]
after = [kb for t, kb in rss if t >= warm_end]
warm_kb = after[0] if after else rss[-1][1]
final_kb = rss[-1][1]
peak_kb = max(after) if after else final_kb
log = open(os.path.join(work, "server.log")).read()
res = {
    "host": {"cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor()),
             "nproc": os.cpu_count()},
    "duration_s": int(duration), "streams": int(streams), "rounds": rounds,
    "requests_completed": sum(r["completed"] for r in rounds),
    "requests_failed": sum(r["failed"] for r in rounds),
    "server_errors_logged": log.count("finish=error"),
    "rss_kib": rss, "rss_after_warmup_kib": warm_kb, "rss_final_kib": final_kb, "rss_peak_after_warmup_kib": peak_kb,
    "rss_growth_after_warmup_pct": 100.0 * (final_kb - warm_kb) / warm_kb,
}
json.dump(res, open(out_json, "w"), indent=1)
print(json.dumps({k: v for k, v in res.items() if k not in ("rss_kib", "rounds")}, indent=1))
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot([t for t, _ in rss], [kb / 1024 for _, kb in rss], label="kvinfer serve RSS")
    ax.axvline(warm_end, color="gray", ls="--", label="end of warm-up round")
    ax.set_xlabel("seconds"); ax.set_ylabel("resident memory (MiB)"); ax.set_ylim(bottom=0)
    ax.set_title(f"{streams} streams for {duration} s: {res['requests_completed']} requests, "
                 f"{res['requests_failed']} failed, RSS {res['rss_growth_after_warmup_pct']:+.1f}% after warm-up")
    ax.legend(); fig.tight_layout(); fig.savefig(out_png, dpi=110)
except ImportError:
    pass
PY

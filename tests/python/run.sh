#!/usr/bin/env bash
# Runs the server's Python tests (tests/python) against a real `kvinfer serve`
# on loopback: starts the server on a free port, waits for /health, runs
# pytest with build/venv's interpreter, and always stops the server.
#
#   tests/python/run.sh                 # the whole suite
#   tests/python/run.sh -k stream -x    # pytest's own arguments pass through
#
# KVINFER_BIN (default build/kvinfer), KVINFER_MODEL (default the installed
# SmolLM2-135M-Instruct), KVINFER_TEST_THREADS (default 2). Logs and the chat
# page's screenshot go to build/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export KVINFER_BIN=${KVINFER_BIN:-$ROOT/build/kvinfer}
export KVINFER_MODEL=${KVINFER_MODEL:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}
export KVINFER_TEST_THREADS=${KVINFER_TEST_THREADS:-2}
export KVINFER_ARTIFACTS=${KVINFER_ARTIFACTS:-$ROOT/build/artifacts}
VENV=${KVINFER_VENV:-$ROOT/build/venv}

missing() { echo "server.python: missing fixture: $*" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || missing "$VENV (the tests' virtual environment; run scripts/setup.sh)"
"$VENV/bin/python" -c 'import openai' 2>/dev/null ||
  missing "the openai package in $VENV (run scripts/setup.sh)"
"$VENV/bin/python" -c 'import pytest' 2>/dev/null || missing "pytest (python3-pytest; run scripts/setup.sh)"
"$VENV/bin/python" -c 'import aiohttp' 2>/dev/null || missing "aiohttp (python3-aiohttp; run scripts/setup.sh)"
[ -x "$KVINFER_BIN" ] || missing "$KVINFER_BIN (build the kvinfer target)"
[ -f "$KVINFER_MODEL" ] || missing "$KVINFER_MODEL (run scripts/setup.sh)"

mkdir -p "$KVINFER_ARTIFACTS"
LOG=$KVINFER_ARTIFACTS/server-session.log
: >"$LOG"
"$KVINFER_BIN" serve --model "$KVINFER_MODEL" --host 127.0.0.1 --port 0 \
  --threads "$KVINFER_TEST_THREADS" --max-seqs 64 --kv-memory-mib 512 </dev/null >/dev/null 2>"$LOG" &
PID=$!
stop_server() {
  local rc=$?
  if kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null || true
  fi
  local server_rc=0
  wait "$PID" 2>/dev/null || server_rc=$?
  if [ "$server_rc" -ne 0 ]; then
    echo "server.python: kvinfer serve exited with $server_rc after SIGTERM (want 0)" >&2
    tail -n 20 "$LOG" >&2
    [ "$rc" -eq 0 ] && exit 1
  fi
  exit "$rc"
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

URL=""
for _ in $(seq 1800); do  # up to 3 minutes to load the model and bind
  URL=$(sed -n 's/.*kvinfer serve: listening on \(http:\/\/[^ ]*\).*/\1/p' "$LOG" | head -n1 || true)
  [ -n "$URL" ] && break
  kill -0 "$PID" 2>/dev/null || { echo "server.python: kvinfer serve exited:" >&2; cat "$LOG" >&2; exit 1; }
  sleep 0.1
done
[ -n "$URL" ] || { echo "server.python: no 'listening on' line from kvinfer serve" >&2; cat "$LOG" >&2; exit 1; }
"$VENV/bin/python" - "$URL" <<'PY' || { echo "server.python: /health never answered 200" >&2; cat "$LOG" >&2; exit 1; }
import sys, time, urllib.request
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(sys.argv[1] + "/health", timeout=5) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
PY
echo "server.python: kvinfer serve at $URL (log: $LOG)" >&2
export KVINFER_BASE_URL=$URL
status=0
"$VENV/bin/python" -m pytest "$ROOT/tests/python" -p no:cacheprovider -q -rfEs "$@" || status=$?
if ! kill -0 "$PID" 2>/dev/null; then
  echo "server.python: the session's kvinfer serve died during the tests:" >&2
  tail -n 40 "$LOG" >&2
  status=1
fi
exit $status

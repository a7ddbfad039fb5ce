#!/usr/bin/env bash
# Writes the random-weight GPT-2 checkpoints the tests use into models/
# (skipped when present). Deterministic: the same files every time, so the
# sha256 in tests/goldens/gpt2-*.json match.
#
#   ./scripts/make-gpt2-fixtures.sh          # tiny shapes and GPT-2 124M-shaped F16 (~520 MB, ~6 s)
#   ./scripts/make-gpt2-fixtures.sh 124m     # also the 124M shape in F32 (~1 GB more; for speed runs)
set -euo pipefail
cd "$(dirname "$0")/.."
make_gpt2() {  # OUT_NAME ARGS...
  local out="models/$1"
  shift
  [ -f "$out/model.gguf" ] && [ -f "$out/model.safetensors" ] && return 0
  /usr/bin/python3 tools/reference/make_gpt2.py "$@" --gguf --out "$out" >&2
}
make_gpt2 gpt2-tiny-random --shape tiny --dtype f16
make_gpt2 gpt2-tiny-s12-random --shape tiny --dtype f16 --scale 12
make_gpt2 gpt2-124m-f16 --shape 124m --dtype f16
if [ "${1:-}" = "124m" ]; then
  make_gpt2 gpt2-124m-f32 --shape 124m --dtype f32
fi

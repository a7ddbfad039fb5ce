#!/usr/bin/env bash
# Fuzzes one parser with libFuzzer (clang, ASan + UBSan).
#
#   scripts/fuzz.sh [seconds] [target]     (default 60, gguf_fuzz)
#
# target: gguf_fuzz (as below), safetensors_fuzz, llama2c_fuzz,
# tokenizer_fuzz, batch_request_fuzz or openai_request_fuzz (the server's
# request readers); the last five are seeded with small
# valid inputs written by this script into build-fuzz/corpus-<target>/ plus
# the files of the matching tests/data/<name>_corpus/ dir. docs/fuzzing.md
# describes each target's input format.
#
# Builds build-fuzz/gguf_fuzz, seeds fuzz/corpus-run/ (git-ignored) from the
# real GGUF files in ../shared/models and the writer-made / reproducer files in
# tests/data/gguf_corpus/, then fuzzes for the given time. Crashes land in
# build-fuzz/artifacts/; after fixing one, copy it into tests/data/gguf_corpus/
# so gguf_test replays it.
#
# Env: FUZZ_RUNS=N stops after N executions (or the given seconds, if first);
# FUZZ_MAX_LEN (bytes, default 65536: longer seeds are cut, which keeps
# executions fast; the interesting bytes are the header and metadata),
# FUZZ_DIRECT=1 to skip CMake and compile the target from src/core, src/io
# and src/tokenizer (plus tools/cli/batch_request.cpp and
# src/serve/openai_request.cpp) only.
set -euo pipefail

secs="${1:-60}"
target="${2:-gguf_fuzz}"
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build-fuzz"
corpus="$root/fuzz/corpus-run"
models="$root/../shared/models"
max_len="${FUZZ_MAX_LEN:-65536}"
if [[ -n "${FUZZ_RUNS:-}" ]]; then
  stop=(-runs="$FUZZ_RUNS" -max_total_time="$secs")
else
  stop=("${stop[@]}")
fi
export CC="${CC:-clang}" CXX="${CXX:-clang++}"

# The top-level CMakeLists instruments only the fuzz target itself; the flags
# below also give the library coverage counters (fuzzer-no-link) and the
# sanitizers, without which libFuzzer cannot see inside the reader.
build_cmake() {
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" \
    -DKVINFER_BUILD_FUZZ=ON -DKVINFER_BUILD_TESTS=OFF -DKVINFER_BUILD_BENCH=OFF &&
    ninja -C "$build" -j2 "$target"
}

# Fallback: only the sources the reader needs, so a half-finished file
# elsewhere in src/ (or a missing tool source) does not block fuzzing.
build_direct() {
  local obj="$build/direct/obj" srcs=("$root"/src/core/*.cpp "$root"/src/io/*.cpp
    "$root"/src/tokenizer/*.cpp "$root"/tools/cli/batch_request.cpp
    "$root"/src/serve/openai_request.cpp)
  mkdir -p "$obj"
  local f o objs=()
  for f in "${srcs[@]}"; do
    o="$obj/$(basename "$(dirname "$f")")_$(basename "$f" .cpp).o"
    objs+=("$o")
    [[ "$o" -nt "$f" ]] && continue
    "$CXX" -std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
      -I"$root/src" -I"$root/include" -c "$f" -o "$o"
  done
  "$CXX" -std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
    -I"$root/src" -I"$root/include" -I"$root/tools/cli" "$root/fuzz/$target.cpp" "${objs[@]}" \
    -lfmt -licuuc -o "$build/direct/$target"
}

fuzzer="$build/$target"
if [[ "${FUZZ_DIRECT:-0}" == 1 ]] || ! build_cmake; then
  echo "fuzz.sh: CMake build failed or skipped; compiling $target from src/core + src/io" >&2
  build_direct
  fuzzer="$build/direct/$target"
fi

run_seeded() {  # corpus dir, dict file
  exec "$fuzzer" "$1" -dict="$2" "${stop[@]}" -max_len="$max_len" \
    -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$build/artifacts/" -print_final_stats=1
}

if [[ "$target" == llama2c_fuzz || "$target" == tokenizer_fuzz || "$target" == batch_request_fuzz ||
      "$target" == openai_request_fuzz ]]; then
  name="${target%_fuzz}"
  corpus="$build/corpus-$target"
  mkdir -p "$corpus" "$build/artifacts"
  for f in "$root/tests/data/${name}_corpus"/*; do
    [[ -f "$f" ]] && cp -f "$f" "$corpus/seed-$(basename "$f")"
  done
  [[ "$target" == llama2c_fuzz && -f "$models/stories260K/tok512.bin" ]] &&
    { printf '\x01'; cat "$models/stories260K/tok512.bin"; } > "$corpus/seed-tok512"
  /usr/bin/python3 "$root/fuzz/seeds.py" "$target" "$corpus"
  dict="$build/$target.dict"
  /usr/bin/python3 "$root/fuzz/seeds.py" "$target-dict" "$dict"
  run_seeded "$corpus" "$dict"
fi

if [[ "$target" == safetensors_fuzz ]]; then
  corpus="$build/corpus-safetensors_fuzz"
  mkdir -p "$corpus" "$build/artifacts"
  /usr/bin/python3 - "$corpus" <<'PY'
import json, struct, sys
def write(name, header, data=b""):
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    open(sys.argv[1] + "/seed-" + name, "wb").write(struct.pack("<Q", len(h)) + h + data)
write("empty", {})
write("meta", {"__metadata__": {"format": "pt"}})
write("f32", {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, bytes(range(16)))
write("mixed", {"__metadata__": {"a": "b"},
                "a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 6]},
                "b": {"dtype": "BF16", "shape": [1, 2], "data_offsets": [6, 10]},
                "c": {"dtype": "I64", "shape": [1], "data_offsets": [10, 18]},
                "d": {"dtype": "U8", "shape": [0], "data_offsets": [18, 18]},
                "e": {"dtype": "F32", "shape": [], "data_offsets": [18, 22]}}, bytes(22))
PY
  dict="$build/safetensors.dict"
  cat > "$dict" <<'DICT'
"dtype"
"shape"
"data_offsets"
"__metadata__"
"\"F32\""
"\"F16\""
"\"BF16\""
"\"I64\""
"\"F8_E4M3\""
"18446744073709551615"
"4294967296"
DICT
  exec "$fuzzer" "$corpus" -dict="$dict" "${stop[@]}" -max_len="$max_len" \
    -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$build/artifacts/" -print_final_stats=1
fi

mkdir -p "$corpus" "$build/artifacts"
for f in "$models"/stories260K/stories260K.gguf "$models"/tokenizers/llamacpp-vocab/*.gguf \
         "$root"/tests/data/gguf_corpus/*; do
  [[ -f "$f" ]] && cp -f "$f" "$corpus/seed-$(basename "$f")"
done

# Tokens the mutator can splice in: magic, common keys, type tags.
dict="$build/gguf.dict"
cat > "$dict" <<'DICT'
"GGUF"
"general.alignment"
"general.architecture"
"tokenizer.ggml.tokens"
"\x02\x00\x00\x00"
"\x03\x00\x00\x00"
"\x08\x00\x00\x00"
"\x09\x00\x00\x00"
"\x20\x00\x00\x00\x00\x00\x00\x00"
"\xff\xff\xff\xff\xff\xff\xff\xff"
DICT

exec "$fuzzer" "$corpus" -dict="$dict" "${stop[@]}" -max_len="$max_len" \
  -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$build/artifacts/" -print_final_stats=1

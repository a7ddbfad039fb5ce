#!/usr/bin/env bash
# Builds llama.cpp's own benchmark tools (llama-bench, llama-batched-bench)
# and its OpenAI-compatible server (llama-server) from source, so that
# scripts/speed.sh and scripts/serve-bench.sh can measure llama.cpp on this
# machine in the same run as kvinfer instead of quoting figures taken
# elsewhere. llama-server is built without its web UI (whose prebuilt assets
# would be downloaded from elsewhere).
#
#   ./scripts/llama-cpp.sh        # prints the directory holding the binaries
#
# The only registries reachable here are Debian's and Python's package
# index, and the source distribution of the Python binding llama-cpp-python
# on the latter carries the whole llama.cpp tree (vendor/llama.cpp): that
# tree is what gets built, pinned by version and checksum. Nothing of it is linked into kvinfer or
# committed; it lives in build-llama.cpp/ (git-ignored). The build is
# llama.cpp's own CMake with GGML_NATIVE=ON, as a user building it on this
# machine would; ~4 minutes on 2 cores the first time, nothing afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
DIR=build-llama.cpp
SRC="$DIR/llama-cpp-python-$VERSION/vendor/llama.cpp"
BIN="$SRC/build/bin"

if [ ! -x "$BIN/llama-bench" ] || [ ! -x "$BIN/llama-batched-bench" ] || [ ! -x "$BIN/llama-server" ]; then
  mkdir -p "$DIR"
  sdist="$DIR/llama_cpp_python-$VERSION.tar.gz"
  if [ ! -f "$sdist" ] || ! echo "$SHA256  $sdist" | sha256sum --check --status; then
    echo "llama-cpp: fetching llama-cpp-python $VERSION's source distribution with pip" >&2
    # Through pip and its own configuration (index, proxy), as setup.sh
    # fetches the model. Only this package comes as source: pip prepares
    # its metadata with the build backend, which it may take as a wheel.
    rm -f "$sdist"
    /usr/bin/python3 -m pip download --quiet --no-deps --disable-pip-version-check \
      --no-binary llama-cpp-python --dest "$DIR" "llama-cpp-python==$VERSION"
    echo "$SHA256  $sdist" | sha256sum --check --status ||
      { echo "llama-cpp: $sdist does not have the expected checksum" >&2; exit 1; }
  fi
  if [ ! -f "$SRC/CMakeLists.txt" ]; then
    mkdir -p "$DIR/llama-cpp-python-$VERSION"
    tar -xzf "$sdist" -C "$DIR/llama-cpp-python-$VERSION" --strip-components=1 \
      "llama_cpp_python-$VERSION/vendor/llama.cpp"
    rm -f "$SRC/.git"  # a submodule's pointer to a repository not shipped
  fi
  echo "llama-cpp: building llama-bench, llama-batched-bench and llama-server (a few minutes)" >&2
  # Git must not find kvinfer's own repository above the tree and stamp its
  # commit on llama.cpp's build info.
  GIT_CEILING_DIRECTORIES="$PWD/$DIR" cmake -S "$SRC" -B "$SRC/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF >/dev/null
  cmake --build "$SRC/build" --target llama-bench llama-batched-bench llama-server \
    -j "$(nproc)" >/dev/null
fi
echo "$BIN"

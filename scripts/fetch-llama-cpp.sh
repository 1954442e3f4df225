#!/usr/bin/env bash
# The oracle: llama.cpp's source as shipped inside the llama-cpp-python sdist on PyPI.
# Unpacks it into the cache (outside the repo) and, with --build, builds the llama.cpp
# tools (llama-cli, llama-bench, llama-perplexity, llama-tokenize, ...) statically.
# Prints the llama.cpp source directory (or, with --build, the bin directory) on stdout.
set -euo pipefail
CACHE="${HEARTH_CACHE:-$HOME/.cache/hearth}"
VER="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
DIR="$CACHE/oracle/llama-cpp-python-$VER"
SRC="$DIR/vendor/llama.cpp"
PY="${PYTHON:-python3}"
if [ ! -f "$SRC/CMakeLists.txt" ]; then
  mkdir -p "$CACHE/oracle"
  echo "fetching llama-cpp-python==$VER sdist from PyPI..." >&2
  "$PY" -m pip download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VER" -d "$CACHE/oracle" >&2
  tar xzf "$CACHE/oracle/llama_cpp_python-$VER.tar.gz" -C "$CACHE/oracle"
  # Newer sdists unpack into llama_cpp_python-VER (PEP 625 name), older ones into
  # llama-cpp-python-VER: keep the one directory name the rest of the scripts use.
  if [ ! -d "$DIR" ] && [ -d "$CACHE/oracle/llama_cpp_python-$VER" ]; then
    mv "$CACHE/oracle/llama_cpp_python-$VER" "$DIR"
  fi
  rm -f "$CACHE/oracle/llama_cpp_python-$VER.tar.gz"
fi
if [ "${1:-}" = "--build" ]; then
  B="$DIR/build"
  TARGETS="llama-cli llama-bench llama-perplexity llama-tokenize llama-server llama-simple llama-eval-callback"
  # One build at a time: two cmake builds in the same tree race on the same object files
  # (and an interrupted make deletes the object it was writing), which breaks the other one.
  # A second caller waits here, then finds the tools built.
  mkdir -p "$B"
  exec 9>"$B/.hearth-build.lock"
  flock 9
  if [ ! -x "$B/bin/llama-bench" ] || [ ! -x "$B/bin/llama-perplexity" ] || [ ! -x "$B/bin/llama-tokenize" ]; then
    command -v cmake >/dev/null || "$PY" -m pip install -q cmake >&2
    cmake -S "$SRC" -B "$B" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON \
      -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=ON >&2
    # shellcheck disable=SC2086  # TARGETS is a word list
    # Retry the same targets once (a transient failure must not trigger a full build of every
    # example), and only then build everything.
    cmake --build "$B" -j"$(nproc)" --target $TARGETS >&2 || \
    cmake --build "$B" -j"$(nproc)" --target $TARGETS >&2 || \
    cmake --build "$B" -j"$(nproc)" >&2
  fi
  flock -u 9
  echo "$B/bin"
else
  echo "$SRC"
fi

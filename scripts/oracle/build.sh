#!/usr/bin/env bash
# Builds Hearth's own llama.cpp oracle driver (scripts/oracle/logits.cpp) against the static
# libllama/libggml produced by `scripts/fetch-llama-cpp.sh --build`, into the same cache bin
# directory as the llama.cpp tools. Prints the path of the binary on stdout.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SRC="$("$ROOT/scripts/fetch-llama-cpp.sh")"
B="$(cd "$SRC/../.." && pwd)/build"   # where fetch-llama-cpp.sh --build puts its build tree
BIN="$B/bin"
if [ ! -f "$B/src/libllama.a" ]; then
  "$ROOT/scripts/fetch-llama-cpp.sh" --build >/dev/null
fi
mkdir -p "$BIN"
OUT="$BIN/hearth-oracle-logits"

# The static archives, in link order (libllama depends on ggml, ggml on ggml-cpu/ggml-base).
LIBS=()
for name in libllama.a libggml.a libggml-cpu.a libggml-base.a; do
  f="$(find "$B" -name "$name" -not -path '*/CMakeFiles/*' | head -1)"
  if [ -z "$f" ]; then
    echo "error: $name not found under $B; run scripts/fetch-llama-cpp.sh --build" >&2
    exit 1
  fi
  LIBS+=("$f")
done

# ggml's CPU backend uses OpenMP for its thread pool when GGML_OPENMP is on (the default).
EXTRA=()
if grep -q '^GGML_OPENMP:BOOL=ON' "$B/CMakeCache.txt" 2>/dev/null || \
   grep -q 'GGML_USE_OPENMP' "$B/ggml/src/CMakeFiles/ggml-cpu.dir/flags.make" 2>/dev/null; then
  EXTRA+=(-fopenmp)
fi

CXX="${CXX:-g++}"
if [ ! -x "$OUT" ] || [ "$HERE/logits.cpp" -nt "$OUT" ] || [ "${LIBS[0]}" -nt "$OUT" ]; then
  "$CXX" -std=c++17 -O2 "${EXTRA[@]}" -I"$SRC/include" -I"$SRC/ggml/include" \
    "$HERE/logits.cpp" -o "$OUT" \
    -Wl,--start-group "${LIBS[@]}" -Wl,--end-group "${EXTRA[@]}" -lpthread -ldl -lm >&2
fi
echo "$OUT"

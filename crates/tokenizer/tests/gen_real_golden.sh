#!/usr/bin/env bash
# Regenerate crates/tokenizer/tests/golden/<model>.json from llama.cpp's `llama-tokenize`
# (the oracle) for every prompt in tests/golden/prompts.json, with and without BOS and
# special-token parsing. Records token ids, each token's piece bytes, and the EOG set
# llama.cpp logs at load.
#
# Needs: the llama.cpp tools (scripts/fetch-llama-cpp.sh --build) and the models
# (scripts/fetch-models.sh). Override with LLAMA_TOKENIZE=... and HEARTH_MODELS=...
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
BIN="${LLAMA_TOKENIZE:-$HOME/.cache/hearth/oracle/llama-cpp-python-0.3.36/build/bin/llama-tokenize}"
MODELS="${HEARTH_MODELS:-$HOME/.cache/hearth/models}"
[ -x "$BIN" ] || { echo "llama-tokenize not found at $BIN (run scripts/fetch-llama-cpp.sh --build)" >&2; exit 1; }
for m in SmolLM2-135M-Instruct.Q4_1.gguf gemma-3-270m-Q4_K_M.gguf; do
  [ -f "$MODELS/$m" ] || { echo "$MODELS/$m missing (run scripts/fetch-models.sh)" >&2; exit 1; }
  python3 "$HERE/gen_real_golden.py" "$BIN" "$MODELS/$m" "$HERE/golden/prompts.json" "$HERE/golden/${m%.gguf}.json"
done

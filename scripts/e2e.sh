#!/usr/bin/env bash
# End-to-end tests of the web UI in a real browser: Debian's Chromium driven by Playwright
# (frontend/e2e), against a live `hearth serve` with SmolLM2 and Gemma 3, authentication on and
# --models-dir set to their directory (the Models admin spec unloads and reloads SmolLM2).
# Called by scripts/test.sh after `cargo test` (which builds target/debug/hearth with the UI
# embedded, so scripts/build-ui.sh must have run before cargo). Installs Chromium from Debian
# when it is missing (browsers cannot be downloaded by Playwright here), and poppler-utils
# (pdftotext, pdffonts) for the print-to-PDF spec.
set -euo pipefail
cd "$(dirname "$0")/.."
export HEARTH_CACHE="${HEARTH_CACHE:-$HOME/.cache/hearth}"
MODELS="${HEARTH_MODELS:-$HEARTH_CACHE/models}"
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
HEARTH="$TARGET/debug/hearth"

if ! command -v chromium >/dev/null; then
  echo "installing Debian's chromium for the browser tests..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q chromium fonts-noto-cjk poppler-utils >&2
fi
# pdftotext and pdffonts check the print view's PDF (frontend/e2e/print.spec.ts).
if ! command -v pdftotext >/dev/null || ! command -v pdffonts >/dev/null; then
  echo "installing Debian's poppler-utils for the PDF checks..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q poppler-utils >&2 || { apt-get update -q >&2 && apt-get install -y -q poppler-utils >&2; }
fi
# The Chinese specs (and the print-to-PDF check) need a CJK font, also where Chromium came
# without one.
if ! fc-list 2>/dev/null | grep -qi "Noto Sans CJK"; then
  echo "installing Debian's fonts-noto-cjk for the Chinese pages..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q fonts-noto-cjk >&2 || { apt-get update -q >&2 && apt-get install -y -q fonts-noto-cjk >&2; }
fi
[ -x "$HEARTH" ] || cargo build --quiet -p hearth-cli
[ -f frontend/dist/index.html ] || { echo "frontend/dist is missing: run scripts/build-ui.sh before building hearth" >&2; exit 1; }

DATA="$(mktemp -d -t hearth-e2e-XXXXXX)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
# The admin account the specs sign in with (they make a user-role account through the admin
# API); the password exists only in this throwaway database.
ADMIN_PW="e2e-admin-$RANDOM$RANDOM"
printf '%s\n' "$ADMIN_PW" | "$HEARTH" users create e2e-admin --role admin --password-stdin --data-dir "$DATA" >/dev/null

"$HEARTH" serve "$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf" "$MODELS/gemma-3-270m-Q4_K_M.gguf" \
  --alias smollm2,gemma3 --models-dir "$MODELS" --port "$PORT" --threads 2 --data-dir "$DATA" --require-auth \
  2>"$DATA/serve.log" &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 600); do
  if curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; then break; fi
  if ! kill -0 "$PID" 2>/dev/null; then cat "$DATA/serve.log" >&2; exit 1; fi
  sleep 0.2
done

export HEARTH_UI_URL="http://127.0.0.1:$PORT"
export HEARTH_UI_ADMIN_USER=e2e-admin HEARTH_UI_ADMIN_PASSWORD="$ADMIN_PW"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
status=0
# Arguments go to Playwright: `scripts/e2e.sh e2e/print.spec.ts` runs one spec, `-g NAME` one test.
# `scripts/e2e.sh --screenshots` retakes docs/screenshots/*.png against this live server instead
# (frontend/e2e/screenshots.spec.ts, `npm run screenshots`).
script=e2e
if [ "${1:-}" = "--screenshots" ]; then script=screenshots; shift; fi
(cd frontend && npm run --silent "$script" -- "$@") || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- hearth serve log (last 80 lines) ---" >&2
  tail -n 80 "$DATA/serve.log" >&2
fi
exit "$status"

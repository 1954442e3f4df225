#!/usr/bin/env bash
# Builds the web UI (frontend/ -> frontend/dist, embedded by the server at `/`).
# Idempotent: `npm ci` runs only when node_modules does not match package-lock.json.
# Needs Node.js >= 20.19 and the npm registry; downloads no browser.
set -euo pipefail
cd "$(dirname "$0")/../frontend"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
stamp=node_modules/.hearth-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  npm ci --no-audit --no-fund
  echo "$want" > "$stamp"
fi
had_dist=0; [ -f dist/index.html ] && had_dist=1
npm run build
# The server's build script watches frontend/dist only once it exists: make cargo notice it.
if [ "$had_dist" = 0 ] && [ -f ../crates/server/build.rs ]; then touch ../crates/server/build.rs; fi
# The server embeds frontend/dist at build time (crates/server/build.rs). Cargo watches the
# folder once it exists; touching build.rs makes the first build after it appeared embed it.
touch ../crates/server/build.rs

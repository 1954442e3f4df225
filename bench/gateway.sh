#!/usr/bin/env bash
# The gateway's overhead on a request (issue 7: under 1 ms at p99 with all checks on, excluding
# generation): crates/server/examples/gateway_overhead.rs, release build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet -p hearth-server --example gateway_overhead -- "${1:-2000}"

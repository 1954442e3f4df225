#!/usr/bin/env bash
# Serving benchmark: `hearth serve` against llama.cpp's `llama-server` (built from the same
# llama-cpp-python sdist as the other oracles, scripts/fetch-llama-cpp.sh --build) on the same
# GGUF file, same threads, same requests, in one run. Each server is started on a free port,
# driven by bench/serve_bench.py (N concurrent streaming chat clients for each N in --clients,
# plus a prefix-cache test with a ~1,000-token system prompt), then stopped. The servers
# alternate hearth, llama, llama, hearth, ... (--reps rounds) so drift in machine load hits both
# alike; each metric is the mean over a server's runs, and the script prints hearth/llama ratios.
#
# Usage: bench/serve.sh MODEL.gguf [--threads N] [--clients 1,4,16] [--requests R]
#                       [--max-tokens M] [--reps K] [--ctx-per-slot C] [--seed S] [--out DIR]
#   --threads       worker threads for both servers (default: nproc)
#   --clients       concurrency levels (default 1,4,16); the largest is also llama-server's -np
#                   and hearth's --max-running, so both can decode that many sequences at once
#   --requests      requests per client per level, back to back (default 4)
#   --max-tokens    max_tokens per request (default 64)
#   --reps          rounds of (hearth, llama) pairs, order alternating (default 2)
#   --ctx-per-slot  llama-server context per slot; -c is slots x this (default 2048)
#   --seed          picks the prefix-test system prompts (default: from the clock, so a rerun
#                   against a long-lived cache still starts cold; recorded in the JSON)
#   --out           where results and server logs go (default ~/.cache/hearth/bench), never the repo
# Environment: HEARTH_BIN=path uses that hearth binary instead of `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
CMDLINE="bench/serve.sh $*"
THREADS=$(nproc); CLIENTS=1,4,16; REQUESTS=4; MAXTOK=64; REPS=2; CTX=2048; SEED=$(date +%s)
OUT="${HEARTH_CACHE:-$HOME/.cache/hearth}/bench"; MODEL=""
PY="${PYTHON:-python3}"
die() { echo "serve.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=${2:?--threads needs a value}; shift 2;;
    --clients) CLIENTS=${2:?--clients needs a value}; shift 2;;
    --requests) REQUESTS=${2:?--requests needs a value}; shift 2;;
    --max-tokens) MAXTOK=${2:?--max-tokens needs a value}; shift 2;;
    --reps) REPS=${2:?--reps needs a value}; shift 2;;
    --ctx-per-slot) CTX=${2:?--ctx-per-slot needs a value}; shift 2;;
    --seed) SEED=${2:?--seed needs a value}; shift 2;;
    --out) OUT=${2:?--out needs a value}; shift 2;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0;;
    -*) die "unknown option $1 (see --help)";;
    *) [ -z "$MODEL" ] || die "one MODEL only (got $MODEL and $1)"; MODEL=$1; shift;;
  esac
done
[ -n "$MODEL" ] || die "usage: bench/serve.sh MODEL.gguf [options] (see --help)"
[ -f "$MODEL" ] || die "model file $MODEL not found (scripts/fetch-models.sh fetches the test models)"
MODEL=$(realpath "$MODEL")
for v in THREADS REQUESTS MAXTOK REPS CTX SEED; do
  [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -gt 0 ] || die "$v must be a positive integer, got '${!v}'"
done
[[ $CLIENTS =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--clients must look like 1,4,16, got '$CLIENTS'"
SLOTS=$(tr , '\n' <<<"$CLIENTS" | sort -n | tail -1)
"$PY" -c 'import openai' 2>/dev/null || "$PY" -m pip install -q --disable-pip-version-check openai >&2

if [ -n "${HEARTH_BIN:-}" ]; then
  HEARTH=$(realpath "$HEARTH_BIN")   # a prebuilt binary (e.g. when the tree is mid-edit)
else
  cargo build --release -q -p hearth-cli
  HEARTH=$PWD/target/release/hearth
fi
[ -x "$HEARTH" ] || die "hearth binary $HEARTH not found"
BIN=$(scripts/fetch-llama-cpp.sh --build)
if [ ! -x "$BIN/llama-server" ]; then
  # fetch-llama-cpp.sh skips the build when its core tools exist; build the server alone then,
  # under the same lock it uses.
  ( exec 9>"$BIN/../.hearth-build.lock"; flock 9; cmake --build "$BIN/.." -j"$(nproc)" --target llama-server >&2 )
fi
[ -x "$BIN/llama-server" ] || die "llama-server was not built in $BIN"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RUN="$OUT/serve-$STAMP"; mkdir -p "$RUN"
COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.toml Cargo.lock bench 2>/dev/null || echo "+dirty")
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
echo "command: $CMDLINE"
echo "machine: $CPU, $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit $COMMIT; hearth $HEARTH; llama.cpp from llama-cpp-python ${LLAMA_CPP_PYTHON_VERSION:-0.3.36}; model $(basename "$MODEL")"
echo "threads $THREADS; clients $CLIENTS; requests/client $REQUESTS; max_tokens $MAXTOK; reps $REPS; seed $SEED"
echo "results and logs: $RUN"

PID=""
stop() {
  if [ -n "$PID" ]; then
    kill "$PID" 2>/dev/null || true
    # hearth drains in-flight requests on SIGTERM; nothing is in flight here, so this is quick.
    for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
  fi
}
trap stop EXIT INT TERM

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# bench_one LABEL REP: start that server, wait for /health, run the client, stop it.
bench_one() {
  local label=$1 rep=$2 port log
  port=$(free_port); log="$RUN/$label-$rep.log"
  case "$label" in
    hearth) "$HEARTH" serve "$MODEL" --host 127.0.0.1 --port "$port" --threads "$THREADS" \
              --max-running "$SLOTS" >"$log" 2>&1 & PID=$!;;
    # -np slots share -c: each slot gets CTX tokens. -tb: prompt processing on the same threads.
    llama) "$BIN/llama-server" -m "$MODEL" --host 127.0.0.1 --port "$port" -t "$THREADS" -tb "$THREADS" \
              -np "$SLOTS" -c $((SLOTS * CTX)) --no-webui >"$log" 2>&1 & PID=$!;;
  esac
  local ok=""
  for _ in $(seq 1200); do
    if ! kill -0 "$PID" 2>/dev/null; then tail -20 "$log" >&2; die "$label exited before becoming ready (log $log)"; fi
    if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.25
  done
  [ -n "$ok" ] || { stop; die "$label not healthy after 300 s (log $log)"; }
  echo "--- $label, rep $rep (port $port, load average $(cut -d' ' -f1-3 /proc/loadavg))"
  local rc=0
  "$PY" bench/serve_bench.py run --base-url "http://127.0.0.1:$port" --label "$label" \
    --clients "$CLIENTS" --requests "$REQUESTS" --max-tokens "$MAXTOK" --seed "$SEED" \
    --json "$RUN/$label-$rep.json" || rc=$?
  stop
  [ "$rc" -eq 0 ] || die "$label rep $rep: client failed (rc $rc; server log $log)"
}

H=(); L=()
for rep in $(seq "$REPS"); do
  # ABBA order: hearth first on odd rounds, llama-server first on even ones.
  if [ $((rep % 2)) -eq 1 ]; then order="hearth llama"; else order="llama hearth"; fi
  for s in $order; do
    bench_one "$s" "$rep"
    if [ "$s" = hearth ]; then H+=("$RUN/hearth-$rep.json"); else L+=("$RUN/llama-$rep.json"); fi
  done
done

echo "=== hearth / llama-server (mean over $REPS run(s) each)"
META=$("$PY" -c 'import json,sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
  command "$CMDLINE" commit "$COMMIT" machine "$CPU, $(nproc) cores" threads "$THREADS" \
  model "$(basename "$MODEL")" clients "$CLIENTS" requests_per_client "$REQUESTS" max_tokens "$MAXTOK" \
  reps "$REPS" seed "$SEED" llama_server_ctx "$((SLOTS * CTX)) ($SLOTS slots x $CTX)" \
  hearth_max_running "$SLOTS" finished "$(date -u +%FT%TZ)")
"$PY" bench/serve_bench.py compare --hearth "$(IFS=,; echo "${H[*]}")" --llama "$(IFS=,; echo "${L[*]}")" \
  --meta "$META" --json "$RUN/summary.json"
echo "summary: $RUN/summary.json"

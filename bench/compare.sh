#!/usr/bin/env bash
# Side-by-side CPU benchmark: llama.cpp's llama-bench and `hearth bench` on the same GGUF files,
# same threads, alternating in one run; prints tok/s and hearth/llama.cpp ratios.
# llama-bench is built once from the llama-cpp-python sdist (scripts/fetch-llama-cpp.sh --build),
# cached outside the repo.
# Usage: bench/compare.sh [--threads N] [--pp 512] [--tg 128] [--reps 3] [MODEL.gguf ...]
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=$(nproc); PP=512; TG=128; REPS=3; MODELS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2;;
    --pp) PP=$2; shift 2;;
    --tg) TG=$2; shift 2;;
    --reps) REPS=$2; shift 2;;
    *) MODELS+=("$1"); shift;;
  esac
done
if [ ${#MODELS[@]} -eq 0 ]; then
  D=$(scripts/fetch-models.sh)
  MODELS=("$D/SmolLM2-135M-Instruct.Q4_1.gguf" "$D/gemma-3-270m-Q4_K_M.gguf")
fi
BIN=$(scripts/fetch-llama-cpp.sh --build)
cargo build --release -q -p hearth-cli
H=target/release/hearth
printf '%s\n' "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; threads $THREADS; commit $(git rev-parse --short HEAD)"
printf '| model | test | llama.cpp tok/s | hearth tok/s | ratio |\n|---|---|---|---|---|\n'
for M in "${MODELS[@]}"; do
  name=$(basename "$M" .gguf)
  # llama-bench first, then hearth, then llama-bench again: the mean of the two llama.cpp runs
  # brackets hearth's in time, so drift (thermal, other load) affects both sides alike.
  l1=$("$BIN/llama-bench" -m "$M" -t "$THREADS" -p "$PP" -n "$TG" -r "$REPS" -o json 2>/dev/null)
  h=$("$H" bench "$M" --threads "$THREADS" --prompt-tokens "$PP" --gen-tokens "$TG" --reps "$REPS" --json 2>/dev/null)
  l2=$("$BIN/llama-bench" -m "$M" -t "$THREADS" -p "$PP" -n "$TG" -r "$REPS" -o json 2>/dev/null)
  python3 - "$name" "$PP" "$TG" "$l1" "$h" "$l2" <<'PY'
import json, sys
name, pp, tg, l1, h, l2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *map(json.loads, sys.argv[4:])
def ll(runs, prompt):
    for r in runs:
        if (r["n_prompt"], r["n_gen"]) == ((pp, 0) if prompt else (0, tg)):
            return r["avg_ts"]
lp = (ll(l1, True) + ll(l2, True)) / 2
lt = (ll(l1, False) + ll(l2, False)) / 2
print(f"| {name} | pp{pp} | {lp:.1f} | {h['prefill_tok_s']:.1f} | {h['prefill_tok_s']/lp:.2f}x |")
print(f"| {name} | tg{tg} | {lt:.1f} | {h['decode_tok_s']:.1f} | {h['decode_tok_s']/lt:.2f}x |")
print(f"| {name} | peak RSS MiB | | {h['peak_rss_mb']:.0f} | |")
PY
done

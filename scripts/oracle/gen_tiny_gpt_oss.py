#!/usr/bin/env python3
"""Tiny random-weight gpt-oss models and their oracle goldens.

No model hub is reachable here, so the engine's `gpt-oss` code is checked on small random
models written by this script (same style as gen_tiny.py for the Qwen family) with the tensor
names, shapes and metadata llama.cpp expects (src/models/openai-moe.cpp; keys from
src/llama-arch.cpp; tensor layout as conversion/gpt_oss.py writes it: experts as 3-D tensors,
gate and up split from transformers' interleaved gate_up_proj, down transposed to ggml order),
GPT-2's tokenizer (metadata copied from llama.cpp's models/ggml-vocab-gpt-2.gguf: the
o200k_harmony vocabulary is not available offline, and nothing here depends on which byte-level
BPE vocabulary is used) and a fixed seed.

  python3 scripts/oracle/gen_tiny_gpt_oss.py models   # (re)writes the GGUFs into
                                                      # $HEARTH_CACHE/tiny when missing or stale,
                                                      # checks their sha256 against the goldens
  python3 scripts/oracle/gen_tiny_gpt_oss.py golden   # models, then the goldens

Model (one set of random weights, numpy's legacy RandomState stream): n_embd 128, 4 layers
(0 and 2 sliding-window, 1 and 3 full), 8 query heads and 2 KV heads of 32 (Q is 256 wide, not
n_embd), Q/K/V/O biases, attention sinks, sliding window 8 (the prompts are 20-40 tokens, so
most positions attend past it), YaRN RoPE (base 150000, factor 32 over 4096 original positions,
beta 32/1, as gpt-oss-20b), 16 experts of 128 with top-4 routing, router and expert biases,
gate/up weights scaled so that the clamped SwiGLU's limits (gate <= 7, |up| <= 7) are hit.
Variants (tiny-gpt-oss-{variant}.gguf):
  * f32: every tensor F32.
  * f16: matrices (experts included) F16; norms, biases, sinks and router F32.
  * mxfp4: as ggml-org/gpt-oss-20b-GGUF: experts MXFP4 (gguf's quantizer), attention,
    embeddings and output Q8_0, norms, biases, sinks and router F32.

Goldens (tests/golden/tiny/gpt-oss-{variant}.json):
  * llama.cpp through scripts/oracle/logits.cpp (2 threads, prompt in one batch, F16 KV cache,
    flash attention off): prompt tokens, top-5 log-probs at every prompt position, a greedy
    continuation with its top-5 per step.
  * transformers (f32 and mxfp4): GptOssForCausalLM in float32, eager attention and experts,
    teacher-forced on llama.cpp's prompt + greedy tokens. For mxfp4 it is given the weights the
    file decodes to (gguf's MXFP4 / Q8_0 dequantizers), so it checks the MXFP4 decoding
    independently of llama.cpp (the engines quantize activations to Q8_0; transformers does not).
    YaRN: `truncate: True` (ggml always rounds the correction range to whole dimensions;
    gpt-oss's own config says `truncate: false`, which the GGUF cannot express).
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import gguf

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("HEARTH_CACHE", Path.home() / ".cache/hearth"))
OUT_DIR = CACHE / "tiny"
GOLDEN = ROOT / "tests/golden/tiny"
LLAMA_SRC = Path(os.environ.get("HEARTH_LLAMA_CPP_SRC",
                                Path.home() / ".cache/hearth/oracle/llama-cpp-python-0.3.36/vendor/llama.cpp"))
VOCAB = LLAMA_SRC / "models/ggml-vocab-gpt-2.gguf"

ARCH = "gpt-oss"
SEED = 20261124
TOP_K = 5
N_PREDICT = 12
DECIMALS = 5
THREADS = 2
N_CTX = 256

PROMPTS = [
    ("question", "Question: Why is the sky blue during the day, and why does it turn red and orange at sunset?\nAnswer:"),
    ("story", "Once upon a time, in a small village at the edge of a dark forest, there lived an old clockmaker who"),
    ("code", "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\nprint(fibonacci("),
]

VARIANTS = ("f32", "f16", "mxfp4")

CONFIG = dict(d=128, n_layer=4, n_head=8, n_kv=2, head_dim=32, n_expert=16, n_used=4, n_ff_exp=128,
              window=8, eps=1e-5, rope_base=150000.0, rope_factor=32.0, n_ctx_orig=4096, n_ctx=131072,
              beta_fast=32.0, beta_slow=1.0)


def weights(c, n_vocab, seed=SEED):
    """Random weights in ggml row order: a matrix is (out_features, in_features); expert
    tensors are (n_expert, out, in)."""
    rs = np.random.RandomState(seed)
    d, hd, nh, nkv, ne, ff = c["d"], c["head_dim"], c["n_head"], c["n_kv"], c["n_expert"], c["n_ff_exp"]

    def mat(*shape, scale=1.0):
        # ~unit-variance outputs for unit-variance inputs, times `scale`.
        return (rs.standard_normal(shape) * (scale / np.sqrt(shape[-1]))).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rs.standard_normal(n)).astype(np.float32)

    def vec(shape, s, mean=0.0):
        return (mean + s * rs.standard_normal(shape)).astype(np.float32)

    w = {"token_embd.weight": (0.5 * rs.standard_normal((n_vocab, d))).astype(np.float32)}
    for i in range(c["n_layer"]):
        p = f"blk.{i}."
        w[p + "attn_norm.weight"] = norm(d)
        w[p + "attn_q.weight"] = mat(nh * hd, d)
        w[p + "attn_q.bias"] = vec(nh * hd, 0.3)
        w[p + "attn_k.weight"] = mat(nkv * hd, d)
        w[p + "attn_k.bias"] = vec(nkv * hd, 0.3)
        w[p + "attn_v.weight"] = mat(nkv * hd, d)
        w[p + "attn_v.bias"] = vec(nkv * hd, 0.1)
        w[p + "attn_output.weight"] = mat(d, nh * hd, scale=0.7)
        w[p + "attn_output.bias"] = vec(d, 0.05)
        # Sinks comparable to the scores (which YaRN's mscale² ≈ 1.8 enlarges): they take a
        # visible but not dominant share of each softmax.
        w[p + "attn_sinks.weight"] = vec(nh, 1.0, 1.0)
        w[p + "post_attention_norm.weight"] = norm(d)
        # Router logits std ≈ 3: distinct top-4 sets per token, few near-ties between the 4th
        # and 5th expert (a tie resolved differently is a discrete jump in the output).
        w[p + "ffn_gate_inp.weight"] = mat(ne, d, scale=3.0)
        w[p + "ffn_gate_inp.bias"] = vec(ne, 0.3)
        # gate/up std ≈ 3: about 1% of the gate values exceed the clamp at 7 (a few per token
        # and layer), 2% of the up values leave [-7, 7]. Wider makes the SwiGLU output so
        # heavy-tailed that Q8_0 activation rounding (llama.cpp's and ours) moves the logits by
        # tenths of a nat.
        w[p + "ffn_gate_exps.weight"] = mat(ne, ff, d, scale=3.0)
        w[p + "ffn_gate_exps.bias"] = vec((ne, ff), 0.5)
        w[p + "ffn_up_exps.weight"] = mat(ne, ff, d, scale=3.0)
        w[p + "ffn_up_exps.bias"] = vec((ne, ff), 0.5)
        w[p + "ffn_down_exps.weight"] = mat(ne, d, ff, scale=0.1)
        w[p + "ffn_down_exps.bias"] = vec((ne, d), 0.05)
    w["output_norm.weight"] = norm(d)
    w["output.weight"] = (0.5 * rs.standard_normal((n_vocab, d))).astype(np.float32)
    return w


def is_small(name, a):
    """Tensors every variant keeps in F32 (as the released GGUF): norms, biases, sinks, router."""
    return a.ndim == 1 or name.endswith(".bias") or "ffn_gate_inp" in name


def stored(name, a, variant):
    """(array, raw_dtype) as the GGUF stores tensor `name` in this variant."""
    if variant == "f32" or is_small(name, a):
        return a, None
    if variant == "f16":
        return a.astype(np.float16), None
    t = gguf.GGMLQuantizationType.MXFP4 if "_exps" in name else gguf.GGMLQuantizationType.Q8_0
    return gguf.quants.quantize(a, t), t


def decoded(w, variant):
    """The weights as the GGUF of `variant` decodes them (what transformers is given)."""
    out = {}
    for name, a in w.items():
        arr, raw = stored(name, a, variant)
        if raw is not None:
            arr = gguf.quants.dequantize(arr, raw)
        out[name] = np.asarray(arr, dtype=np.float32).reshape(a.shape)
    return out


def tokenizer_fields():
    r = gguf.GGUFReader(str(VOCAB))
    f = r.fields
    g = lambda k: f[k].contents() if k in f else None  # noqa: E731
    return {"tokens": g("tokenizer.ggml.tokens"), "types": g("tokenizer.ggml.token_type"),
            "merges": g("tokenizer.ggml.merges"), "bos": g("tokenizer.ggml.bos_token_id"),
            "eos": g("tokenizer.ggml.eos_token_id"), "pre": g("tokenizer.ggml.pre")}


def write_gguf(path, c, variant, w, tok):
    wr = gguf.GGUFWriter(str(path), ARCH)
    wr.add_name(f"hearth-tiny-gpt-oss-{variant}")
    wr.add_context_length(c["n_ctx"])
    wr.add_embedding_length(c["d"])
    wr.add_block_count(c["n_layer"])
    wr.add_feed_forward_length(c["n_ff_exp"])
    wr.add_head_count(c["n_head"])
    wr.add_head_count_kv(c["n_kv"])
    wr.add_key_length(c["head_dim"])
    wr.add_value_length(c["head_dim"])
    wr.add_rope_freq_base(c["rope_base"])
    wr.add_layer_norm_rms_eps(c["eps"])
    wr.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    wr.add_rope_scaling_factor(c["rope_factor"])
    wr.add_rope_scaling_orig_ctx_len(c["n_ctx_orig"])
    wr.add_rope_scaling_yarn_beta_fast(c["beta_fast"])
    wr.add_rope_scaling_yarn_beta_slow(c["beta_slow"])
    wr.add_expert_count(c["n_expert"])
    wr.add_expert_used_count(c["n_used"])
    wr.add_sliding_window(c["window"])
    wr.add_expert_feed_forward_length(c["n_ff_exp"])
    wr.add_file_type({"f32": 0, "f16": 1, "mxfp4": 38}[variant])  # 38: LLAMA_FTYPE_MOSTLY_MXFP4_MOE
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre(tok["pre"] or "gpt-2")
    wr.add_token_list(tok["tokens"])
    wr.add_token_types(tok["types"])
    wr.add_token_merges(tok["merges"])
    wr.add_bos_token_id(tok["bos"])
    wr.add_eos_token_id(tok["eos"])
    wr.add_add_bos_token(False)
    for name, a in w.items():
        arr, raw = stored(name, a, variant)
        if raw is None:
            wr.add_tensor(name, arr)
        else:
            wr.add_tensor(name, arr, raw_dtype=raw)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def script_hash():
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def make_models(force=False):
    """Writes every variant unless the cache already holds this script version's set."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = OUT_DIR / "STAMP-gpt-oss"
    paths = {v: OUT_DIR / f"tiny-gpt-oss-{v}.gguf" for v in VARIANTS}
    if not force and stamp.exists() and stamp.read_text().strip() == script_hash() and all(p.exists() for p in paths.values()):
        return paths
    stamp.unlink(missing_ok=True)
    tok = tokenizer_fields()
    w = weights(CONFIG, len(tok["tokens"]))
    for v, p in paths.items():
        tmp = p.with_suffix(".tmp")
        write_gguf(tmp, CONFIG, v, w, tok)
        tmp.replace(p)
        print(f"wrote {p} ({p.stat().st_size >> 20} MiB)", file=sys.stderr)
    stamp.write_text(script_hash() + "\n")
    return paths


def check_against_goldens(paths):
    """The goldens were computed on files with these hashes: a mismatch means this machine's
    numpy/gguf wrote different bytes, and the comparison would be meaningless."""
    bad = []
    for v, p in paths.items():
        g = GOLDEN / f"gpt-oss-{v}.json"
        if not g.exists():
            continue
        if sha256(p) != json.loads(g.read_text())["model"]["sha256"]:
            bad.append(f"{p.name}: sha256 differs from {g.relative_to(ROOT)}")
    if bad:
        sys.exit("error: tiny models differ from the ones the goldens were made from:\n  " + "\n  ".join(bad))


def rnd(xs):
    return [round(float(x), DECIMALS) for x in xs]


def driver_path():
    return Path(subprocess.run(["bash", str(ROOT / "scripts/oracle/build.sh")], check=True,
                               capture_output=True, text=True).stdout.strip().splitlines()[-1])


def run_llama(driver, model):
    res = []
    with tempfile.TemporaryDirectory() as td:
        for pid, text in PROMPTS:
            pf = Path(td) / "prompt.txt"
            pf.write_bytes(text.encode())
            r = subprocess.run([str(driver), "-m", str(model), "-f", str(pf), "-n", str(N_PREDICT), "-k", str(TOP_K),
                                "-t", str(THREADS), "-c", str(N_CTX), "--fa", "off", "--kv", "f16"],
                               check=True, capture_output=True, text=True)
            res.append((pid, text, json.loads(r.stdout)))
    return res


def hf_config_kwargs(c, n_vocab, truncate=True):
    """GptOssConfig arguments for CONFIG-style dimensions `c` (also written as config.json by
    gen_tiny_hf.py, with truncate=False as gpt-oss's own config.json)."""
    return dict(
        vocab_size=n_vocab, hidden_size=c["d"], intermediate_size=c["n_ff_exp"], num_hidden_layers=c["n_layer"],
        num_attention_heads=c["n_head"], num_key_value_heads=c["n_kv"], head_dim=c["head_dim"],
        num_local_experts=c["n_expert"], num_experts_per_tok=c["n_used"], sliding_window=c["window"],
        rms_norm_eps=c["eps"], max_position_embeddings=c["n_ctx"], tie_word_embeddings=False,
        attention_bias=True, attention_dropout=0.0,
        rope_parameters={"rope_type": "yarn", "rope_theta": c["rope_base"], "factor": c["rope_factor"],
                         "beta_fast": c["beta_fast"], "beta_slow": c["beta_slow"], "truncate": truncate,
                         "original_max_position_embeddings": c["n_ctx_orig"]})


def hf_state_dict(c, w):
    """Weights `w` (ggml names and row order) under transformers' GptOssForCausalLM names and
    layouts, as numpy arrays."""
    sd = {"model.embed_tokens.weight": w["token_embd.weight"], "model.norm.weight": w["output_norm.weight"],
          "lm_head.weight": w["output.weight"]}
    names = {"attn_norm.weight": "input_layernorm.weight", "post_attention_norm.weight": "post_attention_layernorm.weight",
             "attn_q.weight": "self_attn.q_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
             "attn_k.weight": "self_attn.k_proj.weight", "attn_k.bias": "self_attn.k_proj.bias",
             "attn_v.weight": "self_attn.v_proj.weight", "attn_v.bias": "self_attn.v_proj.bias",
             "attn_output.weight": "self_attn.o_proj.weight", "attn_output.bias": "self_attn.o_proj.bias",
             "attn_sinks.weight": "self_attn.sinks", "ffn_gate_inp.weight": "mlp.router.weight",
             "ffn_gate_inp.bias": "mlp.router.bias", "ffn_down_exps.bias": "mlp.experts.down_proj_bias"}
    for i in range(c["n_layer"]):
        p = f"blk.{i}."
        for g, h in names.items():
            sd[f"model.layers.{i}.{h}"] = w[p + g]
        # transformers keeps experts as (in, out) with gate and up interleaved along `out`
        # (gate = gate_up[..., ::2], up = gate_up[..., 1::2]): the converter's split, inverted.
        gate, up = w[p + "ffn_gate_exps.weight"], w[p + "ffn_up_exps.weight"]
        ne, ff, d = gate.shape
        gu = np.empty((ne, d, 2 * ff), np.float32)
        gu[..., ::2] = gate.transpose(0, 2, 1)
        gu[..., 1::2] = up.transpose(0, 2, 1)
        gub = np.empty((ne, 2 * ff), np.float32)
        gub[:, ::2] = w[p + "ffn_gate_exps.bias"]
        gub[:, 1::2] = w[p + "ffn_up_exps.bias"]
        sd[f"model.layers.{i}.mlp.experts.gate_up_proj"] = gu
        sd[f"model.layers.{i}.mlp.experts.gate_up_proj_bias"] = gub
        sd[f"model.layers.{i}.mlp.experts.down_proj"] = w[p + "ffn_down_exps.weight"].transpose(0, 2, 1)
    return sd


def hf_model(c, w, n_vocab):
    import torch
    import transformers as tf
    cfg = tf.GptOssConfig(**hf_config_kwargs(c, n_vocab))
    cfg._attn_implementation = "eager"
    if hasattr(cfg, "_experts_implementation"):
        cfg._experts_implementation = "eager"
    assert cfg.layer_types == ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(c["n_layer"])]
    m = tf.GptOssForCausalLM(cfg).float().eval()
    sd = {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in hf_state_dict(c, w).items()}
    own = m.state_dict()
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    if missing or extra:
        sys.exit(f"error: transformers GptOssForCausalLM state dict mismatch: missing {missing}, unexpected {extra}")
    m.load_state_dict(sd, strict=True)
    return m


def run_hf(m, tokens):
    import torch
    with torch.no_grad():
        logits = m(torch.tensor([tokens])).logits[0].double()
    lp = torch.log_softmax(logits, dim=-1)
    out = []
    for row in lp:
        v, i = torch.topk(row, TOP_K)
        out.append({"ids": [int(x) for x in i], "logprobs": rnd(v.tolist())})
    return out


def compact(t):
    return {"ids": t["ids"], "logprobs": rnd(t["logprobs"])}


# Rows whose decoded values go into the mxfp4 golden: gguf's own dequantizers (ggml's Python
# port) are the oracle for the engine's MXFP4 and Q8_0 decoding.
DEQUANT_ROWS = [("blk.1.ffn_down_exps.weight", 5, [0, 1, 127]), ("blk.2.ffn_gate_exps.weight", 15, [3, 64]),
                ("blk.0.attn_q.weight", None, [0, 255]), ("token_embd.weight", None, [50256])]


def dequant_golden(w):
    out = []
    for name, e, rows in DEQUANT_ROWS:
        arr, raw = stored(name, w[name], "mxfp4")
        a = arr[e] if e is not None else arr
        for r in rows:
            vals = gguf.quants.dequantize(a[r:r + 1], raw)[0]
            out.append({"tensor": name, "type": raw.name, "expert": e, "row": r,
                        "values": [float(v) for v in vals]})
    return out


def make_goldens(paths):
    sys.path.insert(0, str(ROOT / "scripts/oracle"))
    from gen_golden import oracle_info, to_json  # same oracle description and JSON layout
    driver = driver_path()
    oracle = oracle_info(LLAMA_SRC, driver.parent)
    try:
        import torch  # noqa: F401
        import transformers
        hf_version = transformers.__version__
    except ImportError:
        hf_version = None
        print("warning: torch/transformers not importable: llama.cpp goldens only", file=sys.stderr)
    GOLDEN.mkdir(parents=True, exist_ok=True)
    tok = tokenizer_fields()
    n_vocab = len(tok["tokens"])
    base = weights(CONFIG, n_vocab)
    for variant in VARIANTS:
        p = paths[variant]
        out = {
            "format": 1,
            "generator": "scripts/oracle/gen_tiny_gpt_oss.py",
            "oracle": dict(oracle, driver="scripts/oracle/logits.cpp"),
            "model": {"file": p.name, "sha256": sha256(p), "size": p.stat().st_size, "seed": SEED,
                      "config": CONFIG},
            "arch": ARCH, "variant": variant, "top_k": TOP_K, "n_predict": N_PREDICT,
            "logprob_decimals": DECIMALS,
            "settings": {"n_ctx": N_CTX, "n_threads": THREADS, "type_k": "f16", "type_v": "f16",
                         "flash_attn": "off"},
            "prompts": [],
        }
        if variant == "mxfp4":
            out["dequantized"] = dequant_golden(base)
        m = hf_model(CONFIG, decoded(base, variant), n_vocab) if hf_version and variant in ("f32", "mxfp4") else None
        for pid, text, j in run_llama(driver, p):
            g = j["greedy"]
            e = {"id": pid, "text": text, "prompt_tokens": j["prompt_tokens"],
                 "prompt_top": [compact(t) for t in j["prompt_top"]],
                 "greedy": {"ids": g["ids"], "stop": g["stop"], "eog_id": g["eog_id"],
                            "top": [compact(t) for t in g["top"]]}}
            if m is not None:
                seq = j["prompt_tokens"] + g["ids"]
                e["transformers"] = {"version": hf_version, "dtype": "float32", "attn": "eager",
                                     "weights": "as decoded from the GGUF" if variant != "f32" else "f32",
                                     "yarn_truncate": True,
                                     "tokens": "prompt_tokens + greedy.ids (teacher-forced)",
                                     "top": run_hf(m, seq)}
            out["prompts"].append(e)
        dst = GOLDEN / f"gpt-oss-{variant}.json"
        text = to_json(out)
        assert json.loads(text) == out
        dst.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {dst.relative_to(ROOT)} ({dst.stat().st_size} bytes)", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["models", "golden"])
    ap.add_argument("--force", action="store_true", help="rewrite the models even when cached")
    a = ap.parse_args()
    paths = make_models(force=a.force)
    if a.what == "models":
        check_against_goldens(paths)
        for p in paths.values():
            print(p)
    else:
        make_goldens(paths)


if __name__ == "__main__":
    main()

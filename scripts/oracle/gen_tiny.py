#!/usr/bin/env python3
"""Tiny random-weight Qwen-family models and their oracle goldens.

No model hub is reachable here, so the engine's qwen2 / qwen3 / qwen3moe code is checked on
small random models written by this script with the tensor names and metadata llama.cpp expects
(src/models/qwen2.cpp, qwen3.cpp, qwen3moe.cpp; keys from src/llama-arch.cpp), the real Qwen2
tokenizer (metadata copied from llama.cpp's models/ggml-vocab-qwen2.gguf, so token ids mean
something) and a fixed seed.

  python3 scripts/oracle/gen_tiny.py models   # (re)writes the GGUFs into $HEARTH_CACHE/tiny
                                              # when missing or stale, then checks their sha256
                                              # against tests/golden/tiny/*.json (fast when cached)
  python3 scripts/oracle/gen_tiny.py golden   # models, then the goldens (llama.cpp + transformers)

Models (not committed; deterministic: numpy's legacy RandomState stream, which numpy keeps
stable across versions, and our own Q4_K encoder; gguf's Q8_0 quantizer):
  tiny-{qwen2,qwen3,qwen3moe}-{f32,f16,q8_0,q4_k}.gguf
  * f32 / f16 / q8_0 share one set of weights (n_embd 128); f16 and q8_0 store the matrices in
    that type (norms, biases and the MoE router stay F32, as llama.cpp's converter and quantizer
    leave them).
  * q4_k has its own weights with n_embd 256 (Q4_K rows must be multiples of 256 values).
  * qwen2: q/k/v biases, untied output; qwen3: per-head QK-norm, head_dim 64 != n_embd/n_head,
    tied output; qwen3moe: QK-norm, 128 experts, top-8, experts as 3-D tensors.

Goldens (tests/golden/tiny/{arch}-{variant}.json, a few KB each):
  * llama.cpp through scripts/oracle/logits.cpp (`hearth-oracle-logits`, built by
    scripts/oracle/build.sh), same settings as gen_golden.py (2 threads, prompt in one batch,
    F16 KV cache, flash attention off): prompt tokens, top-5 log-probs at every prompt position,
    a greedy continuation of N_PREDICT tokens with its top-5 at each step.
  * transformers (second oracle, f32 variants only, when torch + transformers import):
    Qwen2ForCausalLM / Qwen3ForCausalLM / Qwen3MoeForCausalLM built from the same numpy weights
    in float32, teacher-forced on llama.cpp's prompt + greedy tokens: top-5 log-probs at every
    position (`transformers.top`, aligned with prompt_top followed by greedy.top).
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
VOCAB = LLAMA_SRC / "models/ggml-vocab-qwen2.gguf"

SEED = 20261123
TOP_K = 5
N_PREDICT = 12
DECIMALS = 5
THREADS = 2
N_CTX = 256

PROMPTS = [
    ("question", "Question: Why is the sky blue during the day?\nAnswer:"),
    ("chinese", "今天天气很好，我们一起去公园散步吧。"),
    ("chat", "<|im_start|>user\nWrite a haiku about rust.<|im_end|>\n<|im_start|>assistant\n"),
]

ARCHS = ("qwen2", "qwen3", "qwen3moe")
VARIANTS = ("f32", "f16", "q8_0", "q4_k")


def config(arch, variant):
    big = variant == "q4_k"
    d = 256 if big else 128
    c = dict(arch=arch, d=d, n_layer=2, n_head=4, n_kv=2, eps=1e-6, rope_base=1_000_000.0, n_ctx=4096)
    if arch == "qwen2":
        c.update(head_dim=d // 4, n_ff=2 * d, tied=False)
    elif arch == "qwen3":
        c.update(head_dim=64, n_ff=2 * d, tied=True)
    else:
        c.update(head_dim=64, n_ff=2 * d, tied=True, n_expert=128, n_used=8, n_ff_exp=d // 2 if not big else 256)
    return c


def weights(c):
    """Random weights, HF/ggml row-major convention: a matrix is (out_features, in_features)."""
    rs = np.random.RandomState(SEED + 1000 * ARCHS.index(c["arch"]) + c["d"])
    d, hd, nh, nkv = c["d"], c["head_dim"], c["n_head"], c["n_kv"]

    def mat(rows, cols, scale=1.0):
        # ~unit-variance outputs for unit-variance inputs, times `scale`.
        return (rs.standard_normal((rows, cols)) * (scale / np.sqrt(cols))).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rs.standard_normal(n)).astype(np.float32)

    def vec(n, s):
        return (s * rs.standard_normal(n)).astype(np.float32)

    n_vocab = 151936
    w = {}
    # Logit std ≈ 0.25·sqrt(d): peaked enough that most top-1/top-2 margins are clear.
    w["token_embd.weight"] = (0.25 * rs.standard_normal((n_vocab, d))).astype(np.float32)
    for i in range(c["n_layer"]):
        p = f"blk.{i}."
        w[p + "attn_norm.weight"] = norm(d)
        w[p + "attn_q.weight"] = mat(nh * hd, d)
        w[p + "attn_k.weight"] = mat(nkv * hd, d)
        w[p + "attn_v.weight"] = mat(nkv * hd, d)
        if c["arch"] == "qwen2":
            w[p + "attn_q.bias"] = vec(nh * hd, 0.3)
            w[p + "attn_k.bias"] = vec(nkv * hd, 0.3)
            w[p + "attn_v.bias"] = vec(nkv * hd, 0.1)
        else:
            w[p + "attn_q_norm.weight"] = norm(hd)
            w[p + "attn_k_norm.weight"] = norm(hd)
        w[p + "attn_output.weight"] = mat(d, nh * hd, 1.0)
        w[p + "ffn_norm.weight"] = norm(d)
        if c["arch"] == "qwen3moe":
            e, ff = c["n_expert"], c["n_ff_exp"]
            # Router logits std ≈ 1.5: distinct top-8 sets per token.
            w[p + "ffn_gate_inp.weight"] = mat(e, d, 1.5)
            w[p + "ffn_gate_exps.weight"] = (rs.standard_normal((e, ff, d)) / np.sqrt(d)).astype(np.float32)
            w[p + "ffn_up_exps.weight"] = (rs.standard_normal((e, ff, d)) / np.sqrt(d)).astype(np.float32)
            w[p + "ffn_down_exps.weight"] = (rs.standard_normal((e, d, ff)) * (2.0 / np.sqrt(ff))).astype(np.float32)
        else:
            w[p + "ffn_gate.weight"] = mat(c["n_ff"], d)
            w[p + "ffn_up.weight"] = mat(c["n_ff"], d)
            w[p + "ffn_down.weight"] = mat(d, c["n_ff"], 1.0)
    w["output_norm.weight"] = norm(d)
    if not c["tied"]:
        w["output.weight"] = (0.25 * rs.standard_normal((n_vocab, d))).astype(np.float32)
    return w


def q4_k_encode(x):
    """Q4_K blocks (ggml block_q4_K: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of
    nibbles) for rows of `x` (last dim a multiple of 256). Any valid encoding serves the test, since
    llama.cpp and the engine dequantize the same bytes; this is a plain min/max fit."""
    shape = x.shape
    b = x.reshape(-1, 8, 32).astype(np.float32)  # super-blocks of 8 sub-blocks of 32
    mn = np.maximum(-b.min(axis=2), 0.0)  # subtract-able minimum, >= 0
    sc = (b.max(axis=2) + mn) / 15.0
    d = (sc.max(axis=1) / 63.0).astype(np.float16)
    dmin = (mn.max(axis=1) / 63.0).astype(np.float16)
    df, dminf = d.astype(np.float32)[:, None], dmin.astype(np.float32)[:, None]
    isc = np.clip(np.round(np.divide(sc, df, out=np.zeros_like(sc), where=df > 0)), 0, 63).astype(np.uint8)
    imn = np.clip(np.round(np.divide(mn, dminf, out=np.zeros_like(mn), where=dminf > 0)), 0, 63).astype(np.uint8)
    step = (df * isc)[:, :, None]
    off = (dminf * imn)[:, :, None]
    q = np.clip(np.round(np.divide(b + off, step, out=np.zeros_like(b), where=step > 0)), 0, 15).astype(np.uint8)
    scales = np.zeros((b.shape[0], 12), np.uint8)
    for j in range(4):
        scales[:, j] = isc[:, j] | ((isc[:, j + 4] >> 4) << 6)
        scales[:, j + 4] = imn[:, j] | ((imn[:, j + 4] >> 4) << 6)
        scales[:, j + 8] = (isc[:, j + 4] & 0xF) | ((imn[:, j + 4] & 0xF) << 4)
    # 64-value groups: low nibbles hold sub-block 2g, high nibbles sub-block 2g+1.
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(-1, 128)
    blocks = np.concatenate([d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2), scales, qs], axis=1)
    return blocks.reshape(*shape[:-1], shape[-1] // 256 * 144)


def stored(name, a, variant):
    """(array, raw_dtype) as the GGUF stores tensor `name` in this variant."""
    keep_f32 = a.ndim == 1 or name.endswith("ffn_gate_inp.weight")
    if variant == "f32" or keep_f32:
        return a, None
    if variant == "f16":
        return a.astype(np.float16), None
    if variant == "q8_0":
        return gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0
    blocks = q4_k_encode(a)
    # Check the encoder against gguf's own Q4_K decoder (and that the fit is close).
    back = gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType.Q4_K)
    err = np.abs(back - a).max() / (np.abs(a).max() + 1e-12)
    assert back.shape == a.shape and err < 0.1, (name, err)
    return blocks, gguf.GGMLQuantizationType.Q4_K


def tokenizer_fields():
    r = gguf.GGUFReader(str(VOCAB))
    f = r.fields
    return {
        "tokens": f["tokenizer.ggml.tokens"].contents(),
        "types": f["tokenizer.ggml.token_type"].contents(),
        "merges": f["tokenizer.ggml.merges"].contents(),
        "eos": f["tokenizer.ggml.eos_token_id"].contents(),
        "bos": f["tokenizer.ggml.bos_token_id"].contents(),
        "pad": f["tokenizer.ggml.padding_token_id"].contents(),
        "template": f["tokenizer.chat_template"].contents(),
    }


def write_gguf(path, c, variant, w, tok):
    arch = c["arch"]
    wr = gguf.GGUFWriter(str(path), arch)
    wr.add_name(f"hearth-tiny-{arch}-{variant}")
    wr.add_context_length(c["n_ctx"])
    wr.add_embedding_length(c["d"])
    wr.add_block_count(c["n_layer"])
    wr.add_feed_forward_length(c["n_ff"])
    wr.add_head_count(c["n_head"])
    wr.add_head_count_kv(c["n_kv"])
    if arch != "qwen2":
        wr.add_key_length(c["head_dim"])
        wr.add_value_length(c["head_dim"])
    wr.add_rope_freq_base(c["rope_base"])
    wr.add_layer_norm_rms_eps(c["eps"])
    if arch == "qwen3moe":
        wr.add_expert_count(c["n_expert"])
        wr.add_expert_used_count(c["n_used"])
        wr.add_expert_feed_forward_length(c["n_ff_exp"])
    ftype = {"f32": 0, "f16": 1, "q8_0": 7, "q4_k": 15}[variant]
    wr.add_file_type(ftype)
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre("qwen2")
    wr.add_token_list(tok["tokens"])
    wr.add_token_types(tok["types"])
    wr.add_token_merges(tok["merges"])
    wr.add_bos_token_id(tok["bos"])
    wr.add_eos_token_id(tok["eos"])
    wr.add_pad_token_id(tok["pad"])
    wr.add_add_bos_token(False)  # as the real Qwen GGUFs
    wr.add_chat_template(tok["template"])
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
    """Writes every model unless the cache already holds this script version's set."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = OUT_DIR / "STAMP"
    paths = {(a, v): OUT_DIR / f"tiny-{a}-{v}.gguf" for a in ARCHS for v in VARIANTS}
    if not force and stamp.exists() and stamp.read_text().strip() == script_hash() and all(p.exists() for p in paths.values()):
        return paths
    stamp.unlink(missing_ok=True)
    tok = tokenizer_fields()
    for arch in ARCHS:
        base = None
        for variant in VARIANTS:
            c = config(arch, variant)
            if variant == "q4_k":
                w = weights(c)
            else:
                base = base or weights(c)
                w = base
            tmp = paths[(arch, variant)].with_suffix(".tmp")
            write_gguf(tmp, c, variant, w, tok)
            tmp.replace(paths[(arch, variant)])
            print(f"wrote {paths[(arch, variant)]} ({paths[(arch, variant)].stat().st_size >> 20} MiB)", file=sys.stderr)
    stamp.write_text(script_hash() + "\n")
    return paths


def check_against_goldens(paths):
    """The goldens were computed on files with these hashes: a mismatch means this machine's
    numpy/gguf wrote different bytes, and the comparison would be meaningless."""
    bad = []
    for (a, v), p in paths.items():
        g = GOLDEN / f"{a}-{v}.json"
        if not g.exists():
            continue
        want = json.loads(g.read_text())["model"]["sha256"]
        if sha256(p) != want:
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


def hf_model(c, w):
    import torch
    import transformers as tf
    arch, d = c["arch"], c["d"]
    common = dict(vocab_size=151936, hidden_size=d, num_hidden_layers=c["n_layer"],
                  num_attention_heads=c["n_head"], num_key_value_heads=c["n_kv"], head_dim=c["head_dim"],
                  intermediate_size=c["n_ff"], rms_norm_eps=c["eps"], max_position_embeddings=c["n_ctx"],
                  tie_word_embeddings=c["tied"], hidden_act="silu", attention_dropout=0.0,
                  rope_parameters={"rope_type": "default", "rope_theta": c["rope_base"]})
    if arch == "qwen2":
        cfg, cls = tf.Qwen2Config(**common), tf.Qwen2ForCausalLM
    elif arch == "qwen3":
        cfg, cls = tf.Qwen3Config(attention_bias=False, **common), tf.Qwen3ForCausalLM
    else:
        cfg = tf.Qwen3MoeConfig(attention_bias=False, num_experts=c["n_expert"], num_experts_per_tok=c["n_used"],
                                moe_intermediate_size=c["n_ff_exp"], norm_topk_prob=True, decoder_sparse_step=1,
                                mlp_only_layers=[], **common)
        cls = tf.Qwen3MoeForCausalLM
    cfg._attn_implementation = "eager"
    m = cls(cfg).float().eval()
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    sd = {"model.embed_tokens.weight": t(w["token_embd.weight"]), "model.norm.weight": t(w["output_norm.weight"]),
          "lm_head.weight": t(w.get("output.weight", w["token_embd.weight"]))}
    names = {"attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
             "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
             "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
             "attn_q.bias": "self_attn.q_proj.bias", "attn_k.bias": "self_attn.k_proj.bias",
             "attn_v.bias": "self_attn.v_proj.bias", "attn_q_norm.weight": "self_attn.q_norm.weight",
             "attn_k_norm.weight": "self_attn.k_norm.weight", "ffn_gate.weight": "mlp.gate_proj.weight",
             "ffn_up.weight": "mlp.up_proj.weight", "ffn_down.weight": "mlp.down_proj.weight",
             "ffn_gate_inp.weight": "mlp.gate.weight", "ffn_down_exps.weight": "mlp.experts.down_proj"}
    for i in range(c["n_layer"]):
        for g, h in names.items():
            if f"blk.{i}.{g}" in w:
                sd[f"model.layers.{i}.{h}"] = t(w[f"blk.{i}.{g}"])
        if arch == "qwen3moe":
            gu = np.concatenate([w[f"blk.{i}.ffn_gate_exps.weight"], w[f"blk.{i}.ffn_up_exps.weight"]], axis=1)
            sd[f"model.layers.{i}.mlp.experts.gate_up_proj"] = t(gu)
    own = m.state_dict()
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    if missing or extra:
        sys.exit(f"error: transformers {cls.__name__} state dict mismatch: missing {missing}, unexpected {extra}")
    m.load_state_dict(sd, strict=True)
    return m


def run_hf(c, w, tokens):
    import torch
    m = hf_model(c, w)
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
    for arch in ARCHS:
        for variant in VARIANTS:
            p = paths[(arch, variant)]
            c = config(arch, variant)
            out = {
                "format": 1,
                "generator": "scripts/oracle/gen_tiny.py",
                "oracle": dict(oracle, driver="scripts/oracle/logits.cpp"),
                "model": {"file": p.name, "sha256": sha256(p), "size": p.stat().st_size, "seed": SEED,
                          "config": {k: v for k, v in c.items() if k != "arch"}},
                "arch": arch, "variant": variant, "top_k": TOP_K, "n_predict": N_PREDICT,
                "logprob_decimals": DECIMALS,
                "settings": {"n_ctx": N_CTX, "n_threads": THREADS, "type_k": "f16", "type_v": "f16",
                             "flash_attn": "off"},
                "prompts": [],
            }
            w = weights(c) if (hf_version and variant == "f32") else None
            for pid, text, j in run_llama(driver, p):
                g = j["greedy"]
                e = {"id": pid, "text": text, "prompt_tokens": j["prompt_tokens"],
                     "prompt_top": [compact(t) for t in j["prompt_top"]],
                     "greedy": {"ids": g["ids"], "stop": g["stop"], "eog_id": g["eog_id"],
                                "top": [compact(t) for t in g["top"]]}}
                if w is not None:
                    seq = j["prompt_tokens"] + g["ids"]
                    e["transformers"] = {"version": hf_version, "dtype": "float32", "attn": "eager",
                                         "tokens": "prompt_tokens + greedy.ids (teacher-forced)",
                                         "top": run_hf(c, w, seq)}
                out["prompts"].append(e)
            dst = GOLDEN / f"{arch}-{variant}.json"
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

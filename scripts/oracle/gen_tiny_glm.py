#!/usr/bin/env python3
"""Tiny random-weight `qwen` (Qwen1), `chatglm` (ChatGLM3 / GLM-4-9B-Chat) and `glm4`
(GLM-4-0414) models and their oracle goldens: the architectures whose tensors are stored fused
(`attn_qkv` with bias; gate and up in one `ffn_up`) and the GLM prompt prefixes.

Same conventions as scripts/oracle/gen_tiny.py (its helpers are imported: Q4_K encoder, stored
types per variant, llama.cpp driver, golden layout), with llama.cpp's tensor names and keys
(src/llama-arch.cpp; src/models/{qwen,chatglm,glm4}.cpp; conversion/{qwen,chatglm,glm}.py for
what a converted Hugging Face checkpoint holds):

  python3 scripts/oracle/gen_tiny_glm.py models   # (re)writes tiny-{qwen,chatglm,glm4}-*.gguf
                                                  # into $HEARTH_CACHE/tiny when missing or
                                                  # stale, then checks their sha256 against
                                                  # tests/golden/tiny/*.json
  python3 scripts/oracle/gen_tiny_glm.py golden   # models, then the goldens

Tokenizers: real vocabularies from llama.cpp's models/ggml-vocab-*.gguf, cut to their first
N_BASE tokens so the models stay a few MB (a 151936-token embedding alone is 78 MB in f32):
  * qwen, glm4: the Qwen2 byte-level BPE vocabulary (Qwen1's tiktoken vocabulary converts to
    the same `qwen2` pre-tokenizer; GLM-4's own is not in the sdist). Its merges are in token
    order (merge i makes token 256 + i), so the first N_BASE tokens with the first
    N_BASE - 256 merges are a complete smaller BPE. glm4 uses `tokenizer.ggml.pre`
    chatglm-bpe (GLM-4's pre-tokenizer; llama.cpp then sets no BOS).
  * chatglm: ChatGLM3's tokenizer is SentencePiece (`llama` model, `chatglm-spm` pre); the
    sdist's models/ggml-vocab-llama-spm.gguf is, cut the same way (tokens are ordered by
    score; the 256 byte tokens are among the first 259, so everything stays encodable).
  The special tokens of each model family are appended as CONTROL tokens: Qwen's
  <|endoftext|> <|im_start|> <|im_end|>; ChatGLM3's [MASK] [gMASK] [sMASK] sop eop <|system|>
  <|user|> <|assistant|> <|observation|>; GLM-4's <|endoftext|> [MASK] [gMASK] [sMASK] <sop>
  <eop> <|system|> <|user|> <|assistant|> <|observation|>. No chat template is written (as in
  Qwen-7B-Chat and ChatGLM3 GGUFs), so the engine's built-in fallbacks are what a chat uses.

Models (not committed; deterministic numpy RandomState):
  tiny-{qwen,chatglm,glm4}-{f32,f16,q8_0,q4_k}.gguf; f32/f16/q8_0 share weights (n_embd 128),
  q4_k has its own (n_embd 256), as in gen_tiny.py.
  * qwen: 4 heads × 32, no GQA; attn_qkv weight + bias; untied output; feed_forward_length is
    twice the gate/up width (Hugging Face intermediate_size, as llama.cpp reads it).
  * chatglm: 4 query heads × 32, 2 KV heads (multi-query groups); attn_qkv weight + bias;
    rope.dimension_count 16 (half the head, interleaved pairs); ffn_up = [gate; up].
  * glm4: 4 query heads × 64 (head size != n_embd / n_head, `attention.key_length`), 2 KV
    heads; separate Q/K/V with biases (as Glm4ForCausalLM converts); rope.dimension_count 32;
    post_attention_norm and post_ffw_norm; ffn_up = [gate; up].

Goldens (tests/golden/tiny/{arch}-{variant}.json): llama.cpp through scripts/oracle/logits.cpp,
and for the f32 variants of the architectures transformers implements (chatglm as
GlmForCausalLM, the class llama.cpp's converter maps to `chatglm`; glm4 as Glm4ForCausalLM;
Qwen1 exists only as remote code) the same weights in float32, teacher-forced.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_tiny as base  # noqa: E402  (helpers and settings shared with the Qwen models)

ROOT, CACHE, OUT_DIR, GOLDEN, LLAMA_SRC = base.ROOT, base.CACHE, base.OUT_DIR, base.GOLDEN, base.LLAMA_SRC
SEED = 20261203
N_BASE = 4096
TOP_K, N_PREDICT, THREADS, N_CTX = base.TOP_K, base.N_PREDICT, base.THREADS, base.N_CTX

ARCHS = ("qwen", "chatglm", "glm4")
VARIANTS = base.VARIANTS

SPECIALS = {
    "qwen": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    "chatglm": ["[MASK]", "[gMASK]", "[sMASK]", "sop", "eop", "<|system|>", "<|user|>", "<|assistant|>",
                "<|observation|>"],
    "glm4": ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
             "<|assistant|>", "<|observation|>"],
}

CHAT = {
    "qwen": "<|im_start|>user\nWrite a haiku about rust.<|im_end|>\n<|im_start|>assistant\n",
    # llama.cpp's LLM_CHAT_TEMPLATE_CHATGLM_3 / _4 renderings of one user turn.
    "chatglm": "[gMASK]sop<|user|>\n Write a haiku about rust.<|assistant|>",
    "glm4": "[gMASK]<sop><|user|>\nWrite a haiku about rust.<|assistant|>\n",
}


def prompts(arch):
    return [
        ("question", "Question: Why is the sky blue during the day?\nAnswer:"),
        ("chinese", "今天天气很好，我们一起去公园散步吧。"),
        ("chat", CHAT[arch]),
    ]


def config(arch, variant):
    big = variant == "q4_k"
    d = 256 if big else 128
    c = dict(arch=arch, d=d, n_layer=2, n_head=4, eps=1e-5, n_ctx=4096, n_ff=2 * d)
    if arch == "qwen":
        c.update(n_kv=4, head_dim=d // 4, n_rot=d // 4, eps=1e-6, rope_base=10000.0, fused_qkv=True)
    elif arch == "chatglm":
        c.update(n_kv=2, head_dim=d // 4, n_rot=d // 8, rope_base=10000.0, fused_qkv=True)
    else:
        c.update(n_kv=2, head_dim=d // 2, n_rot=d // 4, rope_base=10000.0, fused_qkv=False)
    return c


def vocab(arch):
    """(tokens, types, scores or None, merges or None, ids of named specials)."""
    spm = arch == "chatglm"
    src = LLAMA_SRC / ("models/ggml-vocab-llama-spm.gguf" if spm else "models/ggml-vocab-qwen2.gguf")
    f = gguf.GGUFReader(str(src)).fields
    tokens = list(f["tokenizer.ggml.tokens"].contents()[:N_BASE])
    types = list(f["tokenizer.ggml.token_type"].contents()[:N_BASE])
    scores = list(f["tokenizer.ggml.scores"].contents()[:N_BASE]) if spm else None
    merges = None
    if not spm:
        merges = list(f["tokenizer.ggml.merges"].contents()[:N_BASE - 256])
        tid = {t: i for i, t in enumerate(tokens)}
        assert all(tid.get("".join(m.split(" "))) == 256 + i for i, m in enumerate(merges)), "merge order"
    ids = {}
    for s in SPECIALS[arch]:
        ids[s] = len(tokens)
        tokens.append(s)
        types.append(3)  # CONTROL
        if scores is not None:
            scores.append(0.0)
    return tokens, types, scores, merges, ids


def weights(c, n_vocab):
    arch = c["arch"]
    rs = np.random.RandomState(SEED + 1000 * ARCHS.index(arch) + c["d"])
    d, hd, nh, nkv, ff = c["d"], c["head_dim"], c["n_head"], c["n_kv"], c["n_ff"]
    dq, dkv = nh * hd, nkv * hd

    def mat(rows, cols, scale=1.0):
        return (rs.standard_normal((rows, cols)) * (scale / np.sqrt(cols))).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rs.standard_normal(n)).astype(np.float32)

    def vec(n, s):
        return (s * rs.standard_normal(n)).astype(np.float32)

    w = {"token_embd.weight": (0.25 * rs.standard_normal((n_vocab, d))).astype(np.float32)}
    for i in range(c["n_layer"]):
        p = f"blk.{i}."
        w[p + "attn_norm.weight"] = norm(d)
        q, k, v = mat(dq, d), mat(dkv, d), mat(dkv, d)
        bq, bk, bv = vec(dq, 0.3), vec(dkv, 0.3), vec(dkv, 0.1)
        if c["fused_qkv"]:
            w[p + "attn_qkv.weight"] = np.concatenate([q, k, v], axis=0)
            w[p + "attn_qkv.bias"] = np.concatenate([bq, bk, bv])
        else:
            w[p + "attn_q.weight"], w[p + "attn_k.weight"], w[p + "attn_v.weight"] = q, k, v
            w[p + "attn_q.bias"], w[p + "attn_k.bias"], w[p + "attn_v.bias"] = bq, bk, bv
        w[p + "attn_output.weight"] = mat(d, dq)
        if arch == "glm4":
            w[p + "post_attention_norm.weight"] = norm(d)
        w[p + "ffn_norm.weight"] = norm(d)
        if arch == "qwen":
            w[p + "ffn_gate.weight"] = mat(ff, d)
            w[p + "ffn_up.weight"] = mat(ff, d)
        else:
            w[p + "ffn_up.weight"] = np.concatenate([mat(ff, d), mat(ff, d)], axis=0)  # [gate; up]
        w[p + "ffn_down.weight"] = mat(d, ff)
        if arch == "glm4":
            w[p + "post_ffw_norm.weight"] = norm(d)
    w["output_norm.weight"] = norm(d)
    w["output.weight"] = (0.25 * rs.standard_normal((n_vocab, d))).astype(np.float32)
    return w


def write_gguf(path, c, variant, w, voc):
    arch = c["arch"]
    tokens, types, scores, merges, ids = voc
    wr = gguf.GGUFWriter(str(path), arch)
    wr.add_name(f"hearth-tiny-{arch}-{variant}")
    wr.add_context_length(c["n_ctx"])
    wr.add_embedding_length(c["d"])
    wr.add_block_count(c["n_layer"])
    # Qwen1: the Hugging Face intermediate_size, twice each of ffn_gate / ffn_up.
    wr.add_feed_forward_length(2 * c["n_ff"] if arch == "qwen" else c["n_ff"])
    wr.add_head_count(c["n_head"])
    wr.add_head_count_kv(c["n_kv"])
    if c["head_dim"] * c["n_head"] != c["d"]:
        wr.add_key_length(c["head_dim"])
        wr.add_value_length(c["head_dim"])
    if c["n_rot"] != c["head_dim"]:
        wr.add_rope_dimension_count(c["n_rot"])
    wr.add_rope_freq_base(c["rope_base"])
    wr.add_layer_norm_rms_eps(c["eps"])
    wr.add_file_type({"f32": 0, "f16": 1, "q8_0": 7, "q4_k": 15}[variant])
    if arch == "chatglm":
        wr.add_tokenizer_model("llama")
        wr.add_tokenizer_pre("chatglm-spm")
        wr.add_token_list(tokens)
        wr.add_token_scores(scores)
        wr.add_token_types(types)
        wr.add_bos_token_id(1)
        wr.add_eos_token_id(2)
        wr.add_unk_token_id(0)
    else:
        wr.add_tokenizer_model("gpt2")
        wr.add_tokenizer_pre("qwen2" if arch == "qwen" else "chatglm-bpe")
        wr.add_token_list(tokens)
        wr.add_token_types(types)
        wr.add_token_merges(merges)
        eos = ids["<|endoftext|>"]
        wr.add_bos_token_id(eos)
        wr.add_eos_token_id(eos)
        wr.add_pad_token_id(eos)
        if arch == "glm4":
            # As conversion/glm.py: end of turn is <|user|>, unknown is <|endoftext|>.
            wr.add_eot_token_id(ids["<|user|>"])
            wr.add_unk_token_id(eos)
    wr.add_add_bos_token(False)
    for name, a in w.items():
        arr, raw = base.stored(name, a, variant)
        if raw is None:
            wr.add_tensor(name, arr)
        else:
            wr.add_tensor(name, arr, raw_dtype=raw)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def script_hash():
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(Path(base.__file__).read_bytes())  # the shared encoders
    return h.hexdigest()[:16]


def make_models(force=False):
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = OUT_DIR / "STAMP-glm"
    paths = {(a, v): OUT_DIR / f"tiny-{a}-{v}.gguf" for a in ARCHS for v in VARIANTS}
    if not force and stamp.exists() and stamp.read_text().strip() == script_hash() and all(p.exists() for p in paths.values()):
        return paths
    stamp.unlink(missing_ok=True)
    for arch in ARCHS:
        voc = vocab(arch)
        base_w = None
        for variant in VARIANTS:
            c = config(arch, variant)
            if variant == "q4_k":
                w = weights(c, len(voc[0]))
            else:
                base_w = base_w or weights(c, len(voc[0]))
                w = base_w
            tmp = paths[(arch, variant)].with_suffix(".tmp")
            write_gguf(tmp, c, variant, w, voc)
            tmp.replace(paths[(arch, variant)])
            print(f"wrote {paths[(arch, variant)]} ({paths[(arch, variant)].stat().st_size >> 10} KiB)", file=sys.stderr)
    stamp.write_text(script_hash() + "\n")
    return paths


def run_llama(driver, model, arch):
    res = []
    with tempfile.TemporaryDirectory() as td:
        for pid, text in prompts(arch):
            pf = Path(td) / "prompt.txt"
            pf.write_bytes(text.encode())
            r = subprocess.run([str(driver), "-m", str(model), "-f", str(pf), "-n", str(N_PREDICT), "-k", str(TOP_K),
                                "-t", str(THREADS), "-c", str(N_CTX), "--fa", "off", "--kv", "f16"],
                               check=True, capture_output=True, text=True)
            res.append((pid, text, json.loads(r.stdout)))
    return res


def hf_model(c, w, n_vocab):
    """GlmForCausalLM (chatglm) / Glm4ForCausalLM (glm4) on the same weights, float32."""
    import torch
    import transformers as tf
    arch, d, hd, nh, nkv = c["arch"], c["d"], c["head_dim"], c["n_head"], c["n_kv"]
    common = dict(vocab_size=n_vocab, hidden_size=d, num_hidden_layers=c["n_layer"], num_attention_heads=nh,
                  num_key_value_heads=nkv, head_dim=hd, intermediate_size=c["n_ff"], rms_norm_eps=c["eps"],
                  max_position_embeddings=c["n_ctx"], tie_word_embeddings=False, hidden_act="silu",
                  attention_dropout=0.0, attention_bias=True, pad_token_id=None,
                  rope_parameters={"rope_type": "default", "rope_theta": c["rope_base"],
                                   "partial_rotary_factor": c["n_rot"] / hd})
    if arch == "chatglm":
        cfg, cls = tf.GlmConfig(**common), tf.GlmForCausalLM
    else:
        cfg, cls = tf.Glm4Config(**common), tf.Glm4ForCausalLM
    cfg._attn_implementation = "eager"
    m = cls(cfg).float().eval()
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    sd = {"model.embed_tokens.weight": t(w["token_embd.weight"]), "model.norm.weight": t(w["output_norm.weight"]),
          "lm_head.weight": t(w["output.weight"])}
    dq, dkv = nh * hd, nkv * hd
    for i in range(c["n_layer"]):
        g = lambda n: w[f"blk.{i}.{n}"]
        h = f"model.layers.{i}."
        if c["fused_qkv"]:
            qkv, b = g("attn_qkv.weight"), g("attn_qkv.bias")
            parts = {"q": (qkv[:dq], b[:dq]), "k": (qkv[dq:dq + dkv], b[dq:dq + dkv]),
                     "v": (qkv[dq + dkv:], b[dq + dkv:])}
        else:
            parts = {x: (g(f"attn_{x}.weight"), g(f"attn_{x}.bias")) for x in "qkv"}
        for x, (wt, bs) in parts.items():
            sd[h + f"self_attn.{x}_proj.weight"] = t(wt)
            sd[h + f"self_attn.{x}_proj.bias"] = t(bs)
        sd[h + "self_attn.o_proj.weight"] = t(g("attn_output.weight"))
        sd[h + "input_layernorm.weight"] = t(g("attn_norm.weight"))
        sd[h + "post_attention_layernorm.weight"] = t(g("ffn_norm.weight"))
        sd[h + "mlp.gate_up_proj.weight"] = t(g("ffn_up.weight"))
        sd[h + "mlp.down_proj.weight"] = t(g("ffn_down.weight"))
        if arch == "glm4":
            sd[h + "post_self_attn_layernorm.weight"] = t(g("post_attention_norm.weight"))
            sd[h + "post_mlp_layernorm.weight"] = t(g("post_ffw_norm.weight"))
    own = m.state_dict()
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    if missing or extra:
        sys.exit(f"error: transformers {cls.__name__} state dict mismatch: missing {missing}, unexpected {extra}")
    m.load_state_dict(sd, strict=True)
    # The rotary embedding must cover exactly n_rot dimensions (partial_rotary_factor read).
    inv = [b for n, b in m.named_buffers() if n.endswith("inv_freq")]
    assert inv and inv[0].numel() == c["n_rot"] // 2, (cls.__name__, [b.numel() for b in inv])
    return m


def run_hf(c, w, n_vocab, tokens):
    import torch
    m = hf_model(c, w, n_vocab)
    with torch.no_grad():
        logits = m(torch.tensor([tokens])).logits[0].double()
    lp = torch.log_softmax(logits, dim=-1)
    out = []
    for row in lp:
        v, i = torch.topk(row, TOP_K)
        out.append({"ids": [int(x) for x in i], "logprobs": base.rnd(v.tolist())})
    return out


def make_goldens(paths):
    sys.path.insert(0, str(ROOT / "scripts/oracle"))
    from gen_golden import oracle_info, to_json
    driver = base.driver_path()
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
        n_vocab = len(vocab(arch)[0])
        for variant in VARIANTS:
            p = paths[(arch, variant)]
            c = config(arch, variant)
            out = {
                "format": 1,
                "generator": "scripts/oracle/gen_tiny_glm.py",
                "oracle": dict(oracle, driver="scripts/oracle/logits.cpp"),
                "model": {"file": p.name, "sha256": base.sha256(p), "size": p.stat().st_size, "seed": SEED,
                          "config": {k: v for k, v in c.items() if k != "arch"}, "n_vocab": n_vocab},
                "arch": arch, "variant": variant, "top_k": TOP_K, "n_predict": N_PREDICT,
                "logprob_decimals": base.DECIMALS,
                "settings": {"n_ctx": N_CTX, "n_threads": THREADS, "type_k": "f16", "type_v": "f16",
                             "flash_attn": "off"},
                "prompts": [],
            }
            hf = hf_version and variant == "f32" and arch != "qwen"
            w = weights(c, n_vocab) if hf else None
            for pid, text, j in run_llama(driver, p, arch):
                g = j["greedy"]
                e = {"id": pid, "text": text, "prompt_tokens": j["prompt_tokens"],
                     "prompt_top": [base.compact(t) for t in j["prompt_top"]],
                     "greedy": {"ids": g["ids"], "stop": g["stop"], "eog_id": g["eog_id"],
                                "top": [base.compact(t) for t in g["top"]]}}
                if w is not None:
                    seq = j["prompt_tokens"] + g["ids"]
                    e["transformers"] = {"version": hf_version, "dtype": "float32", "attn": "eager",
                                         "class": "GlmForCausalLM" if arch == "chatglm" else "Glm4ForCausalLM",
                                         "tokens": "prompt_tokens + greedy.ids (teacher-forced)",
                                         "top": run_hf(c, w, n_vocab, seq)}
                out["prompts"].append(e)
            dst = GOLDEN / f"{arch}-{variant}.json"
            text = to_json(out)
            assert json.loads(text) == out
            dst.write_text(text + "\n", encoding="utf-8")
            print(f"wrote {dst.relative_to(ROOT)} ({dst.stat().st_size} bytes)", file=sys.stderr)


def check_against_goldens(paths):
    bad = []
    for (a, v), p in paths.items():
        g = GOLDEN / f"{a}-{v}.json"
        if g.exists() and base.sha256(p) != json.loads(g.read_text())["model"]["sha256"]:
            bad.append(f"{p.name}: sha256 differs from {g.relative_to(ROOT)}")
    if bad:
        sys.exit("error: tiny models differ from the ones the goldens were made from:\n  " + "\n  ".join(bad))


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

#!/usr/bin/env python3
"""Tiny random-weight Hugging Face model directories and transformers goldens.

Checks that Hearth reads a Hugging Face directory (config.json, safetensors, tokenizer.json,
tokenizer_config.json, generation_config.json) the way transformers does, for each
architecture we map: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma3ForCausalLM,
Qwen3MoeForCausalLM, Glm4ForCausalLM.

  python3 scripts/oracle/gen_tiny_hf.py models   # (re)writes the directories into
                                                 # $HEARTH_CACHE/tiny_hf when missing or stale,
                                                 # then checks their sha256 against
                                                 # tests/golden/tiny_hf/*.json
  python3 scripts/oracle/gen_tiny_hf.py golden   # models, then the goldens (transformers)
  python3 scripts/oracle/gen_tiny_hf.py convert  # models, then llama.cpp's convert_hf_to_gguf.py
                                                 # (needs torch) on each f32 llama/qwen one, into
                                                 # $HEARTH_CACHE/tiny_hf/{model}.gguf, for the
                                                 # ignored GGUF-vs-directory test in hf_dir.rs

Models (not committed; a few hundred KB each). `models` needs only numpy: every file is written
here, byte for byte (safetensors header + little-endian data, config.json as transformers 5
writes it, tokenizer.json), from numpy's legacy RandomState stream, which numpy keeps stable
across versions, so the sha256 recorded in the goldens hold on any machine. transformers then
reads these files independently in `golden` (any missing or unexpected weight is an error):
  tiny-llama-f32     untied output, BOS added by the post-processor, llama Q/K in HF row order
  tiny-llama-bf16    the same weights stored as BF16
  tiny-qwen2-f32     q/k/v biases, tied output, sharded into several safetensors + index.json
  tiny-qwen3-f32     per-head QK-norm, head_dim 32 != hidden/heads
  tiny-gemma3-f32    6 layers (5 sliding-window + 1 global), window 8, (1 + w) norms
  tiny-qwen3moe-f32  8 experts, top-2, one safetensors tensor per expert matrix (hub layout)
  tiny-glm4-f32      Glm4ForCausalLM: q/k/v biases, head_dim 32, partial_rotary_factor 0.5,
                     post-attention / post-MLP norms, fused gate_up_proj, untied output
  tiny-gpt-oss-mxfp4 GptOssForCausalLM as openai/gpt-oss-20b ships: experts as MXFP4
                     `*_blocks` / `*_scales` (U8), everything else BF16, config.json in its
                     style (rope_scaling YaRN with truncate false, layer_types,
                     quantization_config); gen_tiny_gpt_oss.py's dimensions and weight
                     recipe (sinks, sliding window 8, 16 experts top-4), quantized with gguf's
                     MXFP4 quantizer (so `models` needs the gguf package for this one)
  tiny-gpt-oss-bf16  the same model with the experts unquantized, in transformers' own
                     layout (gate_up_proj (E, in, 2·ff) interleaved, down_proj (E, ff, d)), BF16:
                     the values the MXFP4 blocks decode to, so its goldens equal the mxfp4 ones
Config styles: llama writes rope_theta at the top level (transformers < 5), qwen rope_parameters
(5.x), gemma3 rope_parameters per layer type.
Tokenizer: byte-level BPE over 256 byte symbols plus merges learned here by plain counting on a
fixed ASCII text (ties broken by the pair's text), and ChatML specials; the chat template is
ChatML in tokenizer_config.json.

Goldens (tests/golden/tiny_hf/{model}.json): the sha256 of every file of the directory, and per
prompt the ids transformers' tokenizer gives, the top-5 log-probs at every position of the
prompt + greedy continuation (teacher-forced, float32 over the stored weights: BF16 weights are
widened, as our engine does), and the greedy continuation itself (N_PREDICT tokens, argmax of
transformers' float32 logits); for MoE models also `router_margins`: per MoE layer and position
of that teacher-forced sequence, transformers' k-th minus (k+1)-th largest router logit, so the
test can tell a routing near-tie (where float rounding may pick other experts) from an error.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import struct
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gen_tiny_gpt_oss (gpt-oss weights)

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("HEARTH_CACHE", Path.home() / ".cache/hearth"))
OUT_DIR = CACHE / "tiny_hf"
GOLDEN = ROOT / "tests/golden/tiny_hf"

SEED = 20261124
TOP_K = 5
N_PREDICT = 12
N_MERGES = 160
DECIMALS = 5

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>"]

CORPUS = (
    "The quick brown fox jumps over the lazy dog. The sky is blue because air scatters blue "
    "light more than red light. Question: why is the sky blue during the day? Answer: the "
    "sunlight is scattered by the molecules of the air, and the blue light is scattered the "
    "most. Rust is a language that gives you memory safety without a garbage collector. "
    "Write a haiku about rust: red flakes on old iron, the rain remembers the nail, slowly "
    "the ship sleeps. Hello world! hello there, how are you today? I am fine, thank you. "
    "Numbers: 1 2 3 4 5 6 7 8 9 10 11 12 100 2024. "
)

PROMPTS = [
    ("question", "Question: Why is the sky blue during the day?\nAnswer:"),
    ("unicode", "Café crème — naïve façade, 東京 🙂"),
    ("chat", "<|im_start|>user\nWrite a haiku about rust.<|im_end|>\n<|im_start|>assistant\n"),
    # Longer than gemma3's window of 8, so sliding layers really slide.
    ("long", "The quick brown fox jumps over the lazy dog, and the lazy dog sleeps in the sun "
             "while the fox runs through the tall grass toward the river."),
]

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

MODELS = {
    "tiny-llama-f32": dict(arch="llama", dtype="float32"),
    "tiny-llama-bf16": dict(arch="llama", dtype="bfloat16"),
    "tiny-qwen2-f32": dict(arch="qwen2", dtype="float32", shards=3),
    "tiny-qwen3-f32": dict(arch="qwen3", dtype="float32"),
    "tiny-gemma3-f32": dict(arch="gemma3", dtype="float32"),
    "tiny-qwen3moe-f32": dict(arch="qwen3moe", dtype="float32"),
    # Added later: its own seed offset, so the earlier models keep their weights.
    "tiny-glm4-f32": dict(arch="glm4", dtype="float32", seed_offset=100),
    "tiny-gpt-oss-mxfp4": dict(arch="gpt-oss", dtype="mxfp4", seed_offset=200),
    "tiny-gpt-oss-bf16": dict(arch="gpt-oss", dtype="bf16", seed_offset=200),
}


def bytes_to_unicode():
    """GPT-2's byte → printable character table (the byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


# GPT-2's pre-tokenizer split restricted to ASCII, which is all CORPUS holds.
ASCII_SPLIT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")


def tokenizer_json(add_bos):
    """A byte-level BPE tokenizer.json: merges by plain pair counting over CORPUS's words."""
    b2u = bytes_to_unicode()
    words = Counter("".join(b2u[b] for b in w.encode()) for w in ASCII_SPLIT.findall(CORPUS))
    seqs = {w: list(w) for w in words}
    vocab = {b2u[b]: i for i, b in enumerate(range(256))}
    merges = []
    for _ in range(N_MERGES):
        pairs = Counter()
        for w, n in words.items():
            s = seqs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(list(best))
        vocab.setdefault(best[0] + best[1], len(vocab))
        for w in words:
            s, out, i = seqs[w], [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    added = []
    for t in SPECIALS:
        vocab[t] = len(vocab)
        added.append({"id": vocab[t], "content": t, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True})
    post = None
    if add_bos:
        post = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                           {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                         {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": "<s>", "type_id": 1}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [vocab["<s>"]], "tokens": ["<s>"]}}}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def config_json(arch, n_vocab, eos, bos):
    c = dict(vocab_size=n_vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
             hidden_act="silu", attention_bias=False, attention_dropout=0.0,
             bos_token_id=bos, eos_token_id=eos, dtype="float32", use_cache=True)
    if arch == "llama":
        # The pre-5.x style: rope_theta and rope_scaling at the top level.
        c.update(architectures=["LlamaForCausalLM"], model_type="llama", rms_norm_eps=1e-5,
                 rope_theta=10000.0, rope_scaling=None, tie_word_embeddings=False,
                 mlp_bias=False, head_dim=16)
    elif arch in ("qwen2", "qwen3", "qwen3moe"):
        c.update(rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False,
                 sliding_window=None,
                 rope_parameters={"rope_theta": 1_000_000.0, "rope_type": "default"})
        if arch == "qwen2":
            c.update(architectures=["Qwen2ForCausalLM"], model_type="qwen2")
            del c["attention_bias"]  # Qwen2 always has q/k/v biases
        elif arch == "qwen3":
            c.update(architectures=["Qwen3ForCausalLM"], model_type="qwen3", head_dim=32)
        else:
            c.update(architectures=["Qwen3MoeForCausalLM"], model_type="qwen3_moe", head_dim=16,
                     num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                     norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
                     router_aux_loss_coef=0.001, output_router_logits=False)
    elif arch == "gemma3":
        del c["hidden_act"]
        c.update(architectures=["Gemma3ForCausalLM"], model_type="gemma3_text",
                 num_hidden_layers=6, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                 hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=32,
                 sliding_window=8, rms_norm_eps=1e-6, final_logit_softcapping=None,
                 attn_logit_softcapping=None, tie_word_embeddings=True, pad_token_id=0,
                 layer_types=["sliding_attention"] * 5 + ["full_attention"],
                 rope_parameters={
                     "full_attention": {"rope_theta": 1_000_000.0, "rope_type": "default"},
                     "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}})
    elif arch == "glm4":
        # GLM-4-0414: q/k/v biases, head_dim 32 != hidden/heads, RoPE on half of each head.
        c.update(architectures=["Glm4ForCausalLM"], model_type="glm4", attention_bias=True,
                 head_dim=32, rms_norm_eps=1e-5, tie_word_embeddings=False, pad_token_id=None,
                 rope_parameters={"rope_theta": 10000.0, "rope_type": "default",
                                  "partial_rotary_factor": 0.5})
    else:
        raise ValueError(arch)
    return c


def tensor_shapes(arch, c):
    """Hugging Face names and shapes of every weight (what the transformers model holds)."""
    d, ff, nv = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    hd = c.get("head_dim") or d // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    out = [("model.embed_tokens.weight", (nv, d))]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", (d,)),
                (p + "self_attn.q_proj.weight", (q, d)), (p + "self_attn.k_proj.weight", (kv, d)),
                (p + "self_attn.v_proj.weight", (kv, d)), (p + "self_attn.o_proj.weight", (d, q))]
        if arch in ("qwen2", "glm4"):
            out += [(p + "self_attn.q_proj.bias", (q,)), (p + "self_attn.k_proj.bias", (kv,)),
                    (p + "self_attn.v_proj.bias", (kv,))]
        if arch == "glm4":
            out += [(p + "post_self_attn_layernorm.weight", (d,)),
                    (p + "post_attention_layernorm.weight", (d,)),
                    (p + "mlp.gate_up_proj.weight", (2 * ff, d)), (p + "mlp.down_proj.weight", (d, ff)),
                    (p + "post_mlp_layernorm.weight", (d,))]
            continue
        if arch in ("qwen3", "qwen3moe", "gemma3"):
            out += [(p + "self_attn.q_norm.weight", (hd,)), (p + "self_attn.k_norm.weight", (hd,))]
        out.append((p + "post_attention_layernorm.weight", (d,)))
        if arch == "qwen3moe":
            fe = c["moe_intermediate_size"]
            out.append((p + "mlp.gate.weight", (c["num_experts"], d)))
            for e in range(c["num_experts"]):
                q_ = f"{p}mlp.experts.{e}."
                out += [(q_ + "gate_proj.weight", (fe, d)), (q_ + "up_proj.weight", (fe, d)),
                        (q_ + "down_proj.weight", (d, fe))]
        else:
            out += [(p + "mlp.gate_proj.weight", (ff, d)), (p + "mlp.up_proj.weight", (ff, d)),
                    (p + "mlp.down_proj.weight", (d, ff))]
        if arch == "gemma3":
            out += [(p + "pre_feedforward_layernorm.weight", (d,)),
                    (p + "post_feedforward_layernorm.weight", (d,))]
    out.append(("model.norm.weight", (d,)))
    if not c["tie_word_embeddings"]:
        out.append(("lm_head.weight", (nv, d)))
    return out


def random_weights(arch, c, seed):
    """Deterministic weights, scaled so logits have clear margins (std ~3 after the head)."""
    rng = np.random.RandomState(seed)
    w = {}
    for name, shape in tensor_shapes(arch, c):
        if name.endswith("norm.weight"):
            # Gemma's norms multiply by (1 + w), the others by w.
            v = (0.0 if arch == "gemma3" else 1.0) + 0.2 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            v = 0.2 * rng.standard_normal(shape)
        elif "embed_tokens" in name:
            v = rng.standard_normal(shape)
        elif name == "lm_head.weight":
            v = 3.0 * rng.standard_normal(shape) / np.sqrt(shape[1])
        else:
            v = rng.standard_normal(shape) / np.sqrt(shape[1])
        w[name] = v.astype(np.float32)
    return w


def to_bf16_bits(a):
    """float32 → bfloat16 bits, round to nearest even (as torch's .to(torch.bfloat16))."""
    b = a.view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path, tensors, dtype):
    """The safetensors layout: u64 header length, JSON header (8-byte aligned), raw data.
    Float arrays are stored as `dtype`, uint8 arrays (MXFP4 blocks / scales) as U8."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        a = tensors[name]
        if a.dtype == np.uint8:
            raw, st = a.tobytes(), "U8"
        elif dtype == "bfloat16":
            raw, st = to_bf16_bits(a).tobytes(), "BF16"
        else:
            raw, st = a.astype("<f4").tobytes(), "F32"
        header[name] = {"dtype": st, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def mxfp4_ocp(a):
    """float32 (..., rows, cols) → MXFP4 in the OCP / Hugging Face layout: blocks u8
    (..., rows, cols/32, 16) with element 2i in the low nibble of byte i and 2i+1 in the high
    one, scales u8 (..., rows, cols/32) (E8M0). Quantized by gguf's MXFP4 quantizer (ggml's
    quantize_row_mxfp4), whose block_mxfp4 is one scale byte then 16 bytes with element j in the
    low nibble and j+16 in the high one: only the nibbles move."""
    import gguf
    q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.MXFP4)
    q = q.reshape(*a.shape[:-1], a.shape[-1] // 32, 17)
    scales, qs = q[..., 0], q[..., 1:]
    codes = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # element order 0..31
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    return np.ascontiguousarray(blocks), np.ascontiguousarray(scales)


def gpt_oss_dir(n_vocab, eos, seed, experts):
    """config.json and tensors of tiny-gpt-oss-{experts} (see the module docstring)."""
    import gen_tiny_gpt_oss as go
    c = go.CONFIG
    kw = go.hf_config_kwargs(c, n_vocab, truncate=False)
    rope = kw.pop("rope_parameters")
    cfg = dict(architectures=["GptOssForCausalLM"], model_type="gpt_oss", **kw,
               rope_theta=rope.pop("rope_theta"), rope_scaling=rope,
               layer_types=["sliding_attention" if i % 2 == 0 else "full_attention"
                            for i in range(c["n_layer"])],
               experts_per_token=c["n_used"], initial_context_length=c["n_ctx_orig"],
               swiglu_limit=7.0, hidden_act="silu", router_aux_loss_coef=0.9,
               output_router_logits=False, eos_token_id=eos, pad_token_id=eos, dtype="bfloat16",
               use_cache=True,
               quantization_config={"quant_method": "mxfp4", "modules_to_not_convert": [
                   "model.layers.*.self_attn", "model.layers.*.mlp.router",
                   "model.embed_tokens", "lm_head"]})
    if experts == "bf16":
        del cfg["quantization_config"]
    sd = go.hf_state_dict(c, go.weights(c, n_vocab, seed=seed))
    for i in range(c["n_layer"]):
        p = f"model.layers.{i}.mlp.experts."
        # Stored output-major ((E, out, in), a Linear's layout), the transpose of gate_up_proj
        # / down_proj; gate and up stay interleaved along `out`.
        for proj in ("gate_up_proj", "down_proj"):
            w = sd.pop(p + proj)
            blocks, scales = mxfp4_ocp(np.ascontiguousarray(w.transpose(0, 2, 1)))
            if experts == "mxfp4":
                sd[p + proj + "_blocks"], sd[p + proj + "_scales"] = blocks, scales
            else:
                # The values those blocks decode to (exact in BF16), in transformers' own
                # unquantized layout: the same model as tiny-gpt-oss-mxfp4.
                sd[p + proj] = np.ascontiguousarray(mxfp4_decode(blocks, scales).transpose(0, 2, 1))
    return cfg, sd


def mxfp4_decode(blocks, scales):
    """The OCP layout's values (transformers' convert_moe_packed_tensors in numpy)."""
    lut = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                    -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], np.float32)
    v = np.empty((*blocks.shape[:-1], 32), np.float32)
    v[..., 0::2], v[..., 1::2] = lut[blocks & 0x0F], lut[blocks >> 4]
    v = np.ldexp(v, scales.astype(np.int32)[..., None] - 127)
    return v.reshape(*blocks.shape[:-2], -1)


def write_json(path, obj):
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_model(name, spec):
    arch = spec["arch"]
    out = OUT_DIR / name
    tmp = OUT_DIR / (name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tok = tokenizer_json(add_bos=arch == "llama")
    vocab = tok["model"]["vocab"]
    eos, bos = vocab["<|im_end|>"], (vocab["<s>"] if arch == "llama" else None)
    first = sorted(n for n in MODELS if "seed_offset" not in MODELS[n])
    offset = spec.get("seed_offset")
    if offset is None:
        offset = first.index(name.replace("-bf16", "-f32"))
    if arch == "gpt-oss":
        cfg, weights = gpt_oss_dir(len(vocab), eos, SEED + offset, spec["dtype"])
        dtype = "bfloat16"
    else:
        cfg = config_json(arch, len(vocab), eos, bos)
        cfg["dtype"] = dtype = spec["dtype"]
        weights = random_weights(arch, cfg, SEED + offset)
    n_shards = spec.get("shards", 1)
    if n_shards == 1:
        write_safetensors(tmp / "model.safetensors", weights, dtype)
    else:
        names = sorted(weights)
        parts = [names[i::n_shards] for i in range(n_shards)]
        wmap = {}
        for i, part in enumerate(parts):
            fname = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
            write_safetensors(tmp / fname, {k: weights[k] for k in part}, dtype)
            wmap.update({k: fname for k in part})
        size = sum(a.nbytes for a in weights.values())
        write_json(tmp / "model.safetensors.index.json",
                   {"metadata": {"total_size": size}, "weight_map": dict(sorted(wmap.items()))})
    write_json(tmp / "config.json", cfg)
    write_json(tmp / "generation_config.json",
               {"bos_token_id": bos, "eos_token_id": [eos, vocab["<|endoftext|>"]]})
    write_json(tmp / "tokenizer.json", tok)
    tc = {"bos_token": "<s>" if arch == "llama" else None, "eos_token": "<|im_end|>",
          "pad_token": "<|endoftext|>", "chat_template": CHATML,
          "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512}
    write_json(tmp / "tokenizer_config.json", tc)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def models(check=True):
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    dirs = {}
    for name, spec in MODELS.items():
        d = OUT_DIR / name
        gpath = GOLDEN / f"{name}.json"
        want = json.loads(gpath.read_text())["files"] if gpath.exists() else None
        if not d.is_dir() or (want is not None and dir_hashes(d) != want):
            write_model(name, spec)
        if check and want is not None and dir_hashes(d) != want:
            sys.exit(f"{d}: files differ from the sha256 in {gpath}; regenerate the goldens")
        dirs[name] = d
    return dirs


def sha256(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def dir_hashes(d):
    return {p.name: sha256(p) for p in sorted(d.iterdir()) if p.is_file()}


def golden(only=()):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name, d in models(check=False).items():
        if only and name not in only:
            continue
        tok = AutoTokenizer.from_pretrained(d)
        model, info = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32,
                                                           output_loading_info=True)
        bad = {k: v for k, v in info.items() if v}
        if bad:
            sys.exit(f"{d}: transformers did not load every weight: {bad}")
        model.eval()
        eos = set(json.loads((d / "generation_config.json").read_text())["eos_token_id"])
        prompts = []
        for pid, text in PROMPTS:
            ids = tok(text)["input_ids"]
            seq = list(ids)
            with torch.no_grad():
                for _ in range(N_PREDICT):
                    logits = model(torch.tensor([seq])).logits[0, -1]
                    nxt = int(torch.argmax(logits))
                    seq.append(nxt)
                    if nxt in eos:
                        break
                moe = getattr(model.config, "num_experts", 0) > 0
                out = model(torch.tensor([seq]), output_router_logits=moe)
                lp = torch.log_softmax(out.logits[0].double(), dim=-1)
            extra = {}
            if moe:
                # Per MoE layer and position, the k-th minus the (k+1)-th largest router logit:
                # how far that routing decision is from a tie. Top-k selection is discontinuous,
                # so where this is within float noise (our F16 K/V, llama.cpp's flash attention)
                # the chosen experts, and with them the logits, may legitimately differ.
                k = model.config.num_experts_per_tok
                extra["router_margins"] = [
                    [round(float(x), 7) for x in (s[:, k - 1] - s[:, k])]
                    for s in (torch.sort(rl.double(), dim=-1, descending=True).values
                              for rl in out.router_logits)]
            tops = []
            for row in lp:
                v, i = torch.topk(row, TOP_K)
                tops.append({"ids": [int(x) for x in i],
                             "logprobs": [round(float(x), DECIMALS) for x in v]})
            prompts.append({"id": pid, "text": text, "prompt_tokens": ids,
                            "greedy": seq[len(ids):],
                            "greedy_text": tok.decode(seq[len(ids):], skip_special_tokens=True),
                            "top": tops, **extra})
        doc = {
            "generator": "scripts/oracle/gen_tiny_hf.py (transformers, float32)",
            "transformers": __import__("transformers").__version__,
            "torch": torch.__version__,
            "model": name, "arch": MODELS[name]["arch"], "dtype": MODELS[name]["dtype"],
            "files": dir_hashes(d),
            "eos_ids": sorted(eos),
            "prompts": prompts,
        }
        # One line per prompt keeps the files small and their diffs readable.
        body = json.dumps({k: v for k, v in doc.items() if k != "prompts"}, indent=1,
                          ensure_ascii=False)
        rows = ",\n".join("  " + json.dumps(p, ensure_ascii=False, separators=(",", ":"))
                           for p in prompts)
        text = body[:-2] + ',\n "prompts": [\n' + rows + "\n ]\n}\n"
        json.loads(text)
        (GOLDEN / f"{name}.json").write_text(text)
        print(f"{name}: {len(prompts)} prompts", file=sys.stderr)


LLAMA_SRC = Path(os.environ.get(
    "HEARTH_LLAMA_CPP_SRC",
    Path.home() / ".cache/hearth/oracle/llama-cpp-python-0.3.36/vendor/llama.cpp"))

# Runs the converter in a child process with two changes that concern only the vocabulary: our
# tokenizer's hash is not in its table of known pre-tokenizers (it is GPT-2's split), and it
# would try sentencepiece first (not installed; there is no tokenizer.model).
CONVERT = """
import runpy, sys
src = sys.argv[1]
sys.path[:0] = [src, src + "/gguf-py"]
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tok: "gpt-2"
def no_spm(self, *a, **k):
    raise FileNotFoundError("no tokenizer.model")
base.TextModel._set_vocab_sentencepiece = no_spm
sys.argv = ["convert_hf_to_gguf.py"] + sys.argv[2:]
runpy.run_path(src + "/convert_hf_to_gguf.py", run_name="__main__")
"""


def convert():
    import subprocess
    for name, d in models().items():
        if MODELS[name]["dtype"] != "float32" or MODELS[name]["arch"] == "gemma3":
            continue
        out = OUT_DIR / f"{name}.gguf"
        subprocess.run([sys.executable, "-c", CONVERT, str(LLAMA_SRC), str(d), "--outtype", "f32",
                        "--outfile", str(out)], check=True, capture_output=True)
        print(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["models", "golden", "convert"])
    ap.add_argument("names", nargs="*", help="golden: only these models (default: all)")
    a = ap.parse_args()
    if a.what == "models":
        for n, d in models().items():
            print(d)
    elif a.what == "convert":
        convert()
    else:
        golden(a.names)

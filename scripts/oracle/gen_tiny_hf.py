#!/usr/bin/env python3
"""Tiny random-weight Hugging Face model directories and transformers goldens.

Checks that Hearth reads a Hugging Face directory (config.json, safetensors, tokenizer.json,
tokenizer_config.json, generation_config.json) the way transformers does, for each
architecture we map: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma3ForCausalLM.

  python3 scripts/oracle/gen_tiny_hf.py models   # (re)writes the directories into
                                                 # $HEARTH_CACHE/tiny_hf when missing or stale,
                                                 # then checks their sha256 against
                                                 # tests/golden/tiny_hf/*.json
  python3 scripts/oracle/gen_tiny_hf.py golden   # models, then the goldens (transformers)

Models (not committed; a few hundred KB each; deterministic: weights from numpy's legacy
RandomState stream, which numpy keeps stable across versions, loaded into the transformers model
and written by save_pretrained; the tokenizer is built here, not trained, so it does not depend
on the tokenizers trainer):
  tiny-llama-f32     untied output, BOS added by the post-processor, llama Q/K in HF row order
  tiny-llama-bf16    the same weights stored as BF16
  tiny-qwen2-f32     q/k/v biases, tied output, sharded into several safetensors + index.json
  tiny-qwen3-f32     per-head QK-norm, head_dim 32 != hidden/heads
  tiny-gemma3-f32    6 layers (5 sliding-window + 1 global), window 8, (1 + w) norms
Tokenizer: byte-level BPE over 256 byte symbols plus merges learned here by plain counting on a
fixed English text (ties broken by the pair's text), and ChatML specials; the chat template is
ChatML in tokenizer_config.json.

Goldens (tests/golden/tiny_hf/{model}.json): the sha256 of every file of the directory, and per
prompt the ids transformers' tokenizer gives, the top-5 log-probs at every position of the
prompt + greedy continuation (teacher-forced, float32 over the stored weights: BF16 weights are
widened, as our engine does), and the greedy continuation itself (N_PREDICT tokens, argmax of
transformers' float32 logits).
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np

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
    "tiny-qwen2-f32": dict(arch="qwen2", dtype="float32", shard="60KB"),
    "tiny-qwen3-f32": dict(arch="qwen3", dtype="float32"),
    "tiny-gemma3-f32": dict(arch="gemma3", dtype="float32"),
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


def build_tokenizer(add_bos):
    """A byte-level BPE tokenizer.json: merges by plain pair counting over CORPUS's words."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, processors
    b2u = bytes_to_unicode()
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    words = Counter(w for w, _ in pre.pre_tokenize_str(CORPUS))
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
        merges.append(best)
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
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return tok


def config_for(arch, n_vocab):
    import transformers as tf
    common = dict(vocab_size=n_vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    ids = dict(bos_token_id=None, eos_token_id=SPECIALS.index("<|im_end|>") + 256 + N_MERGES)
    if arch == "llama":
        return tf.LlamaConfig(**common, rms_norm_eps=1e-5, rope_theta=10000.0,
                              tie_word_embeddings=False, hidden_act="silu")
    if arch == "qwen2":
        return tf.Qwen2Config(**common, rms_norm_eps=1e-6, rope_theta=1_000_000.0,
                              tie_word_embeddings=True)
    if arch == "qwen3":
        return tf.Qwen3Config(**common, head_dim=32, rms_norm_eps=1e-6, rope_theta=1_000_000.0,
                              tie_word_embeddings=True)
    if arch == "gemma3":
        c = dict(common, num_hidden_layers=6, num_attention_heads=2, num_key_value_heads=1)
        return tf.Gemma3TextConfig(**c, head_dim=32, query_pre_attn_scalar=32, sliding_window=8,
                                   rms_norm_eps=1e-6, rope_theta=1_000_000.0,
                                   rope_local_base_freq=10000.0, final_logit_softcapping=None,
                                   attn_logit_softcapping=None, tie_word_embeddings=True,
                                   hidden_activation="gelu_pytorch_tanh")
    raise ValueError(arch)


def model_class(arch):
    import transformers as tf
    return {"llama": tf.LlamaForCausalLM, "qwen2": tf.Qwen2ForCausalLM,
            "qwen3": tf.Qwen3ForCausalLM, "gemma3": tf.Gemma3ForCausalLM}[arch]


def fill_weights(model, arch, seed):
    """Deterministic weights from numpy (not torch's RNG), scaled so logits have clear margins."""
    import torch
    rng = np.random.RandomState(seed)
    sd = model.state_dict()
    new = {}
    for name in sorted(sd):
        t = sd[name]
        shape = tuple(t.shape)
        if name.endswith("norm.weight"):
            # Gemma stores w with (1 + w) applied; the others multiply by w.
            base = 0.0 if arch == "gemma3" else 1.0
            v = base + 0.2 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            v = 0.2 * rng.standard_normal(shape)
        elif "embed_tokens" in name:
            v = rng.standard_normal(shape)
        elif name == "lm_head.weight":
            v = 3.0 * rng.standard_normal(shape) / np.sqrt(shape[1])
        else:
            v = rng.standard_normal(shape) / np.sqrt(shape[1])
        new[name] = torch.tensor(v.astype(np.float32))
    model.load_state_dict(new, strict=True)


def sha256(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def dir_hashes(d):
    return {p.name: sha256(p) for p in sorted(d.iterdir()) if p.is_file()}


def write_model(name, spec):
    import torch
    from transformers import PreTrainedTokenizerFast, GenerationConfig
    arch = spec["arch"]
    out = OUT_DIR / name
    tmp = OUT_DIR / (name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tok = build_tokenizer(add_bos=arch == "llama")
    n_vocab = tok.get_vocab_size()
    cfg = config_for(arch, n_vocab)
    eos = tok.token_to_id("<|im_end|>")
    cfg.eos_token_id = eos
    cfg.bos_token_id = tok.token_to_id("<s>") if arch == "llama" else None
    torch.manual_seed(0)
    model = model_class(arch)(cfg).eval()
    fill_weights(model, arch, SEED + sorted(MODELS).index(name.replace("-bf16", "-f32")))
    model = model.to(getattr(torch, spec["dtype"]))
    kw = {"max_shard_size": spec["shard"]} if "shard" in spec else {}
    model.save_pretrained(tmp, safe_serialization=True, **kw)
    GenerationConfig(eos_token_id=[eos, tok.token_to_id("<|endoftext|>")],
                     bos_token_id=cfg.bos_token_id).save_pretrained(tmp)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        bos_token="<s>" if arch == "llama" else None)
    fast.chat_template = CHATML
    fast.save_pretrained(tmp)
    # One place for the template: tokenizer_config.json's chat_template (what older
    # transformers write and most hub repositories carry).
    jinja = tmp / "chat_template.jinja"
    tc_path = tmp / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    if jinja.exists():
        tc["chat_template"] = jinja.read_text()
        jinja.unlink()
    tc_path.write_text(json.dumps(tc, indent=2, sort_keys=True) + "\n")
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
            sys.exit(f"{d}: files differ from the sha256 in {gpath} "
                     "(different torch/transformers/tokenizers output?); regenerate the goldens")
        dirs[name] = d
    return dirs


def golden():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name, d in models(check=False).items():
        tok = AutoTokenizer.from_pretrained(d)
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
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
                lp = torch.log_softmax(model(torch.tensor([seq])).logits[0].double(), dim=-1)
            tops = []
            for row in lp:
                v, i = torch.topk(row, TOP_K)
                tops.append({"ids": [int(x) for x in i],
                             "logprobs": [round(float(x), DECIMALS) for x in v]})
            prompts.append({"id": pid, "text": text, "prompt_tokens": ids,
                            "greedy": seq[len(ids):], "top": tops})
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


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["models", "golden"])
    a = ap.parse_args()
    if a.what == "models":
        for n, d in models().items():
            print(d)
    else:
        golden()

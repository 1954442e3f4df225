#!/usr/bin/env python3
"""Regenerates the engine's correctness goldens from the llama.cpp oracle.

Which oracle produced what:
  * tests/golden/smollm2.json, tests/golden/gemma3.json
      produced by scripts/oracle/logits.cpp (our own driver, `hearth-oracle-logits`), linked
      statically against llama.cpp as vendored in the llama-cpp-python 0.3.36 sdist (commit
      recorded in each file). For every prompt of tests/data/prompts.json: the prompt tokens
      (tokenized like llama-server's raw /completion prompt: add_special=true,
      parse_special=true), the top-5 next-token log-probabilities at every prompt position,
      and a greedy (argmax) continuation of up to 64 tokens with its top-5 at every step.
      Settings: 2 threads, n_ctx 2048, prompt in one batch, KV cache F16, flash attention OFF.
  * tests/golden/perplexity.json
      produced by llama.cpp's own `llama-perplexity -m MODEL -f tests/data/ppl.txt -c 256 -t 2`
      (final estimate and the running estimates it prints), plus per-chunk negative
      log-likelihood sums from `hearth-oracle-logits --ppl 256`, which re-does the same
      computation chunk by chunk and is checked here against llama-perplexity's final value
      (and once more with flash attention off).
  * tests/golden/oracle_noise.json
      the same driver with flash attention on, and with an F32 KV cache, compared with the
      logit goldens: how far llama.cpp moves when only its attention precision changes (a
      floor for the engine's tolerances).
  tests/golden/README.md documents the schemas.

How to regenerate (about 25 minutes on 2 busy cores; ~5 without the noise file):
  scripts/fetch-models.sh                 # models into $HEARTH_MODELS (~/.cache/hearth/models)
  scripts/fetch-llama-cpp.sh --build      # llama.cpp source + static tools (slow, once)
  python3 scripts/oracle/gen_golden.py    # builds the driver (scripts/oracle/build.sh), writes tests/golden/
The outputs are deterministic: a rerun reproduces the files except the *_seconds fields.

Options: --only smollm2|gemma3|ppl|noise (repeatable) to regenerate part of the set;
default: all four.
"""

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("HEARTH_MODELS", Path.home() / ".cache/hearth/models"))
GOLDEN = ROOT / "tests/golden"
DATA = ROOT / "tests/data"

TOP_K = 5
N_PREDICT = 64
THREADS = 2
N_CTX = 2048
PPL_CTX = 256
DECIMALS = 4
# Flash attention off for the goldens: ggml's CPU flash-attention kernel accumulates V in F16,
# which moves these small models' log-probs by up to ~0.8 (see oracle_noise.json); the
# classic path (F16 K/V, F32 accumulation and softmax) is what an F32-math engine should match.
# KV cache F16, llama.cpp's default type.
FLASH_ATTN = "off"
KV_TYPE = "f16"

MODEL_SET = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-Q4_K_M.gguf",
}


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def oracle_info(src, bin_dir):
    """llama.cpp version, from the source tree the tools were built from."""
    info = {"llama_cpp_python_sdist": "0.3.36", "source": str(src).replace(str(Path.home()), "~")}
    try:
        info["llama_cpp_commit"] = sh(["git", "-C", str(src), "rev-parse", "HEAD"]).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        info["llama_cpp_commit"] = None
    bi = Path(bin_dir).parent / "common/build-info.cpp"
    if bi.exists():
        m = re.search(r"LLAMA_BUILD_NUMBER\s*=\s*(\d+)", bi.read_text())
        info["llama_build_number"] = int(m.group(1)) if m else None
        # The sdist ships a shallow git clone, so `git rev-list --count` (the build number) is 1.
        info["llama_build_number_note"] = "computed by llama.cpp's cmake from a shallow clone; identify the version by the commit"
    return info


def model_info(name, path):
    return {"name": name, "file": path.name, "sha256": sha256(path), "size": path.stat().st_size}


def rnd(xs):
    return [round(x, DECIMALS) for x in xs]


def compact_top(t):
    return {"ids": t["ids"], "logprobs": rnd(t["logprobs"])}


def gen_model(key, driver, prompts, oracle):
    path = MODELS / MODEL_SET[key]
    if not path.exists():
        sys.exit(f"error: {path} missing; run scripts/fetch-models.sh")
    out = {
        "format": 1,
        "generator": "scripts/oracle/gen_golden.py",
        "oracle": dict(oracle, driver="scripts/oracle/logits.cpp"),
        "model": model_info(key, path),
        "top_k": TOP_K,
        "n_predict": N_PREDICT,
        "logprob_decimals": DECIMALS,
        "prompts": [],
    }
    t_total = 0.0
    with tempfile.TemporaryDirectory() as td:
        for p in prompts:
            pf = Path(td) / "prompt.txt"
            pf.write_bytes(p["text"].encode("utf-8"))
            t0 = time.time()
            r = sh([str(driver), "-m", str(path), "-f", str(pf), "-n", str(N_PREDICT), "-k", str(TOP_K),
                    "-t", str(THREADS), "-c", str(N_CTX), "--fa", FLASH_ATTN, "--kv", KV_TYPE])
            dt = time.time() - t0
            t_total += dt
            j = json.loads(r.stdout)
            if "settings" not in out:
                s = dict(j["settings"])
                s.pop("n_batch"), s.pop("n_ubatch")
                s["n_batch_and_ubatch"] = "max(512, prompt length): the prompt is one batch"
                out["settings"] = s
                out["vocab"] = {"n_vocab": j["n_vocab"], "add_bos": j["add_bos"], "add_eos": j["add_eos"],
                                "bos_id": j["bos_id"]}
            n = len(j["prompt_tokens"])
            g = j["greedy"]
            out["prompts"].append({
                "id": p["id"],
                "text": p["text"],
                "prompt_tokens": j["prompt_tokens"],
                "prompt_top": [compact_top(t) for t in j["prompt_top"]],
                "greedy": {
                    "ids": g["ids"],
                    "stop": g["stop"],
                    "eog_id": g["eog_id"],
                    "text": g["text"],
                    "text_valid_utf8": g["text_valid_utf8"],
                    "top": [compact_top(t) for t in g["top"]],
                },
            })
            print(f"  {key}/{p['id']}: {n} prompt tokens, {len(g['ids'])} generated ({g['stop']}), {dt:.1f}s",
                  file=sys.stderr)
    out["generation_seconds"] = round(t_total, 1)
    return out


def to_json(obj, ind=0):
    """Indented JSON where scalar lists and small flat objects (one top-k entry) stay on one line,
    so the files are small yet diff line by line (one prompt position per line)."""
    def flat(o):
        if isinstance(o, list):
            return all(not isinstance(x, (list, dict)) for x in o)
        if isinstance(o, dict):
            return all(not isinstance(v, (list, dict)) or (isinstance(v, list) and flat(v)) for v in o.values()) \
                and len(o) <= 3
        return True
    if flat(obj):
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    pad, pad1 = " " * ind, " " * (ind + 1)
    if isinstance(obj, list):
        return "[\n" + ",\n".join(pad1 + to_json(x, ind + 1) for x in obj) + "\n" + pad + "]"
    items = [pad1 + json.dumps(k) + ": " + to_json(v, ind + 1) for k, v in obj.items()]
    return "{\n" + ",\n".join(items) + "\n" + pad + "}"


def dump(obj, path):
    text = to_json(obj)
    assert json.loads(text) == obj
    path.write_text(text + "\n", encoding="utf-8")
    size = path.stat().st_size
    print(f"wrote {path.relative_to(ROOT)} ({size} bytes)", file=sys.stderr)
    if size > 1_000_000:
        sys.exit(f"error: {path} is over 1 MB")


def perplexity_fa(tool, model, text_path):
    """Whether llama-perplexity's default flash_attn=auto resolved to on: its normal log does not
    say, so a tiny verbose run (-c 64, one chunk) is checked for FLASH_ATTN_EXT graph nodes."""
    r = subprocess.run([str(tool), "-m", str(model), "-f", str(text_path), "-c", "64", "--chunks", "1",
                        "-t", str(THREADS), "-v"], capture_output=True, text=True)
    log = r.stdout + r.stderr
    if r.returncode != 0:
        return "unknown"
    return "on" if "FLASH_ATTN_EXT" in log else "off"


def run_ppl(bin_dir, driver, oracle):
    text_path = DATA / "ppl.txt"
    res = {
        "format": 1,
        "generator": "scripts/oracle/gen_golden.py",
        "oracle": dict(oracle),
        "text_file": "tests/data/ppl.txt",
        "text_sha256": sha256(text_path),
        "command": f"llama-perplexity -m MODEL -f tests/data/ppl.txt -c {PPL_CTX} -t {THREADS}",
        "methodology": {
            "source": "llama.cpp tools/perplexity/perplexity.cpp, perplexity() (default mode, no --ppl-stride)",
            "text": "the file's bytes minus ONE trailing '\\n' (llama.cpp's -f drops it); the file has no backslashes, so -f's escape processing is a no-op",
            "tokenize": "the whole text once, add_special=true (BOS prepended iff vocab add_bos), parse_special=false",
            "n_ctx": PPL_CTX,
            "n_chunk": "floor(n_tokens / n_ctx); the tail that does not fill a chunk is ignored",
            "chunk_tokens": "tokens[c*n_ctx .. (c+1)*n_ctx), evaluated from an empty KV cache at positions 0..n_ctx-1",
            "bos": "if vocab add_bos, the chunk's first token is REPLACED by BOS (not prepended), for every chunk",
            "scored": "logits at chunk positions first=n_ctx/2 .. n_ctx-2 predict the chunk's tokens first+1 .. n_ctx-1",
            "first": PPL_CTX // 2,
            "tokens_scored_per_chunk": PPL_CTX - PPL_CTX // 2 - 1,
            "nll": "-log_softmax(logits)[target] over the full vocabulary",
            "ppl": "exp(sum of nll over all chunks / total scored count)",
            "running_ppl": "llama-perplexity prints [c]exp(cumulative nll / cumulative count) after each chunk c (1-based), 4 decimals",
            "uncertainty": "+/- ppl * sqrt((mean(nll^2) - mean(nll)^2) / (count - 1))",
            "flash_attn": "llama-perplexity default (auto; resolves to on for the CPU backend); see fa_off for the flash-attention-off values",
            "llama_perplexity_batching": "default -b 2048 gives n_seq = 2048/256 = 8 chunks decoded per batch as 8 sequences (ubatch 512); per-chunk math is unaffected",
        },
        "models": {},
    }
    tool = Path(bin_dir) / "llama-perplexity"
    res["oracle"]["llama_perplexity_version"] = " ".join(
        subprocess.run([str(tool), "--version"], capture_output=True, text=True).stderr.split())
    for key, fname in MODEL_SET.items():
        path = MODELS / fname
        t0 = time.time()
        r = subprocess.run([str(tool), "-m", str(path), "-f", str(text_path), "-c", str(PPL_CTX), "-t", str(THREADS)],
                           capture_output=True, text=True)
        dt = time.time() - t0
        log = r.stdout + r.stderr
        if r.returncode != 0:
            sys.exit(f"error: llama-perplexity failed for {fname}:\n{log[-3000:]}")
        running = [float(x) for _, x in re.findall(r"\[(\d+)\](\d+\.\d+),", log)]
        m = re.search(r"Final estimate: PPL = (\d+\.\d+) \+/- (\d+\.\d+)", log)
        if not m:
            sys.exit(f"error: no final estimate in llama-perplexity output for {fname}:\n{log[-3000:]}")
        ppl, err = float(m.group(1)), float(m.group(2))
        # Our driver's chunk-by-chunk re-computation, for per-chunk values at full precision.
        d = json.loads(sh([str(driver), "-m", str(path), "-f", str(text_path), "--ppl", str(PPL_CTX),
                           "-t", str(THREADS)]).stdout)
        if d["n_chunk"] != len(running):
            sys.exit(f"error: driver found {d['n_chunk']} chunks, llama-perplexity {len(running)}")
        if abs(d["ppl"] - ppl) > 2e-3 * ppl:
            sys.exit(f"error: driver PPL {d['ppl']} disagrees with llama-perplexity {ppl}")
        # The same computation with flash attention off, the precision the logit goldens use.
        d_off = json.loads(sh([str(driver), "-m", str(path), "-f", str(text_path), "--ppl", str(PPL_CTX),
                               "-t", str(THREADS), "--fa", "off"]).stdout)
        # Cross-check the token count with llama-tokenize (same common_tokenize call). Unlike the
        # other tools, llama-tokenize reads -f verbatim, so give it the text without its last '\n'.
        with tempfile.TemporaryDirectory() as td:
            stripped = Path(td) / "ppl.txt"
            raw = text_path.read_bytes()
            stripped.write_bytes(raw[:-1] if raw.endswith(b"\n") else raw)
            tk = sh([str(Path(bin_dir) / "llama-tokenize"), "-m", str(path), "-f", str(stripped), "--ids",
                     "--log-disable"])
            tk_full = sh([str(Path(bin_dir) / "llama-tokenize"), "-m", str(path), "-f", str(text_path), "--ids",
                          "--log-disable"])
        ids = json.loads(tk.stdout.strip().splitlines()[-1])
        n_full = len(json.loads(tk_full.stdout.strip().splitlines()[-1]))
        if len(ids) != d["n_tokens"]:
            sys.exit(f"error: llama-tokenize gives {len(ids)} tokens, driver {d['n_tokens']}")
        res["models"][key] = {
            "model": model_info(key, path),
            "n_tokens": d["n_tokens"],
            "n_tokens_note": "tokens of the text as llama-perplexity sees it (final newline dropped), BOS included iff add_bos",
            "n_tokens_whole_file": n_full,
            "add_bos": d["add_bos"],
            "n_chunk": d["n_chunk"],
            "llama_perplexity_flash_attn": perplexity_fa(tool, path, text_path),
            "final_ppl": ppl,
            "final_ppl_err": err,
            "running_ppl": running,
            "chunks": [{"nll_sum": round(c["nll_sum"], 4), "count": c["count"],
                        "ppl": round(pow(2.718281828459045, c["nll_sum"] / c["count"]), 4)} for c in d["chunks"]],
            "driver_ppl": round(d["ppl"], 4),
            "fa_off": {
                "note": "hearth-oracle-logits --ppl with flash attention off (like the logit goldens); "
                        "llama-perplexity and `chunks` above use the default (auto, resolved to on on CPU)",
                "ppl": round(d_off["ppl"], 4),
                "chunks": [{"nll_sum": round(c["nll_sum"], 4), "count": c["count"]} for c in d_off["chunks"]],
            },
            "llama_perplexity_seconds": round(dt, 1),
        }
        print(f"  ppl {key}: {ppl} +/- {err} over {d['n_chunk']} chunks ({d['n_tokens']} tokens), "
              f"driver {d['ppl']:.4f}, {dt:.1f}s", file=sys.stderr)
    return res


NOISE_VARIANTS = {"fa_on_kv_f16": ("on", "f16"), "fa_off_kv_f32": ("off", "f32")}


def run_noise(driver, prompts):
    """How much llama.cpp disagrees with itself when only the attention precision changes:
    a floor for the engine's tolerances."""
    res = {"format": 1, "generator": "scripts/oracle/gen_golden.py --only noise",
           "what": "tests/golden/<model>.json (flash_attn off, KV f16) vs the same driver with another attention "
                   "precision; prompt_max_abs_dlogprob: max over positions and over golden top-5 ids also in the "
                   "variant's top-5 of |logprob difference| (golden rounded to 4 decimals); prompt_max_abs_dtop1: "
                   "the same for the golden top-1 id only; greedy_common_prefix: generated tokens equal before "
                   "the first difference",
           "variants": {k: {"flash_attn": v[0], "kv": v[1]} for k, v in NOISE_VARIANTS.items()},
           "models": {}}
    for key, fname in MODEL_SET.items():
        path = MODELS / fname
        golden = {p["id"]: p for p in json.loads((GOLDEN / f"{key}.json").read_text(encoding="utf-8"))["prompts"]}
        res["models"][key] = {}
        for vname, (vfa, vkv) in NOISE_VARIANTS.items():
            per = {}
            with tempfile.TemporaryDirectory() as td:
                for p in prompts:
                    pf = Path(td) / "prompt.txt"
                    pf.write_bytes(p["text"].encode("utf-8"))
                    j = json.loads(sh([str(driver), "-m", str(path), "-f", str(pf), "-n", str(N_PREDICT),
                                       "-k", str(TOP_K), "-t", str(THREADS), "-c", str(N_CTX),
                                       "--fa", vfa, "--kv", vkv]).stdout)
                    g = golden[p["id"]]
                    assert j["prompt_tokens"] == g["prompt_tokens"]
                    max_d, max_d1, top1_same = 0.0, 0.0, 0
                    for a, b in zip(g["prompt_top"], j["prompt_top"]):
                        top1_same += a["ids"][0] == b["ids"][0]
                        lb = dict(zip(b["ids"], b["logprobs"]))
                        for r, (i, lp) in enumerate(zip(a["ids"], a["logprobs"])):
                            if i in lb:
                                max_d = max(max_d, abs(lp - lb[i]))
                                if r == 0:
                                    max_d1 = max(max_d1, abs(lp - lb[i]))
                    ga, gb = g["greedy"]["ids"], j["greedy"]["ids"]
                    n = min(len(ga), len(gb))
                    same = next((k for k in range(n) if ga[k] != gb[k]), n)
                    per[p["id"]] = {"prompt_max_abs_dlogprob": round(max_d, 4),
                                    "prompt_max_abs_dtop1": round(max_d1, 4),
                                    "prompt_top1_agree": f"{top1_same}/{len(g['prompt_top'])}",
                                    "greedy_common_prefix": same, "greedy_len": len(ga)}
                    print(f"  noise {key}/{vname}/{p['id']}: {per[p['id']]}", file=sys.stderr)
            res["models"][key][vname] = per
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", choices=["smollm2", "gemma3", "ppl", "noise"])
    args = ap.parse_args()
    only = set(args.only or ["smollm2", "gemma3", "ppl", "noise"])

    src = Path(sh([str(ROOT / "scripts/fetch-llama-cpp.sh")]).stdout.strip())
    # Where fetch-llama-cpp.sh --build puts the tools; HEARTH_LLAMA_BIN overrides (e.g. tools
    # compiled by hand from the same source and static libraries).
    bin_dir = Path(os.environ.get("HEARTH_LLAMA_BIN", src.parent.parent / "build/bin"))
    need = ["llama-perplexity", "llama-tokenize"] if "ppl" in only else []
    missing = [t for t in need if not (bin_dir / t).exists()]
    if missing:
        # Not built from here: a second concurrent cmake build in the same tree corrupts it.
        sys.exit(f"error: {', '.join(missing)} missing in {bin_dir}; run scripts/fetch-llama-cpp.sh --build")
    driver = Path(sh([str(ROOT / "scripts/oracle/build.sh")]).stdout.strip().splitlines()[-1])
    oracle = oracle_info(src, bin_dir)
    prompts = json.loads((DATA / "prompts.json").read_text(encoding="utf-8"))["prompts"]
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for key in ("smollm2", "gemma3"):
        if key in only:
            dump(gen_model(key, driver, prompts, oracle), GOLDEN / f"{key}.json")
    if "ppl" in only:
        dump(run_ppl(bin_dir, driver, oracle), GOLDEN / "perplexity.json")
    if "noise" in only:
        dump(run_noise(driver, prompts), GOLDEN / "oracle_noise.json")


if __name__ == "__main__":
    main()

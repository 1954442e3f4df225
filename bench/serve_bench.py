#!/usr/bin/env python3
"""Serving benchmark client: concurrent streaming chat clients against an OpenAI-compatible server.

Drives `hearth serve` and llama.cpp's `llama-server` through the same code (the official `openai`
SDK, `AsyncOpenAI` with `stream=True` and `stream_options={"include_usage": True}`), so both get
byte-identical requests: the same prompts, `max_tokens`, `temperature=0`. bench/serve.sh starts the
servers, calls `run` against each, then `compare` on the result files.

  serve_bench.py run --base-url http://127.0.0.1:PORT [--label NAME] [--clients 1,4,16]
                     [--requests R] [--max-tokens M] [--seed S] [--prefix-rounds 3]
                     [--prefix-warm 4] [--system-words W] [--json OUT]
  serve_bench.py compare --hearth A.json[,B.json] --llama C.json[,D.json] [--meta JSON] [--json OUT]

Throughput phase, for each N in --clients: N clients each send R requests back to back (the next
one as soon as the previous stream ends). Per request: TTFT = request sent -> first chunk carrying
content; inter-token latency (ITL) = gaps between successive content chunks; end-to-end. Aggregate
generated tok/s = sum of `usage.completion_tokens` / wall time from the phase's start to its last
response. The OpenAI API has no `ignore_eos`, so the prompts ask for long answers and the actual
token counts are reported (they can differ slightly between engines: greedy decoding on different
kernels can take a different path and stop at a different point).

Prefix-cache phase (run first, on an otherwise idle server): per round, a ~1,000-token system
prompt that the server has never seen (deterministic text from --seed and the round number, so
reruns with the same seed give the same bytes, and bench/serve.sh gives a fresh seed per run),
one cold request, then --prefix-warm requests with the same system prompt and different short user
messages, one at a time. Reports median cold TTFT, median warm TTFT, and warm/cold.
"""

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import time

import openai

# Open-ended prompts that make a small instruct model write at length (so the max_tokens budget
# rather than an early end-of-sequence usually ends the answer). Request k of client c uses
# PROMPTS[(c * R + k) % len(PROMPTS)]: distinct prompts across concurrent clients, and the same
# assignment for every server.
TOPICS = [
    "the history of the printing press", "how a steam engine works", "the water cycle",
    "the life of honey bees", "how volcanoes form", "the invention of the telephone",
    "the history of the Roman Empire", "how airplanes fly", "the phases of the moon",
    "the causes of the seasons", "how the human heart works", "the history of chess",
    "how rainbows form", "the life cycle of a butterfly", "the building of the pyramids",
    "how electricity reaches our homes", "the migration of birds", "the discovery of penicillin",
    "how bread is made", "the history of the bicycle", "the structure of the solar system",
    "how coral reefs grow", "the history of the Olympic games", "how a compass works",
    "the exploration of the deep ocean", "how glass is made", "the first moon landing",
    "how trees grow", "the history of paper money", "how earthquakes happen",
    "the Silk Road", "how the internet carries a message",
]
FORMS = [
    "Write a long, detailed essay about {}. Use several paragraphs.",
    "Explain {} step by step, in as much detail as you can.",
]
PROMPTS = [f.format(t) for f in FORMS for t in TOPICS]

# Short user messages for the warm prefix-cache requests (each differs from the others and from
# the cold one, so only the system prompt is shared).
PREFIX_QUESTIONS = [
    "Summarize the text above in one sentence.",
    "What is the first word of the text above?",
    "Name three words that appear in the text above.",
    "Is the text above about animals? Answer briefly.",
    "Give the text above a short title.",
    "How many paragraphs does the text above have?",
    "Which color is mentioned in the text above?",
    "Write one sentence in the style of the text above.",
    "What is the mood of the text above?",
]

WORDS = (
    "the a an and or but so because while when where after before during river mountain city "
    "garden village forest ocean island bridge market library tower valley harbor field road "
    "farmer teacher sailor painter doctor child traveler merchant baker singer soldier king queen "
    "walks builds carries watches finds opens closes writes reads remembers forgets follows "
    "old new quiet bright dark small large ancient gentle cold warm golden silver green blue red "
    "morning evening night winter summer spring autumn day year story letter lamp door window "
    "stone wood iron bread water fire wind rain snow light shadow song voice clock map ship "
    "slowly quickly often never always together alone again still far near above below"
).split()


def system_prompt(seed, round_no, words):
    """Deterministic pseudo-English text, unique per (seed, round): a cold prefix by construction."""
    rng = random.Random(f"hearth-serve-bench/{seed}/{round_no}")
    out, sentence = [f"Reference document {seed}-{round_no}."], []
    for _ in range(words):
        sentence.append(rng.choice(WORDS))
        if len(sentence) >= rng.randint(8, 16):
            out.append(" ".join(sentence).capitalize() + ".")
            sentence = []
    if sentence:
        out.append(" ".join(sentence).capitalize() + ".")
    return "You answer questions about the following document.\n\n" + " ".join(out)


def pct(xs, q):
    """Percentile with linear interpolation (numpy's default); None for no data."""
    if not xs:
        return None
    s = sorted(xs)
    k = (len(s) - 1) * q / 100
    f = int(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


async def one_request(client, model, messages, max_tokens):
    """One streamed chat completion; returns timings (seconds) and token counts."""
    t0 = time.perf_counter()
    times, text, usage = [], [], None
    try:
        stream = await client.chat.completions.create(
            model=model,
            messages=messages,
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            now = time.perf_counter()
            if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                times.append(now)
                text.append(chunk.choices[0].delta.content)
            if getattr(chunk, "usage", None):
                usage = chunk.usage
    except openai.OpenAIError as e:
        return {"error": f"{type(e).__name__}: {e}", "e2e": time.perf_counter() - t0}
    end = time.perf_counter()
    r = {
        "ttft": times[0] - t0 if times else None,
        "itl": [b - a for a, b in zip(times, times[1:])],
        "e2e": end - t0,
        "content_chunks": len(times),
        # Without usage (a server that ignores include_usage) fall back to content chunks, which
        # is a token count for servers that stream one token per chunk; flagged in the result.
        "completion_tokens": usage.completion_tokens if usage else len(times),
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "usage_reported": usage is not None,
        "chars": sum(map(len, text)),
    }
    return r


def user(content, system=None):
    m = [{"role": "system", "content": system}] if system is not None else []
    return m + [{"role": "user", "content": content}]


async def throughput_phase(client, model, n, requests, max_tokens):
    results = []

    async def worker(c):
        for k in range(requests):
            prompt = PROMPTS[(c * requests + k) % len(PROMPTS)]
            results.append(await one_request(client, model, user(prompt), max_tokens))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in range(n)))
    wall = time.perf_counter() - t0
    ok = [r for r in results if "error" not in r]
    ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
    itl = [g for r in ok for g in r["itl"]]
    # Time per output token after the first, per request (vLLM's TPOT), then the median across
    # requests: unlike pooled chunk gaps it is not skewed by a server that merges tokens.
    tpot = [
        (r["e2e"] - r["ttft"]) / (r["completion_tokens"] - 1)
        for r in ok
        if r["ttft"] is not None and r["completion_tokens"] > 1
    ]
    gen = sum(r["completion_tokens"] for r in ok)
    return {
        "clients": n,
        "requests": len(results),
        "errors": [r["error"] for r in results if "error" in r],
        "wall_s": wall,
        "completion_tokens": gen,
        "prompt_tokens": sum(r["prompt_tokens"] or 0 for r in ok),
        "usage_reported": all(r["usage_reported"] for r in ok),
        "gen_tok_s": gen / wall,
        "ttft_p50_ms": 1e3 * pct(ttft, 50) if ttft else None,
        "ttft_p99_ms": 1e3 * pct(ttft, 99) if ttft else None,
        "itl_p50_ms": 1e3 * pct(itl, 50) if itl else None,
        "itl_p99_ms": 1e3 * pct(itl, 99) if itl else None,
        "tpot_p50_ms": 1e3 * pct(tpot, 50) if tpot else None,
        "e2e_p50_ms": 1e3 * pct([r["e2e"] for r in ok], 50) if ok else None,
        "tokens_per_request": [r["completion_tokens"] for r in ok],
    }


async def prefix_phase(client, model, seed, rounds, warm, words, max_tokens):
    cold, warm_t, rows, errors = [], [], [], []
    q = 0
    for rnd in range(rounds):
        sp = system_prompt(seed, rnd, words)
        for i in range(1 + warm):
            r = await one_request(client, model, user(PREFIX_QUESTIONS[q % len(PREFIX_QUESTIONS)], sp), max_tokens)
            q += 1
            kind = "cold" if i == 0 else "warm"
            if "error" in r or r["ttft"] is None:
                errors.append(r.get("error", f"round {rnd} {kind}: no content token"))
                continue
            (cold if i == 0 else warm_t).append(r["ttft"])
            rows.append({"round": rnd, "kind": kind, "ttft_ms": 1e3 * r["ttft"], "prompt_tokens": r["prompt_tokens"]})
    cm, wm = statistics.median(cold) if cold else None, statistics.median(warm_t) if warm_t else None
    return {
        "rounds": rounds,
        "warm_per_round": warm,
        "system_words": words,
        "prompt_tokens_cold": [r["prompt_tokens"] for r in rows if r["kind"] == "cold"],
        "cold_ttft_p50_ms": 1e3 * cm if cm is not None else None,
        "warm_ttft_p50_ms": 1e3 * wm if wm is not None else None,
        "warm_over_cold": wm / cm if cm and wm is not None else None,
        "requests": rows,
        "errors": errors,
    }


def fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def print_run(res, out=sys.stdout):
    p = res["prefix"]
    print(f"## {res['label']} ({res['base_url']}, model {res['model']})", file=out)
    if p:
        toks = p["prompt_tokens_cold"]
        print(
            f"prefix cache: system prompt {toks[0] if toks else '?'} prompt tokens; TTFT cold p50 "
            f"{fmt(p['cold_ttft_p50_ms'])} ms, warm p50 {fmt(p['warm_ttft_p50_ms'])} ms, "
            f"warm/cold {fmt(p['warm_over_cold'], '.3f')}",
            file=out,
        )
    print("| clients | requests | gen tokens | wall s | gen tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | TPOT p50 ms | errors |", file=out)
    print("|---|---|---|---|---|---|---|---|---|---|", file=out)
    for ph in res["throughput"]:
        print(
            f"| {ph['clients']} | {ph['requests']} | {ph['completion_tokens']} | {ph['wall_s']:.2f} | "
            f"{ph['gen_tok_s']:.1f} | {fmt(ph['ttft_p50_ms'])} | {fmt(ph['ttft_p99_ms'])} | "
            f"{fmt(ph['itl_p50_ms'])} | {fmt(ph['tpot_p50_ms'])} | {len(ph['errors'])} |",
            file=out,
        )


async def run(args):
    client = openai.AsyncOpenAI(base_url=args.base_url.rstrip("/") + "/v1", api_key=args.api_key,
                                timeout=args.timeout, max_retries=0)
    models = await client.models.list()
    model = args.model or models.data[0].id
    # Warm-up: the first request after start pays one-off costs (page faults on the weights,
    # thread-pool start) that are not what this benchmark measures.
    for prompt in PROMPTS[:2]:
        await one_request(client, model, user(prompt), 8)
    res = {
        "label": args.label,
        "base_url": args.base_url,
        "model": model,
        "max_tokens": args.max_tokens,
        "requests_per_client": args.requests,
        "seed": args.seed,
        "python": platform.python_version(),
        "openai": openai.__version__,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "prefix": None,
        "throughput": [],
    }
    if args.prefix_rounds > 0:
        res["prefix"] = await prefix_phase(client, model, args.seed, args.prefix_rounds, args.prefix_warm,
                                           args.system_words, args.prefix_max_tokens)
    for n in args.clients:
        res["throughput"].append(await throughput_phase(client, model, n, args.requests, args.max_tokens))
    await client.close()
    return res


def errors_of(res):
    e = list(res["prefix"]["errors"]) if res["prefix"] else []
    for ph in res["throughput"]:
        e += ph["errors"]
    return e


def mean_of(runs, get):
    xs = [get(r) for r in runs]
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def compare(hearth, llama, out=sys.stdout):
    """Ratios hearth/llama.cpp of each metric, each side the mean over its runs."""
    rows = []

    def row(metric, get, better):
        h, l = mean_of(hearth, get), mean_of(llama, get)
        ratio = h / l if h is not None and l else None
        rows.append({"metric": metric, "llama": l, "hearth": h, "ratio": ratio, "better": better})

    for n in [ph["clients"] for ph in hearth[0]["throughput"]]:
        who = f"{n} client{'s' if n > 1 else ''}"

        def ph(r, n=n):
            return next((p for p in r["throughput"] if p["clients"] == n), None)
        row(f"{who}: gen tok/s", lambda r: (ph(r) or {}).get("gen_tok_s"), "higher")
        row(f"{who}: TTFT p50 ms", lambda r: (ph(r) or {}).get("ttft_p50_ms"), "lower")
        row(f"{who}: TTFT p99 ms", lambda r: (ph(r) or {}).get("ttft_p99_ms"), "lower")
        row(f"{who}: ITL p50 ms", lambda r: (ph(r) or {}).get("itl_p50_ms"), "lower")
        row(f"{who}: TPOT p50 ms", lambda r: (ph(r) or {}).get("tpot_p50_ms"), "lower")
        row(f"{who}: generated tokens", lambda r: (ph(r) or {}).get("completion_tokens"), "-")
    if hearth[0]["prefix"] and llama[0]["prefix"]:
        row("prefix: cold TTFT p50 ms", lambda r: r["prefix"]["cold_ttft_p50_ms"], "lower")
        row("prefix: warm TTFT p50 ms", lambda r: r["prefix"]["warm_ttft_p50_ms"], "lower")
        row("prefix: warm/cold", lambda r: r["prefix"]["warm_over_cold"], "lower")
    print("| metric | llama-server | hearth | hearth/llama | better |", file=out)
    print("|---|---|---|---|---|", file=out)
    for r in rows:
        spec = ".3f" if r["metric"].endswith("warm/cold") else ".1f"
        print(f"| {r['metric']} | {fmt(r['llama'], spec)} | {fmt(r['hearth'], spec)} | "
              f"{fmt(r['ratio'], '.2f')}x | {r['better']} |", file=out)
    # The issue's two targets.
    top = max(p["clients"] for p in hearth[0]["throughput"])
    tput = next((r for r in rows if r["metric"] == f"{top} client{'s' if top > 1 else ''}: gen tok/s"), None)
    targets = {}
    if tput and tput["ratio"] is not None:
        targets[f"gen tok/s at {top} clients >= 1.5x llama-server"] = (tput["ratio"], tput["ratio"] >= 1.5)
    wc = mean_of(hearth, lambda r: r["prefix"]["warm_over_cold"] if r["prefix"] else None)
    if wc is not None:
        targets["hearth warm/cold TTFT <= 0.20"] = (wc, wc <= 0.20)
    for name, (v, ok) in targets.items():
        print(f"target: {name}: {v:.3f} -> {'met' if ok else 'MISSED'}", file=out)
    return {"rows": rows, "targets": {k: {"value": v, "met": ok} for k, (v, ok) in targets.items()}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="benchmark one running server")
    r.add_argument("--base-url", required=True, help="server root, e.g. http://127.0.0.1:8080")
    r.add_argument("--label", default="server")
    r.add_argument("--model", help="model id (default: the first of /v1/models)")
    r.add_argument("--api-key", default="unused")
    r.add_argument("--clients", default="1,4,16", help="comma-separated concurrency levels")
    r.add_argument("--requests", type=int, default=4, help="requests per client, sent back to back")
    r.add_argument("--max-tokens", type=int, default=64)
    r.add_argument("--seed", type=int, default=1, help="picks the prefix-test system prompts")
    r.add_argument("--prefix-rounds", type=int, default=3, help="cold system prompts (0 skips the test)")
    r.add_argument("--prefix-warm", type=int, default=4, help="warm requests per cold one")
    r.add_argument("--system-words", type=int, default=870,
                   help="words in the prefix-test system prompt (870 is ~1,000 tokens with SmolLM2's tokenizer)")
    r.add_argument("--prefix-max-tokens", type=int, default=8, help="max_tokens of prefix-test requests")
    r.add_argument("--timeout", type=float, default=600.0, help="per-request timeout, seconds")
    r.add_argument("--json", help="write the result here")
    c = sub.add_parser("compare", help="hearth/llama-server ratios from run results")
    c.add_argument("--hearth", required=True, help="comma-separated result files")
    c.add_argument("--llama", required=True, help="comma-separated result files")
    c.add_argument("--meta", help="JSON object recorded in the output (command, commit, machine)")
    c.add_argument("--json", help="write the comparison, the meta and every run here")
    a = ap.parse_args()
    if a.cmd == "run":
        try:
            a.clients = [int(x) for x in a.clients.split(",") if x]
        except ValueError:
            ap.error(f"--clients: expected comma-separated integers, got {a.clients!r}")
        if not a.clients or min(a.clients) < 1 or a.requests < 1 or a.max_tokens < 1:
            ap.error("--clients, --requests and --max-tokens must be positive")
        res = asyncio.run(run(a))
        print_run(res)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=1)
        errs = errors_of(res)
        if errs:
            print(f"{len(errs)} request(s) failed; first: {errs[0]}", file=sys.stderr)
            sys.exit(1)
    else:
        def load(s):
            return [json.load(open(p)) for p in s.split(",") if p]
        hearth, llama = load(a.hearth), load(a.llama)
        cmp = compare(hearth, llama)
        if a.json:
            meta = json.loads(a.meta) if a.meta else {}
            with open(a.json, "w") as f:
                json.dump({"meta": meta, **cmp, "hearth_runs": hearth, "llama_runs": llama}, f, indent=1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Helper of gen_real_golden.sh: run llama-tokenize for each prompt/flag combination.

usage: gen_real_golden.py LLAMA_TOKENIZE MODEL.gguf prompts.json out.json
"""
import json, os, re, subprocess, sys, tempfile

bin_, model, prompts_path, out_path = sys.argv[1:5]
prompts = json.load(open(prompts_path, encoding="utf-8"))


def run(args, stdin_file):
    return subprocess.run([bin_, "-m", model, "-f", stdin_file, "--no-escape", *args],
                          capture_output=True, check=True)


HEAD = re.compile(rb" *(\d+) -> '")


def parse_pieces(out, ids):
    """Pieces mode prints `%6d -> '%s'\\n` per token with the raw piece bytes."""
    pieces, pos = [], 0
    for k, want in enumerate(ids):
        m = HEAD.match(out, pos)
        assert m and int(m.group(1)) == want, (out[pos:pos + 80], want)
        start = m.end()
        # the piece ends at the "'\n" after which the next entry (or the end) follows
        end = start
        while True:
            end = out.index(b"'\n", end)
            rest = end + 2
            if k + 1 == len(ids):
                if rest == len(out):
                    break
            else:
                m2 = HEAD.match(out, rest)
                if m2 and int(m2.group(1)) == ids[k + 1]:
                    break
            end += 1
        pieces.append(out[start:end])
        pos = end + 2
    assert pos == len(out), out[pos:]
    return pieces


# EOG ids as llama.cpp logs them at load ("load: printing all EOG tokens:" / "  - id ('text')").
with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
    f.write(b"x")
    probe = f.name
log = run(["--ids", "-v"], probe).stderr.decode("utf-8", "replace")
eog = []
in_eog = False
for line in log.splitlines():
    if "printing all EOG tokens" in line:
        in_eog = True
        continue
    if in_eog:
        m = re.search(r":\s+- (\d+) \(", line)
        if m:
            eog.append(int(m.group(1)))
        else:
            in_eog = False
os.unlink(probe)

cases = []
for p in prompts:
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(p.encode("utf-8"))
        path = f.name
    for add_special in (True, False):
        for parse_special in (True, False):
            flags = ["--log-disable"]
            if not add_special:
                flags.append("--no-bos")
            if not parse_special:
                flags.append("--no-parse-special")
            ids_out = run(flags + ["--ids"], path).stdout.decode().strip()
            ids = json.loads(ids_out) if ids_out else []
            pieces = parse_pieces(run(flags, path).stdout, ids)
            cases.append({
                "prompt": p,
                "add_special": add_special,
                "parse_special": parse_special,
                "ids": ids,
                "pieces_hex": [x.hex() for x in pieces],
            })
    os.unlink(path)

json.dump({
    "oracle": "llama.cpp from llama-cpp-python 0.3.36 (llama-tokenize)",
    "model": os.path.basename(model),
    "eog_ids": sorted(eog),
    "cases": cases,
}, open(out_path, "w", encoding="utf-8"), ensure_ascii=False, indent=0)
print(f"{out_path}: {len(cases)} cases, eog {sorted(eog)}")

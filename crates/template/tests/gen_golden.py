#!/usr/bin/env python3
"""Regenerate crates/template/tests/golden.json, the oracle for tests/golden.rs.

The oracle is Hugging Face transformers itself: every case is rendered with
`transformers.utils.chat_template_utils.render_jinja_template` (the function
`PreTrainedTokenizerBase.apply_chat_template` calls), after the one input
normalisation `apply_chat_template` does before calling it (dropping message
keys whose value is None).  So the jinja2 environment (sandbox, trim_blocks,
lstrip_blocks, the `tojson` override, `raise_exception`, `strftime_now`,
`namespace`, reasoning-field aliasing) is transformers' own, not a copy.

Inputs:
  * every `models/templates/*.jinja` in the llama.cpp source
    ($HEARTH_LLAMA_CPP_SRC, default ~/.cache/hearth/oracle/llama-cpp-python-0.3.36/vendor/llama.cpp;
    `scripts/fetch-llama-cpp.sh` creates it);
  * the `tokenizer.chat_template` of the two test models in $HEARTH_MODELS
    (default ~/.cache/hearth/models; `scripts/fetch-models.sh` creates them),
    rendered with their own BOS/EOS token texts;
  * the conversations in tests/conversations.json, each with
    add_generation_prompt true and false;
  * our fallback templates (src/chatml.jinja, chatglm3.jinja, glm4.jinja, gemma.jinja) the same way;
  * the one-feature templates in tests/snippets.json (add_generation_prompt true);
  * Python's strftime of the fixed instant for a few formats.

Templates are never copied into the repo: the golden file keys each one by its
file name and sha256, and the Rust test reads the template text at run time.

Usage:  pip install transformers jinja2 gguf && python3 crates/template/tests/gen_golden.py
        python3 crates/template/tests/gen_golden.py --only-hearth   # re-render only our own
                templates (src/*.jinja) into the existing golden.json; an entry rendered by
                another transformers version than the file's records its own "oracle"
"""

import datetime
import glob
import hashlib
import json
import os
import re
import sys

import jinja2
import gguf
from transformers.utils import chat_template_utils as ctu

HERE = os.path.dirname(os.path.abspath(__file__))

# `strftime_now` calls `datetime.now()` in transformers; pin it so the goldens are stable.
# The Rust test injects the same instant (2025-03-14 15:09:26, a Friday).
FIXED_NOW = datetime.datetime(2025, 3, 14, 15, 9, 26)


class _FixedDatetime(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


ctu.datetime = _FixedDatetime

# Generic special-token texts for the llama.cpp templates, which come without a tokenizer.
DEFAULT_BOS = "<s>"
DEFAULT_EOS = "</s>"


def gguf_template(path):
    """(template, bos, eos) from a GGUF's tokenizer metadata."""
    reader = gguf.GGUFReader(path)

    def field(name):
        f = reader.fields.get(name)
        if f is None:
            return None
        return f.contents()

    tokens = field("tokenizer.ggml.tokens")
    bos_id = field("tokenizer.ggml.bos_token_id")
    eos_id = field("tokenizer.ggml.eos_token_id")
    return field("tokenizer.chat_template"), tokens[bos_id], tokens[eos_id]


def llama_cpp_chatml_source(llama_src):
    """The CHATML_TEMPLATE_SRC macro of llama.cpp's common/chat.cpp, as the C compiler sees it."""
    with open(os.path.join(llama_src, "common", "chat.cpp"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"#define CHATML_TEMPLATE_SRC(.*?)\n\n", text, re.S)
    if not m:
        sys.exit("CHATML_TEMPLATE_SRC not found in common/chat.cpp")
    literals = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))
    return "".join(lit.encode("latin-1").decode("unicode_escape") for lit in literals)


def render(source, conv, add_generation_prompt, bos, eos):
    # apply_chat_template drops None-valued message keys before rendering
    # (tokenization_utils_base.py, "Normalize: drop the keys whose value is None").
    messages = [{k: v for k, v in m.items() if v is not None} for m in conv["messages"]]
    try:
        rendered, _ = ctu.render_jinja_template(
            conversations=[messages],
            tools=conv.get("tools"),
            chat_template=source,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos,
            eos_token=eos,
            **conv.get("extra", {}),
        )
        return {"ok": rendered[0]}
    except Exception as e:  # noqa: BLE001 - every failure is an expected outcome to record
        # raise_exception() raises the base jinja2 TemplateError; everything else
        # (syntax errors, undefined attributes, sandbox violations, TypeErrors) is a subclass or other type.
        kind = "raise_exception" if type(e) is jinja2.exceptions.TemplateError else type(e).__name__
        return {"error": str(e), "kind": kind}


HEARTH_TEMPLATES = ("chatml.jinja", "chatglm3.jinja", "glm4.jinja", "gemma.jinja")


def main():
    only_hearth = "--only-hearth" in sys.argv[1:]
    llama_src = os.environ.get(
        "HEARTH_LLAMA_CPP_SRC",
        os.path.expanduser("~/.cache/hearth/oracle/llama-cpp-python-0.3.36/vendor/llama.cpp"),
    )
    models = os.environ.get("HEARTH_MODELS", os.path.expanduser("~/.cache/hearth/models"))
    with open(os.path.join(HERE, "conversations.json"), encoding="utf-8") as f:
        conversations = json.load(f)

    sources = []  # (key, source, bos, eos)
    paths = sorted(glob.glob(os.path.join(llama_src, "models", "templates", "*.jinja")))
    if not paths:
        sys.exit(f"no templates under {llama_src}/models/templates: run scripts/fetch-llama-cpp.sh")
    for p in paths:
        with open(p, encoding="utf-8") as f:
            sources.append(("llama.cpp/" + os.path.basename(p), f.read(), DEFAULT_BOS, DEFAULT_EOS))
    for name in ("SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-Q4_K_M.gguf"):
        p = os.path.join(models, name)
        if not os.path.exists(p):
            sys.exit(f"missing {p}: run scripts/fetch-models.sh")
        src, bos, eos = gguf_template(p)
        # A GGUF without tokenizer.chat_template (gemma-3-270m is a base model) is recorded as such:
        # the Rust test checks it finds no template either, and the caller uses ChatTemplate::fallback.
        sources.append(("gguf/" + name, src, bos, eos))

    # Our own fallback templates (ChatML; ChatGLM3 and GLM-4 for chatglm / glm4 files without
    # one), rendered by the same oracle.
    for name in HEARTH_TEMPLATES:
        with open(os.path.join(HERE, "..", "src", name), encoding="utf-8") as f:
            sources.append(("hearth/" + name, f.read(), DEFAULT_BOS, DEFAULT_EOS))
    if only_hearth:
        # Re-render only our own templates into the existing golden.json, leaving every other
        # entry as the transformers version recorded in it produced them.
        sources = [s for s in sources if s[0].startswith("hearth/")]

    # llama.cpp's own default (common/chat.cpp CHATML_TEMPLATE_SRC, used when a model has no
    # template): our fallback must render the same wherever that template renders at all.
    llama_chatml = llama_cpp_chatml_source(llama_src)

    golden = {
        "generator": "crates/template/tests/gen_golden.py",
        "fixed_now": FIXED_NOW.isoformat(),
        "templates": {},
    }
    import transformers
    oracle = f"transformers {transformers.__version__} render_jinja_template, jinja2 {jinja2.__version__}"
    if only_hearth:
        with open(os.path.join(HERE, "golden.json"), encoding="utf-8") as f:
            old = json.load(f)
        for key, source, bos, eos in sources:
            new = entry(source, conversations, bos, eos)
            if old["templates"].get(key) == new:
                continue
            if old["oracle"] != oracle:
                new["oracle"] = oracle
            old["templates"][key] = new
        write(old)
        return

    # Python's strftime (glibc underneath) for the fixed instant, for the Rust strftime_now.
    golden["strftime"] = {
        fmt: FIXED_NOW.strftime(fmt)
        for fmt in [
            "%d %b %Y", "%Y-%m-%d", "%B %d, %Y", "%A, %B %-d, %Y", "%a %b %e %H:%M:%S %Y", "%c",
            "%I:%M %p", "%j %u %w %y %C", "%D %F %T %R %r", "%x %X", "%% %Z%z|", "%q %-m/%-d",
        ]
    }

    golden["oracle"] = oracle
    for key, source, bos, eos in sources:
        if source is None:
            golden["templates"][key] = {"no_template": True, "bos_token": bos, "eos_token": eos}
            print(f"{key}: no chat template", file=sys.stderr)
            continue
        golden["templates"][key] = entry(source, conversations, bos, eos)
        cases = golden["templates"][key]["cases"]
        n_ok = sum(1 for c in cases.values() if "ok" in c)
        print(f"{key}: {n_ok}/{len(cases)} rendered", file=sys.stderr)

    golden["llama_cpp_chatml"] = {
        "sha256": hashlib.sha256(llama_chatml.encode("utf-8")).hexdigest(),
        "cases": {
            f"{conv['name']}/{'gen' if agp else 'nogen'}": render(llama_chatml, conv, agp, DEFAULT_BOS, DEFAULT_EOS)
            for conv in conversations
            for agp in (False, True)
        },
    }

    # Small templates of our own (tests/snippets.json) exercising one feature each: tojson
    # options, Python printing, string/dict methods, tests, slices, loop controls, namespace, ...
    with open(os.path.join(HERE, "snippets.json"), encoding="utf-8") as f:
        snippets = json.load(f)
    golden["snippets"] = {}
    for snip in snippets:
        extra = dict(snip.get("extra", {}))
        conv = {
            "messages": snip.get("messages", [{"role": "user", "content": "hello"}]),
            "tools": extra.pop("tools", None),
            "extra": extra,
        }
        golden["snippets"][snip["name"]] = render(snip["template"], conv, True, DEFAULT_BOS, DEFAULT_EOS)

    write(golden)


def entry(source, conversations, bos, eos):
    cases = {}
    for conv in conversations:
        for agp in (False, True):
            cases[f"{conv['name']}/{'gen' if agp else 'nogen'}"] = render(source, conv, agp, bos, eos)
    return {
        "sha256": hashlib.sha256(source.encode("utf-8")).hexdigest(),
        "bos_token": bos,
        "eos_token": eos,
        "cases": cases,
    }


def write(golden):
    out = os.path.join(HERE, "golden.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()

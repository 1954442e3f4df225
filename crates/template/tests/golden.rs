//! Byte-for-byte comparison with Hugging Face transformers' `apply_chat_template`.
//!
//! `golden.json` is written by `gen_golden.py`, which renders every template with
//! transformers' own `render_jinja_template` (Python jinja2). This test reads the same
//! templates at run time (llama.cpp's `models/templates/*.jinja` from `$HEARTH_LLAMA_CPP_SRC`,
//! and the test models' `tokenizer.chat_template` from `$HEARTH_MODELS`) and requires:
//! * identical output wherever jinja2 rendered;
//! * an error wherever jinja2 raised, and for `raise_exception(msg)` the same message.
//!
//! Cases where we knowingly differ are listed in `KNOWN_DIFFERENCES` with the reason; they
//! are reported, and the test fails if one of them starts matching (so the list stays true).

use std::collections::BTreeMap;
use std::path::PathBuf;

use hearth_template::{
    parse_messages, ChatTemplate, CivilTime, Fallback, RenderOptions, TemplateError, TemplateSource,
};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

/// (template key, case names, why we differ from transformers).
const KNOWN_DIFFERENCES: &[(&str, &[&str], &str)] = &[(
    "llama.cpp/meetkai-functionary-medium-v3.1.jinja",
    &[
        "tools_dict_arguments/nogen",
        "tools_dict_arguments/gen",
        "tools_string_arguments/nogen",
        "tools_string_arguments/gen",
        "parallel_tool_calls/nogen",
        "parallel_tool_calls/gen",
    ],
    MARKUP_ADD,
)];

/// The functionary v3.1 template writes `"Use the function '"|safe + name + ... + t | tojson`.
/// In jinja2 `|safe` makes a `Markup`, and `Markup + str` HTML-escapes the plain operand,
/// so under transformers the tool JSON comes out as `{&#34;name&#34;: ...}` even though
/// autoescaping is off. minijinja has no operator hook to reproduce that (its `+` on strings
/// is plain concatenation), so we print the JSON unescaped.
const MARKUP_ADD: &str =
    "jinja2 Markup `+` HTML-escapes the tool JSON (`&#34;`); minijinja concatenates plainly";

fn home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
}

fn llama_cpp_src() -> PathBuf {
    let p = std::env::var("HEARTH_LLAMA_CPP_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            home().join(".cache/hearth/oracle/llama-cpp-python-0.3.36/vendor/llama.cpp")
        });
    assert!(
        p.join("models/templates").is_dir(),
        "llama.cpp source with models/templates not found at {} (set HEARTH_LLAMA_CPP_SRC or run scripts/fetch-llama-cpp.sh)",
        p.display()
    );
    p
}

fn models_dir() -> PathBuf {
    std::env::var("HEARTH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| home().join(".cache/hearth/models"))
}

/// (template source or None, bos, eos) from a GGUF's tokenizer metadata.
fn gguf_template(name: &str) -> (Option<String>, String, String) {
    let path = models_dir().join(name);
    assert!(
        path.exists(),
        "model {} not found (set HEARTH_MODELS or run scripts/fetch-models.sh)",
        path.display()
    );
    let f =
        hearth_formats::GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let tokens = f
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.as_array())
        .expect("tokenizer.ggml.tokens");
    let tok = |key: &str| {
        let id = f.get_u64(key).unwrap_or_else(|| panic!("{name}: no {key}")) as usize;
        tokens[id].as_str().expect("token text").to_string()
    };
    (
        f.get_str("tokenizer.chat_template").map(str::to_string),
        tok("tokenizer.ggml.bos_token_id"),
        tok("tokenizer.ggml.eos_token_id"),
    )
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Conversation {
    name: String,
    messages: Vec<hearth_template::Message>,
    opts_tools: Option<Json>,
    extra: serde_json::Map<String, Json>,
}

fn conversations() -> Vec<Conversation> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
    let text =
        std::fs::read_to_string(dir.join("conversations.json")).expect("tests/conversations.json");
    let list: Vec<Json> = serde_json::from_str(&text).expect("conversations.json parses");
    list.into_iter()
        .map(|c| Conversation {
            name: c["name"].as_str().unwrap().to_string(),
            // Through the public parser, so it is exercised on every conversation.
            messages: parse_messages(&c["messages"].to_string()).expect("valid messages"),
            opts_tools: c.get("tools").cloned(),
            extra: c
                .get("extra")
                .and_then(|e| e.as_object().cloned())
                .unwrap_or_default(),
        })
        .collect()
}

fn fixed_now() -> CivilTime {
    // Must equal FIXED_NOW in gen_golden.py.
    CivilTime {
        year: 2025,
        month: 3,
        day: 14,
        hour: 15,
        minute: 9,
        second: 26,
    }
}

#[test]
fn matches_transformers_apply_chat_template() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
    let golden: Json = serde_json::from_str(
        &std::fs::read_to_string(dir.join("golden.json")).expect("tests/golden.json"),
    )
    .unwrap();
    assert_eq!(golden["fixed_now"], "2025-03-14T15:09:26");
    let convs = conversations();
    let llama = llama_cpp_src();

    let mut failures: Vec<String> = Vec::new();
    let mut known_seen: Vec<(String, String)> = Vec::new();
    let mut summary: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut total_pass, mut total) = (0usize, 0usize);

    for (key, entry) in golden["templates"].as_object().unwrap() {
        let builtin = key.strip_prefix("hearth/").map(|f| {
            Fallback::ALL
                .into_iter()
                .find(|b| b.file_name() == f)
                .unwrap_or_else(|| panic!("{key}: no built-in template of that name"))
        });
        let (source, bos, eos) = if let Some(b) = builtin {
            (
                Some(b.source().to_string()),
                "<s>".to_string(),
                "</s>".to_string(),
            )
        } else if let Some(file) = key.strip_prefix("llama.cpp/") {
            let path = llama.join("models/templates").join(file);
            let src = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (
                Some(src),
                entry["bos_token"].as_str().unwrap().to_string(),
                entry["eos_token"].as_str().unwrap().to_string(),
            )
        } else if let Some(file) = key.strip_prefix("gguf/") {
            gguf_template(file)
        } else {
            panic!("unknown template key {key}");
        };
        assert_eq!(
            bos,
            entry["bos_token"].as_str().unwrap(),
            "{key}: BOS token text differs from the golden"
        );
        assert_eq!(
            eos,
            entry["eos_token"].as_str().unwrap(),
            "{key}: EOS token text differs from the golden"
        );
        if entry.get("no_template").is_some() {
            assert!(
                source.is_none(),
                "{key}: golden says no chat template, but the GGUF has one"
            );
            continue;
        }
        let source =
            source.unwrap_or_else(|| panic!("{key}: no tokenizer.chat_template in the GGUF"));
        assert_eq!(
            sha256_hex(&source),
            entry["sha256"].as_str().unwrap(),
            "{key}: template text changed since golden.json was generated; rerun crates/template/tests/gen_golden.py"
        );

        let compiled = if let Some(b) = builtin {
            Ok(ChatTemplate::builtin(b, &bos, &eos))
        } else if let Some(file) = key.strip_prefix("gguf/") {
            // Through the public GGUF loader (its BOS/EOS are the ones checked above).
            let f = hearth_formats::GgufFile::open(models_dir().join(file)).unwrap();
            let (t, src) = ChatTemplate::from_gguf(&f).unwrap();
            assert_eq!(src, TemplateSource::Gguf, "{key}");
            Ok(t.with_fixed_now(fixed_now()))
        } else {
            ChatTemplate::new(&source, &bos, &eos).map(|t| t.with_fixed_now(fixed_now()))
        };
        let cases = entry["cases"].as_object().unwrap();
        let (mut pass, mut n) = (0, 0);
        for conv in &convs {
            for agp in [false, true] {
                let case = format!("{}/{}", conv.name, if agp { "gen" } else { "nogen" });
                let want = cases
                    .get(&case)
                    .unwrap_or_else(|| panic!("{key}: golden lacks case {case}"));
                let opts = RenderOptions {
                    add_generation_prompt: agp,
                    tools: conv.opts_tools.clone(),
                    extra: conv.extra.clone(),
                };
                let got = match &compiled {
                    Ok(t) => t.render(&conv.messages, &opts),
                    Err(e) => Err(TemplateError::Syntax(e.to_string())),
                };
                n += 1;
                let mismatch: Option<String> = match (want.get("ok"), &got) {
                    (Some(w), Ok(g)) if w.as_str() == Some(g.as_str()) => None,
                    (Some(w), Ok(g)) => Some(format!(
                        "output differs at byte {}\n--- transformers:\n{}\n--- hearth:\n{}",
                        first_diff(w.as_str().unwrap(), g),
                        w.as_str().unwrap(),
                        g
                    )),
                    (Some(_), Err(e)) => Some(format!("transformers rendered, we failed: {e}")),
                    (None, Ok(g)) => Some(format!(
                        "transformers raised {} ({}), we rendered:\n{g}",
                        want["kind"], want["error"]
                    )),
                    (None, Err(e)) => {
                        if want["kind"] == "raise_exception" {
                            match e {
                                TemplateError::Raised(m)
                                    if Some(m.as_str()) == want["error"].as_str() =>
                                {
                                    None
                                }
                                other => Some(format!(
                                    "transformers: raise_exception({}); we: {other}",
                                    want["error"]
                                )),
                            }
                        } else {
                            None
                        }
                    }
                };
                let known = KNOWN_DIFFERENCES
                    .iter()
                    .find(|(t, cs, _)| *t == key && cs.contains(&case.as_str()));
                match (mismatch, known) {
                    (None, None) => pass += 1,
                    (None, Some(_)) => failures.push(format!(
                        "{key} {case}: listed in KNOWN_DIFFERENCES but now matches; remove it from the list"
                    )),
                    (Some(_), Some(_)) => known_seen.push((key.clone(), case.clone())),
                    (Some(m), None) => failures.push(format!("{key} {case}: {m}")),
                }
            }
        }
        total_pass += pass;
        total += n;
        summary.insert(key.clone(), (pass, n));
    }

    for (k, (p, n)) in &summary {
        eprintln!("{p:>3}/{n:<3} {k}");
    }
    for (t, cs, why) in KNOWN_DIFFERENCES {
        eprintln!("known difference: {t} {}: {why}", cs.join(", "));
    }
    eprintln!("chat templates: {total_pass}/{total} cases identical to transformers, {} known differences", known_seen.len());
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("FAIL {f}\n");
        }
        panic!(
            "{} of {total} chat-template cases differ from transformers (see above)",
            failures.len()
        );
    }
}

/// Snippets (tests/snippets.json) that knowingly differ from jinja2, with the reason.
const KNOWN_SNIPPET_DIFFERENCES: &[(&str, &str)] = &[
    (
        "dictsort_prints_tuples",
        "Python prints dictsort's (key, value) pairs as tuples ('content', 'hello'); minijinja has no tuple \
         type, so they print as lists ['content', 'hello']. Iterating the pairs (the normal use) is identical.",
    ),
    (
    "tilde_concat_list",
    "`~` converts operands with minijinja's own Display, which writes a list's strings in double quotes \
     ([1, \"b\"]) where Python's str() writes [1, 'b']; minijinja has no hook for `~`. Scalars (True, None, \
     numbers) already match; `{{ }}`, |string, |join and |trim use Python's str(), and lists/dicts that \
     come from the input (messages, tools) print as Python with `~` too; only template-built ones differ.",
    ),
];

/// One-feature templates (tests/snippets.json) against transformers: tojson options, Python
/// printing, string/dict methods, tests, slices, loop controls, namespace, whitespace control.
#[test]
fn snippets_match_transformers() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
    let golden: Json = serde_json::from_str(
        &std::fs::read_to_string(dir.join("golden.json")).expect("tests/golden.json"),
    )
    .unwrap();
    let snippets: Vec<Json> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("snippets.json")).expect("tests/snippets.json"),
    )
    .unwrap();
    let mut failures = Vec::new();
    let mut pass = 0;
    for snip in &snippets {
        let name = snip["name"].as_str().unwrap();
        let want = &golden["snippets"][name];
        assert!(
            want.is_object(),
            "golden.json lacks snippet {name}; rerun gen_golden.py"
        );
        let messages = match snip.get("messages") {
            Some(m) => parse_messages(&m.to_string()).expect("snippet messages"),
            None => vec![hearth_template::Message::new("user", "hello")],
        };
        let mut extra = snip
            .get("extra")
            .and_then(|e| e.as_object().cloned())
            .unwrap_or_default();
        let tools = extra.remove("tools");
        let opts = RenderOptions {
            add_generation_prompt: true,
            tools,
            extra,
        };
        let got = ChatTemplate::new(snip["template"].as_str().unwrap(), "<s>", "</s>")
            .map(|t| t.with_fixed_now(fixed_now()))
            .and_then(|t| t.render(&messages, &opts));
        let ok = match (want.get("ok"), &got) {
            (Some(w), Ok(g)) => w.as_str() == Some(g.as_str()),
            (None, Err(TemplateError::Raised(m))) if want["kind"] == "raise_exception" => {
                want["error"].as_str() == Some(m.as_str())
            }
            (None, Err(_)) => want["kind"] != "raise_exception",
            _ => false,
        };
        let known = KNOWN_SNIPPET_DIFFERENCES.iter().find(|(n, _)| *n == name);
        match (ok, known) {
            (true, None) => pass += 1,
            (true, Some(_)) => failures.push(format!(
                "{name}: listed as a known difference but now matches"
            )),
            (false, Some((_, why))) => eprintln!("known difference: snippet {name}: {why}"),
            (false, None) => failures.push(format!(
                "{name}:\n  transformers: {want}\n  hearth:       {got:?}"
            )),
        }
    }
    eprintln!(
        "snippets: {pass}/{} identical to transformers",
        snippets.len()
    );
    assert!(
        failures.is_empty(),
        "snippets differing from transformers:\n{}",
        failures.join("\n")
    );
}

/// Our fallback renders exactly what llama.cpp's default template (common/chat.cpp
/// CHATML_TEMPLATE_SRC, rendered by transformers) renders, wherever that template renders.
/// Where it fails (content given as a parts list, or absent on a tool-call message) our
/// fallback is deliberately lenient: it uses the text parts / empty content.
#[test]
fn fallback_matches_llama_cpp_default_chatml() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
    let golden: Json = serde_json::from_str(
        &std::fs::read_to_string(dir.join("golden.json")).expect("tests/golden.json"),
    )
    .unwrap();
    let cases = golden["llama_cpp_chatml"]["cases"]
        .as_object()
        .expect("golden llama_cpp_chatml");
    let t = ChatTemplate::fallback("<s>", "</s>");
    let mut checked = 0;
    for conv in conversations() {
        for agp in [false, true] {
            let case = format!("{}/{}", conv.name, if agp { "gen" } else { "nogen" });
            let Some(want) = cases[&case].get("ok").and_then(Json::as_str) else {
                continue;
            };
            let opts = RenderOptions {
                add_generation_prompt: agp,
                tools: conv.opts_tools.clone(),
                extra: conv.extra.clone(),
            };
            assert_eq!(
                t.render(&conv.messages, &opts).unwrap(),
                want,
                "fallback vs llama.cpp chatml, {case}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} cases compared");
}

#[test]
fn strftime_now_matches_python() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
    let golden: Json = serde_json::from_str(
        &std::fs::read_to_string(dir.join("golden.json")).expect("tests/golden.json"),
    )
    .unwrap();
    let formats = golden["strftime"]
        .as_object()
        .expect("golden strftime table");
    assert!(!formats.is_empty());
    let now = fixed_now();
    for (fmt, want) in formats {
        assert_eq!(
            now.strftime(fmt),
            want.as_str().unwrap(),
            "strftime({fmt:?})"
        );
        // And through the template global.
        let src = format!(
            "{{{{ strftime_now({}) }}}}",
            serde_json::to_string(fmt).unwrap()
        );
        let t = ChatTemplate::new(&src, "", "").unwrap().with_fixed_now(now);
        assert_eq!(
            t.render(&[], &RenderOptions::default()).unwrap(),
            want.as_str().unwrap(),
            "template strftime_now({fmt:?})"
        );
    }
}

fn first_diff(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

/// Every built-in template has its transformers-rendered golden entry.
#[test]
fn every_builtin_template_has_a_golden() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
    let golden: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    for b in Fallback::ALL {
        let key = format!("hearth/{}", b.file_name());
        let e = &golden["templates"][&key];
        assert_eq!(
            e["sha256"].as_str(),
            Some(sha256_hex(b.source()).as_str()),
            "{key}: missing from golden.json or changed; run gen_golden.py --only-hearth"
        );
    }
    assert_eq!(Fallback::for_arch("chatglm"), Fallback::ChatGlm3);
    assert_eq!(Fallback::for_arch("glm4"), Fallback::Glm4);
    assert_eq!(Fallback::for_arch("qwen"), Fallback::ChatMl);
    assert_eq!(Fallback::for_arch("gemma3"), Fallback::Gemma);
}

/// The Gemma built-in renders as llama.cpp's own LLM_CHAT_TEMPLATE_GEMMA (src/llama-chat.cpp,
/// restated here: system text trimmed and put before the next user turn's content with a
/// blank line, "assistant" written "model", contents trimmed), after the BOS that llama.cpp
/// adds by tokenizing with add_special and our chat prompts carry in the text.
#[test]
fn gemma_builtin_matches_llama_cpp_format() {
    let llama = |msgs: &[(&str, &str)]| {
        let (mut s, mut system) = (String::from("<bos>"), String::new());
        for (role, content) in msgs {
            if *role == "system" {
                system += content.trim();
                continue;
            }
            let role = if *role == "assistant" { "model" } else { role };
            s += &format!("<start_of_turn>{role}\n");
            if !system.is_empty() && role != "model" {
                s += &format!("{system}\n\n");
                system.clear();
            }
            s += &format!("{}<end_of_turn>\n", content.trim());
        }
        s + "<start_of_turn>model\n"
    };
    let convs: &[&[(&str, &str)]] = &[
        &[("system", " You are terse. "), ("user", "Hi")],
        &[
            ("user", "Hi"),
            ("assistant", " Hello.\n"),
            ("user", "  Joke?\n"),
        ],
        &[("user", "你好")],
    ];
    for msgs in convs {
        let got = render_builtin(Fallback::Gemma, "<bos>", "<eos>", msgs);
        assert_eq!(got, llama(msgs), "{msgs:?}");
    }
}

/// Built-in template `which` on `(role, content)` messages, with the generation prompt.
fn render_builtin(which: Fallback, bos: &str, eos: &str, msgs: &[(&str, &str)]) -> String {
    let messages: Vec<_> = msgs
        .iter()
        .map(|(r, c)| hearth_template::Message::new(*r, *c))
        .collect();
    let opts = RenderOptions {
        add_generation_prompt: true,
        ..Default::default()
    };
    ChatTemplate::builtin(which, bos, eos)
        .render(&messages, &opts)
        .unwrap()
}

/// The ChatGLM3 and GLM-4 built-ins render plain conversations as llama.cpp's own
/// LLM_CHAT_TEMPLATE_CHATGLM_3 / _4 (src/llama-chat.cpp, restated here) do, except that our
/// GLM-4 generation prompt is a bare `<|assistant|>` (GLM-4's own template) where llama.cpp
/// appends "\n".
#[test]
fn glm_builtins_match_llama_cpp_formats() {
    let llama = |prefix: &str, sep: &str, gen: &str, msgs: &[(&str, &str)]| {
        let mut s = prefix.to_string();
        for (role, content) in msgs {
            s += &format!("<|{role}|>\n{sep}{content}");
        }
        s + gen
    };
    let convs: &[&[(&str, &str)]] = &[
        &[("system", "You are terse."), ("user", "Hi")],
        &[
            ("user", "Hi"),
            ("assistant", "Hello."),
            ("user", "  Joke?\n"),
        ],
    ];
    for msgs in convs {
        let got = render_builtin(Fallback::ChatGlm3, "<s>", "</s>", msgs);
        assert_eq!(got, llama("[gMASK]sop", " ", "<|assistant|>", msgs));
        let got = render_builtin(Fallback::Glm4, "", "<|endoftext|>", msgs);
        assert_eq!(
            got + "\n",
            llama("[gMASK]<sop>", "", "<|assistant|>\n", msgs)
        );
    }
}

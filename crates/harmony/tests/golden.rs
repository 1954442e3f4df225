//! Rendering against the gpt-oss chat template (tests/golden/harmony/gpt_oss_template.json,
//! produced by crates/harmony/tests/gen_golden.py with transformers + jinja2 from the template
//! vendored in llama.cpp).
//!
//! * `Flavor::GptOssTemplate` must reproduce every case byte for byte.
//! * `Flavor::Harmony` (the default, the reference format) must reproduce every case whose tool
//!   schemas are flat, after the documented, mechanical differences between the template and the
//!   reference format are applied to the template's output (`template_to_harmony` below; the list
//!   is in crates/harmony/README.md).

use hearth_harmony::{
    render_chat, CurrentDate, Flavor, ReasoningEffort, RecipientPlacement, RenderOptions,
};
use serde_json::Value;

fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/golden/harmony/gpt_oss_template.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).expect("golden JSON")
}

fn options(case: &Value, date: &str, flavor: Flavor) -> RenderOptions {
    RenderOptions {
        tools: case["tools"].as_array().cloned().unwrap_or_default(),
        reasoning_effort: ReasoningEffort::parse(case["reasoning_effort"].as_str().unwrap())
            .unwrap(),
        current_date: CurrentDate::Fixed(date.to_string()),
        add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap(),
        flavor,
        ..RenderOptions::default()
    }
}

#[test]
fn template_flavor_matches_the_gpt_oss_chat_template() {
    let g = golden();
    let date = g["current_date"].as_str().unwrap();
    let cases = g["cases"].as_array().unwrap();
    assert!(cases.len() >= 12);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let messages = case["messages"].as_array().unwrap();
        let got = render_chat(messages, &options(case, date, Flavor::GptOssTemplate))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = case["expected"].as_str().unwrap();
        assert_eq!(got, want, "case {name}");
    }
}

/// A schema the two renderers print differently: anything that is not a flat list of scalar /
/// scalar-array / enum properties.
fn nested_schema(tools: &[Value]) -> bool {
    tools.iter().any(|t| {
        t["function"]["parameters"]["properties"]
            .as_object()
            .is_some_and(|props| {
                props.values().any(|p| {
                    p.get("oneOf").is_some()
                        || p["type"] == "object"
                        || p["type"].is_array()
                        || (p["type"] == "array" && !p["items"]["type"].is_string())
                        || p["items"]["type"] == "object"
                })
            })
    })
}

/// The reference format differs from the template's output in these ways (each a deliberate
/// choice of the reference renderer, see crates/harmony/README.md):
/// 1. developer instructions without tools: no trailing blank line;
/// 2. tool-call headers: `<|constrain|>json` instead of a bare `json`, and (with
///    `RecipientPlacement::Header`) the same recipient position;
/// 3. tool results are the raw text, not a JSON string literal;
/// 4. a parameter default is a trailing comment after the comma (`x?: number, // default: 1`);
///    the template prints another comma after the comment;
/// 5. an empty parameter object renders `(_: {\n})` rather than `()` (such cases are skipped).
fn template_to_harmony(expected: &str) -> String {
    let lines: Vec<String> = expected
        .split('\n')
        .map(|l| match l.strip_suffix(',') {
            Some(stripped) if l.contains(", // default: ") => stripped.to_string(),
            _ => l.to_string(),
        })
        .collect();
    let mut s = lines.join("\n").replace("\n\n<|end|>", "<|end|>");
    s = s.replace(
        "<|channel|>commentary json<|message|>",
        "<|channel|>commentary <|constrain|>json<|message|>",
    );
    // Tool results: `...to=assistant<|channel|>commentary<|message|>"..."<|end|>`.
    let marker = " to=assistant<|channel|>commentary<|message|>";
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find(marker) {
        let body_start = i + marker.len();
        out.push_str(&rest[..body_start]);
        let end = rest[body_start..].find("<|end|>").unwrap() + body_start;
        let quoted = &rest[body_start..end];
        let raw: String = serde_json::from_str(quoted).expect("template quotes tool results");
        out.push_str(&raw);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn harmony_flavor_matches_the_template_up_to_documented_differences() {
    let g = golden();
    let date = g["current_date"].as_str().unwrap();
    let mut compared = 0;
    for case in g["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let tools = case["tools"].as_array().unwrap();
        if nested_schema(tools)
            || tools
                .iter()
                .any(|t| t["function"]["parameters"]["properties"] == serde_json::json!({}))
        {
            continue;
        }
        let mut opts = options(case, date, Flavor::Harmony);
        opts.recipient_placement = RecipientPlacement::Header;
        let got = render_chat(case["messages"].as_array().unwrap(), &opts)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = template_to_harmony(case["expected"].as_str().unwrap());
        assert_eq!(got, want, "case {name}");
        compared += 1;
    }
    assert!(compared >= 9, "only {compared} cases compared");
}

fn reference_golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/golden/harmony/reference_render.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).expect("golden JSON")
}

/// Tool schemas beyond the reference's own vectors (nested objects, arrays of objects, unions,
/// defaults of every type, oneOf, unsupported keywords), rendered by the `openai-harmony`
/// renderer itself (tests/refgen).
#[test]
fn harmony_flavor_tools_match_the_reference_renderer() {
    let g = reference_golden();
    let date = g["current_date"].as_str().unwrap();
    let cases = g["tool_cases"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let opts = RenderOptions {
            tools: case["tools"].as_array().unwrap().clone(),
            current_date: CurrentDate::Fixed(date.into()),
            ..RenderOptions::default()
        };
        let got = render_chat(
            &[serde_json::json!({"role": "user", "content": "Hi"})],
            &opts,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, case["expected"].as_str().unwrap(), "case {name}");
    }
}

/// The template-golden conversations rendered by the `openai-harmony` renderer (tests/refgen
/// maps the OpenAI messages onto reference `Message`s, passing reasoning only where our drop
/// rule keeps it): the harmony flavour with the reference's recipient placement must match.
#[test]
fn harmony_flavor_conversations_match_the_reference_renderer() {
    let g = reference_golden();
    let date = g["current_date"].as_str().unwrap();
    let template = golden();
    let mut compared = 0;
    for conv in g["conversations"].as_array().unwrap() {
        let name = conv["name"].as_str().unwrap();
        let case = template["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from the template golden"));
        let mut opts = options(case, date, Flavor::Harmony);
        opts.recipient_placement = RecipientPlacement::Header;
        let got = render_chat(case["messages"].as_array().unwrap(), &opts)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, conv["expected"].as_str().unwrap(), "case {name}");
        compared += 1;
    }
    assert!(compared >= 11, "only {compared} conversations");
}

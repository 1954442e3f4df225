//! Writes tests/golden/harmony/reference_render.json: prompts rendered by OpenAI's reference
//! renderer (the `openai-harmony` crate) for
//!   * the tool schemas of crates/harmony/tests/reference_cases.json, and
//!   * the conversations of tests/golden/harmony/gpt_oss_template.json.
//! See ../refgen/README.md for how to build it (the reference loads the o200k vocabulary from
//! the network; we give it a byte-level vocabulary instead, which changes token ids but not the
//! rendered text, since the output is decoded back to text).
//!
//! Usage (from the repository root): cargo run --manifest-path <copy>/Cargo.toml -- .

use openai_harmony::chat::{
    Author, Conversation, DeveloperContent, Message, ReasoningEffort, Role, SystemContent,
    ToolDescription,
};
use openai_harmony::chat::Content;
use openai_harmony::{load_harmony_encoding, HarmonyEncodingName};
use serde_json::{json, Value};

const DATE: &str = "2025-03-14";

fn b64(byte: u8) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = byte as usize;
    format!("{}{}==", A[b >> 2] as char, A[(b & 3) << 4] as char)
}

fn tools_of(v: &Value) -> Vec<ToolDescription> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let f = &t["function"];
            ToolDescription::new(
                f["name"].as_str().unwrap(),
                f["description"].as_str().unwrap_or(""),
                f.get("parameters").cloned(),
            )
        })
        .collect()
}

fn effort(s: &str) -> ReasoningEffort {
    match s {
        "low" => ReasoningEffort::Low,
        "high" => ReasoningEffort::High,
        _ => ReasoningEffort::Medium,
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().map(|p| p["text"].as_str().unwrap()).collect(),
        _ => String::new(),
    }
}

/// OpenAI chat messages -> reference `Message`s. Earlier reasoning is passed only where
/// hearth-harmony's drop rule keeps it (reasoning on tool calls after the last final answer),
/// so what is compared is the serialisation, not the drop policy (documented separately).
fn conversation(case: &Value) -> Vec<Message> {
    let mut sys = SystemContent::new()
        .with_conversation_start_date(DATE)
        .with_reasoning_effort(effort(case["reasoning_effort"].as_str().unwrap()));
    let _ = &mut sys;
    let msgs = case["messages"].as_array().unwrap();
    let mut out = vec![Message::from_role_and_content(Role::System, sys)];
    let mut rest = &msgs[..];
    let mut dev = DeveloperContent::new();
    let mut has_dev = false;
    if let Some(first) = msgs.first() {
        if first["role"] == "system" || first["role"] == "developer" {
            dev = dev.with_instructions(text_of(&first["content"]));
            has_dev = true;
            rest = &msgs[1..];
        }
    }
    let tools = case.get("tools").cloned().unwrap_or(json!([]));
    if !tools.as_array().unwrap().is_empty() {
        dev = dev.with_function_tools(tools_of(&tools));
        has_dev = true;
    }
    if has_dev {
        out.push(Message::from_role_and_content(Role::Developer, dev));
    }
    let mut last_call = String::new();
    for (i, m) in rest.iter().enumerate() {
        let reasoning = m
            .get("reasoning_content")
            .or(m.get("reasoning"))
            .and_then(Value::as_str);
        match m["role"].as_str().unwrap() {
            "user" => out.push(Message::from_role_and_content(Role::User, text_of(&m["content"]))),
            "assistant" if m.get("tool_calls").is_some() => {
                let later_final = rest[i + 1..]
                    .iter()
                    .any(|f| f["role"] == "assistant" && f.get("tool_calls").is_none());
                if let (Some(r), false) = (reasoning, later_final) {
                    out.push(Message::from_role_and_content(Role::Assistant, r).with_channel("analysis"));
                }
                for call in m["tool_calls"].as_array().unwrap() {
                    let name = call["function"]["name"].as_str().unwrap();
                    last_call = name.to_string();
                    out.push(
                        Message::from_role_and_content(
                            Role::Assistant,
                            call["function"]["arguments"].as_str().unwrap(),
                        )
                        .with_channel("commentary")
                        .with_recipient(format!("functions.{name}"))
                        .with_content_type("<|constrain|>json"),
                    );
                }
            }
            "assistant" => out.push(
                Message::from_role_and_content(Role::Assistant, text_of(&m["content"]))
                    .with_channel("final"),
            ),
            "tool" => out.push(
                Message::from_author_and_content(
                    Author::new(Role::Tool, format!("functions.{last_call}")),
                    text_of(&m["content"]),
                )
                .with_channel("commentary")
                .with_recipient("assistant"),
            ),
            other => panic!("role {other}"),
        }
    }
    out
}

fn main() {
    let root = std::path::PathBuf::from(std::env::args().nth(1).expect("repository root"));
    let vocab_dir = std::env::temp_dir().join("hearth-harmony-refgen-vocab");
    std::fs::create_dir_all(&vocab_dir).unwrap();
    let vocab: String = (0..=255u8).map(|b| format!("{} {b}\n", b64(b))).collect();
    std::fs::write(vocab_dir.join("o200k_base.tiktoken"), vocab).unwrap();
    std::env::set_var("TIKTOKEN_ENCODINGS_BASE", &vocab_dir);
    let enc = load_harmony_encoding(HarmonyEncodingName::HarmonyGptOss).unwrap();
    let render = |msgs: Vec<Message>| -> String {
        let convo = Conversation::from_messages(msgs);
        let toks = enc
            .render_conversation_for_completion(&convo, Role::Assistant, None)
            .unwrap();
        enc.tokenizer().decode_utf8(&toks).unwrap()
    };

    let inputs: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("crates/harmony/tests/reference_cases.json")).unwrap(),
    )
    .unwrap();
    let mut tool_cases = Vec::new();
    for case in inputs["tool_cases"].as_array().unwrap() {
        let msgs = vec![
            Message::from_role_and_content(
                Role::System,
                SystemContent::new()
                    .with_conversation_start_date(DATE)
                    .with_reasoning_effort(ReasoningEffort::Medium),
            ),
            Message::from_role_and_content(
                Role::Developer,
                DeveloperContent::new().with_function_tools(tools_of(&case["tools"])),
            ),
            Message::from_role_and_content(Role::User, "Hi"),
        ];
        tool_cases.push(json!({"name": case["name"], "tools": case["tools"], "expected": render(msgs)}));
    }
    let template: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/golden/harmony/gpt_oss_template.json")).unwrap(),
    )
    .unwrap();
    let mut conversations = Vec::new();
    for case in template["cases"].as_array().unwrap() {
        if case["add_generation_prompt"] == false {
            continue;
        }
        conversations.push(json!({
            "name": case["name"],
            "expected": render(conversation(case)),
        }));
    }
    // Parser oracle: the reference StreamableParser's messages for hand-written outputs
    // (reference_cases.json "parse_cases") and for pseudo-random valid outputs.
    let mut texts: Vec<(String, bool)> = inputs["parse_cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["text"].as_str().unwrap().to_string(), c["after_prompt"].as_bool().unwrap()))
        .collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    const WORDS: [&str; 10] = ["the", "weather", " in", "Tokyo", "?", "{\"a\": 1}", "\n", "é", "你好", "  x "];
    for _ in 0..60 {
        let mut text = String::new();
        let n_msgs = 1 + next(4);
        for i in 0..n_msgs {
            let start = if i == 0 { "" } else { "<|start|>assistant" };
            let body: String = (0..next(6)).map(|_| WORDS[next(WORDS.len() as u64) as usize]).collect();
            let name = ["get_weather", "f", "lookup_2"][next(3) as usize];
            let ct = ["<|constrain|>json", "json", "code"][next(3) as usize];
            match next(6) {
                0 => text.push_str(&format!("{start}<|channel|>analysis<|message|>{body}<|end|>")),
                1 => text.push_str(&format!("{start}<|channel|>commentary<|message|>{body}<|end|>")),
                2 => text.push_str(&format!("{start}<|channel|>final<|message|>{body}<|return|>")),
                3 => text.push_str(&format!("{start}<|channel|>commentary to=functions.{name} {ct}<|message|>{body}<|call|>")),
                4 => text.push_str(&format!("{start} to=functions.{name}<|channel|>commentary {ct}<|message|>{body}<|call|>")),
                _ => text.push_str(&format!("{start}<|channel|>analysis to=functions.{name}<|constrain|>json<|message|>{body}<|call|>")),
            }
        }
        texts.push((text, true));
    }
    let mut parse_cases = Vec::new();
    for (text, after_prompt) in texts {
        let toks = enc.tokenizer().encode_with_special_tokens(&text);
        let role = after_prompt.then_some(Role::Assistant);
        let msgs = enc.parse_messages_from_completion_tokens(toks, role).unwrap();
        let msgs: Vec<Value> = msgs
            .iter()
            .map(|m| {
                let content: String = m
                    .content
                    .iter()
                    .map(|c| match c {
                        Content::Text(t) => t.text.clone(),
                        _ => panic!("non-text content"),
                    })
                    .collect();
                json!({
                    "author": m.author.name.clone().unwrap_or_else(|| m.author.role.as_str().to_string()),
                    "channel": m.channel,
                    "recipient": m.recipient,
                    "content_type": m.content_type,
                    "content": content,
                })
            })
            .collect();
        parse_cases.push(json!({"text": text, "after_prompt": after_prompt, "messages": msgs}));
    }

    let golden = json!({
        "generator": "crates/harmony/tests/refgen (openai-harmony 0.0.8 renderer, byte-level vocabulary)",
        "current_date": DATE,
        "tool_cases": tool_cases,
        "conversations_from": "tests/golden/harmony/gpt_oss_template.json",
        "conversations": conversations,
        "parse_cases": parse_cases,
    });
    let out = root.join("tests/golden/harmony/reference_render.json");
    std::fs::write(&out, serde_json::to_string_pretty(&golden).unwrap() + "\n").unwrap();
    println!("wrote {}", out.display());
}

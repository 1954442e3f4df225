//! The `openai-harmony` reference implementation's own test vectors (its `test-data/*.txt`),
//! read at test time from the crate's source in the cargo registry (never copied into this
//! repository). The conversations that produce them are defined in its `src/tests.rs`; the
//! ones that map onto OpenAI chat-completions input are rebuilt here as such input.
//!
//! Vectors that do not apply: `test_browser_*` (built-in browser/python tools, which Hearth does
//! not offer), `test_keep_analysis_between_finals` (training rendering without the completion
//! prompt and without analysis dropping), and the token-id vectors
//! (`test_simple_reasoning_response`, `test_simple_tool_call`: they need the o200k tokenizer).
//!
//! When no `openai-harmony-*` source is in the registry the tests print why and pass: set
//! `HARMONY_TEST_DATA` to a `test-data` directory to point them elsewhere.

use hearth_harmony::{
    parse_completion, render_chat, CurrentDate, EndReason, HarmonyEvent, HarmonyParser,
    MessageHeader, ReasoningEffort, RecipientPlacement, RenderOptions,
};
use serde_json::{json, Value};
use std::path::PathBuf;

fn test_data_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("HARMONY_TEST_DATA") {
        return Some(PathBuf::from(dir));
    }
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok()?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(cargo_home.join("registry/src"))
        .ok()?
        .flatten()
        .flat_map(|index| {
            std::fs::read_dir(index.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("openai-harmony-"))
                && p.join("test-data").is_dir()
        })
        .map(|p| p.join("test-data"))
        .collect();
    found.sort();
    found.pop()
}

/// The vector's text as the reference test loads it (`\r\n` -> `\n`, trailing whitespace
/// trimmed).
fn vector(name: &str) -> Option<String> {
    let Some(dir) = test_data_dir() else {
        eprintln!(
            "SKIP: openai-harmony test-data not found in the cargo registry (set HARMONY_TEST_DATA)"
        );
        return None;
    };
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Some(text.replace("\r\n", "\n").trim_end().to_string())
}

fn opts() -> RenderOptions {
    RenderOptions {
        current_date: CurrentDate::Omit,
        ..RenderOptions::default()
    }
}

fn render(messages: &[Value], o: &RenderOptions) -> String {
    render_chat(messages, o).expect("render")
}

/// For vectors rendered without a system message: our output is our system message followed
/// by exactly the vector.
fn assert_conversation_suffix(got: &str, want: &str) {
    assert!(
        got.ends_with(want),
        "rendered conversation does not end with the vector\n got: {got:?}\nwant: {want:?}"
    );
    let prefix = &got[..got.len() - want.len()];
    assert!(prefix.starts_with("<|start|>system<|message|>") && prefix.ends_with("<|end|>"));
    assert_eq!(
        prefix.matches("<|start|>").count(),
        1,
        "only a system message before: {prefix:?}"
    );
}

#[test]
fn test_no_tools() {
    let Some(want) = vector("test_no_tools.txt") else {
        return;
    };
    let o = RenderOptions {
        current_date: CurrentDate::Fixed("2025-06-28".into()),
        ..RenderOptions::default()
    };
    assert_eq!(render(&[], &o), want);
}

#[test]
fn test_simple_convo() {
    let Some(want) = vector("test_simple_convo.txt") else {
        return;
    };
    let got = render(
        &[json!({"role": "user", "content": "What is 2 + 2?"})],
        &opts(),
    );
    assert_eq!(got, want);
}

#[test]
fn test_simple_convo_with_effort() {
    for (effort, file, instruction) in [
        (
            ReasoningEffort::Low,
            "test_simple_convo_low_effort.txt",
            true,
        ),
        (
            ReasoningEffort::Medium,
            "test_simple_convo_medium_effort.txt",
            true,
        ),
        (
            ReasoningEffort::High,
            "test_simple_convo_high_effort.txt",
            true,
        ),
        (
            ReasoningEffort::Low,
            "test_simple_convo_low_effort_no_instruction.txt",
            false,
        ),
        (
            ReasoningEffort::Medium,
            "test_simple_convo_medium_effort_no_instruction.txt",
            false,
        ),
        (
            ReasoningEffort::High,
            "test_simple_convo_high_effort_no_instruction.txt",
            false,
        ),
    ] {
        let Some(want) = vector(file) else { return };
        let mut messages = Vec::new();
        if instruction {
            messages.push(
                json!({"role": "system", "content": "Answer the user's questions like a robot."}),
            );
        }
        messages.push(json!({"role": "user", "content": "What is the capital of the largest country in the world?"}));
        let o = RenderOptions {
            reasoning_effort: effort,
            ..opts()
        };
        assert_eq!(render(&messages, &o), want, "{file}");
    }
}

#[test]
fn test_reasoning_system_message_variants() {
    let two_channels = vec!["analysis".to_string(), "final".to_string()];
    let cases = [
        (
            "test_reasoning_system_message.txt",
            ReasoningEffort::Medium,
            "What is 2 + 2?",
            None,
            None,
        ),
        (
            "test_reasoning_system_message_no_instruction.txt",
            ReasoningEffort::High,
            "What is the best place to eat candy in the world?",
            None,
            None,
        ),
        (
            "test_reasoning_system_message_with_dates.txt",
            ReasoningEffort::Medium,
            "What is 42 * pi?",
            Some("2021-01-01"),
            Some("2021-01"),
        ),
    ];
    for (file, effort, question, date, cutoff) in cases {
        let Some(want) = vector(file) else { return };
        let mut o = RenderOptions {
            reasoning_effort: effort,
            valid_channels: two_channels.clone(),
            ..opts()
        };
        if let Some(d) = date {
            o.current_date = CurrentDate::Fixed(d.into());
        }
        if let Some(c) = cutoff {
            o.knowledge_cutoff = Some(c.into());
        }
        let got = render(&[json!({"role": "user", "content": question})], &o);
        assert_eq!(got, want, "{file}");
    }
}

#[test]
fn test_render_functions_with_parameters() {
    let Some(want) = vector("test_render_functions_with_parameters.txt") else {
        return;
    };
    // The tool definitions of the reference test, as OpenAI `tools`.
    let tools = json!([
        {"type": "function", "function": {"name": "get_location", "description": "Gets the location of the user."}},
        {"type": "function", "function": {
            "name": "get_current_weather",
            "description": "Gets the current weather in the provided location.",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                    "format": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}
                },
                "required": ["location"]
            }}},
        {"type": "function", "function": {
            "name": "get_multiple_weathers",
            "description": "Gets the current weather in the provided list of locations.",
            "parameters": {
                "type": "object",
                "properties": {
                    "locations": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "List of city and state, e.g. [\"San Francisco, CA\", \"New York, NY\"]"
                    },
                    "format": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}
                },
                "required": ["locations"]
            }}},
        {"type": "function", "function": {
            "name": "kitchensink",
            "description": "A function with various complex schemas.",
            "parameters": {
                "description": "params object",
                "type": "object",
                "properties": {
                    "string": {"type": "string", "title": "STRING", "description": "A string", "examples": ["hello", "world"]},
                    "string_nullable": {"type": "string", "nullable": true, "description": "A nullable string", "default": "the default"},
                    "string_enum": {"type": "string", "enum": ["a", "b", "c"]},
                    "oneof_string_or_number": {
                        "oneOf": [
                            {"type": "string", "default": "default_string_in_oneof"},
                            {"type": "number", "description": "numbers can happen too"}
                        ],
                        "description": "a oneof",
                        "default": 20
                    }
                }
            }}}
    ]);
    let o = RenderOptions {
        tools: tools.as_array().unwrap().clone(),
        reasoning_effort: ReasoningEffort::High,
        current_date: CurrentDate::Fixed("2025-06-28".into()),
        ..RenderOptions::default()
    };
    let messages = [
        json!({"role": "developer", "content": "Always respond in riddles"}),
        json!({"role": "user", "content": "What is the weather like in SF?"}),
    ];
    assert_eq!(render(&messages, &o), want);
}

#[test]
fn test_dropping_cot_by_default_and_preserve_cot() {
    let Some(dropped) = vector("test_dropping_cot_by_default.txt") else {
        return;
    };
    let Some(kept) = vector("test_preserve_cot.txt") else {
        return;
    };
    let convo = |reasoning: &str| {
        vec![
            json!({"role": "user", "content": "What is 2 + 2?"}),
            json!({"role": "assistant", "reasoning_content": reasoning, "content": "2 + 2 equals 4."}),
            json!({"role": "user", "content": "What about 9 / 2?"}),
        ]
    };
    let got = render(
        &convo("User asks: \u{201c}What is 2 + 2?\u{201d} Simple arithmetic. Provide answer."),
        &opts(),
    );
    assert_conversation_suffix(&got, &dropped);
    let o = RenderOptions {
        keep_past_reasoning: true,
        ..opts()
    };
    let got = render(
        &convo("User asks a simple question: \"What is 2 + 2?\" The answer: 4."),
        &o,
    );
    assert_conversation_suffix(&got, &kept);
}

/// The reference test builds its tool result without channel or recipient
/// (`<|start|>functions.lookup_weather<|message|>`); every tool result the model sees in
/// practice carries ` to=assistant<|channel|>commentary` (cookbook, "Receiving tool calls";
/// the gpt-oss chat template), and so does ours: that is the one substitution made here.
#[test]
fn test_does_not_drop_if_ongoing_analysis() {
    let Some(want) = vector("test_does_not_drop_if_ongoing_analysis.txt") else {
        return;
    };
    let want = want.replace(
        "<|start|>functions.lookup_weather<|message|>",
        "<|start|>functions.lookup_weather to=assistant<|channel|>commentary<|message|>",
    );
    let messages = [
        json!({"role": "user", "content": "What is the weather in SF?"}),
        json!({"role": "assistant",
               "reasoning_content": "User asks: \u{201c}What is the weather in SF?\u{201d} We need to use lookup_weather tool.",
               "tool_calls": [{"id": "c1", "type": "function", "function": {
                   "name": "lookup_weather", "arguments": "{\"location\": \"San Francisco\"}"}}]}),
        json!({"role": "tool", "tool_call_id": "c1", "content": "{\"temperature\": 20, \"description\": \"sunny\"}"}),
    ];
    let o = RenderOptions {
        recipient_placement: RecipientPlacement::Header,
        ..opts()
    };
    assert_conversation_suffix(&render(&messages, &o), &want);
}

fn all_events(parser: &mut HarmonyParser, text: &str) -> Vec<HarmonyEvent> {
    let mut ev = parser.push_text(text);
    ev.extend(parser.finish());
    ev
}

/// `test_streamable_parser`: three messages after the generation prompt `<|start|>assistant`.
#[test]
fn test_streamable_parser_vector() {
    let Some(text) = vector("test_streamable_parser.txt") else {
        return;
    };
    let ev = all_events(&mut HarmonyParser::with_role("assistant"), &text);
    let starts: Vec<&MessageHeader> = ev
        .iter()
        .filter_map(|e| match e {
            HarmonyEvent::MessageStart(h) => Some(h),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 3, "{ev:?}");
    assert_eq!(starts[0].channel.as_deref(), Some("analysis"));
    assert_eq!(starts[1].recipient.as_deref(), Some("browser.search"));
    assert_eq!(starts[1].content_type.as_deref(), Some("code"));
    assert_eq!(starts[2].author, "browser.search");
    assert_eq!(starts[2].recipient.as_deref(), Some("assistant"));
    let parsed = parse_completion(&text, Some("assistant"));
    assert!(parsed
        .reasoning
        .starts_with("User asks \"Who is the current US president?\""));
    assert!(parsed.reasoning.ends_with("Let's browse to confirm."));
    assert_eq!(parsed.tool_calls.len(), 1);
    assert_eq!(parsed.tool_calls[0].name, "browser.search");
    assert_eq!(
        parsed.tool_calls[0].arguments,
        r#"{"query": "current US president July 2025", "topn": 10, "source": "news"}"#
    );
    assert_eq!(parsed.content, r#"{"result": "https://openai.com/"}"#);
    assert_eq!(parsed.end, Some(EndReason::End));
}

/// `test_tool_response_parsing`: a tool's message with no end token (flushed at the end).
#[test]
fn test_tool_response_parsing_vector() {
    let Some(text) = vector("test_tool_response_parsing.txt") else {
        return;
    };
    let ev = all_events(&mut HarmonyParser::new(), &text);
    assert_eq!(
        ev,
        vec![
            HarmonyEvent::MessageStart(MessageHeader {
                author: "browser.search".into(),
                channel: Some("commentary".into()),
                recipient: Some("assistant".into()),
                content_type: None,
            }),
            HarmonyEvent::ContentDelta(r#"{"result": "https://openai.com/"}"#.into()),
            HarmonyEvent::MessageEnd(EndReason::Truncated),
        ]
    );
}

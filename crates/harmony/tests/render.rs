//! Rendering behaviour beyond the goldens: typed errors on bad input, features neither oracle
//! covers (several tool calls per message, preambles, later instructions), and consistency of
//! the two halves: the parser reads back what the renderer wrote.

use hearth_harmony::{
    parse_completion, render_chat, CurrentDate, Flavor, HarmonyError, ReasoningEffort,
    RenderOptions,
};
use serde_json::{json, Value};

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather", "description": "Weather.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

fn opts() -> RenderOptions {
    RenderOptions {
        tools: vec![weather_tool()],
        current_date: CurrentDate::Fixed("2025-03-14".into()),
        ..RenderOptions::default()
    }
}

fn err(messages: &[Value], o: &RenderOptions) -> HarmonyError {
    render_chat(messages, o).expect_err("should fail")
}

#[test]
fn bad_input_is_a_typed_error_naming_the_place() {
    let o = opts();
    let e = err(&[json!({"role": "wizard", "content": "x"})], &o);
    assert_eq!(e.to_string(), "messages[0]: unknown role \"wizard\"");
    let e = err(&[json!({"content": "x"})], &o);
    assert!(matches!(e, HarmonyError::Message { index: 0, .. }), "{e}");
    let e = err(&[json!("hello")], &o);
    assert!(matches!(e, HarmonyError::Message { index: 0, .. }), "{e}");
    let e = err(
        &[json!({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]})],
        &o,
    );
    assert!(e.to_string().contains("content[0]"), "{e}");
    let e = err(
        &[
            json!({"role": "user", "content": "hi"}),
            json!({"role": "tool", "content": "42"}),
        ],
        &o,
    );
    assert!(matches!(e, HarmonyError::Message { index: 1, .. }), "{e}");
    let e = err(
        &[json!({"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]})],
        &o,
    );
    assert!(e.to_string().contains("tool_calls[0].function.name"), "{e}");
    let bad_tools = RenderOptions {
        tools: vec![json!({"type": "function", "function": {"description": "no name"}})],
        ..opts()
    };
    assert!(matches!(
        err(&[], &bad_tools),
        HarmonyError::Tool { index: 0, .. }
    ));
    let retrieval = RenderOptions {
        tools: vec![json!({"type": "retrieval", "function": {"name": "x"}})],
        ..opts()
    };
    assert!(err(&[], &retrieval).to_string().contains("tools[0]"));
    assert!(ReasoningEffort::parse("extreme")
        .unwrap_err()
        .to_string()
        .contains("reasoning_effort"));
    // The template cannot hold both; we say so instead of guessing.
    let both = [
        json!({"role": "assistant", "content": "c", "reasoning_content": "r",
                       "tool_calls": [{"id": "1", "function": {"name": "get_weather", "arguments": "{}"}}]}),
    ];
    let t = RenderOptions {
        flavor: Flavor::GptOssTemplate,
        ..opts()
    };
    assert!(matches!(
        err(&both, &t),
        HarmonyError::Message { index: 0, .. }
    ));
}

#[test]
fn today_is_the_utc_date() {
    let out = std::process::Command::new("date")
        .args(["-u", "+%F"])
        .output();
    let Ok(out) = out else {
        eprintln!("SKIP: no `date` command");
        return;
    };
    let today = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let o = RenderOptions::default();
    let p = render_chat(&[], &o).unwrap();
    assert!(p.contains(&format!("\nCurrent date: {today}\n")), "{p}");
}

/// Several calls in one assistant message, each answered by id out of order, with a preamble:
/// the parser reads every call back with its arguments, and each result names its function.
#[test]
fn several_tool_calls_round_trip_through_the_parser() {
    let calls = json!([
        {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
        {"id": "b", "type": "function", "function": {"name": "get_time", "arguments": {"tz": "UTC"}}}
    ]);
    let messages = [
        json!({"role": "user", "content": "Oslo weather and time?"}),
        json!({"role": "assistant", "content": "Checking both.", "reasoning_content": "Two calls.", "tool_calls": calls}),
        json!({"role": "tool", "tool_call_id": "b", "content": "12:00"}),
        json!({"role": "tool", "tool_call_id": "a", "content": "snow"}),
    ];
    let prompt = render_chat(&messages, &opts()).unwrap();
    assert!(prompt.contains(
        "<|start|>functions.get_time to=assistant<|channel|>commentary<|message|>12:00<|end|>\
         <|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>snow<|end|>"
    ));
    // Everything after the user message is what the model would have generated.
    let generated = &prompt[prompt.find("<|start|>assistant").unwrap()..];
    let parsed = parse_completion(generated, None);
    assert_eq!(parsed.reasoning, "Two calls.");
    assert!(parsed.content.starts_with("Checking both."));
    let calls: Vec<(&str, &str)> = parsed
        .tool_calls
        .iter()
        .map(|c| (c.name.as_str(), c.arguments.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("get_weather", "{\"city\":\"Oslo\"}"),
            ("get_time", "{\"tz\":\"UTC\"}")
        ]
    );
}

#[test]
fn later_instructions_and_training_tail() {
    let messages = [
        json!({"role": "system", "content": "Be brief."}),
        json!({"role": "user", "content": "Hi"}),
        json!({"role": "developer", "content": "Now answer in French."}),
        json!({"role": "user", "content": "Bye"}),
        json!({"role": "assistant", "reasoning": "Say au revoir.", "content": "Au revoir !"}),
    ];
    let o = RenderOptions {
        add_generation_prompt: false,
        ..opts()
    };
    let p = render_chat(&messages, &o).unwrap();
    assert_eq!(p.matches("# Instructions").count(), 2);
    assert!(p.contains("<|start|>developer<|message|># Instructions\n\nNow answer in French.<|end|><|start|>user<|message|>Bye"));
    assert!(p.ends_with(
        "<|start|>assistant<|channel|>analysis<|message|>Say au revoir.<|end|>\
         <|start|>assistant<|channel|>final<|message|>Au revoir !<|return|>"
    ));
    // The template flavour drops the later instruction, as the template does.
    let t = RenderOptions {
        flavor: Flavor::GptOssTemplate,
        ..o
    };
    assert_eq!(
        render_chat(&messages, &t)
            .unwrap()
            .matches("# Instructions")
            .count(),
        1
    );
}

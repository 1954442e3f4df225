//! Harmony (gpt-oss) models through `/v1/chat/completions`: the fake backend reports
//! `ChatFormat::Harmony` and replays harmony-formatted output, written here by hand from the
//! format's published description (<https://cookbook.openai.com/articles/openai-harmony>).

mod common;

use common::*;
use hearth_server::backend::ChatFormat;
use hearth_server::fake::FakeConfig;
use serde_json::{json, Value};

const REASON_THEN_ANSWER: &str = "<|channel|>analysis<|message|>User says hi. Respond.<|end|>\
<|start|>assistant<|channel|>final<|message|>Hello there!<|return|>";

const TOOL_CALL: &str = "<|channel|>analysis<|message|>Need the weather.<|end|>\
<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json\
<|message|>{\"city\":\"Paris\"}<|call|>";

fn harmony(script: &str) -> FakeConfig {
    FakeConfig {
        script: Some(script.into()),
        chat_format: ChatFormat::Harmony,
        context_length: 8192,
        ..FakeConfig::default()
    }
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }})
}

/// The prompt the fake received, as text (its tokens are bytes).
fn last_prompt(s: &TestServer) -> String {
    let req = s
        .fake
        .last_request
        .lock()
        .unwrap()
        .clone()
        .expect("a request");
    let bytes: Vec<u8> = req.prompt_tokens.iter().map(|&t| t as u8).collect();
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn reasoning_and_content_are_separate() {
    // Trailing text after <|return|> must never reach the client.
    let s = TestServer::start(harmony(&format!("{REASON_THEN_ANSWER}junk"))).await;
    let (status, _, v) = s.post("/v1/chat/completions", &chat_body("hi")).await;
    assert_eq!(status, 200, "{v}");
    let c = &v["choices"][0];
    assert_eq!(c["message"]["content"], "Hello there!");
    assert_eq!(c["message"]["reasoning_content"], "User says hi. Respond.");
    assert_eq!(c["finish_reason"], "stop");
    // One byte per token in the fake; generation stops right after `<|return|>`.
    assert_eq!(
        v["usage"]["completion_tokens"],
        REASON_THEN_ANSWER.len() as u64
    );
    let prompt = last_prompt(&s);
    assert!(prompt.starts_with("<|start|>system<|message|>"), "{prompt}");
    assert!(
        prompt.ends_with("<|start|>user<|message|>hi<|end|><|start|>assistant"),
        "{prompt}"
    );
}

#[tokio::test]
async fn tool_call_becomes_openai_tool_calls() {
    let s = TestServer::start(harmony(TOOL_CALL)).await;
    let body = json!({"model": "fake-model", "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [weather_tool()]});
    let (status, _, v) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    let c = &v["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls");
    assert_eq!(c["message"]["content"], Value::Null);
    assert_eq!(c["message"]["reasoning_content"], "Need the weather.");
    let calls = c["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(calls[0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    // The tools reached the prompt in harmony's TypeScript-like form.
    let prompt = last_prompt(&s);
    assert!(prompt.contains("namespace functions {"), "{prompt}");
    assert!(prompt.contains("type get_weather = (_: {"), "{prompt}");
}

#[tokio::test]
async fn streaming_splits_reasoning_content_and_tool_calls() {
    let s = TestServer::start(harmony(REASON_THEN_ANSWER)).await;
    let mut body = chat_body("hi");
    body["stream"] = true.into();
    let chunks = s.post_sse("/v1/chat/completions", &body).await;
    assert_eq!(chunks.last().map(String::as_str), Some("[DONE]"));
    let (mut reasoning, mut content, mut finish) = (String::new(), String::new(), None);
    for c in &chunks[..chunks.len() - 1] {
        let v: Value = serde_json::from_str(c).unwrap();
        let d = &v["choices"][0]["delta"];
        reasoning += d["reasoning_content"].as_str().unwrap_or("");
        content += d["content"].as_str().unwrap_or("");
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    assert_eq!(reasoning, "User says hi. Respond.");
    assert_eq!(content, "Hello there!");
    assert_eq!(finish.as_deref(), Some("stop"));

    let s = TestServer::start(harmony(TOOL_CALL)).await;
    let body = json!({"model": "fake-model", "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [weather_tool()], "stream": true});
    let chunks = s.post_sse("/v1/chat/completions", &body).await;
    let (mut name, mut id, mut args, mut finish) = (None, None, String::new(), None);
    for c in &chunks[..chunks.len() - 1] {
        let v: Value = serde_json::from_str(c).unwrap();
        let d = &v["choices"][0]["delta"];
        assert!(d["content"].as_str().unwrap_or("").is_empty(), "{c}");
        if let Some(calls) = d["tool_calls"].as_array() {
            assert_eq!(calls[0]["index"], 0);
            if let Some(n) = calls[0]["function"]["name"].as_str() {
                assert!(name.is_none(), "name sent twice");
                name = Some(n.to_string());
                id = calls[0]["id"].as_str().map(String::from);
                assert_eq!(calls[0]["type"], "function");
            }
            args += calls[0]["function"]["arguments"].as_str().unwrap_or("");
        }
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    assert_eq!(name.as_deref(), Some("get_weather"));
    assert!(id.unwrap().starts_with("call_"));
    assert_eq!(args, "{\"city\":\"Paris\"}");
    assert_eq!(finish.as_deref(), Some("tool_calls"));
}

#[tokio::test]
async fn malformed_output_surfaces_as_content() {
    // No header at all, then a stray <|message|>: text, never a panic or a lost answer.
    let s = TestServer::start(harmony("just text, no channel <|message|> tail")).await;
    let (status, _, v) = s.post("/v1/chat/completions", &chat_body("hi")).await;
    assert_eq!(status, 200, "{v}");
    let c = &v["choices"][0];
    let content = c["message"]["content"].as_str().unwrap_or("");
    assert!(content.contains("tail"), "{v}");
    assert_eq!(c["finish_reason"], "stop");
    assert!(c["message"].get("tool_calls").is_none(), "{v}");

    // Cut by max_tokens in the middle of the analysis: length, reasoning so far.
    let s = TestServer::start(harmony(REASON_THEN_ANSWER)).await;
    let mut body = chat_body("hi");
    body["max_tokens"] = 40.into();
    let (status, _, v) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let expected_reasoning = &REASON_THEN_ANSWER["<|channel|>analysis<|message|>".len()..40];
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"],
        expected_reasoning
    );
}

#[tokio::test]
async fn reasoning_effort_reaches_the_system_message() {
    let s = TestServer::start(harmony(REASON_THEN_ANSWER)).await;
    s.post("/v1/chat/completions", &chat_body("hi")).await;
    assert!(last_prompt(&s).contains("\nReasoning: medium\n"));
    for effort in ["low", "high"] {
        let mut body = chat_body("hi");
        body["reasoning_effort"] = effort.into();
        let (status, _, v) = s.post("/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{v}");
        assert!(last_prompt(&s).contains(&format!("\nReasoning: {effort}\n")));
    }
    let mut body = chat_body("hi");
    body["reasoning_effort"] = "extreme".into();
    let (status, _, v) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "reasoning_effort");
    assert!(v["error"]["message"].as_str().unwrap().contains("extreme"));
}

#[tokio::test]
async fn tool_results_render_back_for_the_next_turn() {
    let s = TestServer::start(harmony(REASON_THEN_ANSWER)).await;
    let body = json!({"model": "fake-model", "tools": [weather_tool()], "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "reasoning_content": "Need the weather.",
         "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\":20}"},
    ]});
    let (status, _, v) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    let prompt = last_prompt(&s);
    // The cookbook's forms: the call in the commentary channel addressed to the tool, the
    // result authored by the tool and addressed back to the assistant.
    assert!(prompt.contains("to=functions.get_weather"), "{prompt}");
    assert!(
        prompt.contains("<|message|>{\"city\":\"Paris\"}<|call|>"),
        "{prompt}"
    );
    assert!(
        prompt.contains("<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{\"temp\":20}<|end|>"),
        "{prompt}"
    );
    // Reasoning of the turn in progress (a tool call) is kept.
    assert!(
        prompt.contains("<|channel|>analysis<|message|>Need the weather.<|end|>"),
        "{prompt}"
    );
    assert!(prompt.ends_with("<|start|>assistant"), "{prompt}");
}

#[tokio::test]
async fn jinja_models_ignore_reasoning_effort() {
    let s = TestServer::start(scripted("ok")).await;
    let mut body = chat_body("hi");
    body["reasoning_effort"] = "extreme".into();
    let (status, _, v) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "ok");
    assert!(v["choices"][0]["message"]
        .get("reasoning_content")
        .is_none());
}

#[tokio::test]
async fn responses_api_renders_history_and_tool_results() {
    let s = TestServer::start(harmony(TOOL_CALL)).await;
    let tools = json!([{"type": "function", "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let body = json!({"model": "fake-model", "input": "Weather in Paris?", "tools": tools,
        "instructions": "Answer in French.", "reasoning": {"effort": "high"}});
    let (status, _, r) = s.post("/v1/responses", &body).await;
    assert_eq!(status, 200, "{r}");
    let prompt = last_prompt(&s);
    assert!(prompt.contains("\nReasoning: high\n"), "{prompt}");
    assert!(
        prompt.contains("# Instructions\n\nAnswer in French."),
        "{prompt}"
    );
    let out = r["output"].as_array().unwrap();
    assert_eq!(out[0]["type"], "reasoning");
    assert_eq!(out[1]["type"], "function_call");
    let call_id = out[1]["call_id"].as_str().unwrap();

    let body = json!({"model": "fake-model", "previous_response_id": r["id"], "tools": tools,
        "input": [{"type": "function_call_output", "call_id": call_id, "output": "{\"temp\":20}"}]});
    let (status, _, r2) = s.post("/v1/responses", &body).await;
    assert_eq!(status, 200, "{r2}");
    let prompt = last_prompt(&s);
    // The stored turn (its reasoning kept: the tool-call turn is still in progress), then the
    // tool result; instructions are not carried over, as in OpenAI's API.
    assert!(
        prompt.contains("<|start|>user<|message|>Weather in Paris?<|end|>"),
        "{prompt}"
    );
    assert!(
        prompt.contains("<|channel|>analysis<|message|>Need the weather.<|end|>"),
        "{prompt}"
    );
    assert!(
        prompt.contains("<|message|>{\"city\":\"Paris\"}<|call|>"),
        "{prompt}"
    );
    assert!(
        prompt.contains("<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{\"temp\":20}<|end|>"),
        "{prompt}"
    );
    assert!(!prompt.contains("Answer in French."), "{prompt}");

    // A Jinja model goes through the same endpoint with its template.
    let s = TestServer::start(scripted("ok")).await;
    let (status, _, r) = s
        .post(
            "/v1/responses",
            &json!({"model": "fake-model", "input": "hi"}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["output"][0]["content"][0]["text"], "ok");
    assert_eq!(r["status"], "completed");
}

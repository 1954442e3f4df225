//! GLM-4 models through `/v1/chat/completions`: the fake backend reports `ChatFormat::Glm4`
//! and replays output in GLM-4's format (after a bare `<|assistant|>`: "\n" + an answer, or a
//! function name on the first line and its JSON arguments), as its chat template describes.

mod common;

use common::*;
use hearth_server::backend::ChatFormat;
use hearth_server::fake::FakeConfig;
use serde_json::{json, Value};

fn glm4(script: &str) -> FakeConfig {
    FakeConfig {
        script: Some(script.into()),
        chat_format: ChatFormat::Glm4,
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

fn body(tools: bool, stream: bool) -> Value {
    let mut b = json!({"model": "fake-model", "stream": stream,
        "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    if tools {
        b["tools"] = json!([weather_tool()]);
    }
    b
}

#[tokio::test]
async fn tool_call_becomes_openai_tool_calls() {
    let s = TestServer::start(glm4("get_weather\n{\"city\": \"Paris\"}")).await;
    let (status, _, v) = s.post("/v1/chat/completions", &body(true, false)).await;
    assert_eq!(status, 200, "{v}");
    let c = &v["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls", "{v}");
    let call = &c["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
}

#[tokio::test]
async fn answers_lose_the_leading_newline() {
    let s = TestServer::start(glm4("\nIt is sunny.")).await;
    for tools in [true, false] {
        let (status, _, v) = s.post("/v1/chat/completions", &body(tools, false)).await;
        assert_eq!(status, 200, "{v}");
        let c = &v["choices"][0];
        assert_eq!(c["message"]["content"], "It is sunny.", "tools {tools}");
        assert_eq!(c["finish_reason"], "stop");
    }
}

#[tokio::test]
async fn text_that_is_not_a_call_stays_content() {
    // The first line is no tool of the request.
    let s = TestServer::start(glm4("search\n{\"q\": \"x\"}")).await;
    let (status, _, v) = s.post("/v1/chat/completions", &body(true, false)).await;
    assert_eq!(status, 200, "{v}");
    let c = &v["choices"][0];
    assert_eq!(c["message"]["content"], "search\n{\"q\": \"x\"}");
    assert_eq!(c["finish_reason"], "stop");
}

#[tokio::test]
async fn streamed_answer_and_tool_call() {
    let content = |data: &[String]| -> (String, Vec<Value>, Option<String>) {
        let (mut text, mut calls, mut finish) = (String::new(), Vec::new(), None);
        for d in data.iter().filter(|d| d.as_str() != "[DONE]") {
            let v: Value = serde_json::from_str(d).unwrap();
            let c = &v["choices"][0];
            if let Some(t) = c["delta"]["content"].as_str() {
                text += t;
            }
            if let Some(a) = c["delta"]["tool_calls"].as_array() {
                calls.extend(a.iter().cloned());
            }
            if let Some(f) = c["finish_reason"].as_str() {
                finish = Some(f.to_string());
            }
        }
        (text, calls, finish)
    };
    let s = TestServer::start(glm4("\nIt is sunny.")).await;
    let (text, calls, finish) =
        content(&s.post_sse("/v1/chat/completions", &body(true, true)).await);
    assert_eq!(text, "It is sunny.");
    assert!(calls.is_empty());
    assert_eq!(finish.as_deref(), Some("stop"));
    let s = TestServer::start(glm4("get_weather\n{\"city\": \"Paris\"}")).await;
    let (text, calls, finish) =
        content(&s.post_sse("/v1/chat/completions", &body(true, true)).await);
    assert_eq!(text, "");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(finish.as_deref(), Some("tool_calls"));
}

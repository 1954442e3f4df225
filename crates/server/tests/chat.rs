//! `/v1/chat/completions` over real TCP against the fake backend.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use hearth_server::fake::{FakeConfig, WORDS};
use serde_json::{json, Value};

/// The fake's word-mode output: words cycling from (sum of prompt ids + seed).
fn fake_words(prompt: &str, seed: u64, count: usize) -> String {
    let start = prompt
        .bytes()
        .map(u64::from)
        .sum::<u64>()
        .wrapping_add(seed) as usize;
    (0..count)
        .map(|i| WORDS[(start + i) % WORDS.len()])
        .collect()
}

#[tokio::test]
async fn non_streaming_response_matches_openai_schema() {
    let s = TestServer::start(scripted("Hello, wörld!")).await;
    let (status, _, v) = s.post("/v1/chat/completions", &chat_body("hi")).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "fake-model");
    let c = &v["choices"][0];
    assert_eq!(c["index"], 0);
    assert_eq!(c["message"]["role"], "assistant");
    assert_eq!(c["message"]["content"], "Hello, wörld!");
    assert_eq!(c["finish_reason"], "stop");
    assert_eq!(c["logprobs"], Value::Null);
    let prompt_len = fake_prompt(&[("user", "hi")]).len() as u64;
    // One token per byte in the fake: "ö" is two.
    let completion = "Hello, wörld!".len() as u64;
    assert_eq!(v["usage"]["prompt_tokens"], prompt_len);
    assert_eq!(v["usage"]["completion_tokens"], completion);
    assert_eq!(v["usage"]["total_tokens"], prompt_len + completion);
}

#[tokio::test]
async fn sampling_params_reach_the_backend() {
    let s = TestServer::start(FakeConfig {
        eos_after: Some(3),
        ..FakeConfig::default()
    })
    .await;
    let body = json!({
        "model": "fake-model",
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
        "temperature": 0.5, "top_p": 0.9, "seed": 42, "presence_penalty": 0.5, "frequency_penalty": -0.5,
        "logit_bias": {"5": 10, "7": -100}, "max_completion_tokens": 20, "user": "u1",
        "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1,
        "response_format": {"type": "json_object"},
    });
    let (status, _, v) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    let prompt = fake_prompt(&[("system", "sys"), ("user", "a\nb")]);
    assert_eq!(
        v["choices"][0]["message"]["content"],
        fake_words(&prompt, 42, 3)
    );
    let req = s.fake.last_request.lock().unwrap().clone().unwrap();
    assert_eq!(
        req.prompt_tokens,
        prompt.bytes().map(u32::from).collect::<Vec<_>>()
    );
    assert_eq!(req.max_tokens, 20);
    let p = &req.params;
    assert_eq!(
        (p.temperature, p.top_p, p.top_k, p.min_p),
        (0.5, 0.9, 40, 0.05)
    );
    assert_eq!(
        (
            p.presence_penalty,
            p.frequency_penalty,
            p.repetition_penalty
        ),
        (0.5, -0.5, 1.1)
    );
    assert_eq!(p.seed, Some(42));
    assert_eq!(p.logit_bias, vec![(5, 10.0), (7, -100.0)]);
    assert_eq!(
        req.constraints.response_format,
        Some(json!({"type": "json_object"}))
    );
    assert!(req.request_id.starts_with("chatcmpl-"));
}

#[tokio::test]
async fn default_max_tokens_fills_the_context() {
    let s = TestServer::start(FakeConfig {
        context_length: 100,
        ..FakeConfig::default()
    })
    .await;
    let (status, _, v) = s.post("/v1/chat/completions", &chat_body("hi")).await;
    assert_eq!(status, 200, "{v}");
    let prompt_len = fake_prompt(&[("user", "hi")]).len();
    assert_eq!(v["usage"]["completion_tokens"], (100 - prompt_len) as u64);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn streaming_sends_role_then_content_then_finish_then_done() {
    let s = TestServer::start(scripted("Hi there, ünïcode!")).await;
    let mut body = chat_body("hi");
    body["stream"] = json!(true);
    let events = s.post_sse("/v1/chat/completions", &body).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id, "all chunks share one id");
        assert_eq!(c["model"], "fake-model");
        assert!(
            c.get("usage").is_none(),
            "no usage field without include_usage"
        );
        assert_eq!(c["choices"].as_array().unwrap().len(), 1);
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let content: String = chunks[1..]
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Hi there, ünïcode!");
    // Only the last chunk has a finish reason, with an empty delta.
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c["choices"][0]["finish_reason"].is_null()));
}

#[tokio::test]
async fn include_usage_adds_a_final_usage_chunk() {
    let s = TestServer::start(scripted("abc")).await;
    let mut body = chat_body("hi");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let events = s.post_sse("/v1/chat/completions", &body).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    let prompt_len = fake_prompt(&[("user", "hi")]).len() as u64;
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": prompt_len, "completion_tokens": 3, "total_tokens": prompt_len + 3})
    );
    for c in &chunks[..chunks.len() - 1] {
        assert!(
            c["usage"].is_null() && c.get("usage").is_some(),
            "other chunks carry usage: null"
        );
    }
}

#[tokio::test]
async fn stop_strings_cut_the_text_and_cancel_the_generation() {
    let cfg = FakeConfig {
        token_delay: Duration::from_millis(2),
        ..scripted("Hello STOP world, and a long tail after it")
    };
    let s = TestServer::start(cfg).await;
    let mut body = chat_body("hi");
    body["stop"] = json!(["zzz", "STOP"]);
    let (status, _, v) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello ");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // Tokens up to and including the one completing "STOP".
    assert_eq!(v["usage"]["completion_tokens"], "Hello STOP".len() as u64);
    s.eventually("the backend noticed the dropped receiver", |f| {
        f.counters.cancelled.load(Ordering::SeqCst) == 1
    })
    .await;

    // Streaming: the stop string never reaches the client, even in pieces.
    body["stop"] = json!("STOP");
    body["stream"] = json!(true);
    let events = s.post_sse("/v1/chat/completions", &body).await;
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Hello ");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
}

#[tokio::test]
async fn max_tokens_gives_finish_reason_length() {
    let s = TestServer::start(scripted("abcdefgh")).await;
    let mut body = chat_body("hi");
    body["max_tokens"] = json!(3);
    let (_, _, v) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(v["choices"][0]["message"]["content"], "abc");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn n_runs_n_generations() {
    let s = TestServer::start(FakeConfig {
        eos_after: Some(4),
        ..FakeConfig::default()
    })
    .await;
    let mut body = chat_body("hi");
    body["n"] = json!(3);
    body["seed"] = json!(7);
    let (status, _, v) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    let prompt = fake_prompt(&[("user", "hi")]);
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        // Choice i is seeded with seed + i.
        assert_eq!(
            c["message"]["content"],
            fake_words(&prompt, 7 + i as u64, 4)
        );
    }
    assert_eq!(v["usage"]["completion_tokens"], 12);
    assert_eq!(
        v["usage"]["prompt_tokens"],
        prompt.len() as u64,
        "the prompt is counted once"
    );
    assert_eq!(s.fake.counters.started.load(Ordering::SeqCst), 3);

    // Streaming with n: every index gets a role chunk, content and a finish.
    body["stream"] = json!(true);
    let events = s.post_sse("/v1/chat/completions", &body).await;
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    for i in 0..3u64 {
        let mine: Vec<&Value> = chunks
            .iter()
            .filter(|c| c["choices"][0]["index"] == i)
            .collect();
        assert_eq!(mine[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = mine
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, fake_words(&prompt, 7 + i, 4));
        assert_eq!(mine.last().unwrap()["choices"][0]["finish_reason"], "stop");
    }
}

#[tokio::test]
async fn logprobs_in_openai_shape() {
    let s = TestServer::start(FakeConfig {
        eos_after: Some(2),
        ..FakeConfig::default()
    })
    .await;
    let mut body = chat_body("hi");
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(2);
    let (status, _, v) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 2);
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    let joined: String = content
        .iter()
        .map(|e| e["token"].as_str().unwrap())
        .collect();
    assert_eq!(joined, text);
    for e in content {
        let tok = e["token"].as_str().unwrap();
        let bytes: Vec<u8> = e["bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(bytes, tok.as_bytes());
        assert!(e["logprob"].as_f64().unwrap() <= 0.0);
        let top = e["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 2);
        assert_eq!(
            top[0]["token"], tok,
            "the fake ranks the chosen token first"
        );
        assert!(top[0]["logprob"].as_f64() >= top[1]["logprob"].as_f64());
    }
    let req = s.fake.last_request.lock().unwrap().clone().unwrap();
    assert_eq!(req.logprobs, Some(2));
}

#[tokio::test]
async fn streamed_logprobs_travel_with_the_text_they_complete() {
    let s = TestServer::start(scripted("aé")).await;
    let mut body = chat_body("hi");
    body["stream"] = json!(true);
    body["logprobs"] = json!(true);
    let events = s.post_sse("/v1/chat/completions", &body).await;
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let with_text: Vec<&Value> = chunks
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .collect();
    assert_eq!(with_text.len(), 2);
    assert_eq!(with_text[0]["choices"][0]["delta"]["content"], "a");
    assert_eq!(
        with_text[0]["choices"][0]["logprobs"]["content"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // "é" is two byte tokens; the first completes no text, so its logprob
    // is sent with the second.
    assert_eq!(with_text[1]["choices"][0]["delta"]["content"], "é");
    let lps = with_text[1]["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    let bytes: Vec<Value> = lps.iter().map(|e| e["bytes"].clone()).collect();
    assert_eq!(bytes, [json!([0xC3]), json!([0xA9])]);
    assert!(lps.iter().all(|e| e["top_logprobs"] == json!([])));
}

#[tokio::test]
async fn oversized_body_is_413_in_openai_shape() {
    let cfg = hearth_server::ServerConfig {
        max_body_bytes: 1024,
        ..Default::default()
    };
    let s = TestServer::start_with(FakeConfig::default(), cfg).await;
    let (status, _, v) = s
        .post("/v1/chat/completions", &chat_body(&"x".repeat(2000)))
        .await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], "request_too_large");
}

#[tokio::test]
async fn hermes_tool_calls_become_openai_tool_calls() {
    let script = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    let s = TestServer::start(scripted(script)).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    let mut body = chat_body("weather?");
    body["tools"] = tools.clone();
    let (status, _, v) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    let c = &v["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls");
    assert_eq!(c["message"]["content"], Value::Null);
    let call = &c["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    // The tools reached the template and the backend.
    let req = s.fake.last_request.lock().unwrap().clone().unwrap();
    assert_eq!(req.constraints.tools, Some(tools.clone()));
    let prompt = String::from_utf8(req.prompt_tokens.iter().map(|&t| t as u8).collect()).unwrap();
    assert!(prompt.starts_with("<|tools|>"), "{prompt}");

    body["stream"] = json!(true);
    let events = s.post_sse("/v1/chat/completions", &body).await;
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "", "tool-call markup is not streamed as content");
    let tc: Vec<&Value> = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"].get("tool_calls").is_some())
        .collect();
    assert_eq!(tc.len(), 1);
    let d = &tc[0]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(d["index"], 0);
    assert_eq!(d["function"]["name"], "get_weather");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );

    // tool_choice "none": the model was told not to call tools; leave the text.
    let mut none = chat_body("weather?");
    none["tools"] = tools.clone();
    none["tool_choice"] = json!("none");
    let (_, _, v) = s.post("/v1/chat/completions", &none).await;
    assert_eq!(v["choices"][0]["message"]["content"], script);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // Without tools in the request the same output is plain content.
    let (_, _, v) = s.post("/v1/chat/completions", &chat_body("weather?")).await;
    assert_eq!(v["choices"][0]["message"]["content"], script);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

fn assert_error_shape(v: &Value) {
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
}

#[tokio::test]
async fn errors_use_the_openai_shape_and_name_the_param() {
    let s = TestServer::start(scripted("x")).await;
    let cases: Vec<(Value, u16, Option<&str>)> = vec![
        (
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
            404,
            Some("model"),
        ),
        (json!({"model": "fake-model"}), 400, Some("messages")),
        (
            json!({"model": "fake-model", "messages": []}),
            400,
            Some("messages"),
        ),
        (
            json!({"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
            400,
            Some("temperature"),
        ),
        (
            json!({"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "temperature": 3}),
            400,
            Some("temperature"),
        ),
        (
            json!({"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "top_p": 1.5}),
            400,
            Some("top_p"),
        ),
        (
            json!({"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "n": 0}),
            400,
            Some("n"),
        ),
        (
            json!({"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
            400,
            Some("max_tokens"),
        ),
        (
            json!({"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}),
            400,
            Some("top_logprobs"),
        ),
        (
            json!({"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"x": 1}}),
            400,
            Some("logit_bias"),
        ),
        (
            json!({"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "stop": 5}),
            400,
            Some("stop"),
        ),
        (
            json!({"model": "fake-model", "messages": [{"role": "bot", "content": "x"}]}),
            400,
            Some("messages[0].role"),
        ),
        (
            json!({"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}}),
            400,
            Some("response_format.type"),
        ),
        (
            json!({"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": true}}),
            400,
            Some("stream_options"),
        ),
    ];
    for (body, status, param) in cases {
        let (got, _, v) = s.post("/v1/chat/completions", &body).await;
        assert_eq!(got, status, "{body} -> {v}");
        assert_error_shape(&v);
        assert_eq!(v["error"]["param"].as_str(), param, "{body} -> {v}");
    }
    let (_, _, v) = s
        .post(
            "/v1/chat/completions",
            &json!({"model": "nope", "messages": []}),
        )
        .await;
    assert_eq!(v["error"]["code"], "model_not_found");

    // Malformed JSON.
    let r = s
        .client
        .post(s.url("/v1/chat/completions"))
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_error_shape(&v);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(
        s.fake.counters.started.load(Ordering::SeqCst),
        0,
        "nothing invalid reached the backend"
    );
}

#[tokio::test]
async fn context_overflow_is_400_naming_both_numbers() {
    let s = TestServer::start(FakeConfig {
        context_length: 64,
        ..FakeConfig::default()
    })
    .await;
    let mut body = chat_body("hi");
    body["max_tokens"] = json!(60);
    let (status, _, v) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 400, "{v}");
    let prompt_len = fake_prompt(&[("user", "hi")]).len();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("64 tokens"), "{msg}");
    assert!(
        msg.contains(&format!("{prompt_len} in the prompt")),
        "{msg}"
    );
    assert!(msg.contains("60 for the completion"), "{msg}");
    assert_eq!(v["error"]["code"], "context_length_exceeded");

    // A prompt longer than the context, without max_tokens.
    let (status, _, v) = s
        .post("/v1/chat/completions", &chat_body(&"x".repeat(100)))
        .await;
    assert_eq!(status, 400, "{v}");
}

#[tokio::test]
async fn full_queue_answers_429_with_retry_after() {
    let cfg = FakeConfig {
        capacity: 1,
        token_delay: Duration::from_millis(20),
        ..FakeConfig::default()
    };
    let s = TestServer::start(cfg).await;
    let mut body = chat_body("hi");
    body["stream"] = json!(true);
    body["max_tokens"] = json!(50);
    let first = s
        .client
        .post(s.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status().as_u16(), 200);
    let (status, headers, v) = s.post("/v1/chat/completions", &chat_body("again")).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_error_shape(&v);
    drop(first);
    // Once the first is gone the slot frees up.
    s.eventually("slot freed", |f| {
        f.counters.active.load(Ordering::SeqCst) == 0
    })
    .await;
    let mut ok = chat_body("again");
    ok["max_tokens"] = json!(2);
    let (status, _, _) = s.post("/v1/chat/completions", &ok).await;
    assert_eq!(status, 200);

    // n > capacity: the started choice is released too.
    let mut two = chat_body("x");
    two["n"] = json!(2);
    let (status, _, _) = s.post("/v1/chat/completions", &two).await;
    assert_eq!(status, 429);
    s.eventually("partial launch released", |f| {
        f.counters.active.load(Ordering::SeqCst) == 0
    })
    .await;
}

#[tokio::test]
async fn sixteen_concurrent_streams() {
    let cfg = FakeConfig {
        token_delay: Duration::from_millis(10),
        eos_after: Some(20),
        ..FakeConfig::default()
    };
    let s = TestServer::start(cfg).await;
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let client = s.client.clone();
        let url = s.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            let body = json!({"model": "fake-model", "messages": [{"role": "user", "content": format!("q{i}")}], "stream": true, "seed": i});
            let text = client.post(url).json(&body).send().await.unwrap().text().await.unwrap();
            let events = sse_data(&text);
            assert_eq!(events.last().unwrap(), "[DONE]");
            let content: String = events[..events.len() - 1]
                .iter()
                .map(|e| serde_json::from_str::<Value>(e).unwrap())
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(String::from))
                .collect();
            (i, content)
        }));
    }
    let started = std::time::Instant::now();
    for t in tasks {
        let (i, content) = t.await.unwrap();
        let prompt = fake_prompt(&[("user", &format!("q{i}"))]);
        assert_eq!(content, fake_words(&prompt, i, 20), "stream {i}");
    }
    // 20 tokens x 10 ms = 200 ms per stream; one after another, 16 would
    // take 3.2 s. Concurrent, they finish in a fraction of that.
    assert!(
        started.elapsed() < Duration::from_millis(1600),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.fake.counters.finished.load(Ordering::SeqCst), 16);
}

#[tokio::test]
async fn client_disconnect_cancels_a_stream() {
    let cfg = FakeConfig {
        token_delay: Duration::from_millis(10),
        ..FakeConfig::default()
    };
    let s = TestServer::start(cfg).await;
    let mut body = chat_body("hi");
    body["stream"] = json!(true);
    body["max_tokens"] = json!(150);
    let resp = s
        .client
        .post(s.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let mut seen = 0;
    while seen < 3 {
        stream.next().await.unwrap().unwrap();
        seen += 1;
    }
    drop(stream);
    s.eventually("cancelled after disconnect", |f| {
        f.counters.cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(s.fake.counters.finished.load(Ordering::SeqCst), 0);
    s.eventually("slot freed", |f| {
        f.counters.active.load(Ordering::SeqCst) == 0
    })
    .await;
    // The cancelled generation is still accounted for in /metrics.
    let (_, metrics) = s.get("/metrics").await;
    assert!(
        metrics.contains("hearth_e2e_request_latency_seconds_count{model=\"fake-model\"} 1\n"),
        "{metrics}"
    );
    let generated: f64 = metrics
        .lines()
        .find(|l| l.starts_with("hearth_generation_tokens_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((1.0..150.0).contains(&generated), "{generated}");
}

#[tokio::test]
async fn client_disconnect_cancels_a_non_streaming_request() {
    let cfg = FakeConfig {
        token_delay: Duration::from_millis(10),
        ..FakeConfig::default()
    };
    let s = TestServer::start(cfg).await;
    let mut body = chat_body("hi");
    body["max_tokens"] = json!(150);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let r = client
        .post(s.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await;
    assert!(r.is_err(), "the client timed out and closed the connection");
    s.eventually("cancelled after disconnect", |f| {
        f.counters.cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(s.fake.counters.finished.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn backend_failure_mid_generation() {
    let cfg = FakeConfig {
        fail_after: Some(2),
        ..scripted("abcdef")
    };
    let s = TestServer::start(cfg).await;
    let (status, _, v) = s.post("/v1/chat/completions", &chat_body("hi")).await;
    assert_eq!(status, 500, "{v}");
    assert_eq!(v["error"]["type"], "server_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("injected failure"));

    let mut body = chat_body("hi");
    body["stream"] = json!(true);
    let events = s.post_sse("/v1/chat/completions", &body).await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("injected failure"),
        "{last}"
    );
}

//! `/v1/completions`, `/v1/models`, `/tokenize`, `/detokenize`, `/health`,
//! `/metrics`, unknown routes and shutdown, over real TCP.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use hearth_server::fake::{FakeConfig, BOS};
use hearth_server::ServerConfig;
use serde_json::{json, Value};

#[tokio::test]
async fn completions_text_prompt() {
    let s = TestServer::start(scripted(" there!")).await;
    let (status, _, v) = s
        .post(
            "/v1/completions",
            &json!({"model": "fake-model", "prompt": "Hello"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], "fake-model");
    let c = &v["choices"][0];
    assert_eq!(c["index"], 0);
    assert_eq!(c["text"], " there!");
    assert_eq!(c["finish_reason"], "stop");
    assert_eq!(c["logprobs"], Value::Null);
    // BOS + 5 bytes: completions prompts get special tokens.
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 6, "completion_tokens": 7, "total_tokens": 13})
    );
    let req = s.fake.last_request.lock().unwrap().clone().unwrap();
    assert_eq!(req.prompt_tokens[0], BOS);
    // OpenAI's default max_tokens for this endpoint.
    assert_eq!(req.max_tokens, 16);
}

#[tokio::test]
async fn completions_token_prompts_batches_and_echo() {
    let s = TestServer::start(scripted("!")).await;
    let hi: Vec<u32> = "Hi".bytes().map(u32::from).collect();
    let (status, _, v) = s
        .post(
            "/v1/completions",
            &json!({"model": "fake-model", "prompt": hi, "echo": true}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["text"], "Hi!");
    assert_eq!(v["usage"]["prompt_tokens"], 2);

    // Two prompts x n=2: indexes prompt * n + choice.
    let (status, _, v) = s
        .post(
            "/v1/completions",
            &json!({"model": "fake-model", "prompt": ["a", "bb"], "n": 2, "echo": true}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let texts: Vec<&str> = v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["a!", "a!", "bb!", "bb!"]);
    let idx: Vec<u64> = v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, [0, 1, 2, 3]);
    // (BOS+1) + (BOS+2) prompt tokens, each prompt counted once.
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 4);
}

#[tokio::test]
async fn completions_logprobs_legacy_shape() {
    let s = TestServer::start(FakeConfig {
        eos_after: Some(3),
        ..FakeConfig::default()
    })
    .await;
    let (status, _, v) = s
        .post(
            "/v1/completions",
            &json!({"model": "fake-model", "prompt": "ab", "logprobs": 2, "echo": true}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let lp = &v["choices"][0]["logprobs"];
    let tokens: Vec<&str> = lp["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    // BOS (renders empty), "a", "b", then 3 generated words.
    assert_eq!(tokens.len(), 6);
    assert_eq!(&tokens[..3], ["", "a", "b"]);
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert_eq!(tokens.concat(), text);
    let token_lps = lp["token_logprobs"].as_array().unwrap();
    assert!(
        token_lps[..3].iter().all(Value::is_null),
        "prompt tokens are not scored"
    );
    assert!(token_lps[3..].iter().all(|x| x.as_f64().unwrap() <= 0.0));
    let top = lp["top_logprobs"].as_array().unwrap();
    assert!(top[..3].iter().all(Value::is_null));
    for (t, tok) in top[3..].iter().zip(&tokens[3..]) {
        assert_eq!(t.as_object().unwrap().len(), 2);
        assert!(
            t.get(*tok).is_some(),
            "the chosen token is among the top ({t})"
        );
    }
    // text_offset: character offsets into the choice's text.
    let offsets: Vec<usize> = lp["text_offset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_u64().unwrap() as usize)
        .collect();
    let mut expect = Vec::new();
    let mut off = 0;
    for t in &tokens {
        expect.push(off);
        off += t.chars().count();
    }
    assert_eq!(offsets, expect);

    let (status, _, v) = s
        .post(
            "/v1/completions",
            &json!({"model": "fake-model", "prompt": "ab", "logprobs": 6}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "logprobs");
}

#[tokio::test]
async fn completions_streaming_with_usage_and_stop() {
    let s = TestServer::start(scripted("one two three")).await;
    let body = json!({
        "model": "fake-model", "prompt": "count:", "stream": true, "echo": true,
        "stop": " three", "stream_options": {"include_usage": true},
    });
    let events = s.post_sse("/v1/completions", &body).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let (usage, chunks) = chunks.split_last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 7);
    assert_eq!(
        usage["usage"]["completion_tokens"],
        "one two three".len() as u64
    );
    for c in chunks {
        assert_eq!(c["object"], "text_completion");
        assert!(c["usage"].is_null());
    }
    let text: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "count:one two");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
}

#[tokio::test]
async fn completions_errors() {
    let s = TestServer::start(FakeConfig {
        context_length: 32,
        ..FakeConfig::default()
    })
    .await;
    let cases = [
        (json!({"model": "fake-model"}), 400, "prompt"),
        (
            json!({"model": "fake-model", "prompt": {"x": 1}}),
            400,
            "prompt",
        ),
        (
            json!({"model": "fake-model", "prompt": "x", "suffix": "y"}),
            400,
            "suffix",
        ),
        (
            json!({"model": "fake-model", "prompt": "x", "best_of": 3}),
            400,
            "best_of",
        ),
        (
            json!({"model": "fake-model", "prompt": "x", "max_tokens": 40}),
            400,
            "prompt",
        ),
        (json!({"model": "other", "prompt": "x"}), 404, "model"),
    ];
    for (body, status, param) in cases {
        let (got, _, v) = s.post("/v1/completions", &body).await;
        assert_eq!(got, status, "{body} -> {v}");
        assert_eq!(v["error"]["param"], param, "{body} -> {v}");
    }
    let (_, _, v) = s
        .post(
            "/v1/completions",
            &json!({"model": "fake-model", "prompt": "x", "max_tokens": 40}),
        )
        .await;
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("32 tokens")
            && msg.contains("2 in the prompt")
            && msg.contains("40 for the completion"),
        "{msg}"
    );
}

#[tokio::test]
async fn models_list_and_get() {
    let s = TestServer::start(FakeConfig::default()).await;
    let (status, body) = s.get("/v1/models").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "list");
    let m = &v["data"][0];
    assert_eq!(m["id"], "fake-model");
    assert_eq!(m["object"], "model");
    assert_eq!(m["owned_by"], "hearth");
    assert_eq!(m["context_length"], 256);
    assert!(m["created"].is_u64());

    let (status, body) = s.get("/v1/models/fake-model").await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), *m);

    let (status, body) = s.get("/v1/models/org/missing").await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("org/missing"));
}

#[tokio::test]
async fn tokenize_and_detokenize_llama_server_bodies() {
    let s = TestServer::start(FakeConfig::default()).await;
    let (status, _, v) = s.post("/tokenize", &json!({"content": "hé"})).await;
    assert_eq!(status, 200, "{v}");
    let expected: Vec<u32> = "hé".bytes().map(u32::from).collect();
    assert_eq!(v["tokens"], json!(expected));
    let (_, _, v) = s
        .post(
            "/tokenize",
            &json!({"content": "hi", "add_special": true, "with_pieces": true}),
        )
        .await;
    assert_eq!(
        v["tokens"],
        json!([{"id": BOS, "piece": ""}, {"id": 104, "piece": "h"}, {"id": 105, "piece": "i"}])
    );
    let (status, _, v) = s.post("/detokenize", &json!({"tokens": expected})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["content"], "hé");

    let (status, _, v) = s.post("/detokenize", &json!({"tokens": [99999]})).await;
    assert_eq!(status, 400, "{v}");
    let (status, _, v) = s
        .post("/tokenize", &json!({"content": "x", "model": "nope"}))
        .await;
    assert_eq!(status, 404, "{v}");
    let (status, _, v) = s.post("/tokenize", &json!({"text": "x"})).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "content");
}

#[tokio::test]
async fn health_and_unknown_routes() {
    let s = TestServer::start(FakeConfig::default()).await;
    let (status, body) = s.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "ok"})
    );

    let (status, body) = s.get("/v1/nothing-here").await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/v1/nothing-here"));

    let (status, body) = s.get("/v1/chat/completions").await;
    assert_eq!(status, 405);
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"]["message"].is_string());
}

#[tokio::test]
async fn metrics_count_requests_tokens_and_latency() {
    let cfg = FakeConfig {
        eos_after: Some(4),
        token_delay: Duration::from_millis(1),
        ..FakeConfig::default()
    };
    let s = TestServer::start(cfg).await;
    for _ in 0..2 {
        let (status, _, _) = s.post("/v1/chat/completions", &chat_body("hi")).await;
        assert_eq!(status, 200);
    }
    let (status, _, _) = s
        .post(
            "/v1/chat/completions",
            &json!({"model": "fake-model", "messages": []}),
        )
        .await;
    assert_eq!(status, 400);
    let r = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();
    let line = |prefix: &str| -> f64 {
        let l = text
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
        l.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(line("hearth_requests_total{endpoint=\"chat_completions\",model=\"fake-model\",status=\"200\"}"), 2.0);
    assert_eq!(line("hearth_requests_total{endpoint=\"chat_completions\",model=\"fake-model\",status=\"400\"}"), 1.0);
    let prompt_len = fake_prompt(&[("user", "hi")]).len() as f64;
    assert_eq!(
        line("hearth_prompt_tokens_total{model=\"fake-model\"}"),
        2.0 * prompt_len
    );
    assert_eq!(
        line("hearth_generation_tokens_total{model=\"fake-model\"}"),
        8.0
    );
    assert_eq!(
        line("hearth_time_to_first_token_seconds_count{model=\"fake-model\"}"),
        2.0
    );
    assert_eq!(
        line("hearth_inter_token_latency_seconds_count{model=\"fake-model\"}"),
        6.0
    );
    assert_eq!(
        line("hearth_e2e_request_latency_seconds_count{model=\"fake-model\"}"),
        2.0
    );
    assert_eq!(line("hearth_requests_running"), 0.0);
    assert!(text.contains("# TYPE hearth_time_to_first_token_seconds histogram"));
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_streams() {
    let cfg = FakeConfig {
        token_delay: Duration::from_millis(5),
        eos_after: Some(30),
        ..FakeConfig::default()
    };
    let server_cfg = ServerConfig {
        drain_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    };
    let mut s = TestServer::start_with(cfg, server_cfg).await;
    let mut body = chat_body("hi");
    body["stream"] = json!(true);
    let resp = s
        .client
        .post(s.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    stream.next().await.unwrap().unwrap();
    s.shutdown();
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    let rest = String::from_utf8(rest).unwrap();
    assert!(
        rest.trim_end().ends_with("data: [DONE]"),
        "the in-flight stream finished: {rest}"
    );
    let handle = std::mem::replace(&mut s.handle, tokio::spawn(async { Ok(()) }));
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(s.fake.counters.finished.load(Ordering::SeqCst), 1);
    // The listener is closed.
    assert!(reqwest::get(s.url("/health")).await.is_err());
}

#[tokio::test]
async fn drain_deadline_cuts_long_streams() {
    let cfg = FakeConfig {
        token_delay: Duration::from_millis(20),
        ..FakeConfig::default()
    };
    let server_cfg = ServerConfig {
        drain_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let mut s = TestServer::start_with(cfg, server_cfg).await;
    let mut body = chat_body("hi");
    body["stream"] = json!(true);
    body["max_tokens"] = json!(200);
    let resp = s
        .client
        .post(s.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    stream.next().await.unwrap().unwrap();
    let t = std::time::Instant::now();
    s.shutdown();
    let handle = std::mem::replace(&mut s.handle, tokio::spawn(async { Ok(()) }));
    tokio::time::timeout(Duration::from_secs(3), handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // The stream was ended under the client (200 tokens x 20 ms would take
    // 4 s), with an error event instead of [DONE].
    let mut rest = Vec::new();
    let read_rest = async {
        while let Some(Ok(chunk)) = stream.next().await {
            rest.extend_from_slice(&chunk);
        }
    };
    tokio::time::timeout(Duration::from_secs(2), read_rest)
        .await
        .expect("stream closed by the server");
    let rest = String::from_utf8_lossy(&rest);
    assert!(!rest.contains("[DONE]"), "{rest}");
    assert!(
        rest.contains("shut down before the generation finished"),
        "an in-band error says why: {rest}"
    );
    s.eventually("generation cancelled", |f| {
        f.counters.cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test]
async fn unhealthy_backend_gives_503() {
    let cfg = FakeConfig {
        unhealthy: Some("still loading".into()),
        ..FakeConfig::default()
    };
    let s = TestServer::start(cfg).await;
    let (status, body) = s.get("/health").await;
    assert_eq!(status, 503);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("still loading"));
}

#[tokio::test]
async fn api_key_is_required_when_configured() {
    let server_cfg = ServerConfig {
        api_key: Some("sekret".into()),
        ..ServerConfig::default()
    };
    let s = TestServer::start_with(scripted("ok"), server_cfg).await;
    let (status, body) = s.get("/v1/models").await;
    assert_eq!(status, 401);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let r = s
        .client
        .get(s.url("/v1/models"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = s
        .client
        .post(s.url("/v1/chat/completions"))
        .bearer_auth("sekret")
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Health probes need no key.
    assert_eq!(s.get("/health").await.0, 200);
}

#[tokio::test]
async fn completions_streamed_logprobs_offsets_run_across_chunks() {
    let s = TestServer::start(FakeConfig {
        eos_after: Some(4),
        ..FakeConfig::default()
    })
    .await;
    let body =
        json!({"model": "fake-model", "prompt": "ab", "stream": true, "logprobs": 1, "echo": true});
    let events = s.post_sse("/v1/completions", &body).await;
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let mut text = String::new();
    let mut tokens = Vec::new();
    let mut offsets = Vec::new();
    for c in &chunks {
        let ch = &c["choices"][0];
        text.push_str(ch["text"].as_str().unwrap());
        if let Some(lp) = ch["logprobs"].as_object() {
            for t in lp["tokens"].as_array().unwrap() {
                tokens.push(t.as_str().unwrap().to_string());
            }
            for o in lp["text_offset"].as_array().unwrap() {
                offsets.push(o.as_u64().unwrap() as usize);
            }
        }
    }
    // The echoed prompt (BOS, "a", "b") and 4 generated words.
    assert_eq!(tokens.len(), 7);
    assert_eq!(tokens.concat(), text);
    let mut off = 0;
    for (t, o) in tokens.iter().zip(&offsets) {
        assert_eq!(*o, off);
        off += t.chars().count();
    }
}

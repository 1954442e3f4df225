//! Upstream routing over real HTTP: a Hearth server whose model id "remote" is served by other
//! OpenAI-compatible servers (more Hearth servers over the fake backend, and a recording
//! server that keeps the bodies it received), with load balancing, the circuit breaker, the
//! fallback model, PII kept on the machine, and the output guardrails on what comes back.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{scripted, TestServer};
use hearth_server::fake::FakeConfig;
use hearth_server::upstream::{BreakerSettings, PiiPolicy, UpstreamSpec, Upstreams};
use hearth_server::ServerConfig;
use serde_json::{json, Value};

fn spec(urls: Vec<String>) -> UpstreamSpec {
    UpstreamSpec {
        id: "remote".into(),
        urls,
        api_key: None,
        api_key_env: None,
        model: Some("fake-model".into()),
        fallback: None,
        pii: PiiPolicy::Allow,
        context_length: Some(256),
        timeout_s: Some(10),
    }
}

fn quiet() -> BreakerSettings {
    // No background health checks: the tests see only what requests do to the breakers.
    BreakerSettings {
        health_interval: Duration::ZERO,
        ..BreakerSettings::default()
    }
}

/// The front server: local model "fake-model" (script `local`), plus the upstream routes.
async fn front(specs: Vec<UpstreamSpec>, local: &str) -> (TestServer, Arc<Upstreams>) {
    let ups = Arc::new(Upstreams::new(specs, &["fake-model".to_string()], quiet()).unwrap());
    let s = TestServer::start_with(
        scripted(local),
        ServerConfig {
            upstreams: Some(ups.clone()),
            ..Default::default()
        },
    )
    .await;
    (s, ups)
}

/// A loopback URL where nothing listens.
async fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/v1")
}

fn chat(content: &str, stream: bool) -> Value {
    json!({"model": "remote", "stream": stream, "max_tokens": 64,
           "messages": [{"role": "user", "content": content}]})
}

fn content_of(v: &Value) -> &str {
    v["choices"][0]["message"]["content"].as_str().unwrap_or("")
}

#[tokio::test]
async fn forwards_plain_and_streamed_requests() {
    let up = TestServer::start(scripted("hello from upstream")).await;
    let (s, _) = front(vec![spec(vec![format!("{}/v1", up.base)])], "local").await;

    let (st, _, v) = s.post("/v1/chat/completions", &chat("hi", false)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(content_of(&v), "hello from upstream");
    assert_eq!(v["model"], "remote", "the id the client asked for");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    // Streamed: the text arrives whole, no usage chunk unless asked, [DONE] last.
    let events = s.post_sse("/v1/chat/completions", &chat("hi", true)).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "hello from upstream");
    assert!(chunks
        .iter()
        .all(|c| c.get("usage").is_none() || c["usage"].is_null()));
    assert!(chunks.iter().all(|c| c["model"] == "remote"));

    // Asked for: the upstream's usage chunk comes through.
    let mut body = chat("hi", true);
    body["stream_options"] = json!({"include_usage": true});
    let events = s.post_sse("/v1/chat/completions", &body).await;
    let usage: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter(|c| c["usage"].is_object())
        .collect();
    assert_eq!(usage.len(), 1);
    assert_eq!(
        usage[0]["usage"]["completion_tokens"].as_u64(),
        Some("hello from upstream".len() as u64),
        "the fake backend makes one token per byte"
    );

    // Completions too.
    let (st, _, v) = s
        .post(
            "/v1/completions",
            &json!({"model": "remote", "prompt": "say", "max_tokens": 64}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["choices"][0]["text"], "hello from upstream");

    // Listed with the local model.
    let (_, models) = s.get("/v1/models").await;
    let models: Value = serde_json::from_str(&models).unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["fake-model", "remote"]);
    let (st, one) = s.get("/v1/models/remote").await;
    assert_eq!(st, 200);
    assert!(one.contains("\"owned_by\":\"upstream\""), "{one}");
    // A local model still runs locally.
    let (st, _, v) = s
        .post(
            "/v1/chat/completions",
            &json!({"model": "fake-model", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(content_of(&v), "local");
    assert_eq!(up.fake.counters.started.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn round_robin_over_the_targets() {
    let a = TestServer::start(scripted("a")).await;
    let b = TestServer::start(scripted("b")).await;
    let (s, _) = front(
        vec![spec(vec![
            format!("{}/v1", a.base),
            format!("{}/v1", b.base),
        ])],
        "local",
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..6 {
        let (st, _, v) = s.post("/v1/chat/completions", &chat("hi", false)).await;
        assert_eq!(st, 200);
        got.push(content_of(&v).to_string());
    }
    assert_eq!(got.iter().filter(|t| *t == "a").count(), 3, "{got:?}");
    assert_eq!(got.iter().filter(|t| *t == "b").count(), 3, "{got:?}");
}

#[tokio::test]
async fn a_dead_target_is_skipped_and_its_breaker_opens() {
    let a = TestServer::start(scripted("alive")).await;
    let dead = dead_url().await;
    let (s, ups) = front(vec![spec(vec![dead, format!("{}/v1", a.base)])], "local").await;
    for i in 0..8 {
        let (st, _, v) = s.post("/v1/chat/completions", &chat("hi", false)).await;
        assert_eq!(st, 200, "request {i}: {v}");
        assert_eq!(content_of(&v), "alive");
    }
    // Round robin sent every other request to the dead one first: 3 failures open it.
    assert_eq!(ups.target_states("remote"), ["open", "closed"]);
    let (_, metrics) = s.get("/metrics").await;
    assert!(
        metrics.contains("hearth_upstream_up{model=\"remote\",target=\"0\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains(
        "hearth_upstream_requests_total{model=\"remote\",target=\"0\",outcome=\"failed\"} 3"
    ));
    assert!(metrics.contains(
        "hearth_upstream_requests_total{model=\"remote\",target=\"1\",outcome=\"ok\"} 8"
    ));
}

#[tokio::test]
async fn every_target_down_goes_to_the_fallback_or_answers_502() {
    let dead = dead_url().await;
    let mut with_fallback = spec(vec![dead.clone()]);
    with_fallback.fallback = Some("fake-model".into());
    let mut without = spec(vec![dead]);
    without.id = "remote-2".into();
    let (s, _) = front(vec![with_fallback, without], "the local answer").await;

    let (st, h, v) = s.post("/v1/chat/completions", &chat("hi", false)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(content_of(&v), "the local answer");
    assert_eq!(h["x-hearth-fallback"], "fake-model");
    assert_eq!(s.fake.counters.started.load(Ordering::SeqCst), 1);

    // Streamed requests fall back too.
    let events = s.post_sse("/v1/chat/completions", &chat("hi", true)).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    let mut body = chat("hi", false);
    body["model"] = json!("remote-2");
    let (st, h, v) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(st, 502, "{v}");
    assert_eq!(v["error"]["code"], "upstream_unavailable");
    assert_eq!(v["error"]["type"], "server_error");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("remote-2") && msg.contains("cannot connect"),
        "{msg}"
    );
    assert!(h.contains_key("retry-after"));
}

/// A stand-in upstream that records the bodies posted to `path` and answers `answer` to each.
async fn recording(path: &str, answer: Value) -> (String, Arc<Mutex<Vec<Value>>>) {
    use axum::routing::post;
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        path,
        post(move |axum::Json(body): axum::Json<Value>| {
            let (seen, answer) = (s2.clone(), answer.clone());
            async move {
                seen.lock().unwrap().push(body);
                axum::Json(answer)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), seen)
}

/// A stand-in upstream that records the bodies it gets and answers a fixed completion.
async fn recording_upstream(reply: &'static str) -> (String, Arc<Mutex<Vec<Value>>>) {
    recording(
        "/v1/chat/completions",
        json!({
            "id": "chatcmpl-x", "object": "chat.completion", "created": 0,
            "model": "upstream-name",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": reply}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        }),
    )
    .await
}

/// A valid 18-digit PRC resident ID (ISO 7064 MOD 11-2 check digit), computed here.
fn cn_id(first17: &str) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17
        .chars()
        .zip(W)
        .map(|(c, w)| c.to_digit(10).unwrap() * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{first17}{check}")
}

#[tokio::test]
async fn pii_is_redacted_or_blocked_before_it_leaves() {
    let (url, seen) = recording_upstream("ok").await;
    let id = cn_id("11010519491231002");
    let mut redact = spec(vec![url.clone()]);
    redact.pii = PiiPolicy::Redact;
    redact.model = Some("cloud-model".into());
    let mut block = spec(vec![url]);
    block.id = "remote-strict".into();
    block.pii = PiiPolicy::Block;
    let (s, _) = front(vec![redact, block], "local").await;

    let text = format!("My ID is {id}, call me on 13812345678.");
    let (st, _, v) = s.post("/v1/chat/completions", &chat(&text, false)).await;
    assert_eq!(st, 200, "{v}");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let sent = seen[0]["messages"][0]["content"].as_str().unwrap();
        assert!(
            !sent.contains(&id) && !sent.contains("13812345678"),
            "{sent}"
        );
        assert!(sent.starts_with("My ID is ["), "{sent}");
        assert_eq!(
            seen[0]["model"], "cloud-model",
            "the upstream's own model name"
        );
    }
    assert_eq!(v["model"], "remote");
    assert_eq!(v["usage"]["prompt_tokens"], 11);

    // Content parts are texts too.
    let parts = json!({"model": "remote-strict", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hello"}, {"type": "text", "text": format!("id {id}")}]}]});
    let (st, _, v) = s.post("/v1/chat/completions", &parts).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "content_filter");
    assert_eq!(v["error"]["param"], "prompt");
    assert!(
        !v.to_string().contains(&id),
        "the error never echoes the text"
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "nothing was sent");
}

#[tokio::test]
async fn upstream_refusals_pass_through_and_keep_the_breaker_closed() {
    let up = TestServer::start(scripted("x")).await;
    let (s, ups) = front(vec![spec(vec![format!("{}/v1", up.base)])], "local").await;
    for _ in 0..4 {
        let mut body = chat("hi", false);
        body["temperature"] = json!(9);
        let (st, _, v) = s.post("/v1/chat/completions", &body).await;
        assert_eq!(st, 400, "{v}");
        assert_eq!(
            v["error"]["param"], "temperature",
            "the upstream's own error"
        );
    }
    assert_eq!(ups.target_states("remote"), ["closed"]);
}

#[tokio::test]
async fn a_client_that_leaves_cancels_the_upstream_generation() {
    let up = TestServer::start(FakeConfig {
        token_delay: Duration::from_millis(20),
        ..FakeConfig::default()
    })
    .await;
    let (s, _) = front(vec![spec(vec![format!("{}/v1", up.base)])], "local").await;
    let mut body = chat("hi", true);
    body["max_tokens"] = json!(200);
    let r = s
        .client
        .post(s.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    use futures::StreamExt as _;
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(stream);
    up.eventually("the upstream's generation cancelled", |f| {
        f.counters.cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[test]
fn bad_specs_name_the_route_and_the_problem() {
    let local = ["fake-model".to_string()];
    let err = |s: UpstreamSpec| {
        Upstreams::new(vec![s], &local, quiet())
            .unwrap_err()
            .to_string()
    };
    let mut s = spec(vec![]);
    assert!(err(s.clone()).contains("`urls` is empty"));
    s.urls = vec!["ftp://x".into()];
    assert!(err(s.clone()).contains("not an http(s) URL"));
    s.urls = vec!["http://127.0.0.1:1/v1".into()];
    s.id = "fake-model".into();
    assert!(err(s.clone()).contains("a local model has this id"));
    s.id = "remote".into();
    s.fallback = Some("nowhere".into());
    assert!(err(s.clone()).contains("no local model or upstream is called \"nowhere\""));
    s.fallback = None;
    s.api_key_env = Some("HEARTH_TEST_SURELY_UNSET_VAR".into());
    let e = err(s.clone());
    assert!(e.starts_with("upstream \"remote\"") && e.contains("HEARTH_TEST_SURELY_UNSET_VAR"));
    s.api_key_env = None;
    s.api_key = Some("sk-secret".into());
    assert!(
        !format!("{s:?}").contains("sk-secret"),
        "Debug never shows the key"
    );
}

#[tokio::test]
async fn output_guardrails_apply_to_what_comes_back() {
    let id = cn_id("11010519491231002");
    let reply: &'static str = Box::leak(format!("your id is {id}.").into_boxed_str());
    let (url, _) = recording_upstream(reply).await;
    // A Hearth upstream streams it one byte per chunk: the ID is split across 18 chunks.
    let streamer = TestServer::start(scripted(reply)).await;
    let mut streamed = spec(vec![format!("{}/v1", streamer.base)]);
    streamed.id = "remote-stream".into();
    let ups = Arc::new(
        Upstreams::new(
            vec![spec(vec![url]), streamed],
            &["fake-model".into()],
            quiet(),
        )
        .unwrap(),
    );
    // A policy that redacts resident IDs in output (the default one only logs them).
    let dir =
        std::env::temp_dir().join(format!("hearth-upstream-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("guardrails.toml");
    std::fs::write(
        &policy,
        "[[rule]]\nid = \"id-out\"\nkind = \"pii:cn_id\"\naction = \"redact\"\napplies_to = \"output\"\n",
    )
    .unwrap();
    let s = TestServer::start_with(
        FakeConfig::default(),
        ServerConfig {
            upstreams: Some(ups),
            guardrails: Some(Arc::new(
                hearth_server::guard::Guardrails::from_file(&policy).unwrap(),
            )),
            ..Default::default()
        },
    )
    .await;
    let (st, _, v) = s
        .post("/v1/chat/completions", &chat("what is my id?", false))
        .await;
    assert_eq!(st, 200, "{v}");
    let content = content_of(&v);
    assert!(!content.contains(&id), "{content}");
    assert!(content.starts_with("your id is ["), "{content}");

    let mut body = chat("what is my id?", true);
    body["model"] = json!("remote-stream");
    let events = s.post_sse("/v1/chat/completions", &body).await;
    let text: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(!text.contains(&id), "{text}");
    assert!(
        text.starts_with("your id is [") && text.ends_with("]."),
        "{text}"
    );
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn keys_limits_and_audit_cover_upstream_models() {
    use common::memstore::{principal, MemStore};
    use hearth_server::gateway::{Gateway, Role};
    let up = TestServer::start(scripted("from upstream")).await;
    let mut flaky = spec(vec![dead_url().await]);
    flaky.id = "flaky".into();
    flaky.fallback = Some("fake-model".into());
    let ups = Arc::new(
        Upstreams::new(
            vec![spec(vec![format!("{}/v1", up.base)]), flaky],
            &["fake-model".into()],
            quiet(),
        )
        .unwrap(),
    );
    let store = Arc::new(MemStore::default());
    {
        let mut k = store.keys.lock().unwrap();
        let mut narrow = principal("narrow", Role::User);
        narrow.models = Some(vec!["remote".into(), "flaky".into()]);
        k.insert("narrow-key".into(), narrow);
        let mut limited = principal("limited", Role::User);
        limited.key_limits.rpm = Some(3);
        k.insert("limited-key".into(), limited);
    }
    let gw = Gateway {
        auth_required: true,
        ..Gateway::without_store(None)
    };
    let gw = Gateway {
        store: Some(store.clone()),
        ..gw
    };
    let s = TestServer::start_with(
        scripted("local"),
        ServerConfig {
            gateway: Some(Arc::new(gw)),
            upstreams: Some(ups),
            ..Default::default()
        },
    )
    .await;
    let call = |key: &'static str, model: &'static str| {
        let s = &s;
        async move {
            let mut body = chat("hi", false);
            body["model"] = json!(model);
            let r = s
                .client
                .post(s.url("/v1/chat/completions"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap())
        }
    };
    // The allow-list is checked on the upstream id, and on the fallback actually dispatched.
    assert_eq!(call("narrow-key", "remote").await.0, 200);
    let (st, v) = call("narrow-key", "fake-model").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("model_not_allowed"))
    );
    let (st, v) = call("narrow-key", "flaky").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("model_not_allowed")),
        "{v}"
    );
    // rpm 3: a request that fell back to the local model counts once.
    for i in 0..3 {
        let (st, v) = call("limited-key", "flaky").await;
        assert_eq!(st, 200, "request {i}: {v}");
        assert_eq!(content_of(&v), "local");
    }
    let (st, v) = call("limited-key", "remote").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (429, Some("rate_limit_exceeded"))
    );

    // The audit has the upstream's own token counts for the forwarded request.
    let mut audit = Vec::new();
    for _ in 0..100 {
        audit = store.audit.lock().unwrap().clone();
        if audit.len() >= 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fwd = audit
        .iter()
        .find(|e| e.model.as_deref() == Some("remote") && e.status == 200)
        .expect("an audit record of the forwarded request");
    assert_eq!(fwd.completion_tokens, "from upstream".len() as u64);
    assert!(fwd.prompt_tokens > 0);
    let fb: Vec<_> = audit
        .iter()
        .filter(|e| e.key_id.as_deref() == Some("limited") && e.status == 200)
        .collect();
    assert_eq!(fb.len(), 3);
    assert!(fb.iter().all(|e| e.model.as_deref() == Some("fake-model")));
}

// ---- /v1/responses, and the saturation fallback ----

use common::memstore::{principal, MemStore};
use hearth_server::gateway::{AuditEntry, Gateway, Role};

/// A front server whose gateway keeps its audit in memory; requests use key `k` (with an rpm
/// limit when given).
async fn audited(
    ups: Arc<Upstreams>,
    local: FakeConfig,
    rpm: Option<u64>,
) -> (TestServer, Arc<MemStore>) {
    let store = Arc::new(MemStore::default());
    let mut p = principal("k", Role::User);
    p.key_limits.rpm = rpm;
    store.keys.lock().unwrap().insert("k".into(), p);
    let gw = Gateway {
        auth_required: true,
        store: Some(store.clone()),
        ..Gateway::without_store(None)
    };
    let s = TestServer::start_with(
        local,
        ServerConfig {
            gateway: Some(Arc::new(gw)),
            upstreams: Some(ups),
            ..Default::default()
        },
    )
    .await;
    (s, store)
}

/// POST with key `k`: status, headers, body text.
async fn call(
    s: &TestServer,
    path: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    let r = s
        .client
        .post(s.url(path))
        .bearer_auth("k")
        .json(body)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    let h = r.headers().clone();
    (st, h, r.text().await.unwrap())
}

/// The audit once it has `n` records (the writer is asynchronous).
async fn audit_of(store: &MemStore, n: usize) -> Vec<AuditEntry> {
    for _ in 0..300 {
        let a = store.audit.lock().unwrap().clone();
        if a.len() >= n {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the audit never had {n} records");
}

fn responses(input: Value, stream: bool) -> Value {
    json!({"model": "remote", "stream": stream, "max_output_tokens": 64, "input": input})
}

/// The concatenated text of a Responses object's `output_text` parts.
fn output_text(r: &Value) -> String {
    r["output"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
        .filter(|p| p["type"] == "output_text")
        .filter_map(|p| p["text"].as_str().map(str::to_owned))
        .collect()
}

/// The parsed events of a Responses stream.
fn events_of(text: &str) -> Vec<Value> {
    common::sse_data(text)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

fn deltas_of(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect()
}

#[tokio::test]
async fn responses_are_forwarded_and_billed_what_the_upstream_counted() {
    let up = TestServer::start(scripted("hello from upstream")).await;
    let ups = Arc::new(
        Upstreams::new(
            vec![spec(vec![format!("{}/v1", up.base)])],
            &["fake-model".into()],
            quiet(),
        )
        .unwrap(),
    );
    let (s, store) = audited(ups, scripted("local"), None).await;

    let (st, _, text) = call(&s, "/v1/responses", &responses(json!("hi"), false)).await;
    assert_eq!(st, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["model"], "remote", "the id the client asked for");
    assert_eq!(output_text(&v), "hello from upstream");
    let input_tokens = v["usage"]["input_tokens"].as_u64().unwrap();
    assert_eq!(v["usage"]["output_tokens"], "hello from upstream".len());
    let a = audit_of(&store, 1).await;
    assert_eq!(a[0].model.as_deref(), Some("remote"));
    assert_eq!(a[0].status, 200);
    assert_eq!(
        (a[0].prompt_tokens, a[0].completion_tokens),
        (input_tokens, "hello from upstream".len() as u64),
        "the upstream's usage, not the estimate"
    );

    // Streamed: typed events, renumbered, the model relabelled, usage from response.completed.
    let body = responses(
        json!([{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]),
        true,
    );
    let (st, h, text) = call(&s, "/v1/responses", &body).await;
    assert_eq!(st, 200, "{text}");
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(
        text.contains("event: response.output_text.delta\n"),
        "{text}"
    );
    let events = events_of(&text);
    assert_eq!(events[0]["type"], "response.created");
    assert_eq!(events[0]["response"]["model"], "remote");
    assert_eq!(deltas_of(&events), "hello from upstream");
    let seq: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seq, (0..events.len() as u64).collect::<Vec<_>>());
    let done = events.last().unwrap();
    assert_eq!(done["type"], "response.completed");
    assert_eq!(done["response"]["model"], "remote");
    assert_eq!(output_text(&done["response"]), "hello from upstream");
    let input_tokens = done["response"]["usage"]["input_tokens"].as_u64().unwrap();
    let a = audit_of(&store, 2).await;
    assert_eq!(
        (a[1].prompt_tokens, a[1].completion_tokens),
        (input_tokens, "hello from upstream".len() as u64)
    );
    assert_eq!(a[1].model.as_deref(), Some("remote"));
    assert_eq!(up.fake.counters.started.load(Ordering::SeqCst), 2);
    assert_eq!(s.fake.counters.started.load(Ordering::SeqCst), 0);
}

/// A stand-in Responses upstream that records the bodies it gets and answers `reply`.
async fn recording_responses(reply: &'static str) -> (String, Arc<Mutex<Vec<Value>>>) {
    recording(
        "/v1/responses",
        json!({
            "id": "resp_x", "object": "response", "created_at": 0,
            "model": "upstream-name", "status": "completed",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": [], "content": []},
                {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                 "content": [{"type": "output_text", "text": reply, "annotations": []}]}],
            "usage": {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}
        }),
    )
    .await
}

#[tokio::test]
async fn responses_pii_is_redacted_or_blocked_before_it_leaves() {
    let (url, seen) = recording_responses("ok").await;
    let id = cn_id("11010519491231002");
    let mut redact = spec(vec![url.clone()]);
    redact.pii = PiiPolicy::Redact;
    let mut block = spec(vec![url]);
    block.id = "remote-strict".into();
    block.pii = PiiPolicy::Block;
    let ups =
        Arc::new(Upstreams::new(vec![redact, block], &["fake-model".into()], quiet()).unwrap());
    let (s, store) = audited(ups, scripted("local"), None).await;

    let mut body = responses(
        json!([
            {"role": "user", "content": [{"type": "input_text", "text": format!("My ID is {id}.")}]},
            {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "phone 13812345678"},
            {"role": "user", "content": "and mail me at someone@example.com"},
        ]),
        false,
    );
    body["instructions"] = json!(format!("The user's ID is {id}."));
    let (st, _, text) = call(&s, "/v1/responses", &body).await;
    assert_eq!(st, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["model"], "remote");
    assert_eq!(output_text(&v), "ok");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let sent = seen[0].to_string();
        for secret in [id.as_str(), "13812345678", "someone@example.com"] {
            assert!(!sent.contains(secret), "{secret} left: {sent}");
        }
        assert_eq!(
            seen[0]["model"], "fake-model",
            "the upstream's own model name"
        );
        assert!(seen[0]["instructions"]
            .as_str()
            .unwrap()
            .starts_with("The user's ID is ["));
        assert!(seen[0]["input"][0]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("My ID is ["));
        assert_eq!(
            seen[0]["input"][1]["name"], "lookup",
            "other items go as they are"
        );
    }
    let a = audit_of(&store, 1).await;
    assert_eq!((a[0].prompt_tokens, a[0].completion_tokens), (11, 7));

    // A string input, on the blocking route: refused, nothing sent.
    let mut body = responses(json!(format!("id {id}")), false);
    body["model"] = json!("remote-strict");
    let (st, _, text) = call(&s, "/v1/responses", &body).await;
    assert_eq!(st, 400, "{text}");
    assert!(
        text.contains("content_filter") && !text.contains(&id),
        "{text}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "nothing was sent");
}

#[tokio::test]
async fn responses_fall_back_to_the_local_responses_handler() {
    let mut route = spec(vec![dead_url().await]);
    route.fallback = Some("fake-model".into());
    let (s, _) = front(vec![route], "the local answer").await;

    let (st, h, v) = s
        .post("/v1/responses", &responses(json!("hi"), false))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(h["x-hearth-fallback"], "fake-model");
    assert_eq!(v["object"], "response");
    assert_eq!(v["model"], "fake-model");
    assert_eq!(output_text(&v), "the local answer");

    let events = s
        .post_sse("/v1/responses", &responses(json!("hi"), true))
        .await;
    let events: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(deltas_of(&events), "the local answer");
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    assert_eq!(s.fake.counters.started.load(Ordering::SeqCst), 2);
}

/// A front server with an output policy on resident IDs (`action` redact or block).
async fn guarded_front(ups: Vec<UpstreamSpec>, action: &str) -> TestServer {
    let ups = Arc::new(Upstreams::new(ups, &["fake-model".into()], quiet()).unwrap());
    let dir =
        std::env::temp_dir().join(format!("hearth-upstream-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("guardrails.toml");
    std::fs::write(
        &policy,
        format!("[[rule]]\nid = \"id-out\"\nkind = \"pii:cn_id\"\naction = \"{action}\"\napplies_to = \"output\"\n"),
    )
    .unwrap();
    TestServer::start_with(
        FakeConfig::default(),
        ServerConfig {
            upstreams: Some(ups),
            guardrails: Some(Arc::new(
                hearth_server::guard::Guardrails::from_file(&policy).unwrap(),
            )),
            ..Default::default()
        },
    )
    .await
}

#[tokio::test]
async fn responses_output_guardrails_apply_to_what_comes_back() {
    let id = cn_id("11010519491231002");
    let reply: &'static str = Box::leak(format!("your id is {id}.").into_boxed_str());
    let (url, _) = recording_responses(reply).await;
    // A Hearth upstream streams it one byte per delta: the ID is split across 18 of them.
    let streamer = TestServer::start(scripted(reply)).await;
    let mut streamed = spec(vec![format!("{}/v1", streamer.base)]);
    streamed.id = "remote-stream".into();
    let s = guarded_front(vec![spec(vec![url]), streamed.clone()], "redact").await;

    let (st, _, v) = s
        .post("/v1/responses", &responses(json!("my id?"), false))
        .await;
    assert_eq!(st, 200, "{v}");
    let text = output_text(&v);
    assert!(
        text.starts_with("your id is [") && !text.contains(&id),
        "{text}"
    );

    let mut body = responses(json!("my id?"), true);
    body["model"] = json!("remote-stream");
    let events = s.post_sse("/v1/responses", &body).await;
    let events: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text = deltas_of(&events);
    assert!(!text.contains(&id), "{text}");
    assert!(
        text.starts_with("your id is [") && text.ends_with("]."),
        "{text}"
    );
    // The closing events carry the text as sent, not the upstream's.
    for e in &events {
        assert!(!e.to_string().contains(&id), "{e}");
    }
    let done = events
        .iter()
        .find(|e| e["type"] == "response.output_text.done")
        .unwrap();
    assert_eq!(done["text"], text.as_str());
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    assert_eq!(output_text(&last["response"]), text);
    let seq: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seq, (0..events.len() as u64).collect::<Vec<_>>());

    // A blocking rule ends the stream as incomplete (content_filter), before the ID.
    let s = guarded_front(vec![streamed], "block").await;
    let events = s.post_sse("/v1/responses", &body).await;
    let events: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text = deltas_of(&events);
    assert!(!text.contains(&id[..6]), "{text}");
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.incomplete", "{last}");
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "content_filter"
    );
    assert_eq!(last["response"]["model"], "remote-stream");
    assert_eq!(output_text(&last["response"]), text);
}

#[tokio::test]
async fn a_route_whose_targets_all_answer_429_uses_its_fallback() {
    // Hearth upstreams whose queues are full: every request answers 429 queue_full.
    let full = || FakeConfig {
        capacity: 0,
        ..scripted("never")
    };
    let a = TestServer::start(full()).await;
    let b = TestServer::start(full()).await;
    let mut route = spec(vec![format!("{}/v1", a.base), format!("{}/v1", b.base)]);
    route.fallback = Some("fake-model".into());
    let (s, ups) = front(vec![route], "the local answer").await;
    for _ in 0..4 {
        let (st, h, v) = s.post("/v1/chat/completions", &chat("hi", false)).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(content_of(&v), "the local answer");
        assert_eq!(h["x-hearth-fallback"], "fake-model");
    }
    let (st, h, v) = s
        .post("/v1/responses", &responses(json!("hi"), false))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(output_text(&v), "the local answer");
    assert_eq!(h["x-hearth-fallback"], "fake-model");
    // Saturated is not down: the breakers stay closed.
    assert_eq!(ups.target_states("remote"), ["closed", "closed"]);
    let (_, metrics) = s.get("/metrics").await;
    assert!(
        metrics.contains("hearth_upstream_fallbacks_total 5"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_local_model_with_a_full_queue_uses_its_fallback() {
    let up = TestServer::start(scripted("from upstream")).await;
    let ups = Arc::new(
        Upstreams::new(
            vec![spec(vec![format!("{}/v1", up.base)])],
            &["fake-model".into()],
            quiet(),
        )
        .unwrap()
        .with_local_fallbacks(
            vec![("fake-model".into(), "remote".into())],
            &["fake-model".into()],
        )
        .unwrap(),
    );
    // The local model's queue is always full; the key may make 3 requests a minute.
    let local = FakeConfig {
        capacity: 0,
        ..scripted("local")
    };
    let (s, store) = audited(ups, local, Some(3)).await;
    let mut body = chat("hi", false);
    body["model"] = json!("fake-model");
    let (st, h, text) = call(&s, "/v1/chat/completions", &body).await;
    assert_eq!(st, 200, "{text}");
    assert_eq!(h["x-hearth-fallback"], "remote");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(content_of(&v), "from upstream");
    assert_eq!(v["model"], "remote");

    let body = json!({"model": "fake-model", "input": "hi", "stream": true});
    let (st, h, text) = call(&s, "/v1/responses", &body).await;
    assert_eq!(st, 200, "{text}");
    assert_eq!(h["x-hearth-fallback"], "remote");
    let events = events_of(&text);
    assert_eq!(deltas_of(&events), "from upstream");
    assert_eq!(events.last().unwrap()["type"], "response.completed");

    let body = json!({"model": "fake-model", "input": "hi"});
    let (st, _, text) = call(&s, "/v1/responses", &body).await;
    assert_eq!(st, 200, "{text}");
    // Admitted once per request: the fourth is over the rpm limit, and that 429 (unlike a
    // full queue's) is the answer.
    let (st, h, text) = call(&s, "/v1/responses", &body).await;
    assert_eq!(st, 429, "{text}");
    assert!(text.contains("rate_limit_exceeded"), "{text}");
    assert!(h.get("x-hearth-fallback").is_none());
    assert_eq!(up.fake.counters.started.load(Ordering::SeqCst), 3);
    let a = audit_of(&store, 4).await;
    let ok: Vec<_> = a.iter().filter(|e| e.status == 200).collect();
    assert_eq!(ok.len(), 3);
    assert!(ok.iter().all(|e| e.model.as_deref() == Some("remote")));
    assert!(ok
        .iter()
        .all(|e| e.completion_tokens == "from upstream".len() as u64));
}

#[tokio::test]
async fn a_full_local_model_without_a_fallback_still_answers_429() {
    let ups = Upstreams::new(
        vec![spec(vec![dead_url().await])],
        &["fake-model".into()],
        quiet(),
    );
    let s = TestServer::start_with(
        FakeConfig {
            capacity: 0,
            ..FakeConfig::default()
        },
        ServerConfig {
            upstreams: Some(Arc::new(ups.unwrap())),
            ..Default::default()
        },
    )
    .await;
    let (st, h, v) = s
        .post(
            "/v1/responses",
            &json!({"model": "fake-model", "input": "hi"}),
        )
        .await;
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["error"]["code"], "queue_full");
    assert!(h.get("x-hearth-fallback").is_none());
}

#[test]
fn bad_local_fallbacks_name_the_model_and_the_problem() {
    let local = ["fake-model".to_string(), "other".to_string()];
    let ups = || {
        Upstreams::new(
            vec![spec(vec!["http://127.0.0.1:1/v1".into()])],
            &local,
            quiet(),
        )
        .unwrap()
    };
    let err = |id: &str, f: &str| {
        ups()
            .with_local_fallbacks(vec![(id.into(), f.into())], &local)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("fake-model", "nowhere"),
        "model \"fake-model\": `fallback`: no local model or upstream is called \"nowhere\""
    );
    assert!(err("fake-model", "fake-model").contains("names the model itself"));
    assert!(err("remote", "fake-model").contains("not served"));
    for f in ["other", "remote"] {
        assert!(ups()
            .with_local_fallbacks(vec![("fake-model".into(), f.into())], &local)
            .is_ok());
    }
}

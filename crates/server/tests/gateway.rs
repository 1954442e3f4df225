//! The gateway over real HTTP: the authorization matrix, exact limits, rate-limit headers and
//! the audit entries, with an in-memory key store (the SQL store has its own tests in
//! hearth-gateway; the binary with both is tested from Python).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::memstore::{principal, MemStore};
use common::TestServer;
use futures::StreamExt as _;
use hearth_gateway::limits::Limits;
use hearth_server::fake::FakeConfig;
use hearth_server::gateway::{Gateway, Role};
use hearth_server::ServerConfig;
use serde_json::{json, Value};

async fn start(store: Arc<MemStore>, fake: FakeConfig) -> TestServer {
    let gw = Gateway {
        auth_required: true,
        ..Gateway::without_store(None)
    };
    let gw = Gateway {
        store: Some(store),
        ..gw
    };
    TestServer::start_with(
        fake,
        ServerConfig {
            gateway: Some(Arc::new(gw)),
            ..Default::default()
        },
    )
    .await
}

fn chat(max_tokens: u64, stream: bool) -> Value {
    json!({"model": "fake-model", "max_tokens": max_tokens, "stream": stream,
           "messages": [{"role": "user", "content": "hi"}]})
}

async fn call(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut rb = s.client.request(method, s.url(path));
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    if let Some(b) = body {
        rb = rb.json(b);
    }
    let r = rb.send().await.unwrap();
    let st = r.status().as_u16();
    let h = r.headers().clone();
    (st, h, r.text().await.unwrap())
}

fn keys() -> Arc<MemStore> {
    let store = MemStore::default();
    {
        let mut k = store.keys.lock().unwrap();
        k.insert("admin-key".into(), principal("admin", Role::Admin));
        k.insert("user-key".into(), principal("user", Role::User));
        k.insert("auditor-key".into(), principal("auditor", Role::Auditor));
        let mut narrow = principal("narrow", Role::User);
        narrow.models = Some(vec!["some-other-model".into()]);
        k.insert("narrow-key".into(), narrow);
    }
    Arc::new(store)
}

#[tokio::test]
async fn authorization_matrix() {
    use reqwest::Method as M;
    let store = keys();
    let s = start(store.clone(), FakeConfig::default()).await;
    let body = chat(2, false);
    // (method, path, body) for every kind of route.
    let routes: Vec<(M, &str, Option<&Value>)> = vec![
        (M::POST, "/v1/chat/completions", Some(&body)),
        (M::GET, "/v1/models", None),
        (M::GET, "/metrics", None),
        (M::GET, "/admin/v1/keys", None),
        (M::GET, "/ADMIN//v1/keys/", None),
        (M::GET, "/%61dmin/v1/keys", None),
        (M::HEAD, "/admin/v1/keys", None),
        (M::DELETE, "/admin/v1/audit", None),
    ];
    // Expected status per (route index, caller). For the admin: 404/405 = allowed through to
    // routing (this server has no database, so the admin API answers 404; odd spellings match
    // no route; DELETE is not a method of /admin/v1/audit).
    let callers: [(Option<&str>, [u16; 8]); 6] = [
        (None, [401, 401, 401, 401, 401, 401, 401, 401]),
        (Some("not-a-key"), [401, 401, 401, 401, 401, 401, 401, 401]),
        (Some("user-key"), [200, 200, 403, 403, 403, 403, 403, 403]),
        (
            Some("auditor-key"),
            [403, 403, 200, 403, 403, 403, 403, 403],
        ),
        (Some("narrow-key"), [403, 200, 403, 403, 403, 403, 403, 403]),
        (Some("admin-key"), [200, 200, 200, 404, 404, 404, 404, 405]),
    ];
    for (key, expect) in callers {
        for ((method, path, b), want) in routes.iter().zip(expect) {
            let (st, _, text) = call(&s, method.clone(), path, key, *b).await;
            assert_eq!(st, want, "{method} {path} as {key:?}: {text}");
            if st == 401 && *method != M::HEAD {
                let v: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["error"]["code"], "invalid_api_key");
                // Never echoes the key.
                assert!(!text.contains("not-a-key"));
            }
        }
    }
    // The narrow key names the model it may not use.
    let (_, _, text) = call(
        &s,
        M::POST,
        "/v1/chat/completions",
        Some("narrow-key"),
        Some(&body),
    )
    .await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "model_not_allowed");
    // /health stays open.
    let (st, _, _) = call(&s, M::GET, "/health", None, None).await;
    assert_eq!(st, 200);
    // x-api-key works as well as Bearer.
    let r = s
        .client
        .get(s.url("/v1/models"))
        .header("x-api-key", "user-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // A revoked key (removed from the store) fails on the very next request.
    store.keys.lock().unwrap().remove("user-key");
    let (st, _, _) = call(&s, M::GET, "/v1/models", Some("user-key"), None).await;
    assert_eq!(st, 401);
    // Every request got one audit entry, refused ones included.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let n_requests = 6 * 8 + 1 + 1 + 1 + 1;
    let audit = store.audit.lock().unwrap();
    assert_eq!(audit.len(), n_requests, "one audit entry per request");
    assert!(audit.iter().any(|e| e.status == 401 && e.key_id.is_none()));
    assert!(audit
        .iter()
        .any(|e| e.status == 403 && e.key_id.as_deref() == Some("auditor")));
}

#[tokio::test]
async fn rpm_is_exact_and_headers_follow_openai() {
    let store = keys();
    let mut p = principal("limited", Role::User);
    p.key_limits = Limits {
        rpm: Some(3),
        tpm: Some(1000),
        ..Default::default()
    };
    store.keys.lock().unwrap().insert("limited-key".into(), p);
    let s = start(store.clone(), FakeConfig::default()).await;
    let body = chat(4, false);
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let (st, h, text) = call(
            &s,
            reqwest::Method::POST,
            "/v1/chat/completions",
            Some("limited-key"),
            Some(&body),
        )
        .await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(h["x-ratelimit-limit-requests"], "3");
        assert_eq!(h["x-ratelimit-limit-tokens"], "1000");
        assert!(h["x-ratelimit-reset-requests"]
            .to_str()
            .unwrap()
            .ends_with('s'));
        assert!(h.contains_key("x-request-id"));
        remaining.push(
            h["x-ratelimit-remaining-requests"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let (st, h, text) = call(
        &s,
        reqwest::Method::POST,
        "/v1/chat/completions",
        Some("limited-key"),
        Some(&body),
    )
    .await;
    assert_eq!(st, 429, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("key 'limited'") && msg.contains("requests per minute"),
        "{msg}"
    );
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    // The explain endpoint shows what remains.
    let (st, _, text) = call(
        &s,
        reqwest::Method::GET,
        "/v1/limits",
        Some("limited-key"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let rpm = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["limit"] == "requests per minute")
        .unwrap();
    assert_eq!(
        (rpm["value"].as_u64(), rpm["remaining"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(rpm["scope"], "key 'limited'");
    // Metrics count the refusal by reason, and the admitted requests with their tokens.
    let (_, _, metrics) = call(
        &s,
        reqwest::Method::GET,
        "/metrics",
        Some("admin-key"),
        None,
    )
    .await;
    assert!(
        metrics.contains(
            "hearth_gateway_requests_total{key=\"limited\",team=\"\",model=\"fake-model\",outcome=\"rate_limited\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains(
        "hearth_gateway_requests_total{key=\"limited\",team=\"\",model=\"fake-model\",outcome=\"ok\"} 3"
    ));
    // Other keys are not affected.
    let (st, _, _) = call(
        &s,
        reqwest::Method::POST,
        "/v1/chat/completions",
        Some("user-key"),
        Some(&body),
    )
    .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn budget_bills_streamed_tokens_and_clamps_max_tokens() {
    let store = Arc::new(MemStore {
        month_used: 950,
        ..Default::default()
    });
    let mut p = principal("budget", Role::User);
    p.key_limits = Limits {
        monthly_tokens: Some(1000),
        ..Default::default()
    };
    store.keys.lock().unwrap().insert("budget-key".into(), p);
    let s = start(store.clone(), FakeConfig::default()).await;
    // 50 tokens left: the prompt takes some, the rest caps the generation.
    let (st, _, text) = call(
        &s,
        reqwest::Method::POST,
        "/v1/chat/completions",
        Some("budget-key"),
        Some(&chat(200, true)),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let last_max = s
        .fake
        .last_request
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .max_tokens;
    let prompt = s
        .fake
        .last_request
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .prompt_tokens
        .len();
    assert_eq!(
        last_max,
        50 - prompt,
        "max_tokens clamped to the budget left"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (st, _, text) = call(
        &s,
        reqwest::Method::POST,
        "/v1/chat/completions",
        Some("budget-key"),
        Some(&chat(5, false)),
    )
    .await;
    assert_eq!(st, 429, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "insufficient_quota");
    // The audit entry of the stream has the tokens actually generated.
    let audit = store.audit.lock().unwrap();
    let streamed = audit.iter().find(|e| e.status == 200).unwrap();
    assert_eq!(streamed.prompt_tokens as usize, prompt);
    assert_eq!(streamed.completion_tokens as usize, last_max);
    assert_eq!(streamed.model.as_deref(), Some("fake-model"));
}

#[tokio::test]
async fn client_leaving_mid_stream_is_audited_with_tokens_so_far() {
    let store = keys();
    let s = start(
        store.clone(),
        FakeConfig {
            token_delay: Duration::from_millis(20),
            ..Default::default()
        },
    )
    .await;
    let r = s
        .client
        .post(s.url("/v1/chat/completions"))
        .bearer_auth("user-key")
        .json(&chat(200, true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut body = r.bytes_stream();
    let mut seen = 0;
    while let Some(chunk) = body.next().await {
        seen += chunk.unwrap().len();
        if seen > 400 {
            break;
        }
    }
    drop(body);
    // The generation notices the disconnect, then the entry is written.
    let mut entry = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(e) = store.audit.lock().unwrap().first().cloned() {
            entry = Some(e);
            break;
        }
    }
    let e = entry.expect("audit entry after a disconnect");
    assert_eq!(e.status, 200);
    assert!(
        e.completion_tokens > 0 && e.completion_tokens < 200,
        "{e:?}"
    );
    // Request body kept as its SHA-256 (the default policy).
    assert_eq!(e.request_body.as_ref().map(String::len), Some(64));
}

#[tokio::test]
async fn cors_is_off_by_default_and_answers_preflight_for_listed_origins() {
    let preflight = |s: &TestServer, origin: &'static str| {
        s.client
            .request(reqwest::Method::OPTIONS, s.url("/v1/chat/completions"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            )
            .send()
    };
    let off = start(keys(), FakeConfig::default()).await;
    let r = preflight(&off, "https://app.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let gw = Gateway {
        auth_required: true,
        store: Some(keys()),
        ..Gateway::without_store(None)
    };
    let on = TestServer::start_with(
        FakeConfig::default(),
        ServerConfig {
            gateway: Some(Arc::new(gw)),
            cors_origins: vec!["https://app.example".into()],
            ..Default::default()
        },
    )
    .await;
    // The preflight carries no key and still succeeds; the real call still needs one.
    let r = preflight(&on, "https://app.example").await.unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let r = preflight(&on, "https://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = on
        .client
        .post(on.url("/v1/chat/completions"))
        .header("Origin", "https://app.example")
        .json(&chat(2, false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
}

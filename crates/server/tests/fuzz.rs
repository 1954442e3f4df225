//! Fuzzing every request body: random JSON (nested, with the API's own field names and
//! wrong types), valid bodies with one part replaced by random JSON, and raw bytes (invalid
//! UTF-8, truncated JSON) sent to every route that takes a body, on a server with a SQLite
//! store over the fake backend. Whatever comes in, the server answers within a deadline, never
//! with a 5xx (a 500 is a bug; no route here may be unavailable), errors are always in
//! OpenAI's shape, and the server keeps serving.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use hearth_gateway::store::{AuditSink, Store};
use hearth_server::fake::FakeConfig;
use hearth_server::gateway::{Gateway, SqlStore};
use hearth_server::ServerConfig;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Field names the API reads, so random objects hit real code paths with wrong values.
const FIELDS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stream",
    "stream_options",
    "include_usage",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "stop",
    "seed",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "response_format",
    "type",
    "json_schema",
    "schema",
    "tools",
    "tool_choice",
    "function",
    "name",
    "parameters",
    "prompt",
    "echo",
    "input",
    "instructions",
    "reasoning",
    "effort",
    "reasoning_effort",
    "previous_response_id",
    "tokens",
    "text",
    "add_special",
    "title",
    "settings",
    "system",
    "parent_id",
    "regenerate",
    "username",
    "password",
    "api_key",
    "user",
    "team",
    "models",
    "rpm",
    "tpm",
    "expires",
    "columns",
    "questions",
    "answers",
    "vote",
    "scores",
    "blind",
    "hearth_export",
    "tool_calls",
    "tool_call_id",
    "arguments",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "chat_template_kwargs",
    "image_url",
    "url",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(-1),
            Just(2),
            Just(256),
            Just(1 << 40)
        ]
        .prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "fake-model",
            "user",
            "assistant",
            "system",
            "tool",
            "developer",
            "json_object",
            "json_schema",
            "text",
            "function",
            "auto",
            "required",
            "none",
            "low",
            "high",
            "<|im_start|>",
            "<|start|>assistant<|channel|>final<|message|>",
            "\u{0}",
            "",
            "🔥",
            "10000000000000000000000",
        ])
        .prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(FIELDS.to_vec()).prop_map(str::to_string),
                        "[a-z_]{1,8}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Every route that takes a body, with a valid body to mutate (`{conv}`: a real conversation).
fn routes(conv: &str) -> Vec<(reqwest::Method, String, Value)> {
    use reqwest::Method;
    let chat = json!({"model": "fake-model", "max_tokens": 8,
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]});
    vec![
        (Method::POST, "/v1/chat/completions".into(), chat.clone()),
        (
            Method::POST,
            "/v1/completions".into(),
            json!({"model": "fake-model", "prompt": ["a", "b"], "max_tokens": 8, "logprobs": 2}),
        ),
        (
            Method::POST,
            "/v1/responses".into(),
            json!({"model": "fake-model", "input": [{"role": "user", "content": "hi"}],
                   "instructions": "x", "max_output_tokens": 8}),
        ),
        (
            Method::POST,
            "/tokenize".into(),
            json!({"model": "fake-model", "content": "hello"}),
        ),
        (
            Method::POST,
            "/detokenize".into(),
            json!({"model": "fake-model", "tokens": [104, 105]}),
        ),
        (
            Method::POST,
            "/admin/v1/keys".into(),
            json!({"name": "k", "role": "user", "models": ["fake-model"], "rpm": 5}),
        ),
        (
            Method::POST,
            "/admin/v1/users".into(),
            json!({"name": "u", "role": "user", "password": "long-enough-pw"}),
        ),
        (
            Method::POST,
            "/admin/v1/teams".into(),
            json!({"name": "t", "rpm": 3}),
        ),
        (
            Method::POST,
            "/api/auth/login".into(),
            json!({"username": "nobody", "password": "x"}),
        ),
        (
            Method::POST,
            "/api/conversations".into(),
            json!({"title": "t", "model": "fake-model", "settings": {"temperature": 0.5}}),
        ),
        (
            Method::PATCH,
            format!("/api/conversations/{conv}"),
            json!({"title": "renamed", "settings": {"system": "s", "max_tokens": 8}}),
        ),
        (
            Method::POST,
            format!("/api/conversations/{conv}/messages"),
            json!({"content": "hello"}),
        ),
        (
            Method::POST,
            "/api/conversations/import".into(),
            json!({"hearth_export": 1, "title": "t", "model": "fake-model",
                   "messages": [{"id": "a", "parent_id": null, "role": "user", "content": "q"}]}),
        ),
        (
            Method::POST,
            "/api/compare/runs".into(),
            json!({"title": "r", "columns": [{"model": "fake-model", "settings": {}}],
                   "questions": [{"prompt": "q", "answers": [{"content": "a"}], "vote": 0}]}),
        ),
    ]
}

/// Replace the value at one random place of `body` (found by walking `path` indices).
fn mutate(body: &Value, path: &[usize], with: Value) -> Value {
    fn go(v: &mut Value, path: &[usize], with: Value) {
        let Some((&i, rest)) = path.split_first() else {
            *v = with;
            return;
        };
        match v {
            Value::Object(m) if !m.is_empty() => {
                let key = m.keys().nth(i % m.len()).cloned().expect("non-empty");
                if rest.is_empty() || i % 5 == 0 {
                    m.insert(key, with);
                } else {
                    go(m.get_mut(&key).expect("key"), rest, with);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                let n = a.len();
                go(&mut a[i % n], rest, with);
            }
            other => *other = with,
        }
    }
    let mut b = body.clone();
    go(&mut b, path, with);
    b
}

struct Harness {
    rt: tokio::runtime::Runtime,
    server: TestServer,
    routes: Vec<(reqwest::Method, String, Value)>,
}

fn harness() -> &'static Harness {
    static H: std::sync::OnceLock<Harness> = std::sync::OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (server, conv) = rt.block_on(async {
            let path = std::env::temp_dir().join(format!(
                "hearth-fuzz-{}-{}/hearth.db",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            let store = Store::open(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            let sink = AuditSink::spawn(store.clone());
            let gw = Gateway {
                store: Some(Arc::new(SqlStore {
                    store: store.clone(),
                    sink,
                })),
                sql: Some(store),
                ..Gateway::without_store(None)
            };
            let server = TestServer::start_with(
                FakeConfig::default(),
                ServerConfig {
                    gateway: Some(Arc::new(gw)),
                    ..Default::default()
                },
            )
            .await;
            let (st, _, c) = server
                .post("/api/conversations", &json!({"model": "fake-model"}))
                .await;
            assert_eq!(st, 201, "{c}");
            (server, c["id"].as_str().unwrap().to_string())
        });
        let routes = routes(&conv);
        Harness { rt, server, routes }
    })
}

/// Send one body; check the answer's status, shape and that it came in time.
fn check(route: usize, body: Vec<u8>) -> Result<(), TestCaseError> {
    let h = harness();
    let (method, path, _) = &h.routes[route];
    let s = &h.server;
    let answer = h.rt.block_on(async {
        let send = s
            .client
            .request(method.clone(), s.url(path))
            .header("content-type", "application/json")
            .body(body.clone())
            .send();
        let r = tokio::time::timeout(Duration::from_secs(20), send).await;
        let r = match r {
            Err(_) => return Err("no answer within 20 s".to_string()),
            Ok(Err(e)) => return Err(format!("request failed: {e}")),
            Ok(Ok(r)) => r,
        };
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        match tokio::time::timeout(Duration::from_secs(20), r.bytes()).await {
            Ok(Ok(b)) => Ok((status, ct, b)),
            Ok(Err(e)) => Err(format!("body failed: {e}")),
            Err(_) => Err("body not finished within 20 s".into()),
        }
    });
    let (status, ct, bytes) = answer.map_err(|e| {
        TestCaseError::fail(format!(
            "{method} {path} {}: {e}",
            String::from_utf8_lossy(&body)
        ))
    })?;
    let shown = || {
        format!(
            "{method} {path} {} -> {status} {}",
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(&bytes)
        )
    };
    prop_assert!(status < 500, "server error: {}", shown());
    if status >= 400 {
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|_| TestCaseError::fail(format!("non-JSON error: {}", shown())))?;
        prop_assert!(
            v["error"]["message"].is_string() && v["error"]["type"].is_string(),
            "not OpenAI's error shape: {}",
            shown()
        );
    } else if !ct.starts_with("text/event-stream") && !bytes.is_empty() {
        prop_assert!(
            serde_json::from_slice::<Value>(&bytes).is_ok() || ct.starts_with("text/"),
            "a success that is not JSON: {}",
            shown()
        );
    }
    Ok(())
}

fn n_routes() -> usize {
    routes("x").len()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_json_bodies(route in 0..n_routes(), body in json_value()) {
        check(route, serde_json::to_vec(&body).unwrap())?;
    }

    #[test]
    fn valid_bodies_with_one_part_replaced(
        route in 0..n_routes(),
        path in prop::collection::vec(0usize..8, 0..4),
        with in json_value(),
    ) {
        let valid = harness().routes[route].2.clone();
        check(route, serde_json::to_vec(&mutate(&valid, &path, with)).unwrap())?;
    }

    #[test]
    fn raw_bytes_and_truncated_json(
        route in 0..n_routes(),
        cut in 0usize..200,
        noise in prop::collection::vec(any::<u8>(), 0..64),
        use_noise in any::<bool>(),
    ) {
        let valid = serde_json::to_vec(&harness().routes[route].2).unwrap();
        let body = if use_noise { noise } else { valid[..cut.min(valid.len())].to_vec() };
        check(route, body)?;
    }
}

#[test]
fn deeply_nested_json_is_a_400_not_a_stack_overflow() {
    let deep = format!(
        "{{\"model\": \"fake-model\", \"messages\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    for route in 0..n_routes() {
        check(route, deep.clone().into_bytes()).unwrap();
    }
}

#[test]
fn the_server_still_serves_after_the_fuzzing() {
    let h = harness();
    let (st, _, v) = h.rt.block_on(h.server.post(
        "/v1/chat/completions",
        &json!({"model": "fake-model", "max_tokens": 4,
                "messages": [{"role": "user", "content": "still there?"}]}),
    ));
    assert_eq!(st, 200, "{v}");
}

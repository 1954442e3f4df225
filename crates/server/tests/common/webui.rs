//! The web UI's test harness: a server with a temporary SQLite store and four users, logged-in
//! sessions, raw requests with cookies, and the SSE and conversation helpers the webui tests
//! share.

use std::sync::Arc;
use std::time::Duration;

use super::TestServer;
use hearth_gateway::store::{AuditSink, Role, Store, User};
use hearth_server::fake::FakeConfig;
use hearth_server::gateway::{Gateway, SqlStore};
use hearth_server::ui::{UiAsset, UiMode};
use hearth_server::ServerConfig;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

pub async fn temp_store() -> Store {
    let path = std::env::temp_dir().join(format!(
        "hearth-webui-{}-{}/hearth.db",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    Store::open(&format!("sqlite://{}", path.display()))
        .await
        .expect("open sqlite")
}

/// A server with a database; `auth`: keys or sessions required (else local mode).
pub async fn start(fake: FakeConfig, auth: bool, ui: UiMode) -> (TestServer, Store) {
    start_with(
        fake,
        auth,
        ServerConfig {
            ui,
            ..Default::default()
        },
    )
    .await
}

/// [`start`] with more of the server's settings (`gateway` is replaced).
pub async fn start_with(fake: FakeConfig, auth: bool, cfg: ServerConfig) -> (TestServer, Store) {
    let store = temp_store().await;
    for (name, role) in [
        ("alice", Role::User),
        ("bob", Role::User),
        ("root", Role::Admin),
        ("eve", Role::Auditor),
    ] {
        store
            .create_user(&User {
                name: name.into(),
                role,
                team: None,
                created: 0,
            })
            .await
            .unwrap();
        let h = hearth_gateway::password::hash(&format!("{name}-password")).unwrap();
        store.set_password_hash(name, &h).await.unwrap();
    }
    let sink = AuditSink::spawn(store.clone());
    let gw = Gateway {
        auth_required: auth,
        store: Some(Arc::new(SqlStore {
            store: store.clone(),
            sink,
        })),
        sql: Some(store.clone()),
        ..Gateway::without_store(None)
    };
    let s = TestServer::start_with(
        fake,
        ServerConfig {
            gateway: Some(Arc::new(gw)),
            ..cfg
        },
    )
    .await;
    (s, store)
}

/// A logged-in browser: the session cookie and the CSRF token.
#[derive(Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

pub async fn login(s: &TestServer, user: &str) -> Session {
    let (st, h, v) = raw(
        s,
        Method::POST,
        "/api/auth/login",
        None,
        Some(&json!({"username": user, "password": format!("{user}-password")})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let cookie = set_cookie(&h, "hearth_session").expect("session cookie");
    Session {
        cookie: format!("hearth_session={cookie}"),
        csrf: v["csrf_token"].as_str().unwrap().to_string(),
    }
}

pub fn set_cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v[name.len() + 1..].split(';').next().unwrap().to_string())
}

pub async fn raw(
    s: &TestServer,
    method: Method,
    path: &str,
    sess: Option<(&Session, bool)>,
    body: Option<&Value>,
) -> (u16, HeaderMap, Value) {
    let mut rb = s.client.request(method, s.url(path));
    if let Some((sess, with_csrf)) = sess {
        rb = rb.header("cookie", &sess.cookie);
        if with_csrf {
            rb = rb.header("x-csrf-token", &sess.csrf);
        }
    }
    if let Some(b) = body {
        rb = rb.json(b);
    }
    let r = rb.send().await.unwrap();
    let st = r.status().as_u16();
    let h = r.headers().clone();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (st, h, v)
}

/// A request as the UI sends it: the session cookie and its CSRF token.
pub async fn ui(
    s: &TestServer,
    sess: &Session,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let (st, _, v) = raw(s, method, path, Some((sess, true)), body).await;
    (st, v)
}

pub fn assert_error(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    assert!(v["error"].get("type").is_some(), "{v}");
}

/// `(id, data)` of each SSE event.
pub fn sse_events(text: &str) -> Vec<(u64, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut id = None;
            let mut data = Vec::new();
            for l in block.lines() {
                if let Some(v) = l.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(d) = l.strip_prefix("data:") {
                    data.push(d.strip_prefix(' ').unwrap_or(d));
                }
            }
            if data.is_empty() {
                return None;
            }
            Some((id?, serde_json::from_str(&data.join("\n")).unwrap()))
        })
        .collect()
}

pub async fn events(s: &TestServer, sess: &Session, gid: &str, query: &str) -> Vec<(u64, Value)> {
    let r = s
        .client
        .get(s.url(&format!("/api/generations/{gid}/events{query}")))
        .header("cookie", &sess.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    sse_events(&r.text().await.unwrap())
}

pub async fn new_conversation(s: &TestServer, sess: &Session, settings: Value) -> String {
    let (st, c) = ui(
        s,
        sess,
        Method::POST,
        "/api/conversations",
        Some(&json!({"model": "fake-model", "settings": settings})),
    )
    .await;
    assert_eq!(st, 201, "{c}");
    c["id"].as_str().unwrap().to_string()
}

pub async fn send(s: &TestServer, sess: &Session, cid: &str, body: Value) -> Value {
    let (st, v) = ui(
        s,
        sess,
        Method::POST,
        &format!("/api/conversations/{cid}/messages"),
        Some(&body),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    v
}

/// Send `body` to conversation `cid` and follow the generation to its end: (the send
/// response, the finished message), asserting the reply completed.
pub async fn send_until_done(
    s: &TestServer,
    sess: &Session,
    cid: &str,
    body: Value,
) -> (Value, Value) {
    let sent = send(s, sess, cid, body).await;
    let evs = events(s, sess, sent["generation_id"].as_str().unwrap(), "").await;
    let done = evs.last().unwrap().1["message"].clone();
    assert_eq!(done["status"], "complete", "{done}");
    (sent, done)
}

/// PATCH conversation `cid`'s settings, asserting 200.
pub async fn set_settings(s: &TestServer, sess: &Session, cid: &str, settings: Value) {
    let (st, v) = ui(
        s,
        sess,
        Method::PATCH,
        &format!("/api/conversations/{cid}"),
        Some(&json!({ "settings": settings })),
    )
    .await;
    assert_eq!(st, 200, "{v}");
}

/// Poll the conversation until message `mid` is no longer generating.
pub async fn wait_saved(s: &TestServer, sess: &Session, cid: &str, mid: &str) -> Value {
    for _ in 0..500 {
        let (st, c) = ui(
            s,
            sess,
            Method::GET,
            &format!("/api/conversations/{cid}"),
            None,
        )
        .await;
        assert_eq!(st, 200, "{c}");
        let m = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == mid)
            .cloned()
            .unwrap();
        if m["status"] != "generating" {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("message {mid} still generating");
}

pub static ASSETS: &[UiAsset] = &[
    UiAsset {
        path: "/index.html",
        body: b"<!doctype html><title>Hearth UI</title>",
        gzip: None,
        content_type: "text/html; charset=utf-8",
    },
    UiAsset {
        path: "/assets/app-1a2b.js",
        body: b"console.log('hearth')",
        gzip: Some(b"\x1f\x8bFAKEGZIP"),
        content_type: "text/javascript; charset=utf-8",
    },
    UiAsset {
        path: "/favicon.svg",
        body: b"<svg/>",
        gzip: None,
        content_type: "image/svg+xml",
    },
];

pub async fn get_with(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut rb = s.client.get(s.url(path));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

pub const HTML: (&str, &str) = ("accept", "text/html,application/xhtml+xml,*/*;q=0.8");

//! The web UI's server side over real HTTP (docs/UI-API.md), against the fake backend and a
//! temporary SQLite store: static files and the SPA fallback, sessions (login, logout, CSRF,
//! the login rate limit, roles), conversations with server-owned generations (streamed,
//! stopped, resumed, finished with nobody listening), export/import, comparison runs.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use futures::StreamExt as _;
use hearth_gateway::store::{AuditSink, Role, Store, User};
use hearth_server::fake::FakeConfig;
use hearth_server::gateway::{Gateway, SqlStore};
use hearth_server::ui::{UiAsset, UiMode};
use hearth_server::ServerConfig;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

fn scripted_fake(text: &str) -> FakeConfig {
    FakeConfig {
        script: Some(text.into()),
        ..FakeConfig::default()
    }
}

async fn temp_store() -> Store {
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
async fn start(fake: FakeConfig, auth: bool, ui: UiMode) -> (TestServer, Store) {
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
            ui,
            ..Default::default()
        },
    )
    .await;
    (s, store)
}

/// A logged-in browser: the session cookie and the CSRF token.
#[derive(Clone)]
struct Session {
    cookie: String,
    csrf: String,
}

async fn login(s: &TestServer, user: &str) -> Session {
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

fn set_cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v[name.len() + 1..].split(';').next().unwrap().to_string())
}

async fn raw(
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
async fn ui(
    s: &TestServer,
    sess: &Session,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let (st, _, v) = raw(s, method, path, Some((sess, true)), body).await;
    (st, v)
}

fn assert_error(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    assert!(v["error"].get("type").is_some(), "{v}");
}

/// `(id, data)` of each SSE event.
fn sse_events(text: &str) -> Vec<(u64, Value)> {
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

async fn events(s: &TestServer, sess: &Session, gid: &str, query: &str) -> Vec<(u64, Value)> {
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

async fn new_conversation(s: &TestServer, sess: &Session, settings: Value) -> String {
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

async fn send(s: &TestServer, sess: &Session, cid: &str, body: Value) -> Value {
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

/// Poll the conversation until message `mid` is no longer generating.
async fn wait_saved(s: &TestServer, sess: &Session, cid: &str, mid: &str) -> Value {
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

static ASSETS: &[UiAsset] = &[
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

async fn get_with(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut rb = s.client.get(s.url(path));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

const HTML: (&str, &str) = ("accept", "text/html,application/xhtml+xml,*/*;q=0.8");

#[tokio::test]
async fn static_files_spa_fallback_cache_and_security_headers() {
    let (s, _) = start(FakeConfig::default(), true, UiMode::Assets(ASSETS)).await;
    // `/` and client-side routes give index.html to a browser, with no auth needed.
    for path in ["/", "/index.html", "/chat/c_123", "/compare"] {
        let r = get_with(&s, path, &[HTML]).await;
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let h = r.headers().clone();
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["cache-control"], "no-cache");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("style-src 'self' 'unsafe-inline'"), "{csp}");
        assert!(csp.contains("img-src 'self' data:"), "{csp}");
        assert!(r.text().await.unwrap().contains("Hearth UI"));
    }
    // Hashed assets: cached for good, gzip when accepted.
    let r = get_with(
        &s,
        "/assets/app-1a2b.js",
        &[("accept-encoding", "gzip, br")],
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    let h = r.headers().clone();
    assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(h["vary"], "Accept-Encoding");
    assert_eq!(h["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(&r.bytes().await.unwrap()[..], b"\x1f\x8bFAKEGZIP");
    let r = get_with(&s, "/assets/app-1a2b.js", &[]).await;
    assert!(r.headers().get("content-encoding").is_none());
    assert_eq!(&r.bytes().await.unwrap()[..], b"console.log('hearth')");
    let r = get_with(&s, "/favicon.svg", &[]).await;
    assert_eq!(r.headers()["content-type"], "image/svg+xml");

    // Never HTML for API paths, missing assets, non-browsers or other methods.
    for (path, hdrs) in [
        ("/v1/nope", vec![HTML]),
        ("/api/nope", vec![HTML]),
        ("/admin/v1/nope", vec![HTML]),
        ("/assets/missing-0000.js", vec![HTML]),
        ("/chat/c_123", vec![]),
        ("/", vec![("accept", "application/json")]),
    ] {
        let r = get_with(&s, path, &hdrs).await;
        let st = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(st == 404 || st == 401, "{path}: {st}");
        assert!(v["error"]["message"].is_string(), "{path}: {v}");
    }
    let r = s
        .client
        .post(s.url("/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test]
async fn no_ui_and_the_not_built_page() {
    let (s, _) = start(FakeConfig::default(), false, UiMode::Off).await;
    let r = get_with(&s, "/", &[HTML]).await;
    assert_eq!(r.status().as_u16(), 404);
    let v: Value = r.json().await.unwrap();
    assert_error(&v, "not_found");

    let (s, _) = start(FakeConfig::default(), false, UiMode::Assets(&[])).await;
    let r = get_with(&s, "/", &[HTML]).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let text = r.text().await.unwrap();
    assert!(text.contains("scripts/build-ui.sh"), "{text}");
    assert!(text.contains("not built"), "{text}");

    // What this build embeds: the UI when frontend/dist existed, else the same page.
    let (s, _) = start(FakeConfig::default(), false, UiMode::Embedded).await;
    let r = get_with(&s, "/", &[HTML]).await;
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.unwrap();
    assert_eq!(
        text.contains("scripts/build-ui.sh"),
        !hearth_server::ui::embedded(),
        "{text}"
    );
}

#[tokio::test]
async fn login_me_logout() {
    let (s, store) = start(FakeConfig::default(), true, UiMode::Off).await;
    let (st, _, v) = raw(&s, Method::GET, "/api/auth/me", None, None).await;
    assert_eq!(st, 200);
    assert_eq!(v, json!({"mode": "auth", "user": null, "csrf_token": null}));

    // One answer for a wrong password, an unknown user and a user without a password.
    store
        .create_user(&User {
            name: "nopw".into(),
            role: Role::User,
            team: None,
            created: 0,
        })
        .await
        .unwrap();
    for (u, p) in [("alice", "wrong"), ("nobody", "x"), ("nopw", "")] {
        let (st, h, v) = raw(
            &s,
            Method::POST,
            "/api/auth/login",
            None,
            Some(&json!({"username": u, "password": p})),
        )
        .await;
        assert_eq!(st, 401, "{u}");
        assert_error(&v, "invalid_credentials");
        assert_eq!(v["error"]["message"], "Incorrect user name or password.");
        assert!(h.get("set-cookie").is_none());
    }
    let (st, _, v) = raw(
        &s,
        Method::POST,
        "/api/auth/login",
        None,
        Some(&json!({"username": "a"})),
    )
    .await;
    assert_eq!(st, 400, "{v}");

    let (st, h, v) = raw(
        &s,
        Method::POST,
        "/api/auth/login",
        None,
        Some(&json!({"username": "alice", "password": "alice-password"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["user"],
        json!({"name": "alice", "role": "user", "team": null})
    );
    let cookies: Vec<String> = h
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_string())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("hearth_session="))
        .unwrap();
    assert!(session.contains("HttpOnly"), "{session}");
    assert!(session.contains("SameSite=Strict"), "{session}");
    assert!(session.contains("Path=/"), "{session}");
    assert!(!session.contains("Secure"), "no TLS here: {session}");
    let csrf_cookie = cookies
        .iter()
        .find(|c| c.starts_with("hearth_csrf="))
        .unwrap();
    assert!(
        !csrf_cookie.contains("HttpOnly"),
        "the UI reads it: {csrf_cookie}"
    );
    let token = set_cookie(&h, "hearth_session").unwrap();
    assert!(token.len() >= 64);
    assert_eq!(
        set_cookie(&h, "hearth_csrf").unwrap(),
        v["csrf_token"].as_str().unwrap()
    );
    let sess = Session {
        cookie: format!("hearth_session={token}"),
        csrf: v["csrf_token"].as_str().unwrap().to_string(),
    };

    let (st, _, me) = raw(&s, Method::GET, "/api/auth/me", Some((&sess, false)), None).await;
    assert_eq!(st, 200);
    assert_eq!(me["user"]["name"], "alice");
    assert_eq!(me["csrf_token"], sess.csrf.as_str());
    // The cookie authenticates the OpenAI API too.
    let (st, _, v) = raw(&s, Method::GET, "/v1/models", Some((&sess, false)), None).await;
    assert_eq!(st, 200, "{v}");

    // Logout needs the CSRF token too.
    let (st, _, v) = raw(
        &s,
        Method::POST,
        "/api/auth/logout",
        Some((&sess, false)),
        None,
    )
    .await;
    assert_eq!(st, 403);
    assert_error(&v, "csrf_failed");
    let (st, h, v) = raw(
        &s,
        Method::POST,
        "/api/auth/logout",
        Some((&sess, true)),
        None,
    )
    .await;
    assert_eq!((st, v), (200, json!({})));
    assert_eq!(set_cookie(&h, "hearth_session").as_deref(), Some(""));
    let cleared = h
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().contains("Max-Age=0"));
    assert!(cleared);
    let (_, _, me) = raw(&s, Method::GET, "/api/auth/me", Some((&sess, false)), None).await;
    assert_eq!(me["user"], Value::Null);
    let (st, _, v) = raw(
        &s,
        Method::GET,
        "/api/conversations",
        Some((&sess, false)),
        None,
    )
    .await;
    assert_eq!(st, 401, "{v}");

    // Login with an API key opens a session that runs as the key.
    let (_, secret) = store
        .create_key(&hearth_gateway::store::NewKey {
            name: "k".into(),
            user: Some("bob".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let (st, h, v) = raw(
        &s,
        Method::POST,
        "/api/auth/login",
        None,
        Some(&json!({"api_key": secret})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["user"]["name"], "bob");
    let sess = Session {
        cookie: format!(
            "hearth_session={}",
            set_cookie(&h, "hearth_session").unwrap()
        ),
        csrf: v["csrf_token"].as_str().unwrap().to_string(),
    };
    let (st, _) = ui(&s, &sess, Method::GET, "/api/conversations", None).await;
    assert_eq!(st, 200);
    let key_id = store.list_keys().await.unwrap()[0].id.clone();
    store.revoke_key(&key_id).await.unwrap();
    let (st, v) = ui(&s, &sess, Method::GET, "/api/conversations", None).await;
    assert_eq!(st, 401, "revoking the key ends its session: {v}");
    let (st, _, v) = raw(
        &s,
        Method::POST,
        "/api/auth/login",
        None,
        Some(&json!({"api_key": secret})),
    )
    .await;
    assert_eq!(st, 401);
    assert_error(&v, "invalid_credentials");
}

#[tokio::test]
async fn csrf_is_required_for_cookie_sessions_only() {
    let (s, store) = start(FakeConfig::default(), true, UiMode::Off).await;
    let sess = login(&s, "alice").await;
    let body = json!({"title": "x"});
    let (st, _, v) = raw(
        &s,
        Method::POST,
        "/api/conversations",
        Some((&sess, false)),
        Some(&body),
    )
    .await;
    assert_eq!(st, 403);
    assert_error(&v, "csrf_failed");
    let wrong = Session {
        csrf: "0".repeat(32),
        ..sess.clone()
    };
    let (st, _, _) = raw(
        &s,
        Method::POST,
        "/api/conversations",
        Some((&wrong, true)),
        Some(&body),
    )
    .await;
    assert_eq!(st, 403);
    let (st, _, v) = raw(
        &s,
        Method::POST,
        "/api/conversations",
        Some((&sess, true)),
        Some(&body),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    // Also on the OpenAI routes: a cookie-authenticated POST needs the token.
    let chat = json!({"model": "fake-model", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]});
    let (st, _, _) = raw(
        &s,
        Method::POST,
        "/v1/chat/completions",
        Some((&sess, false)),
        Some(&chat),
    )
    .await;
    assert_eq!(st, 403);
    let (st, _, _) = raw(
        &s,
        Method::POST,
        "/v1/chat/completions",
        Some((&sess, true)),
        Some(&chat),
    )
    .await;
    assert_eq!(st, 200);
    // Reading needs none.
    let (st, _, _) = raw(
        &s,
        Method::GET,
        "/api/conversations",
        Some((&sess, false)),
        None,
    )
    .await;
    assert_eq!(st, 200);
    // An API key needs none either.
    let (_, secret) = store
        .create_key(&hearth_gateway::store::NewKey {
            name: "k".into(),
            user: Some("alice".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let r = s
        .client
        .post(s.url("/api/conversations"))
        .bearer_auth(&secret)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
}

#[tokio::test]
async fn login_rate_limit_per_user_and_address() {
    let (s, _) = start(FakeConfig::default(), true, UiMode::Off).await;
    let try_login = |u: &'static str, p: &'static str| {
        let s = &s;
        async move {
            raw(
                s,
                Method::POST,
                "/api/auth/login",
                None,
                Some(&json!({"username": u, "password": p})),
            )
            .await
        }
    };
    for _ in 0..5 {
        assert_eq!(try_login("alice", "wrong").await.0, 401);
    }
    // The sixth attempt is refused even with the right password.
    let (st, h, v) = try_login("alice", "alice-password").await;
    assert_eq!(st, 429, "{v}");
    assert_error(&v, "rate_limit_exceeded");
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=300).contains(&wait), "{wait}");
    // Other users from the same address still may, until the address has 20 failures.
    assert_eq!(try_login("bob", "bob-password").await.0, 200);
    let users = [
        "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "u10", "u11", "u12", "u13", "u14",
        "u15",
    ];
    for u in users {
        assert_eq!(try_login(u, "wrong").await.0, 401, "{u}");
    }
    let (st, _, _) = try_login("root", "root-password").await;
    assert_eq!(st, 429, "20 failures from this address");
}

#[tokio::test]
async fn roles_for_sessions() {
    let (s, _) = start(FakeConfig::default(), true, UiMode::Off).await;
    let alice = login(&s, "alice").await;
    let root = login(&s, "root").await;
    let eve = login(&s, "eve").await;
    for path in [
        "/admin/v1/users",
        "/api/admin/status",
        "/api/admin/other",
        "/metrics",
    ] {
        let (st, v) = ui(&s, &alice, Method::GET, path, None).await;
        assert_eq!(st, 403, "{path}: {v}");
        assert_error(&v, "role_not_allowed");
    }
    let (st, status) = ui(&s, &root, Method::GET, "/api/admin/status", None).await;
    assert_eq!(st, 200, "{status}");
    assert_eq!(status["models"][0]["id"], "fake-model");
    assert_eq!(status["models"][0]["context_length"], 256);
    for k in ["running", "waiting", "generated_tokens_total", "uptime_s"] {
        assert!(status[k].is_u64(), "{k}: {status}");
    }
    let (st, _) = ui(&s, &root, Method::GET, "/admin/v1/users", None).await;
    assert_eq!(st, 200);
    // Auditors read the status and audit, nothing else.
    let (st, _) = ui(&s, &eve, Method::GET, "/api/admin/status", None).await;
    assert_eq!(st, 200);
    let (st, _) = ui(&s, &eve, Method::GET, "/admin/v1/audit", None).await;
    assert_eq!(st, 200);
    let (st, _) = ui(&s, &eve, Method::GET, "/admin/v1/users", None).await;
    assert_eq!(st, 403);
    let (st, _) = ui(
        &s,
        &eve,
        Method::POST,
        "/api/conversations",
        Some(&json!({})),
    )
    .await;
    assert_eq!(st, 403);
    // The admin API sets passwords; the new one logs in, and is never echoed.
    let (st, u) = ui(
        &s,
        &root,
        Method::POST,
        "/admin/v1/users",
        Some(&json!({"name": "frank", "role": "user", "password": "frank-password"})),
    )
    .await;
    assert_eq!(st, 201, "{u}");
    assert!(u.get("password").is_none() && !u.to_string().contains("frank-password"));
    let frank = login(&s, "frank").await;
    let (st, v) = ui(
        &s,
        &root,
        Method::PATCH,
        "/admin/v1/users/frank",
        Some(&json!({"password": "frank-second"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = ui(&s, &frank, Method::GET, "/api/conversations", None).await;
    assert_eq!(st, 401, "a new password ends the old sessions");
    let (st, v) = ui(
        &s,
        &root,
        Method::POST,
        "/admin/v1/users",
        Some(&json!({"name": "g", "role": "user", "password": "short"})),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["param"], "password");
}

#[tokio::test]
async fn send_streams_events_then_done_and_saves_the_reply() {
    let fake = FakeConfig {
        script: Some("<think>Two and two.</think>\n\nIt is four.".into()),
        ..FakeConfig::default()
    };
    let (s, _) = start(fake, true, UiMode::Off).await;
    let alice = login(&s, "alice").await;
    let cid = new_conversation(
        &s,
        &alice,
        json!({"system": "Be exact.", "temperature": 0.0}),
    )
    .await;
    let sent = send(&s, &alice, &cid, json!({"content": "What is 2+2?"})).await;
    let gid = sent["generation_id"].as_str().unwrap();
    assert!(gid.starts_with("g_"));
    assert_eq!(sent["user_message"]["content"], "What is 2+2?");
    assert_eq!(sent["user_message"]["parent_id"], Value::Null);
    let mid = sent["assistant_message"]["id"].as_str().unwrap();
    assert_eq!(sent["assistant_message"]["status"], "generating");
    assert_eq!(
        sent["assistant_message"]["parent_id"],
        sent["user_message"]["id"]
    );

    // The prompt went through the chat path: system prompt and the message, templated.
    let prompt = s.fake.last_request.lock().unwrap().clone().unwrap();
    let text = String::from_utf8(
        prompt
            .prompt_tokens
            .iter()
            .flat_map(|&t| hearth_server::fake::FakeBackend::token_bytes(t))
            .collect(),
    )
    .unwrap();
    assert_eq!(
        text,
        common::fake_prompt(&[("system", "Be exact."), ("user", "What is 2+2?")])
    );
    assert_eq!(prompt.params.temperature, 0.0);

    let evs = events(&s, &alice, gid, "").await;
    let ids: Vec<u64> = evs.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        ids,
        (0..evs.len() as u64).collect::<Vec<_>>(),
        "ids count up"
    );
    let (last, deltas) = evs.split_last().unwrap();
    assert_eq!(last.1["type"], "done");
    let content: String = deltas
        .iter()
        .filter_map(|(_, e)| e["content"].as_str())
        .collect();
    let reasoning: String = deltas
        .iter()
        .filter_map(|(_, e)| e["reasoning"].as_str())
        .collect();
    assert!(deltas.iter().all(|(_, e)| e["type"] == "delta"));
    assert_eq!(content, "It is four.");
    assert_eq!(reasoning, "Two and two.");
    let done = &last.1["message"];
    assert_eq!(done["status"], "complete");
    assert_eq!(done["content"], "It is four.");
    assert_eq!(done["reasoning"], "Two and two.");
    let stats = &done["stats"];
    assert_eq!(stats["context_length"], 256);
    assert!(stats["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(stats["completion_tokens"].as_u64().unwrap() > 10);
    assert!(
        stats["ttft_ms"].is_u64() && stats["tokens_per_s"].is_number(),
        "{stats}"
    );

    let saved = wait_saved(&s, &alice, &cid, mid).await;
    assert_eq!(&saved, done);
    let (_, c) = ui(
        &s,
        &alice,
        Method::GET,
        &format!("/api/conversations/{cid}"),
        None,
    )
    .await;
    assert_eq!(c["title"], "What is 2+2?");
    assert_eq!(c["active_generation"], Value::Null);
    assert_eq!(c["messages"].as_array().unwrap().len(), 2);
    let (_, g) = ui(&s, &alice, Method::GET, "/api/generations", None).await;
    assert_eq!(g, json!({"data": []}));

    // A follow-up answers the latest leaf by default, with the history in the prompt.
    let sent2 = send(&s, &alice, &cid, json!({"content": "And 3+3?"})).await;
    assert_eq!(sent2["user_message"]["parent_id"], mid);
    let gid2 = sent2["generation_id"].as_str().unwrap();
    events(&s, &alice, gid2, "").await;
    let prompt = s.fake.last_request.lock().unwrap().clone().unwrap();
    let text = String::from_utf8(
        prompt
            .prompt_tokens
            .iter()
            .flat_map(|&t| hearth_server::fake::FakeBackend::token_bytes(t))
            .collect(),
    )
    .unwrap();
    assert_eq!(
        text,
        common::fake_prompt(&[
            ("system", "Be exact."),
            ("user", "What is 2+2?"),
            ("assistant", "It is four."),
            ("user", "And 3+3?"),
        ])
    );

    // Regenerate the first reply: a sibling branch under the first user message.
    let regen = send(&s, &alice, &cid, json!({"regenerate": mid})).await;
    assert_eq!(regen["user_message"], Value::Null);
    assert_eq!(
        regen["assistant_message"]["parent_id"],
        sent["user_message"]["id"]
    );
    let evs = events(&s, &alice, regen["generation_id"].as_str().unwrap(), "").await;
    assert_eq!(evs.last().unwrap().1["message"]["status"], "complete");
    let (_, c) = ui(
        &s,
        &alice,
        Method::GET,
        &format!("/api/conversations/{cid}"),
        None,
    )
    .await;
    assert_eq!(c["messages"].as_array().unwrap().len(), 5);

    // Bad requests, OpenAI-shaped.
    let (st, v) = ui(
        &s,
        &alice,
        Method::POST,
        &format!("/api/conversations/{cid}/messages"),
        Some(&json!({"content": "x", "parent_id": "m_nope"})),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(v["error"]["param"], "parent_id");
    let (st, v) = ui(
        &s,
        &alice,
        Method::POST,
        &format!("/api/conversations/{cid}/messages"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = ui(
        &s,
        &alice,
        Method::GET,
        "/api/generations/g_nope/events",
        None,
    )
    .await;
    assert_eq!(st, 404);
    assert_error(&v, "not_found");
}

#[tokio::test]
async fn an_explicit_null_parent_starts_a_new_root_and_a_missing_one_follows_the_leaf() {
    let (s, _) = start(scripted_fake("ok"), true, UiMode::Off).await;
    let alice = login(&s, "alice").await;
    let cid = new_conversation(&s, &alice, json!({})).await;
    let first = send(&s, &alice, &cid, json!({"content": "one"})).await;
    let a1 = first["assistant_message"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_saved(&s, &alice, &cid, &a1).await;
    // Missing parent: answers the latest leaf.
    let second = send(&s, &alice, &cid, json!({"content": "two"})).await;
    assert_eq!(second["user_message"]["parent_id"], json!(a1));
    let a2 = second["assistant_message"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_saved(&s, &alice, &cid, &a2).await;
    // null: a second root, a sibling of "one".
    let edit = send(
        &s,
        &alice,
        &cid,
        json!({"content": "one, edited", "parent_id": null}),
    )
    .await;
    assert_eq!(edit["user_message"]["parent_id"], Value::Null);
    let prompt = s.fake.last_request.lock().unwrap().clone().unwrap();
    let text = String::from_utf8(
        prompt
            .prompt_tokens
            .iter()
            .flat_map(|&t| hearth_server::fake::FakeBackend::token_bytes(t))
            .collect(),
    )
    .unwrap();
    assert_eq!(
        text,
        common::fake_prompt(&[("user", "one, edited")]),
        "only the new root"
    );
}

#[tokio::test]
async fn stop_mid_stream_saves_stopped_and_frees_the_sequence() {
    let fake = FakeConfig {
        token_delay: Duration::from_millis(20),
        ..FakeConfig::default()
    };
    let (s, _) = start(fake, false, UiMode::Off).await;
    // Local mode: no login; the cookie-less requests run as "local".
    let local = Session {
        cookie: String::new(),
        csrf: String::new(),
    };
    let cid = new_conversation(&s, &local, json!({"max_tokens": 200})).await;
    let sent = send(&s, &local, &cid, json!({"content": "Go on forever"})).await;
    let gid = sent["generation_id"].as_str().unwrap().to_string();
    let mid = sent["assistant_message"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, c) = ui(
        &s,
        &local,
        Method::GET,
        &format!("/api/conversations/{cid}"),
        None,
    )
    .await;
    assert_eq!(c["active_generation"], gid.as_str());
    let (_, g) = ui(&s, &local, Method::GET, "/api/generations", None).await;
    assert_eq!(g["data"][0]["id"], gid.as_str());
    assert_eq!(g["data"][0]["message_id"], mid.as_str());
    // One generation per conversation at a time.
    let (st, v) = ui(
        &s,
        &local,
        Method::POST,
        &format!("/api/conversations/{cid}/messages"),
        Some(&json!({"content": "and another"})),
    )
    .await;
    assert_eq!(st, 409, "{v}");
    assert_error(&v, "conflict");

    // Follow the stream until a few deltas arrived, then stop.
    let r = s
        .client
        .get(s.url(&format!("/api/generations/{gid}/events")))
        .send()
        .await
        .unwrap();
    let mut body = r.bytes_stream();
    let mut text = String::new();
    while sse_events(&text).len() < 3 {
        let chunk = body.next().await.unwrap().unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(s.fake.counters.active.load(Ordering::SeqCst), 1);
    let (st, v) = ui(
        &s,
        &local,
        Method::POST,
        &format!("/api/generations/{gid}/stop"),
        None,
    )
    .await;
    assert_eq!((st, v), (200, json!({"stopped": true})));
    // The follower gets the rest and one done; the backend has no running sequence.
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let evs = sse_events(&text);
    let done = &evs.last().unwrap().1;
    assert_eq!(done["type"], "done");
    assert_eq!(done["message"]["status"], "stopped");
    let partial: String = evs
        .iter()
        .filter_map(|(_, e)| e["content"].as_str())
        .collect();
    assert_eq!(done["message"]["content"], partial.as_str());
    assert!(!partial.is_empty());
    s.eventually("the stopped sequence is freed", |f| {
        f.counters.active.load(Ordering::SeqCst) == 0
            && f.counters.cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(s.fake.counters.finished.load(Ordering::SeqCst), 0);
    let saved = wait_saved(&s, &local, &cid, &mid).await;
    assert_eq!(saved["status"], "stopped");
    assert_eq!(saved["content"], partial.as_str());
    let n = saved["stats"]["completion_tokens"].as_u64().unwrap();
    assert!((3..200).contains(&n), "{n}");
    let (_, c) = ui(
        &s,
        &local,
        Method::GET,
        &format!("/api/conversations/{cid}"),
        None,
    )
    .await;
    assert_eq!(c["active_generation"], Value::Null);
}

#[tokio::test]
async fn reconnect_with_from_or_last_event_id_gets_exactly_the_rest() {
    let fake = FakeConfig {
        script: Some("abcdefghij".into()),
        ..FakeConfig::default()
    };
    let (s, _) = start(fake, true, UiMode::Off).await;
    let alice = login(&s, "alice").await;
    let cid = new_conversation(&s, &alice, json!({})).await;
    let sent = send(&s, &alice, &cid, json!({"content": "letters"})).await;
    let gid = sent["generation_id"].as_str().unwrap();
    let all = events(&s, &alice, gid, "").await;
    let n = all.len();
    assert!(n >= 4, "deltas and done: {all:?}");
    let text: String = all
        .iter()
        .filter_map(|(_, e)| e["content"].as_str())
        .collect();
    assert_eq!(text, "abcdefghij");
    let rest = events(&s, &alice, gid, "?from=2").await;
    assert_eq!(rest, all[2..].to_vec());
    let r = s
        .client
        .get(s.url(&format!("/api/generations/{gid}/events")))
        .header("cookie", &alice.cookie)
        .header("last-event-id", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(sse_events(&r.text().await.unwrap()), all[1..].to_vec());
    // From the done event itself, and past it.
    let last = format!("?from={}", n - 1);
    assert_eq!(events(&s, &alice, gid, &last).await, all[n - 1..].to_vec());
    assert!(events(&s, &alice, gid, &format!("?from={n}"))
        .await
        .is_empty());
}

#[tokio::test]
async fn a_generation_finishes_and_is_saved_with_nobody_listening() {
    let fake = FakeConfig {
        token_delay: Duration::from_millis(5),
        eos_after: Some(12),
        ..FakeConfig::default()
    };
    let (s, _) = start(fake, true, UiMode::Off).await;
    let alice = login(&s, "alice").await;
    let cid = new_conversation(&s, &alice, json!({})).await;
    // The client disconnects at once: the request that started it is over, nobody follows.
    let sent = send(&s, &alice, &cid, json!({"content": "hello"})).await;
    let mid = sent["assistant_message"]["id"].as_str().unwrap();
    let saved = wait_saved(&s, &alice, &cid, mid).await;
    assert_eq!(saved["status"], "complete");
    assert_eq!(saved["stats"]["completion_tokens"], 12);
    assert_eq!(s.fake.counters.finished.load(Ordering::SeqCst), 1);
    assert_eq!(s.fake.counters.cancelled.load(Ordering::SeqCst), 0);
    // Still replayable afterwards.
    let evs = events(&s, &alice, sent["generation_id"].as_str().unwrap(), "").await;
    assert_eq!(evs.last().unwrap().1["message"], saved);
}

#[tokio::test]
async fn other_users_see_nothing_of_it() {
    let fake = FakeConfig {
        token_delay: Duration::from_millis(20),
        ..FakeConfig::default()
    };
    let (s, _) = start(fake, true, UiMode::Off).await;
    let alice = login(&s, "alice").await;
    let bob = login(&s, "bob").await;
    let root = login(&s, "root").await;
    let cid = new_conversation(&s, &alice, json!({"max_tokens": 100})).await;
    let sent = send(&s, &alice, &cid, json!({"content": "secret"})).await;
    let gid = sent["generation_id"].as_str().unwrap();
    for who in [&bob, &root] {
        for (m, path, body) in [
            (Method::GET, format!("/api/conversations/{cid}"), None),
            (
                Method::PATCH,
                format!("/api/conversations/{cid}"),
                Some(json!({"title": "mine"})),
            ),
            (Method::DELETE, format!("/api/conversations/{cid}"), None),
            (
                Method::GET,
                format!("/api/conversations/{cid}/export?format=json"),
                None,
            ),
            (
                Method::POST,
                format!("/api/conversations/{cid}/messages"),
                Some(json!({"content": "x"})),
            ),
            (Method::GET, format!("/api/generations/{gid}/events"), None),
            (Method::POST, format!("/api/generations/{gid}/stop"), None),
        ] {
            let (st, v) = ui(&s, who, m.clone(), &path, body.as_ref()).await;
            assert_eq!(st, 404, "{m} {path}: {v}");
            assert_error(&v, "not_found");
        }
        let (_, list) = ui(&s, who, Method::GET, "/api/conversations?q=secret", None).await;
        assert_eq!(list, json!({"data": [], "total": 0}));
        let (_, g) = ui(&s, who, Method::GET, "/api/generations", None).await;
        assert_eq!(g, json!({"data": []}));
    }
    // Still running, untouched; alice stops it.
    let (_, g) = ui(&s, &alice, Method::GET, "/api/generations", None).await;
    assert_eq!(g["data"][0]["id"], gid);
    let (st, _) = ui(
        &s,
        &alice,
        Method::POST,
        &format!("/api/generations/{gid}/stop"),
        None,
    )
    .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn conversations_list_search_rename_delete_export_import() {
    let fake = FakeConfig {
        script: Some("Paris.".into()),
        ..FakeConfig::default()
    };
    let (s, _) = start(fake, true, UiMode::Off).await;
    let alice = login(&s, "alice").await;
    let a = new_conversation(&s, &alice, json!({"system": "Answer briefly."})).await;
    let sent = send(&s, &alice, &a, json!({"content": "Capital of France?"})).await;
    let mid = sent["assistant_message"]["id"].as_str().unwrap();
    wait_saved(&s, &alice, &a, mid).await;
    let b = new_conversation(&s, &alice, json!({})).await;

    let (_, list) = ui(&s, &alice, Method::GET, "/api/conversations", None).await;
    assert_eq!(list["total"], 2);
    assert!(list["data"][0].get("messages").is_none());
    let (_, list) = ui(&s, &alice, Method::GET, "/api/conversations?q=paris", None).await;
    assert_eq!(list["total"], 1, "message text is searched: {list}");
    assert_eq!(list["data"][0]["id"], a.as_str());
    let (_, list) = ui(
        &s,
        &alice,
        Method::GET,
        "/api/conversations?limit=1&offset=1",
        None,
    )
    .await;
    assert_eq!(
        (
            list["total"].as_u64(),
            list["data"].as_array().unwrap().len()
        ),
        (Some(2), 1)
    );

    let (st, c) = ui(
        &s,
        &alice,
        Method::PATCH,
        &format!("/api/conversations/{b}"),
        Some(&json!({"title": "Renamed", "settings": {"temperature": 0.3}})),
    )
    .await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["title"], "Renamed");
    assert_eq!(c["settings"]["temperature"], 0.3);
    let (st, v) = ui(
        &s,
        &alice,
        Method::PATCH,
        &format!("/api/conversations/{b}"),
        Some(&json!({"colour": 1})),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["param"], "colour");
    let (st, v) = ui(
        &s,
        &alice,
        Method::DELETE,
        &format!("/api/conversations/{b}"),
        None,
    )
    .await;
    assert_eq!((st, v), (200, json!({"deleted": true})));
    let (st, _) = ui(
        &s,
        &alice,
        Method::GET,
        &format!("/api/conversations/{b}"),
        None,
    )
    .await;
    assert_eq!(st, 404);

    // Markdown.
    let r = s
        .client
        .get(s.url(&format!("/api/conversations/{a}/export?format=md")))
        .header("cookie", &alice.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/markdown"));
    let md = r.text().await.unwrap();
    assert!(md.starts_with("# Capital of France?\n"), "{md}");
    assert!(md.contains("## User\n\nCapital of France?"), "{md}");
    assert!(md.contains("Paris."), "{md}");
    assert!(md.contains("Answer briefly."), "{md}");

    // JSON round trip: same tree, new ids.
    let (st, doc) = ui(
        &s,
        &alice,
        Method::GET,
        &format!("/api/conversations/{a}/export?format=json"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(doc["hearth_export"], 1);
    assert_eq!(doc["messages"].as_array().unwrap().len(), 2);
    let (st, imported) = ui(
        &s,
        &alice,
        Method::POST,
        "/api/conversations/import",
        Some(&doc),
    )
    .await;
    assert_eq!(st, 201, "{imported}");
    assert_ne!(imported["id"], a.as_str());
    let (_, again) = ui(
        &s,
        &alice,
        Method::GET,
        &format!(
            "/api/conversations/{}/export?format=json",
            imported["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    let strip = |d: &Value| {
        let ids: Vec<&str> = d["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        let mut d = d.clone();
        for m in d["messages"].as_array_mut().unwrap() {
            let parent = m["parent_id"]
                .as_str()
                .map(|p| ids.iter().position(|i| *i == p).unwrap());
            m["parent_id"] = json!(parent);
            m["id"] = Value::Null;
        }
        d
    };
    assert_eq!(strip(&again), strip(&doc));
    let ids: Vec<&str> = again["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&mid), "new ids");
    let (st, v) = ui(
        &s,
        &alice,
        Method::POST,
        "/api/conversations/import",
        Some(&json!({"title": "x"})),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(v["error"]["param"], "hearth_export");
    let (st, v) = ui(
        &s,
        &alice,
        Method::GET,
        &format!("/api/conversations/{a}/export?format=pdf"),
        None,
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(v["error"]["param"], "format");
    let (st, v) = ui(
        &s,
        &alice,
        Method::GET,
        "/api/conversations?limit=many",
        None,
    )
    .await;
    assert_eq!(st, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("query"),
        "{v}"
    );
    let (st, v) = ui(
        &s,
        &alice,
        Method::GET,
        "/api/generations/g_x/events?from=-",
        None,
    )
    .await;
    assert_eq!(st, 400);
    assert!(v["error"]["message"].is_string(), "{v}");
}

#[tokio::test]
async fn comparison_runs_and_the_leaderboard() {
    let (s, _) = start(FakeConfig::default(), true, UiMode::Off).await;
    let alice = login(&s, "alice").await;
    let bob = login(&s, "bob").await;
    let run = json!({
        "title": "Capitals", "blind": true,
        "columns": [{"model": "m1", "settings": {}, "label": "A"}, {"model": "m2", "settings": {}, "label": "B"}],
        "questions": [{"prompt": "France?", "answers": [{"content": "Paris"}, {"content": "Lyon"}],
                       "vote": 0, "scores": [9, 3]}]
    });
    let (st, r) = ui(&s, &alice, Method::POST, "/api/compare/runs", Some(&run)).await;
    assert_eq!(st, 201, "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("r_"));
    assert_eq!(r["questions"], run["questions"]);
    assert_eq!(r["blind"], true);
    let (_, list) = ui(&s, &alice, Method::GET, "/api/compare/runs", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(list["data"][0].get("questions").is_none());
    assert_eq!(list["data"][0]["title"], "Capitals");
    let (st, _) = ui(
        &s,
        &bob,
        Method::GET,
        &format!("/api/compare/runs/{id}"),
        None,
    )
    .await;
    assert_eq!(st, 404);

    let mut changed = r.clone();
    changed["questions"][0]["vote"] = json!(1);
    changed["title"] = json!("Capitals 2");
    let (st, r2) = ui(
        &s,
        &alice,
        Method::PUT,
        &format!("/api/compare/runs/{id}"),
        Some(&changed),
    )
    .await;
    assert_eq!(st, 200, "{r2}");
    assert_eq!(r2["title"], "Capitals 2");
    assert_eq!(r2["created"], r["created"]);
    let (_, got) = ui(
        &s,
        &alice,
        Method::GET,
        &format!("/api/compare/runs/{id}"),
        None,
    )
    .await;
    assert_eq!(got, r2);
    let (st, _) = ui(
        &s,
        &bob,
        Method::PUT,
        &format!("/api/compare/runs/{id}"),
        Some(&changed),
    )
    .await;
    assert_eq!(st, 404);

    // Bob's run counts too: the leaderboard is over all stored votes.
    let mut bobs = run.clone();
    bobs["questions"][0]["vote"] = json!(1);
    let (st, _) = ui(&s, &bob, Method::POST, "/api/compare/runs", Some(&bobs)).await;
    assert_eq!(st, 201);
    let (st, lb) = ui(&s, &alice, Method::GET, "/api/compare/leaderboard", None).await;
    assert_eq!(st, 200);
    assert_eq!(
        lb["data"][0],
        json!({"model": "m2", "wins": 2, "losses": 0, "ties": 0, "votes": 2, "mean_score": 3.0})
    );
    assert_eq!(lb["data"][1]["model"], "m1");
    assert_eq!(lb["data"][1]["losses"], 2);

    let (st, v) = ui(
        &s,
        &alice,
        Method::DELETE,
        &format!("/api/compare/runs/{id}"),
        None,
    )
    .await;
    assert_eq!((st, v), (200, json!({"deleted": true})));
    let (st, _) = ui(
        &s,
        &alice,
        Method::GET,
        &format!("/api/compare/runs/{id}"),
        None,
    )
    .await;
    assert_eq!(st, 404);
    let (st, v) = ui(
        &s,
        &alice,
        Method::POST,
        "/api/compare/runs",
        Some(&json!({"columns": 3})),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(v["error"]["param"], "columns");
}

#[tokio::test]
async fn shutdown_stops_running_generations_and_saves_them() {
    let fake = FakeConfig {
        token_delay: Duration::from_millis(20),
        ..FakeConfig::default()
    };
    let (mut s, store) = start(fake, false, UiMode::Off).await;
    let local = Session {
        cookie: String::new(),
        csrf: String::new(),
    };
    let cid = new_conversation(&s, &local, json!({"max_tokens": 200})).await;
    let sent = send(&s, &local, &cid, json!({"content": "long"})).await;
    let mid = sent["assistant_message"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(150)).await;
    s.shutdown();
    let r = tokio::time::timeout(Duration::from_secs(10), &mut s.handle).await;
    assert!(r.is_ok(), "serve returned");
    let ms = store.messages(&cid).await.unwrap();
    let m = ms.iter().find(|m| m.id == mid).unwrap();
    assert_eq!(m.status, "stopped");
    assert!(!m.content.is_empty());
    assert_eq!(s.fake.counters.active.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn harmony_reasoning_and_the_audit_record_of_a_generation() {
    let fake = FakeConfig {
        script: Some(
            "<|channel|>analysis<|message|>User says hi.<|end|><|start|>assistant\
             <|channel|>final<|message|>Hello!<|return|>"
                .into(),
        ),
        chat_format: hearth_server::backend::ChatFormat::Harmony,
        context_length: 8192,
        ..FakeConfig::default()
    };
    let (s, store) = start(fake, true, UiMode::Off).await;
    let alice = login(&s, "alice").await;
    let cid = new_conversation(&s, &alice, json!({"reasoning_effort": "high"})).await;
    let sent = send(&s, &alice, &cid, json!({"content": "hi"})).await;
    let evs = events(&s, &alice, sent["generation_id"].as_str().unwrap(), "").await;
    let m = &evs.last().unwrap().1["message"];
    assert_eq!(m["content"], "Hello!");
    assert_eq!(m["reasoning"], "User says hi.");
    assert_eq!(m["status"], "complete");
    let prompt = s.fake.last_request.lock().unwrap().clone().unwrap();
    let text: String = prompt
        .prompt_tokens
        .iter()
        .map(|&t| t as u8 as char)
        .collect();
    assert!(text.contains("Reasoning: high"), "{text}");

    // The generation ran inside its request's meter: one audit record with the user and the
    // tokens generated after the response had gone.
    let route = format!("POST /api/conversations/{cid}/messages");
    let mut found = None;
    for _ in 0..300 {
        let recs = store
            .query_audit(&Default::default(), 0, 1000)
            .await
            .unwrap();
        found = recs.into_iter().find(|r| r.record.route == route);
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rec = found.expect("audit record of the send").record;
    assert_eq!(rec.user.as_deref(), Some("alice"));
    assert_eq!(rec.status, 201);
    assert_eq!(rec.model.as_deref(), Some("fake-model"));
    assert!(rec.prompt_tokens > 0);
    assert_eq!(
        rec.completion_tokens,
        m["stats"]["completion_tokens"].as_u64().unwrap()
    );
    // Login bodies are never kept.
    let recs = store
        .query_audit(&Default::default(), 0, 1000)
        .await
        .unwrap();
    let login = recs
        .iter()
        .find(|r| r.record.route == "POST /api/auth/login")
        .expect("login audited");
    assert_eq!(login.record.request_body, None);
    assert_eq!(login.record.response_body, None);
}

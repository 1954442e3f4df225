//! The web UI's server side over real HTTP (docs/UI-API.md), part one: static files and the
//! SPA fallback, and sessions (login, logout, CSRF, the login rate limit, roles). Part two,
//! conversations and generations, is webui.rs; the harness is tests/common/webui.rs.

mod common;

use common::webui::*;
use hearth_gateway::store::{Role, User};
use hearth_server::fake::FakeConfig;
use hearth_server::ui::UiMode;
use reqwest::Method;
use serde_json::{json, Value};

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

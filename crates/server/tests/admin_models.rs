//! Model management (`/admin/v1/models`) and team edits (`PATCH /admin/v1/teams/{name}`) over
//! real HTTP, on the fake backend (whose "model files" are files starting with `GGUF`).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::webui::*;
use common::TestServer;
use hearth_server::config::ModelAdminPolicy;
use hearth_server::fake::FakeConfig;
use hearth_server::ui::UiMode;
use hearth_server::ServerConfig;
use reqwest::Method;
use serde_json::{json, Value};

/// A models directory with a good file (`m2.gguf`) and a corrupt one (`bad.gguf`).
fn models_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "hearth-admin-models-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("m2.gguf"), b"GGUF fake weights").unwrap();
    std::fs::write(d.join("bad.gguf"), b"not a model").unwrap();
    d
}

async fn server(fake: FakeConfig, policy: ModelAdminPolicy) -> TestServer {
    let cfg = ServerConfig {
        ui: UiMode::Off,
        model_admin: policy,
        ..Default::default()
    };
    start_with(fake, true, cfg).await.0
}

fn allowed(dir: &std::path::Path) -> ModelAdminPolicy {
    ModelAdminPolicy {
        disabled: false,
        models_dir: Some(dir.to_path_buf()),
    }
}

async fn chat(s: &TestServer, sess: &Session, model: &str) -> (u16, Value) {
    ui(
        s,
        sess,
        Method::POST,
        "/v1/chat/completions",
        Some(
            &json!({"model": model, "messages": [{"role": "user", "content": "hi"}],
                     "max_tokens": 3}),
        ),
    )
    .await
}

#[tokio::test]
async fn load_use_set_default_unload_then_model_not_found() {
    let dir = models_dir();
    let s = server(FakeConfig::default(), allowed(&dir)).await;
    let root = login(&s, "root").await;

    let (st, v) = ui(&s, &root, Method::GET, "/admin/v1/models", None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["default"], "fake-model");
    assert_eq!(v["management"]["enabled"], true);
    assert_eq!(v["data"][0]["state"], "ready");
    assert_eq!(v["data"][0]["default"], true);

    let (st, v) = ui(
        &s,
        &root,
        Method::POST,
        "/admin/v1/models",
        Some(&json!({"id": "m2", "path": "m2.gguf"})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (v["id"].as_str(), v["state"].as_str()),
        (Some("m2"), Some("ready"))
    );
    assert_eq!(v["default"], false);
    // The same id twice is a conflict.
    let (st, v) = ui(
        &s,
        &root,
        Method::POST,
        "/admin/v1/models",
        Some(&json!({"id": "m2", "path": "m2.gguf"})),
    )
    .await;
    assert_eq!(st, 409, "{v}");
    assert_error(&v, "model_exists");

    assert_eq!(chat(&s, &root, "m2").await.0, 200);
    let (_, v) = ui(&s, &root, Method::GET, "/v1/models", None).await;
    assert_eq!(v["data"][1]["id"], "m2", "{v}");

    // Set the default: first in /v1/models and in the admin list.
    let (st, v) = ui(
        &s,
        &root,
        Method::PATCH,
        "/admin/v1/models/m2",
        Some(&json!({"default": true})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["default"], true);
    let (_, v) = ui(&s, &root, Method::GET, "/admin/v1/models", None).await;
    assert_eq!(v["default"], "m2");
    let (_, v) = ui(&s, &root, Method::GET, "/v1/models", None).await;
    assert_eq!(v["data"][0]["id"], "m2");
    let (st, v) = ui(
        &s,
        &root,
        Method::PATCH,
        "/admin/v1/models/nope",
        Some(&json!({"default": true})),
    )
    .await;
    assert_eq!(st, 404, "{v}");
    assert_error(&v, "model_not_found");

    // Unload: later requests get OpenAI's 404.
    let (st, v) = ui(&s, &root, Method::DELETE, "/admin/v1/models/m2", None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["unloaded"], true);
    let (st, v) = chat(&s, &root, "m2").await;
    assert_eq!(st, 404, "{v}");
    assert_error(&v, "model_not_found");
    assert_eq!(v["error"]["param"], "model");
    let (_, v) = ui(&s, &root, Method::GET, "/admin/v1/models", None).await;
    assert_eq!(v["default"], "fake-model");
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
    let (st, v) = ui(&s, &root, Method::DELETE, "/admin/v1/models/m2", None).await;
    assert_eq!(st, 404, "{v}");
    // And it loads again under the same id.
    let (st, v) = ui(
        &s,
        &root,
        Method::POST,
        "/admin/v1/models",
        Some(&json!({"id": "m2", "path": dir.join("m2.gguf").to_str().unwrap()})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(chat(&s, &root, "m2").await.0, 200);
}

#[tokio::test]
async fn bad_paths_and_corrupt_files_are_400s_naming_the_path() {
    let dir = models_dir();
    let s = server(FakeConfig::default(), allowed(&dir)).await;
    let root = login(&s, "root").await;
    let post = |body: Value| {
        let (s, root) = (&s, &root);
        async move { ui(s, root, Method::POST, "/admin/v1/models", Some(&body)).await }
    };

    let (st, v) = post(json!({"id": "x", "path": "missing/nope.gguf"})).await;
    assert_eq!(st, 400, "{v}");
    assert_error(&v, "model_load_failed");
    assert_eq!(v["error"]["param"], "path");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing/nope.gguf"),
        "{v}"
    );

    // A corrupt file: the engine's message, naming the file; listed as failed until dismissed.
    let (st, v) = post(json!({"id": "broken", "path": "bad.gguf"})).await;
    assert_eq!(st, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("bad.gguf") && msg.contains("bad magic"), "{v}");
    let (_, v) = ui(&s, &root, Method::GET, "/admin/v1/models/broken", None).await;
    assert_eq!(v["state"], "failed", "{v}");
    assert!(v["error"].as_str().unwrap().contains("bad.gguf"), "{v}");
    let (st, v) = chat(&s, &root, "broken").await;
    assert_eq!(st, 404, "{v}");
    let (st, v) = ui(&s, &root, Method::DELETE, "/admin/v1/models/broken", None).await;
    assert_eq!((st, &v["deleted"]), (200, &json!(true)), "{v}");
    let (st, _) = ui(&s, &root, Method::GET, "/admin/v1/models/broken", None).await;
    assert_eq!(st, 404);

    // Outside the models directory, by `..` or by an absolute path.
    for path in ["../outside.gguf", "/etc/passwd"] {
        let (st, v) = post(json!({"id": "x", "path": path})).await;
        if st == 400 {
            // `../outside.gguf` does not exist: refused before any check of where it is.
            assert!(
                v["error"]["message"].as_str().unwrap().contains(path),
                "{v}"
            );
        } else {
            assert_eq!(st, 403, "{path}: {v}");
            assert_error(&v, "path_not_allowed");
        }
    }
    for (body, param) in [
        (json!({"id": "", "path": "m2.gguf"}), "id"),
        (json!({"id": "has space", "path": "m2.gguf"}), "id"),
        (json!({"id": "m3", "path": ""}), "path"),
    ] {
        let (st, v) = post(body).await;
        assert_eq!(st, 400, "{v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
    let (st, v) = post(json!({"id": "m3", "path": "m2.gguf", "extra": 1})).await;
    assert_eq!(st, 400, "{v}");
}

#[tokio::test]
async fn only_admins_with_csrf_and_only_when_allowed() {
    let dir = models_dir();
    let s = server(FakeConfig::default(), allowed(&dir)).await;
    let load = json!({"id": "m2", "path": "m2.gguf"});
    for user in ["alice", "eve"] {
        let sess = login(&s, user).await;
        for (m, path, body) in [
            (Method::GET, "/admin/v1/models", None),
            (Method::POST, "/admin/v1/models", Some(&load)),
            (Method::DELETE, "/admin/v1/models/fake-model", None),
            (
                Method::PATCH,
                "/admin/v1/models/fake-model",
                Some(&json!({"default": true})),
            ),
        ] {
            let (st, v) = ui(&s, &sess, m.clone(), path, body).await;
            assert_eq!(st, 403, "{user} {m} {path}: {v}");
        }
    }
    let root = login(&s, "root").await;
    let (st, _, v) = raw(
        &s,
        Method::POST,
        "/admin/v1/models",
        Some((&root, false)),
        Some(&load),
    )
    .await;
    assert_eq!(st, 403, "{v}");
    assert_error(&v, "csrf_failed");
    // Nothing was loaded or unloaded by any of these.
    let (_, v) = ui(&s, &root, Method::GET, "/admin/v1/models", None).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");

    // Without a models directory: no loading; unloading and the default still work.
    let s = server(FakeConfig::default(), ModelAdminPolicy::default()).await;
    let root = login(&s, "root").await;
    let (st, v) = ui(&s, &root, Method::POST, "/admin/v1/models", Some(&load)).await;
    assert_eq!(st, 403, "{v}");
    assert_error(&v, "model_loading_disabled");
    let (_, v) = ui(&s, &root, Method::GET, "/admin/v1/models", None).await;
    assert_eq!(
        v["management"],
        json!({"enabled": true, "models_dir": null})
    );

    // --no-model-admin: the list only.
    let off = ModelAdminPolicy {
        disabled: true,
        models_dir: Some(dir.clone()),
    };
    let s = server(FakeConfig::default(), off).await;
    let root = login(&s, "root").await;
    let (st, v) = ui(&s, &root, Method::GET, "/admin/v1/models", None).await;
    assert_eq!(st, 200);
    assert_eq!(v["management"]["enabled"], false);
    for (m, path, body) in [
        (Method::POST, "/admin/v1/models", Some(&load)),
        (Method::DELETE, "/admin/v1/models/fake-model", None),
        (
            Method::PATCH,
            "/admin/v1/models/fake-model",
            Some(&json!({"default": true})),
        ),
    ] {
        let (st, v) = ui(&s, &root, m, path, body).await;
        assert_eq!(st, 403, "{v}");
        assert_error(&v, "model_admin_disabled");
    }
}

#[tokio::test]
async fn a_load_without_waiting_is_listed_loading_then_ready() {
    let dir = models_dir();
    let fake = FakeConfig {
        load_delay: Duration::from_millis(400),
        ..FakeConfig::default()
    };
    let s = server(fake, allowed(&dir)).await;
    let root = login(&s, "root").await;
    let (st, v) = ui(
        &s,
        &root,
        Method::POST,
        "/admin/v1/models",
        Some(&json!({"id": "m2", "path": "m2.gguf", "wait": false, "default": true})),
    )
    .await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["state"], "loading");
    assert!(v["path"].as_str().unwrap().ends_with("m2.gguf"), "{v}");
    // A second load of the id, or an unload, while it loads: 409.
    let (st, _) = ui(
        &s,
        &root,
        Method::POST,
        "/admin/v1/models",
        Some(&json!({"id": "m2", "path": "m2.gguf"})),
    )
    .await;
    assert_eq!(st, 409);
    let (st, _) = ui(&s, &root, Method::DELETE, "/admin/v1/models/m2", None).await;
    assert_eq!(st, 409);
    assert_eq!(chat(&s, &root, "m2").await.0, 404);
    let mut state = String::new();
    for _ in 0..200 {
        let (_, v) = ui(&s, &root, Method::GET, "/admin/v1/models/m2", None).await;
        state = v["state"].as_str().unwrap_or("").to_string();
        if state == "ready" {
            assert_eq!(v["default"], true, "{v}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state, "ready");
    assert_eq!(chat(&s, &root, "m2").await.0, 200);
}

#[tokio::test]
async fn unloading_with_cancel_ends_running_generations_with_an_error() {
    let dir = models_dir();
    let fake = FakeConfig {
        token_delay: Duration::from_millis(30),
        ..FakeConfig::default()
    };
    let s = server(fake, allowed(&dir)).await;
    let root = login(&s, "root").await;
    let stream = {
        let req = s
            .client
            .post(s.url("/v1/chat/completions"))
            .header("cookie", &root.cookie)
            .header("x-csrf-token", &root.csrf)
            .json(
                &json!({"model": "fake-model", "stream": true, "max_tokens": 200,
                          "messages": [{"role": "user", "content": "go"}]}),
            );
        tokio::spawn(async move { req.send().await.unwrap().text().await.unwrap() })
    };
    s.eventually("a generation runs", |f| {
        f.counters.active.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    let (st, v) = ui(
        &s,
        &root,
        Method::DELETE,
        "/admin/v1/models/fake-model?cancel=true",
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["cancelled"], true);
    let body = tokio::time::timeout(Duration::from_secs(5), stream)
        .await
        .expect("the stream ends")
        .unwrap();
    assert!(body.contains("was unloaded"), "{body}");
    s.eventually("the generation was cancelled", |f| {
        f.counters.active.load(std::sync::atomic::Ordering::SeqCst) == 0
            && f.counters
                .cancelled
                .load(std::sync::atomic::Ordering::SeqCst)
                == 1
    })
    .await;
    assert_eq!(chat(&s, &root, "fake-model").await.0, 404);
}

/// A key of team `t` (the secret).
async fn team_key(s: &TestServer, root: &Session) -> String {
    let (st, v) = ui(
        s,
        root,
        Method::POST,
        "/admin/v1/teams",
        Some(&json!({"name": "t", "limits": {"rpm": 100}})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = ui(
        s,
        root,
        Method::POST,
        "/admin/v1/keys",
        Some(&json!({"name": "k", "team": "t"})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    v["key"].as_str().unwrap().to_string()
}

async fn chat_key(s: &TestServer, key: &str) -> (u16, Value) {
    let r = s
        .client
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "fake-model", "max_tokens": 2,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn team_patch_applies_on_the_next_request() {
    let dir = models_dir();
    let s = server(FakeConfig::default(), allowed(&dir)).await;
    let root = login(&s, "root").await;
    let key = team_key(&s, &root).await;
    assert_eq!(chat_key(&s, &key).await.0, 200);

    // The model allow-list.
    let (st, v) = ui(
        &s,
        &root,
        Method::PATCH,
        "/admin/v1/teams/t",
        Some(&json!({"models": ["other"]})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["models"], json!(["other"]));
    assert_eq!(v["limits"]["rpm"], 100, "untouched: {v}");
    let (st, v) = chat_key(&s, &key).await;
    assert_eq!(st, 403, "{v}");
    assert_error(&v, "model_not_allowed");
    let (st, v) = ui(
        &s,
        &root,
        Method::PATCH,
        "/admin/v1/teams/t",
        Some(&json!({"models": null, "limits": {"rpm": 2, "tpm": null}})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["models"], Value::Null);
    // rpm 2: one request was made in this minute; one more passes, the next is refused.
    assert_eq!(chat_key(&s, &key).await.0, 200);
    let (st, v) = chat_key(&s, &key).await;
    assert_eq!(st, 429, "{v}");
    let (_, v) = ui(&s, &root, Method::GET, "/admin/v1/teams", None).await;
    assert_eq!(v["data"][0]["limits"]["rpm"], 2, "{v}");

    // Validated as on create.
    for body in [
        json!({"limits": {"rpm": -1}}),
        json!({"limits": {"rpm": "ten"}}),
        json!({"models": ["a,b"]}),
        json!({"name": "renamed"}),
    ] {
        let (st, v) = ui(&s, &root, Method::PATCH, "/admin/v1/teams/t", Some(&body)).await;
        assert_eq!(st, 400, "{body}: {v}");
    }
    let (st, _) = ui(
        &s,
        &root,
        Method::PATCH,
        "/admin/v1/teams/nope",
        Some(&json!({"limits": {"rpm": 1}})),
    )
    .await;
    assert_eq!(st, 404);
    let alice = login(&s, "alice").await;
    let (st, _) = ui(
        &s,
        &alice,
        Method::PATCH,
        "/admin/v1/teams/t",
        Some(&json!({"limits": {"rpm": 1000}})),
    )
    .await;
    assert_eq!(st, 403);
}

//! Shared harness: the real server on a loopback TCP port over the fake backend.

#![allow(dead_code)]

pub mod memstore;
pub mod webui;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hearth_server::fake::{FakeBackend, FakeConfig};
use hearth_server::ServerConfig;
use serde_json::Value;

pub struct TestServer {
    pub base: String,
    pub fake: Arc<FakeBackend>,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    pub async fn start(cfg: FakeConfig) -> Self {
        Self::start_with(cfg, ServerConfig::default()).await
    }

    pub async fn start_with(cfg: FakeConfig, server_cfg: ServerConfig) -> Self {
        let fake = Arc::new(FakeBackend::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let backend: Arc<dyn hearth_server::Backend> = fake.clone();
        let handle = tokio::spawn(hearth_server::serve_on(
            listener,
            backend,
            server_cfg,
            async {
                let _ = rx.await;
            },
        ));
        TestServer {
            base: format!("http://{addr}"),
            fake,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            shutdown: Some(tx),
            handle,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let v =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON body ({e}): {text}"));
        (status, headers, v)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// POST a streaming request and return the `data:` payloads in order.
    pub async fn post_sse(&self, path: &str, body: &Value) -> Vec<String> {
        let r = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 200);
        let ct = r
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        let text = r.text().await.unwrap();
        sse_data(&text)
    }

    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Wait until `f()` holds (the fake's counters move asynchronously).
    pub async fn eventually(&self, what: &str, f: impl Fn(&FakeBackend) -> bool) {
        for _ in 0..300 {
            if f(&self.fake) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let c = &self.fake.counters;
        panic!(
            "timed out waiting for: {what} (started {}, finished {}, cancelled {}, active {})",
            c.started.load(Ordering::SeqCst),
            c.finished.load(Ordering::SeqCst),
            c.cancelled.load(Ordering::SeqCst),
            c.active.load(Ordering::SeqCst)
        );
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Split an SSE body into its `data:` payloads (one event per blank-line
/// separated block; comments ignored), per the WHATWG event-stream format.
pub fn sse_data(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let data: Vec<&str> = block
            .lines()
            .filter_map(|l| {
                l.strip_prefix("data:")
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
            })
            .collect();
        if !data.is_empty() {
            out.push(data.join("\n"));
        }
    }
    out
}

/// The fake's chat template (see `FakeBackend::apply_chat_template`), written
/// out independently so prompt token counts are checked, not echoed.
pub fn fake_prompt(messages: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (role, content) in messages {
        s.push_str(&format!("<|{role}|>\n{content}\n"));
    }
    s.push_str("<|assistant|>\n");
    s
}

pub fn scripted(script: &str) -> FakeConfig {
    FakeConfig {
        script: Some(script.into()),
        ..FakeConfig::default()
    }
}

pub fn chat_body(content: &str) -> Value {
    serde_json::json!({"model": "fake-model", "messages": [{"role": "user", "content": content}]})
}

//! Slow and oversized clients over raw TCP: a request head that never ends (slowloris), a
//! kept-alive connection left idle, heads larger than the limit, a body sent too slowly, and
//! too many messages. Each gets a bounded answer (or a closed connection), never a held slot.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use hearth_server::fake::FakeConfig;
use hearth_server::ServerConfig;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

async fn strict() -> TestServer {
    TestServer::start_with(
        FakeConfig::default(),
        ServerConfig {
            header_read_timeout: Duration::from_millis(300),
            body_read_timeout: Duration::from_millis(500),
            max_header_bytes: 16 * 1024,
            max_messages: 8,
            ..Default::default()
        },
    )
    .await
}

async fn connect(s: &TestServer) -> TcpStream {
    TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Everything the server sends until it closes the connection (at most `within`).
async fn read_to_close(c: &mut TcpStream, within: Duration) -> Result<String, &'static str> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, c.read(&mut buf)).await {
            Err(_) => return Err("the server kept the connection open"),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_request_head_that_never_ends_is_cut_off() {
    let s = strict().await;
    let mut c = connect(&s).await;
    c.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    read_to_close(&mut c, Duration::from_secs(5)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let s = strict().await;
    let mut c = connect(&s).await;
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let seen = read_to_close(&mut c, Duration::from_secs(5)).await.unwrap();
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
}

#[tokio::test]
async fn heads_over_the_limit_get_431() {
    let s = strict().await;
    let mut c = connect(&s).await;
    let big = "a".repeat(32 * 1024);
    c.write_all(format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let seen = read_to_close(&mut c, Duration::from_secs(5)).await.unwrap();
    assert!(seen.starts_with("HTTP/1.1 431"), "{seen}");

    // More than 100 header lines, each small.
    let mut c = connect(&s).await;
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    c.write_all(format!("GET /health HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes())
        .await
        .unwrap();
    let seen = read_to_close(&mut c, Duration::from_secs(5)).await.unwrap();
    assert!(seen.starts_with("HTTP/1.1 431"), "{seen}");

    // Under the limit still works.
    let (st, _) = s.get("/health").await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn a_body_sent_too_slowly_gets_408() {
    let s = strict().await;
    let mut c = connect(&s).await;
    c.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\": ",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let seen = read_to_close(&mut c, Duration::from_secs(5)).await.unwrap();
    assert!(seen.starts_with("HTTP/1.1 408"), "{seen}");
    let body = &seen[seen.find("\r\n\r\n").unwrap() + 4..];
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{seen}"));
    assert_eq!(v["error"]["code"], "request_timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn too_many_messages_are_refused_naming_the_limit() {
    let s = strict().await;
    let messages: Vec<Value> = (0..9)
        .map(|i| json!({"role": "user", "content": format!("m{i}")}))
        .collect();
    let (st, _, v) = s
        .post(
            "/v1/chat/completions",
            &json!({"model": "fake-model", "messages": messages}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["param"], "messages");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("at most 8") && msg.contains("has 9"), "{msg}");
    let (st, _, v) = s
        .post(
            "/v1/responses",
            &json!({"model": "fake-model", "input": messages}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["param"], "input");
    // Eight is fine.
    let (st, _, _) = s
        .post(
            "/v1/chat/completions",
            &json!({"model": "fake-model", "max_tokens": 2, "messages": &messages[..8]}),
        )
        .await;
    assert_eq!(st, 200);
}

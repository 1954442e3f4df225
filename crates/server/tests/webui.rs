//! The web UI's server side over real HTTP (docs/UI-API.md), part two, against the fake backend
//! and a temporary SQLite store: conversations with server-owned generations (streamed,
//! stopped, resumed, finished with nobody listening), export/import, comparison runs. Part one
//! (static files, sessions) is webui_auth.rs; the harness is tests/common/webui.rs.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::webui::*;
use futures::StreamExt as _;
use hearth_server::fake::FakeConfig;
use hearth_server::ui::UiMode;
use reqwest::Method;
use serde_json::{json, Value};

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
    assert_eq!(stats["messages_dropped"], 0, "the whole conversation fits");
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
    let (s, _) = start(common::scripted("ok"), true, UiMode::Off).await;
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

/// The prompt text the fake backend got last (one byte per token).
fn last_prompt(s: &common::TestServer) -> String {
    let req = s.fake.last_request.lock().unwrap().clone().unwrap();
    String::from_utf8(
        req.prompt_tokens
            .iter()
            .flat_map(|&t| hearth_server::fake::FakeBackend::token_bytes(t))
            .collect(),
    )
    .unwrap()
}

/// An imported conversation of `turns` question/answer pairs (a chain), and its messages as
/// `(role, content)`, oldest first.
async fn long_conversation(
    s: &common::TestServer,
    sess: &Session,
    settings: Value,
    turns: usize,
) -> (String, Vec<(&'static str, String)>) {
    let mut msgs = Vec::new();
    let mut doc_msgs = Vec::new();
    for i in 0..turns {
        for (role, text) in [
            ("user", format!("question {i:02} about things")),
            ("assistant", format!("answer {i:02}, at some length")),
        ] {
            let n = doc_msgs.len();
            doc_msgs.push(json!({
                "id": format!("m{n}"),
                "parent_id": if n == 0 { Value::Null } else { json!(format!("m{}", n - 1)) },
                "role": role, "content": text, "status": "complete",
            }));
            msgs.push((role, text));
        }
    }
    let doc = json!({"hearth_export": 1, "title": "Long", "model": "fake-model",
                     "settings": settings, "messages": doc_msgs});
    let (st, c) = ui(
        s,
        sess,
        Method::POST,
        "/api/conversations/import",
        Some(&doc),
    )
    .await;
    assert_eq!(st, 201, "{c}");
    (c["id"].as_str().unwrap().to_string(), msgs)
}

/// The fake's prompt for the system prompt, `history` and the newest message.
fn prompt_of(system: &str, history: &[(&str, String)], newest: &str) -> String {
    let mut all: Vec<(&str, &str)> = vec![("system", system)];
    all.extend(history.iter().map(|(r, c)| (*r, c.as_str())));
    all.push(("user", newest));
    common::fake_prompt(&all)
}

#[tokio::test]
async fn a_long_conversation_sends_the_system_prompt_and_the_newest_messages_that_fit() {
    // Context 256 tokens (bytes); no max_tokens: 64 (a quarter) are kept for the reply.
    let (s, _) = start(common::scripted("ok"), true, UiMode::Off).await;
    let alice = login(&s, "alice").await;
    let (cid, history) = long_conversation(&s, &alice, json!({"system": "Be brief."}), 30).await;
    let (sent, done) =
        send_until_done(&s, &alice, &cid, json!({"content": "newest question"})).await;
    assert_eq!(done["content"], "ok");
    let dropped = done["stats"]["messages_dropped"].as_u64().unwrap() as usize;
    assert!(dropped > 0 && dropped < history.len(), "{done}");
    assert_eq!(dropped % 2, 0, "the kept part starts at a user message");
    // Known when the generation starts, so the UI can say so while it streams.
    assert_eq!(
        sent["assistant_message"]["stats"],
        json!({"messages_dropped": dropped})
    );

    // The prompt: the system prompt, then the newest messages, the oldest left out.
    let text = last_prompt(&s);
    assert_eq!(
        text,
        prompt_of("Be brief.", &history[dropped..], "newest question")
    );
    assert!(!text.contains("question 00"), "{text}");
    assert!(text.len() <= 256 - 64, "{} tokens", text.len());
    assert_eq!(done["stats"]["prompt_tokens"], text.len());
    // As many as fit: one more turn would not have.
    assert!(prompt_of("Be brief.", &history[dropped - 2..], "newest question").len() > 256 - 64);
    let saved = wait_saved(&s, &alice, &cid, done["id"].as_str().unwrap()).await;
    assert_eq!(saved["stats"]["messages_dropped"], dropped);

    // The conversation's max_tokens is the room kept for the reply: more is left out.
    set_settings(
        &s,
        &alice,
        &cid,
        json!({"system": "Be brief.", "max_tokens": 150}),
    )
    .await;
    let (_, done) = send_until_done(&s, &alice, &cid, json!({"content": "again"})).await;
    let text = last_prompt(&s);
    assert!(text.len() + 150 <= 256, "{} tokens", text.len());
    assert!(
        text.starts_with("<|system|>\nBe brief.\n<|user|>\n"),
        "{text}"
    );
    assert!(text.ends_with("<|user|>\nagain\n<|assistant|>\n"), "{text}");
    assert!(done["stats"]["messages_dropped"].as_u64().unwrap() > dropped as u64);

    // max_context_tokens: the conversation uses less than the model's context.
    set_settings(
        &s,
        &alice,
        &cid,
        json!({"system": "Be brief.", "max_context_tokens": 128}),
    )
    .await;
    send_until_done(&s, &alice, &cid, json!({"content": "capped"})).await;
    let text = last_prompt(&s);
    // A quarter of 128 kept for the reply.
    assert!(text.len() <= 96, "{} tokens", text.len());
    assert!(
        text.ends_with("<|user|>\ncapped\n<|assistant|>\n"),
        "{text}"
    );
    let req = s.fake.last_request.lock().unwrap().clone().unwrap();
    assert_eq!(
        req.max_tokens,
        128 - text.len(),
        "the reply may use the rest of the 128"
    );
    for bad in [json!(0), json!("many"), json!(-5)] {
        let (st, _) = ui(
            &s,
            &alice,
            Method::PATCH,
            &format!("/api/conversations/{cid}"),
            Some(&json!({"settings": {"max_context_tokens": bad}})),
        )
        .await;
        assert_eq!(st, 200);
        let (st, v) = ui(
            &s,
            &alice,
            Method::POST,
            &format!("/api/conversations/{cid}/messages"),
            Some(&json!({"content": "x"})),
        )
        .await;
        assert_eq!(st, 400, "{v}");
        assert_eq!(v["error"]["param"], "settings.max_context_tokens", "{v}");
    }
    let (st, _) = ui(
        &s,
        &alice,
        Method::PATCH,
        &format!("/api/conversations/{cid}"),
        Some(&json!({"settings": {"system": "Be brief."}})),
    )
    .await;
    assert_eq!(st, 200);

    // A newest message too long by itself: the context error, nothing saved.
    let (st, v) = ui(
        &s,
        &alice,
        Method::POST,
        &format!("/api/conversations/{cid}/messages"),
        Some(&json!({"content": "x".repeat(300)})),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert_error(&v, "context_length_exceeded");

    // /v1/chat/completions stays exact: the same history is refused, not shortened.
    let mut messages = vec![json!({"role": "system", "content": "Be brief."})];
    messages.extend(
        history
            .iter()
            .map(|(r, c)| json!({"role": r, "content": c})),
    );
    let (st, v) = ui(
        &s,
        &alice,
        Method::POST,
        "/v1/chat/completions",
        Some(&json!({"model": "fake-model", "messages": messages})),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert_error(&v, "context_length_exceeded");

    // A short conversation is sent whole.
    let short = new_conversation(&s, &alice, json!({})).await;
    let sent = send(&s, &alice, &short, json!({"content": "hi"})).await;
    assert_eq!(sent["assistant_message"]["stats"], Value::Null);
    let evs = events(&s, &alice, sent["generation_id"].as_str().unwrap(), "").await;
    let done = &evs.last().unwrap().1["message"];
    assert_eq!(done["stats"]["messages_dropped"], 0, "{done}");
    assert_eq!(last_prompt(&s), common::fake_prompt(&[("user", "hi")]));
}

#[tokio::test]
async fn a_conversation_over_max_messages_sends_the_newest_that_are_allowed() {
    let (s, _) = start_with(
        common::scripted("ok"),
        true,
        hearth_server::ServerConfig {
            max_messages: 5,
            ..Default::default()
        },
    )
    .await;
    let alice = login(&s, "alice").await;
    // 2 turns: short enough for the context, but 1 + 4 + 1 = 6 messages.
    let (cid, history) = long_conversation(&s, &alice, json!({"system": "S."}), 2).await;
    let sent = send(&s, &alice, &cid, json!({"content": "q"})).await;
    let evs = events(&s, &alice, sent["generation_id"].as_str().unwrap(), "").await;
    let done = &evs.last().unwrap().1["message"];
    assert_eq!(done["status"], "complete", "{done}");
    // The system prompt and at most 4 more, starting at a user message: 3.
    assert_eq!(done["stats"]["messages_dropped"], 2, "{done}");
    assert_eq!(last_prompt(&s), prompt_of("S.", &history[2..], "q"));
}

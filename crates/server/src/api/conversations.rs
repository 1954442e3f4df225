//! `/api/conversations...`: the web UI's stored conversations (docs/UI-API.md). Each belongs to
//! the caller's user name; another user's id answers 404 like an unknown one. Sending a
//! message starts a server-owned generation ([`crate::generations`]) through the same path as
//! `/v1/chat/completions`.

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_gateway::store::{Conversation, ConversationPatch, Message, Store, StoreError};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::generations::{message_json, Generation, Job};
use crate::json::{JsonBody, QueryParams};
use crate::state::SharedState;

pub const DEFAULT_TITLE: &str = "New conversation";

pub(crate) fn store(state: &SharedState) -> Result<Store, ApiError> {
    state.gateway.sql.clone().ok_or_else(|| {
        ApiError::not_found("This server runs without a database: conversations are off.")
    })
}

pub(crate) fn db(e: StoreError) -> ApiError {
    match e {
        StoreError::Invalid(m) => ApiError::bad_request(m),
        StoreError::NotFound { .. } => ApiError::not_found(e.to_string()),
        e => {
            tracing::error!("conversation store error: {e}");
            ApiError::internal("The database failed; see the server log.")
        }
    }
}

/// The caller's user name (see [`crate::gateway::owner_of`]).
pub(crate) fn owner() -> Result<String, ApiError> {
    crate::gateway::current()
        .and_then(|m| m.principal().map(crate::gateway::owner_of))
        .ok_or_else(|| ApiError::unauthorized("Missing API key."))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("No conversation '{id}'."))
}

fn now() -> i64 {
    crate::ids::unix_now() as i64
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

fn conversation_json(state: &SharedState, c: &Conversation, messages: Option<&[Message]>) -> Value {
    let mut v = json!({
        "id": c.id,
        "title": c.title,
        "model": c.model,
        "created": c.created,
        "updated": c.updated,
        "settings": c.settings,
        "active_generation": state.generations.active_for(&c.id).map(|g| g.id.clone()),
    });
    if let Some(ms) = messages {
        v["messages"] = ms.iter().map(message_json).collect();
    }
    v
}

fn check_settings(settings: &Value) -> Result<(), ApiError> {
    if !settings.is_object() {
        return Err(ApiError::invalid_param(
            "settings",
            "`settings` must be an object.",
        ));
    }
    Ok(())
}

fn check_title(t: &str) -> Result<(), ApiError> {
    if t.chars().count() > 500 {
        return Err(ApiError::invalid_param(
            "title",
            "`title` may be at most 500 characters.",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/conversations?q=&limit=&offset=`.
pub async fn list(
    State(state): State<SharedState>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Response, ApiError> {
    let owner = owner()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let offset = q.offset.unwrap_or(0).max(0);
    let (list, total) = store(&state)?
        .list_conversations(&owner, q.q.as_deref(), limit, offset)
        .await
        .map_err(db)?;
    let data: Vec<Value> = list
        .iter()
        .map(|c| conversation_json(&state, c, None))
        .collect();
    Ok(Json(json!({"data": data, "total": total})).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    title: Option<String>,
    model: Option<String>,
    settings: Option<Value>,
}

/// `POST /api/conversations`.
pub async fn create(
    State(state): State<SharedState>,
    body: Result<JsonBody<CreateBody>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(b) = body?;
    let owner = owner()?;
    let settings = b.settings.unwrap_or_else(|| json!({}));
    check_settings(&settings)?;
    let title = b.title.unwrap_or_else(|| DEFAULT_TITLE.into());
    check_title(&title)?;
    let t = now();
    let c = Conversation {
        id: new_id("c"),
        user: owner,
        title,
        model: b.model,
        settings,
        created: t,
        updated: t,
    };
    store(&state)?.create_conversation(&c).await.map_err(db)?;
    Ok((
        StatusCode::CREATED,
        Json(conversation_json(&state, &c, Some(&[]))),
    )
        .into_response())
}

/// `GET /api/conversations/{id}`: with every message (all branches).
pub async fn get(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let owner = owner()?;
    let st = store(&state)?;
    let c = st
        .conversation(&owner, &id)
        .await
        .map_err(db)?
        .ok_or_else(|| not_found(&id))?;
    let ms = st.messages(&id).await.map_err(db)?;
    Ok(Json(conversation_json(&state, &c, Some(&ms))).into_response())
}

/// `PATCH /api/conversations/{id}`: any of title, model, settings.
pub async fn patch(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    body: Result<JsonBody<Map<String, Value>>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(b) = body?;
    let owner = owner()?;
    let mut p = ConversationPatch::default();
    for (k, v) in b {
        match (k.as_str(), v) {
            ("title", Value::String(t)) => {
                check_title(&t)?;
                p.title = Some(t);
            }
            ("model", Value::String(m)) => p.model = Some(Some(m)),
            ("model", Value::Null) => p.model = Some(None),
            ("settings", s) => {
                check_settings(&s)?;
                p.settings = Some(s);
            }
            ("title" | "model", _) => {
                let msg = format!("`{k}` must be a string.");
                return Err(ApiError::invalid_param(k, msg));
            }
            _ => {
                return Err(ApiError::invalid_param(
                    k.clone(),
                    format!("Unknown field `{k}`: expected title, model or settings."),
                ))
            }
        }
    }
    let c = store(&state)?
        .update_conversation(&owner, &id, &p)
        .await
        .map_err(db)?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(conversation_json(&state, &c, None)).into_response())
}

/// `DELETE /api/conversations/{id}` (stops its running generation).
pub async fn delete(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let owner = owner()?;
    let st = store(&state)?;
    if st.conversation(&owner, &id).await.map_err(db)?.is_none() {
        return Err(not_found(&id));
    }
    if let Some(g) = state.generations.active_for(&id) {
        g.request_stop();
        g.wait_done(std::time::Duration::from_secs(5)).await;
    }
    if !st.delete_conversation(&owner, &id).await.map_err(db)? {
        return Err(not_found(&id));
    }
    Ok(Json(json!({"deleted": true})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    content: Option<String>,
    /// Missing: the latest leaf; `null`: a new root (an edit of the first message);
    /// an id: that message.
    #[serde(default, deserialize_with = "present")]
    parent_id: Option<Option<String>>,
    regenerate: Option<String>,
}

/// A field that is present (perhaps `null`) as `Some`, so `null` and missing differ.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The messages from the root to `leaf` (inclusive), in order.
fn path_to(messages: &[Message], leaf: Option<&str>) -> Vec<Message> {
    let by_id: HashMap<&str, &Message> = messages.iter().map(|m| (m.id.as_str(), m)).collect();
    let mut path = Vec::new();
    let mut cur = leaf;
    while let Some(id) = cur {
        let Some(m) = by_id.get(id) else { break };
        path.push((*m).clone());
        cur = m.parent_id.as_deref();
        if path.len() > messages.len() {
            break; // a cycle (only in a hand-edited database)
        }
    }
    path.reverse();
    path
}

/// The conversation's system prompt, when it has a non-blank one.
fn system_prompt(settings: &Value) -> Option<&str> {
    settings
        .get("system")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// The conversation's `max_context_tokens` setting (a positive integer, or unset / null).
fn max_context_tokens(settings: &Value) -> Result<Option<usize>, ApiError> {
    match settings.get("max_context_tokens") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64().filter(|&n| n > 0) {
            Some(n) => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
            None => Err(ApiError::invalid_param(
                "settings.max_context_tokens",
                format!("`max_context_tokens` must be a positive integer, got {v}."),
            )),
        },
    }
}

/// The chat request a conversation's settings and path make.
fn chat_request(model: &str, settings: &Value, path: &[Message]) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = system_prompt(settings) {
        messages.push(json!({"role": "system", "content": system}));
    }
    for m in path {
        if m.role == "assistant" && m.content.is_empty() {
            continue; // a failed or empty reply: nothing to show the model
        }
        if matches!(m.role.as_str(), "user" | "assistant" | "system") {
            messages.push(json!({"role": m.role, "content": m.content}));
        }
    }
    let mut req = json!({"model": model, "messages": messages});
    for k in [
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "max_tokens",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "reasoning_effort",
    ] {
        if let Some(v) = settings.get(k).filter(|v| !v.is_null()) {
            req[k] = v.clone();
        }
    }
    req
}

/// `POST /api/conversations/{id}/messages`: send (`content`, `parent_id`) or `regenerate`.
pub async fn send(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    body: Result<JsonBody<SendBody>, ApiError>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let JsonBody(b) = body?;
    let owner = owner()?;
    let st = store(&state)?;
    let conv = st
        .conversation(&owner, &id)
        .await
        .map_err(db)?
        .ok_or_else(|| not_found(&id))?;
    // Held until the generation is registered: a second send meanwhile gets 409 too.
    let _starting = state.generations.begin(&id).ok_or_else(|| {
        ApiError::conflict("A reply is still being generated in this conversation: stop it first.")
    })?;
    let messages = st.messages(&id).await.map_err(db)?;
    let find = |mid: &str, param: &str| {
        messages
            .iter()
            .find(|m| m.id == mid)
            .cloned()
            .ok_or_else(|| {
                ApiError::invalid_param(param, format!("No message '{mid}' in this conversation."))
            })
    };
    let (user_message, parent) = match (b.content, b.parent_id, b.regenerate) {
        (Some(content), parent_id, None) => {
            if content.trim().is_empty() {
                return Err(ApiError::invalid_param("content", "`content` is empty."));
            }
            let parent = match parent_id {
                Some(Some(p)) => Some(find(&p, "parent_id")?.id),
                // A sibling of the first message.
                Some(None) => None,
                // The latest leaf: the newest message (children come after their parents).
                None => messages.last().map(|m| m.id.clone()),
            };
            let m = Message {
                id: new_id("m"),
                conversation_id: id.clone(),
                parent_id: parent,
                role: "user".into(),
                content,
                reasoning: None,
                model: None,
                status: "complete".into(),
                error: None,
                stats: None,
                created: now(),
            };
            let parent_of_reply = m.id.clone();
            (Some(m), parent_of_reply)
        }
        (None, None, Some(r)) => {
            let target = find(&r, "regenerate")?;
            let parent = if target.role == "assistant" {
                target.parent_id.clone().ok_or_else(|| {
                    ApiError::invalid_param("regenerate", "This reply answers no message.")
                })?
            } else {
                target.id.clone()
            };
            (None, parent)
        }
        _ => {
            return Err(ApiError::bad_request(
                "Send {\"content\", \"parent_id\"?} or {\"regenerate\": message id}.",
            ))
        }
    };
    let path = match &user_message {
        Some(u) => {
            let mut p = path_to(&messages, u.parent_id.as_deref());
            p.push(u.clone());
            p
        }
        None => path_to(&messages, Some(&parent)),
    };
    let model = match conv.model.clone() {
        Some(m) => m,
        None => state
            .backend
            .models()
            .first()
            .map(|m| m.id.clone())
            .ok_or_else(|| ApiError::unavailable("No model is loaded."))?,
    };
    let req_json = chat_request(&model, &conv.settings, &path);
    let req: super::chat::ChatCompletionRequest = serde_json::from_value(req_json)
        .map_err(|e| ApiError::invalid_param("settings", format!("Bad settings: {e}")))?;
    // A history too long for the model: the system prompt and the newest messages that fit.
    let fit = super::chat::Fit {
        head: usize::from(system_prompt(&conv.settings).is_some()),
        max_context_tokens: max_context_tokens(&conv.settings)?,
    };
    let mut prepared = super::chat::prepare_fitted(&state, req, fit).await?;
    if prepared.messages_dropped > 0 {
        tracing::debug!(
            conversation = %id,
            dropped = prepared.messages_dropped,
            prompt_tokens = prepared.prompt_tokens,
            "the oldest messages were left out to fit the context"
        );
    }
    let Some(choice) = prepared.choices.pop() else {
        return Err(ApiError::internal("no generation was started"));
    };
    let assistant = Message {
        id: new_id("m"),
        conversation_id: id.clone(),
        parent_id: Some(parent),
        role: "assistant".into(),
        content: String::new(),
        reasoning: None,
        model: Some(prepared.model.clone()),
        status: "generating".into(),
        error: None,
        // Known before the reply: the UI says so while it streams.
        stats: (prepared.messages_dropped > 0)
            .then(|| json!({"messages_dropped": prepared.messages_dropped})),
        created: now(),
    };
    // Saved only now that the backend took the request (a refused one leaves no trace).
    if let Some(u) = &user_message {
        st.insert_message(u).await.map_err(db)?;
        if conv.title == DEFAULT_TITLE || conv.title.trim().is_empty() {
            let title: String = u.content.trim().chars().take(60).collect();
            let _ = st
                .update_conversation(
                    &owner,
                    &id,
                    &ConversationPatch {
                        title: Some(title),
                        ..Default::default()
                    },
                )
                .await;
        }
    }
    st.insert_message(&assistant).await.map_err(db)?;
    let gen = Generation::new(
        owner,
        id.clone(),
        assistant.id.clone(),
        prepared.model.clone(),
    );
    state.generations.insert(gen.clone());
    let job = Job {
        gen: gen.clone(),
        choice,
        message: assistant.clone(),
        prompt_tokens: prepared.prompt_tokens,
        context_length: prepared.context_length,
        opens_think: prepared.opens_think,
        messages_dropped: prepared.messages_dropped,
        started,
    };
    // Its own task, with this request's meter: billed and audited when the reply ends.
    tokio::spawn(crate::gateway::carry(crate::generations::run(
        state.clone(),
        job,
    )));
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "user_message": user_message.as_ref().map(message_json),
            "assistant_message": message_json(&assistant),
            "generation_id": gen.id,
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct ExportQuery {
    format: Option<String>,
}

/// `GET /api/conversations/{id}/export?format=md|json`.
pub async fn export(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<ExportQuery>,
) -> Result<Response, ApiError> {
    let owner = owner()?;
    let st = store(&state)?;
    let c = st
        .conversation(&owner, &id)
        .await
        .map_err(db)?
        .ok_or_else(|| not_found(&id))?;
    let ms = st.messages(&id).await.map_err(db)?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => {
            let doc = json!({
                "hearth_export": 1,
                "title": c.title,
                "model": c.model,
                "settings": c.settings,
                "created": c.created,
                "messages": ms.iter().map(|m| json!({
                    "id": m.id, "parent_id": m.parent_id, "role": m.role, "content": m.content,
                    "reasoning": m.reasoning, "model": m.model, "status": m.status,
                    "stats": m.stats, "created": m.created,
                })).collect::<Vec<_>>(),
            });
            Ok(Json(doc).into_response())
        }
        "md" | "markdown" => {
            // The path to the most recent leaf, as the UI shows it by default.
            let path = path_to(&ms, ms.last().map(|m| m.id.as_str()));
            let mut md = format!("# {}\n\n", c.title);
            if let Some(m) = &c.model {
                md.push_str(&format!("Model: {m}\n\n"));
            }
            if let Some(s) = c.settings.get("system").and_then(Value::as_str) {
                if !s.trim().is_empty() {
                    md.push_str(&format!("## System\n\n{s}\n\n"));
                }
            }
            for m in &path {
                let who = match m.role.as_str() {
                    "user" => "User".to_string(),
                    "assistant" => match &m.model {
                        Some(model) => format!("Assistant ({model})"),
                        None => "Assistant".into(),
                    },
                    r => r.to_string(),
                };
                md.push_str(&format!("## {who}\n\n"));
                if let Some(r) = m.reasoning.as_deref().filter(|r| !r.trim().is_empty()) {
                    md.push_str("<details><summary>Reasoning</summary>\n\n");
                    md.push_str(r.trim());
                    md.push_str("\n\n</details>\n\n");
                }
                md.push_str(m.content.trim_end());
                md.push_str("\n\n");
            }
            let mut resp = md.into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/markdown; charset=utf-8"),
            );
            Ok(resp)
        }
        other => Err(ApiError::invalid_param(
            "format",
            format!("`format` must be md or json, got {other:?}."),
        )),
    }
}

/// `POST /api/conversations/import`: an export document; new ids throughout.
pub async fn import(
    State(state): State<SharedState>,
    body: Result<JsonBody<Value>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(doc) = body?;
    let owner = owner()?;
    if doc.get("hearth_export").and_then(Value::as_i64) != Some(1) {
        return Err(ApiError::invalid_param(
            "hearth_export",
            "Not a Hearth export (expected \"hearth_export\": 1).",
        ));
    }
    let title = doc
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_TITLE)
        .to_string();
    check_title(&title)?;
    let settings = doc.get("settings").cloned().unwrap_or_else(|| json!({}));
    let settings = if settings.is_null() {
        json!({})
    } else {
        settings
    };
    check_settings(&settings)?;
    let t = now();
    let created = doc.get("created").and_then(Value::as_i64).unwrap_or(t);
    let c = Conversation {
        id: new_id("c"),
        user: owner,
        title,
        model: doc.get("model").and_then(Value::as_str).map(String::from),
        settings,
        created,
        updated: t,
    };
    let empty = Vec::new();
    let raw = match doc.get("messages") {
        None | Some(Value::Null) => &empty,
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "messages",
                "`messages` must be an array.",
            ))
        }
    };
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut messages = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        let s = |k: &str| m.get(k).and_then(Value::as_str).map(String::from);
        let role = s("role").unwrap_or_default();
        if !matches!(role.as_str(), "user" | "assistant" | "system") {
            return Err(ApiError::invalid_param(
                format!("messages[{i}].role"),
                format!("Invalid role {role:?}: expected user, assistant or system."),
            ));
        }
        let Some(content) = s("content") else {
            return Err(ApiError::invalid_param(
                format!("messages[{i}].content"),
                "`content` must be a string.",
            ));
        };
        let new = new_id("m");
        if let Some(old) = s("id") {
            ids.insert(old, new.clone());
        }
        let status = match s("status").as_deref() {
            Some("complete") | None => "complete",
            Some("error") => "error",
            // Nothing is generating in the imported copy.
            Some(_) => "stopped",
        };
        messages.push(Message {
            id: new,
            conversation_id: c.id.clone(),
            parent_id: s("parent_id").and_then(|p| ids.get(&p).cloned()),
            role,
            content,
            reasoning: s("reasoning"),
            model: s("model"),
            status: status.into(),
            error: None,
            stats: m.get("stats").filter(|v| v.is_object()).cloned(),
            created: m.get("created").and_then(Value::as_i64).unwrap_or(t),
        });
    }
    let st = store(&state)?;
    st.create_conversation(&c).await.map_err(db)?;
    for m in &messages {
        st.insert_message(m).await.map_err(db)?;
    }
    Ok((
        StatusCode::CREATED,
        Json(conversation_json(&state, &c, Some(&messages))),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, parent: Option<&str>, role: &str, content: &str) -> Message {
        Message {
            id: id.into(),
            conversation_id: "c".into(),
            parent_id: parent.map(String::from),
            role: role.into(),
            content: content.into(),
            reasoning: None,
            model: None,
            status: "complete".into(),
            error: None,
            stats: None,
            created: 0,
        }
    }

    #[test]
    fn the_path_follows_parents_and_the_request_carries_settings() {
        let ms = [
            m("1", None, "user", "hi"),
            m("2", Some("1"), "assistant", "hello"),
            m("3", Some("1"), "assistant", "hey"),
            m("4", Some("3"), "user", "how?"),
        ];
        let p: Vec<_> = path_to(&ms, Some("4")).into_iter().map(|m| m.id).collect();
        assert_eq!(p, ["1", "3", "4"]);
        assert!(path_to(&ms, None).is_empty());
        let req = chat_request(
            "mod",
            &json!({"system": "be brief", "temperature": 0.2, "max_tokens": null}),
            &path_to(&ms, Some("4")),
        );
        assert_eq!(
            req["messages"][0],
            json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(req["messages"].as_array().unwrap().len(), 4);
        assert_eq!(req["temperature"], 0.2);
        assert!(req.get("max_tokens").is_none());
    }
}

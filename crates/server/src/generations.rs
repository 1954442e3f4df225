//! Server-owned generations of the web UI (docs/UI-API.md): a reply runs on its own task,
//! whether or not any client listens, and is saved to the conversation when it ends.
//!
//! The [`Registry`] in `AppState` holds each generation's event log (its deltas in order), its
//! end (the saved message) and a version counter that followers wait on, so
//! `GET /api/generations/{gid}/events?from=N` replays events N.. and then follows, ending with
//! one `done` event. `POST .../stop` cancels at once: the task drops its `Choice`, which drops
//! the backend's receiver, so the backend frees the sequence; the partial reply is saved as
//! `stopped`. Finished generations stay replayable for [`KEEP_FINISHED`]; at shutdown the
//! running ones are stopped and saved the same way.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream;
use hearth_gateway::store::Message;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::error::ApiError;
use crate::generation::{Choice, ChoiceEvent, Finish};
use crate::json::QueryParams;
use crate::state::SharedState;

/// How long an ended generation can still be replayed.
pub const KEEP_FINISHED: Duration = Duration::from_secs(600);

/// One generation.
pub struct Generation {
    pub id: String,
    /// The user name it belongs to (only they may see or stop it).
    pub owner: String,
    pub conversation_id: String,
    pub message_id: String,
    pub model: String,
    /// Unix seconds.
    pub started: i64,
    log: Mutex<Log>,
    version: watch::Sender<u64>,
    stop: watch::Sender<bool>,
}

#[derive(Default)]
struct Log {
    events: Vec<Value>,
    /// The saved message, once ended.
    done: Option<Value>,
    ended_at: Option<Instant>,
}

impl Generation {
    pub fn new(
        owner: String,
        conversation_id: String,
        message_id: String,
        model: String,
    ) -> Arc<Self> {
        Arc::new(Generation {
            id: format!("g_{}", uuid::Uuid::new_v4().simple()),
            owner,
            conversation_id,
            message_id,
            model,
            started: crate::ids::unix_now() as i64,
            log: Mutex::default(),
            version: watch::channel(0).0,
            stop: watch::channel(false).0,
        })
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, ev: Value) {
        self.log().events.push(ev);
        self.version.send_modify(|v| *v += 1);
    }

    fn finish(&self, message: Value) {
        {
            let mut l = self.log();
            l.done = Some(message);
            l.ended_at = Some(Instant::now());
        }
        self.version.send_modify(|v| *v += 1);
    }

    pub fn running(&self) -> bool {
        self.log().done.is_none()
    }

    /// Ask the task to stop (it saves the partial reply).
    pub fn request_stop(&self) {
        self.stop.send_replace(true);
    }

    /// Wait until the generation has ended and its message is saved (at most `limit`).
    pub async fn wait_done(&self, limit: Duration) -> bool {
        let mut rx = self.version.subscribe();
        let wait = async {
            loop {
                rx.borrow_and_update();
                if !self.running() {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    fn summary(&self) -> Value {
        json!({
            "id": self.id,
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "model": self.model,
            "started": self.started,
        })
    }
}

/// The generations of this server (running, and ended within [`KEEP_FINISHED`]).
#[derive(Default)]
pub struct Registry {
    map: Mutex<HashMap<String, Arc<Generation>>>,
    /// Conversations whose generation is being started (between the check and the insert).
    starting: Mutex<std::collections::HashSet<String>>,
}

/// Holds a conversation's place while its generation starts (see [`Registry::begin`]).
pub struct Starting<'a> {
    registry: &'a Registry,
    conversation_id: String,
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.registry
            .starting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.conversation_id);
    }
}

impl Registry {
    /// Claim a conversation for a new generation: `None` while one is running or starting, so
    /// two sends at once cannot both start. Insert the generation before dropping the claim.
    pub fn begin(&self, conversation_id: &str) -> Option<Starting<'_>> {
        // Lock order: `starting`, then `map` (inside `active_for`); nothing takes them the
        // other way round.
        let mut starting = self.starting.lock().unwrap_or_else(|p| p.into_inner());
        if starting.contains(conversation_id) || self.active_for(conversation_id).is_some() {
            return None;
        }
        starting.insert(conversation_id.to_string());
        Some(Starting {
            registry: self,
            conversation_id: conversation_id.to_string(),
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Generation>>> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, g| match g.log().ended_at {
            None => true,
            Some(t) => t.elapsed() < KEEP_FINISHED,
        });
        m
    }

    pub fn insert(&self, g: Arc<Generation>) {
        self.map().insert(g.id.clone(), g);
    }

    /// The generation `id` if `owner` owns it (else `None`, as for an unknown id).
    pub fn get(&self, id: &str, owner: &str) -> Option<Arc<Generation>> {
        self.map().get(id).filter(|g| g.owner == owner).cloned()
    }

    /// `owner`'s running generations, oldest first.
    pub fn running(&self, owner: &str) -> Vec<Arc<Generation>> {
        let mut v: Vec<_> = self
            .map()
            .values()
            .filter(|g| g.owner == owner && g.running())
            .cloned()
            .collect();
        v.sort_by_key(|g| g.started);
        v
    }

    /// The running generation of a conversation, if any.
    pub fn active_for(&self, conversation_id: &str) -> Option<Arc<Generation>> {
        self.map()
            .values()
            .find(|g| g.conversation_id == conversation_id && g.running())
            .cloned()
    }

    /// Stop every running generation and wait (at most `limit`) until they are saved.
    pub async fn stop_all(&self, limit: Duration) {
        let running: Vec<_> = self
            .map()
            .values()
            .filter(|g| g.running())
            .cloned()
            .collect();
        for g in &running {
            g.request_stop();
        }
        let deadline = Instant::now() + limit;
        for g in running {
            g.wait_done(deadline.saturating_duration_since(Instant::now()))
                .await;
        }
    }
}

/// Splits `<think>…</think>` (Qwen3, GLM, DeepSeek-R1 style) out of streamed text: reasoning
/// goes apart from content. A `<think>` is recognized only at the start of the reply; a
/// partial tag at the end of a piece is held back until the next piece decides it.
pub struct ThinkSplitter {
    in_think: bool,
    /// Content other than whitespace has been sent: no `<think>` can open any more.
    seen_content: bool,
    pending: String,
}

/// A piece of split output.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    Content(String),
    Reasoning(String),
}

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// Length of the longest suffix of `s` that is a proper prefix of `tag`.
fn partial_suffix(s: &str, tag: &str) -> usize {
    (1..tag.len().min(s.len() + 1))
        .rev()
        .find(|&k| s.is_char_boundary(s.len() - k) && tag.starts_with(&s[s.len() - k..]))
        .unwrap_or(0)
}

impl ThinkSplitter {
    pub fn new(starts_in_think: bool) -> Self {
        ThinkSplitter {
            in_think: starts_in_think,
            seen_content: false,
            pending: String::new(),
        }
    }

    pub fn feed(&mut self, text: &str) -> Vec<Piece> {
        self.pending.push_str(text);
        let mut out = Vec::new();
        loop {
            if self.in_think {
                if let Some(i) = self.pending.find(CLOSE) {
                    let r: String = self.pending[..i].to_string();
                    self.pending.drain(..i + CLOSE.len());
                    push(&mut out, Piece::Reasoning(r));
                    self.in_think = false;
                    continue;
                }
                let keep = partial_suffix(&self.pending, CLOSE);
                let r: String = self.pending.drain(..self.pending.len() - keep).collect();
                push(&mut out, Piece::Reasoning(r));
                return out;
            }
            if self.seen_content {
                push(&mut out, Piece::Content(std::mem::take(&mut self.pending)));
                return out;
            }
            let trimmed = self.pending.trim_start();
            if trimmed.is_empty() || (OPEN.starts_with(trimmed) && trimmed.len() < OPEN.len()) {
                return out; // wait: whitespace only, or maybe the start of <think>
            }
            if let Some(rest) = trimmed.strip_prefix(OPEN) {
                self.pending = rest.to_string();
                self.in_think = true;
                continue;
            }
            // The reply proper (leading whitespace, e.g. after </think>, dropped).
            self.pending = trimmed.to_string();
            self.seen_content = true;
        }
    }

    /// What is still held back, at the end of the output.
    pub fn finish(&mut self) -> Vec<Piece> {
        let rest = std::mem::take(&mut self.pending);
        let mut out = Vec::new();
        if self.in_think {
            push(&mut out, Piece::Reasoning(rest));
        } else if self.seen_content {
            push(&mut out, Piece::Content(rest));
        } else {
            push(&mut out, Piece::Content(rest.trim_start().to_string()));
        }
        out
    }
}

fn push(out: &mut Vec<Piece>, p: Piece) {
    match &p {
        Piece::Content(s) | Piece::Reasoning(s) if s.is_empty() => {}
        _ => out.push(p),
    }
}

/// The Message object of docs/UI-API.md.
pub fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id,
        "parent_id": m.parent_id,
        "role": m.role,
        "content": m.content,
        "reasoning": m.reasoning,
        "model": m.model,
        "status": m.status,
        "error": m.error,
        "stats": m.stats,
        "created": m.created,
    })
}

/// What the task needs besides the choice.
pub struct Job {
    pub gen: Arc<Generation>,
    pub choice: Choice,
    pub message: Message,
    pub prompt_tokens: usize,
    pub context_length: usize,
    pub opens_think: bool,
    /// Messages of the conversation left out to fit the context.
    pub messages_dropped: usize,
    pub started: Instant,
}

/// The generation's task: consume the choice into the event log until it ends, is stopped or
/// the server shuts down; then save the message and record the end.
pub async fn run(state: SharedState, job: Job) {
    let Job {
        gen,
        choice,
        mut message,
        prompt_tokens,
        context_length,
        opens_think,
        messages_dropped,
        started,
    } = job;
    let mut choice = Some(choice);
    let mut split = ThinkSplitter::new(opens_think);
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut first_token: Option<Instant> = None;
    let mut reasoning_span: Option<(Instant, Instant)> = None;
    let mut pieces = 0usize;
    let mut reasoning_pieces = 0usize;
    let mut completion_tokens: Option<usize> = None;
    let mut finish_reason: Option<&'static str> = None;
    let mut error: Option<String> = None;
    let mut stop_rx = gen.stop.subscribe();
    let mut status = "complete";

    let mut emit = |pieces_out: Vec<Piece>,
                    content: &mut String,
                    reasoning: &mut String,
                    reasoning_span: &mut Option<(Instant, Instant)>| {
        for p in pieces_out {
            let now = Instant::now();
            match p {
                Piece::Content(t) => {
                    content.push_str(&t);
                    gen.push(json!({"type": "delta", "content": t}));
                }
                Piece::Reasoning(t) => {
                    reasoning_pieces += 1;
                    *reasoning_span = Some(match *reasoning_span {
                        Some((a, _)) => (a, now),
                        None => (now, now),
                    });
                    reasoning.push_str(&t);
                    gen.push(json!({"type": "delta", "reasoning": t}));
                }
            }
        }
    };

    while let Some(c) = choice.as_mut() {
        let ev = tokio::select! {
            _ = stop_rx.wait_for(|s| *s) => { status = "stopped"; break; }
            _ = state.aborted() => { status = "stopped"; break; }
            ev = c.next() => ev,
        };
        let Some(ev) = ev else { break };
        let now = Instant::now();
        match ev {
            ChoiceEvent::Delta { text, .. } => {
                if text.is_empty() {
                    continue;
                }
                pieces += 1;
                first_token.get_or_insert(now);
                let out = split.feed(&text);
                emit(out, &mut content, &mut reasoning, &mut reasoning_span);
            }
            ChoiceEvent::Reasoning(r) => {
                if r.is_empty() {
                    continue;
                }
                pieces += 1;
                first_token.get_or_insert(now);
                emit(
                    vec![Piece::Reasoning(r)],
                    &mut content,
                    &mut reasoning,
                    &mut reasoning_span,
                );
            }
            // The UI sends no tools; a model that calls one anyway ends its reply there.
            ChoiceEvent::ToolCalls(_)
            | ChoiceEvent::ToolCallStart { .. }
            | ChoiceEvent::ToolCallArgs { .. } => {}
            ChoiceEvent::Finished {
                reason,
                completion_tokens: n,
            } => {
                completion_tokens = Some(n);
                finish_reason = Some(reason.as_str());
                if reason == Finish::ContentFilter {
                    error = Some("The rest of the reply was blocked by a guardrail.".into());
                }
            }
            ChoiceEvent::Error(e) => {
                status = "error";
                error = Some(format!("generation failed: {e}"));
            }
        }
    }
    // Cancel at once: dropping the choice drops the backend's receiver (and bills the meter).
    drop(choice.take());
    let rest = split.finish();
    emit(rest, &mut content, &mut reasoning, &mut reasoning_span);

    let end = Instant::now();
    let tokens = completion_tokens.unwrap_or(pieces);
    let ttft_ms = first_token.map(|t| t.duration_since(started).as_millis() as u64);
    let tokens_per_s = match first_token {
        Some(t) if tokens > 1 && end > t => {
            let s = end.duration_since(t).as_secs_f64();
            ((tokens - 1) as f64 / s * 100.0).round() / 100.0
        }
        _ => 0.0,
    };
    let reasoning_ms = reasoning_span.map(|(a, b)| {
        let from = first_token.map_or(a, |t| t.min(a));
        b.duration_since(from).as_millis() as u64
    });
    message.content = content;
    message.reasoning = (!reasoning.is_empty()).then_some(reasoning);
    message.status = status.into();
    if status == "stopped"
        && error.is_none()
        && state.draining.load(std::sync::atomic::Ordering::Relaxed)
    {
        error = Some("The server shut down during the generation.".into());
    }
    message.error = error;
    message.stats = Some(json!({
        "ttft_ms": ttft_ms,
        "tokens_per_s": tokens_per_s,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": tokens,
        "reasoning_ms": reasoning_ms,
        "reasoning_tokens": reasoning_pieces,
        "context_length": context_length,
        "finish_reason": finish_reason,
        "messages_dropped": messages_dropped,
    }));
    if let Some(store) = &state.gateway.sql {
        if let Err(e) = store.update_message(&message).await {
            tracing::error!(generation = %gen.id, "saving the reply failed: {e}");
        }
    }
    gen.finish(message_json(&message));
}

fn owner(state: &SharedState) -> Result<String, ApiError> {
    let _ = state;
    crate::gateway::current()
        .and_then(|m| m.principal().map(crate::gateway::owner_of))
        .ok_or_else(|| ApiError::unauthorized("Missing API key."))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("No generation '{id}'."))
}

#[derive(Deserialize)]
pub struct EventsQuery {
    from: Option<u64>,
}

/// `GET /api/generations/{gid}/events?from=N`.
pub async fn events(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let owner = owner(&state)?;
    let gen = state
        .generations
        .get(&id, &owner)
        .ok_or_else(|| not_found(&id))?;
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let from = q.from.or(last_id.map(|n| n + 1)).unwrap_or(0) as usize;
    struct Follow {
        gen: Arc<Generation>,
        rx: watch::Receiver<u64>,
        next: usize,
        buf: VecDeque<Event>,
        ended: bool,
    }
    let f = Follow {
        rx: gen.version.subscribe(),
        gen,
        next: from,
        buf: VecDeque::new(),
        ended: false,
    };
    let s = stream::unfold(f, |mut f| async move {
        loop {
            if let Some(ev) = f.buf.pop_front() {
                return Some((Ok::<_, Infallible>(ev), f));
            }
            if f.ended {
                return None;
            }
            f.rx.borrow_and_update();
            let (new, done, total) = {
                let l = f.gen.log();
                let new: Vec<Value> = l.events.iter().skip(f.next).cloned().collect();
                (new, l.done.clone(), l.events.len())
            };
            for ev in new {
                f.buf
                    .push_back(Event::default().id(f.next.to_string()).data(ev.to_string()));
                f.next += 1;
            }
            if let Some(message) = done {
                if f.next <= total {
                    let ev = json!({"type": "done", "message": message});
                    f.buf
                        .push_back(Event::default().id(total.to_string()).data(ev.to_string()));
                }
                f.ended = true;
                continue;
            }
            if !f.buf.is_empty() {
                continue;
            }
            if f.rx.changed().await.is_err() {
                f.ended = true;
            }
        }
    });
    Ok(Sse::new(s)
        .keep_alive(KeepAlive::new().interval(state.config.sse_keep_alive))
        .into_response())
}

/// `POST /api/generations/{gid}/stop`.
pub async fn stop(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let owner = owner(&state)?;
    let gen = state
        .generations
        .get(&id, &owner)
        .ok_or_else(|| not_found(&id))?;
    gen.request_stop();
    gen.wait_done(Duration::from_secs(10)).await;
    Ok(Json(json!({"stopped": true})).into_response())
}

/// `GET /api/generations`: the caller's running generations.
pub async fn list(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let owner = owner(&state)?;
    let data: Vec<Value> = state
        .generations
        .running(&owner)
        .iter()
        .map(|g| g.summary())
        .collect();
    Ok(Json(json!({"data": data})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(start: bool, chunks: &[&str]) -> (String, String) {
        let mut s = ThinkSplitter::new(start);
        let mut c = String::new();
        let mut r = String::new();
        let mut all: Vec<Piece> = chunks.iter().flat_map(|t| s.feed(t)).collect();
        all.extend(s.finish());
        for p in all {
            match p {
                Piece::Content(t) => c.push_str(&t),
                Piece::Reasoning(t) => r.push_str(&t),
            }
        }
        (c, r)
    }

    #[test]
    fn think_blocks_become_reasoning_in_any_chunking() {
        let text = "<think>\nLet me see.\n</think>\n\nThe answer is 4.";
        let whole = split(false, &[text]);
        assert_eq!(whole, ("The answer is 4.".into(), "\nLet me see.\n".into()));
        // Byte-by-byte (char boundaries) gives the same.
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(split(false, &refs), whole);
        // The template opened the block.
        assert_eq!(
            split(true, &["Hmm", "</thi", "nk>Yes"]),
            ("Yes".into(), "Hmm".into())
        );
        // No think at all; a later <think> is just text; a lone "<" is content.
        assert_eq!(
            split(false, &["Hello <think>"]),
            ("Hello <think>".into(), String::new())
        );
        assert_eq!(split(false, &["<"]), ("<".into(), String::new()));
        assert_eq!(
            split(false, &["  <thinking"]),
            ("<thinking".into(), String::new())
        );
        // Unclosed reasoning stays reasoning.
        assert_eq!(
            split(false, &["<think>abc</th"]),
            (String::new(), "abc</th".into())
        );
        // Multi-byte text next to a partial tag.
        assert_eq!(split(true, &["é</", "think>ü"]), ("ü".into(), "é".into()));
    }
}

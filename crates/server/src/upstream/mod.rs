//! Upstream routing: a model id served by other OpenAI-compatible servers (another Hearth
//! replica, vLLM, llama-server, a cloud API) instead of a local model, behind the same keys,
//! limits, guardrails and audit as the local ones (`[[upstreams]]` in the config file).
//!
//! The request path: [`intercept`] sits on `/v1/chat/completions`, `/v1/completions` and
//! `/v1/responses`, inside the gateway middleware (so the caller is authenticated and metered
//! already). It reads the body's `model`; for an upstream id it runs the input guardrails (the
//! server's policy, then the route's own PII policy: `redact` or `block` so that PII never
//! leaves the machine), admits the request with the gateway on that id (allow-list, limits;
//! the prompt size is estimated, then reconciled with the upstream's `usage`), and forwards
//! the body to one of the route's targets, round robin over those whose circuit breaker is
//! closed. A target that cannot be reached, times out, or answers 5xx/429 is skipped for the
//! next one; when every target failed (saturated ones included) the request goes to the
//! route's `fallback` model (local or another upstream), or gets a 502 naming each failure.
//! Output guardrails apply to what comes back, also while streaming. A Responses API request
//! is forwarded to the target's `/responses` the same way: its `input` and `instructions`
//! texts are what the guardrails see, its typed stream events are relayed with the output
//! filter on the `response.output_text.delta` texts.
//!
//! A local model may have a saturation fallback too (`fallback` in its `[[models]]` table,
//! [`Upstreams::with_local_fallbacks`]): when its queue is full (the backend's `QueueFull`,
//! marked on the response by [`QueueFull`]) the request runs on that model instead of being
//! refused with 429.
//!
//! Circuit breaker per target (the classic closed → open → half-open cycle, as Envoy's outlier
//! detection and resilience4j use): `failures` consecutive failures open it for `open_for`;
//! then one trial request (or health check) is let through; success closes it, failure opens
//! it again. A health check (`GET {url}/models`) runs every `health_interval` for every target.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use hearth_guard::{Action, Guard, OutputFilter, RuleKind};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ApiError, ApiResult, QueueFull};
use crate::state::SharedState;

mod relay;
use relay::{stream_response, ChatRelay, Relay, ResponsesRelay};

/// What a route does with PII (the detectors of [`hearth_guard`]) in a request before it
/// leaves the machine.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PiiPolicy {
    /// Send as it is (the server's own guardrails still apply).
    #[default]
    Allow,
    /// Replace each PII span by its placeholder (`[cn_id]`, ...) before sending.
    Redact,
    /// Refuse the request (400 `content_filter`) when it contains PII.
    Block,
}

/// One `[[upstreams]]` table.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// The model id clients use.
    pub id: String,
    /// Base URLs of the targets, up to the API version (`http://10.0.0.2:8000/v1`).
    pub urls: Vec<String>,
    /// The key sent upstream as `Authorization: Bearer` (prefer `api_key_env`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// The environment variable holding that key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The model name upstream (default: `id`).
    #[serde(default)]
    pub model: Option<String>,
    /// The model (local or upstream id) used when every target failed.
    #[serde(default)]
    pub fallback: Option<String>,
    #[serde(default)]
    pub pii: PiiPolicy,
    /// Reported in `/v1/models` (the upstream's context is not known here).
    #[serde(default)]
    pub context_length: Option<usize>,
    /// Longest wait for an upstream answer (whole body, or between two streamed chunks).
    #[serde(default)]
    pub timeout_s: Option<u64>,
}

impl fmt::Debug for UpstreamSpec {
    // Never print the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamSpec")
            .field("id", &self.id)
            .field("urls", &self.urls)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_env", &self.api_key_env)
            .field("model", &self.model)
            .field("fallback", &self.fallback)
            .field("pii", &self.pii)
            .finish()
    }
}

/// Circuit breaker and health check settings (the same for every target).
#[derive(Clone, Debug)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long an open breaker refuses requests before a trial.
    pub open_for: Duration,
    /// Interval of `GET {url}/models` health checks (`Duration::ZERO`: none).
    pub health_interval: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: 3,
            open_for: Duration::from_secs(30),
            health_interval: Duration::from_secs(10),
        }
    }
}

/// A wrong `[[upstreams]]` table (or `fallback` of a `[[models]]` one).
#[derive(Debug, thiserror::Error)]
#[error("{what} {id:?}: {message}")]
pub struct UpstreamError {
    /// `upstream` or `model`.
    pub what: &'static str,
    pub id: String,
    pub message: String,
}

/// Tokens reserved at admission for a request that names no `max_tokens` (the upstream's
/// own default is unknown); billing uses the upstream's `usage`.
const DEFAULT_RESERVE: u64 = 1024;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    /// A half-open trial is in flight.
    trial: bool,
}

impl Breaker {
    fn allow(&mut self, now: Instant) -> bool {
        match self.open_until {
            None => true,
            Some(t) if now < t => false,
            Some(_) if self.trial => false,
            Some(_) => {
                self.trial = true;
                true
            }
        }
    }

    fn success(&mut self) {
        *self = Breaker::default();
    }

    fn failure(&mut self, now: Instant, s: &BreakerSettings) {
        self.failures += 1;
        let half_open = self.open_until.is_some();
        self.trial = false;
        if half_open || self.failures >= s.failures {
            self.open_until = Some(now + s.open_for);
        }
    }

    fn state(&self, now: Instant) -> &'static str {
        match self.open_until {
            None => "closed",
            Some(t) if now < t => "open",
            Some(_) => "half_open",
        }
    }
}

struct Target {
    url: String,
    breaker: Mutex<Breaker>,
    ok: AtomicU64,
    failed: AtomicU64,
}

impl Target {
    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Route {
    spec: UpstreamSpec,
    api_key: Option<String>,
    targets: Vec<Target>,
    next: AtomicUsize,
    /// The route's PII rules (`None` for `pii = "allow"`).
    pii: Option<Guard>,
    timeout: Duration,
}

/// Every upstream route of a server.
pub struct Upstreams {
    routes: HashMap<String, Route>,
    order: Vec<String>,
    client: reqwest::Client,
    settings: BreakerSettings,
    health_started: std::sync::Once,
    fallbacks: AtomicU64,
    /// A local model id → the model its requests go to while its queue is full.
    local_fallbacks: HashMap<String, String>,
}

impl fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstreams")
            .field("routes", &self.order)
            .finish()
    }
}

impl Upstreams {
    /// Checks the specs: unique ids that no local model has, at least one http(s) URL each,
    /// a key from `api_key_env` that is set, a fallback that exists and is not the route.
    pub fn new(
        specs: Vec<UpstreamSpec>,
        local_ids: &[String],
        settings: BreakerSettings,
    ) -> Result<Self, UpstreamError> {
        let err = |id: &str, message: String| UpstreamError {
            what: "upstream",
            id: id.to_string(),
            message,
        };
        let all_ids: Vec<String> = specs.iter().map(|s| s.id.clone()).collect();
        let mut routes = HashMap::new();
        let mut order = Vec::new();
        for spec in specs {
            let id = spec.id.clone();
            if id.is_empty() {
                return Err(err(&id, "`id` is empty".into()));
            }
            if local_ids.contains(&id) {
                return Err(err(&id, "a local model has this id already".into()));
            }
            if routes.contains_key(&id) {
                return Err(err(&id, "the id is given twice".into()));
            }
            if spec.urls.is_empty() {
                return Err(err(&id, "`urls` is empty".into()));
            }
            for u in &spec.urls {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(err(&id, format!("`urls`: {u:?} is not an http(s) URL")));
                }
            }
            let api_key = match (&spec.api_key, &spec.api_key_env) {
                (Some(_), Some(_)) => {
                    return Err(err(&id, "give `api_key` or `api_key_env`, not both".into()))
                }
                (Some(k), None) => Some(k.clone()),
                (None, Some(var)) => match std::env::var(var) {
                    Ok(k) if !k.is_empty() => Some(k),
                    _ => {
                        return Err(err(
                            &id,
                            format!("`api_key_env`: the environment variable {var} is not set"),
                        ))
                    }
                },
                (None, None) => None,
            };
            if let Some(f) = &spec.fallback {
                if f == &id {
                    return Err(err(&id, "`fallback` names the route itself".into()));
                }
                if !local_ids.contains(f) && !all_ids.contains(f) {
                    return Err(err(
                        &id,
                        format!("`fallback`: no local model or upstream is called {f:?}"),
                    ));
                }
            }
            let pii = match spec.pii {
                PiiPolicy::Allow => None,
                p => {
                    let action = if p == PiiPolicy::Block {
                        Action::Block
                    } else {
                        Action::Redact
                    };
                    let rules = Guard::default_rules()
                        .into_iter()
                        .filter(|r| matches!(r.kind, RuleKind::Pii(_)))
                        .map(|mut r| {
                            r.id = format!("upstream-{}", r.id);
                            r.action = action;
                            r.roles = None;
                            r
                        })
                        .collect();
                    Some(Guard::new(rules).map_err(|e| err(&id, e.to_string()))?)
                }
            };
            let targets = spec
                .urls
                .iter()
                .map(|u| Target {
                    url: u.trim_end_matches('/').to_string(),
                    breaker: Mutex::default(),
                    ok: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                })
                .collect();
            let timeout = spec.timeout_s.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
            order.push(id.clone());
            routes.insert(
                id,
                Route {
                    spec,
                    api_key,
                    targets,
                    next: AtomicUsize::new(0),
                    pii,
                    timeout,
                },
            );
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| err("", format!("cannot build the HTTP client: {e}")))?;
        Ok(Upstreams {
            routes,
            order,
            client,
            settings,
            health_started: std::sync::Once::new(),
            fallbacks: AtomicU64::new(0),
            local_fallbacks: HashMap::new(),
        })
    }

    /// Saturation fallbacks of local models: `(local id, fallback id)`, the fallback a local
    /// model or an upstream id. A request for such a local model that its queue refuses
    /// (`QueueFull`) runs on the fallback instead (one hop: a refusal there is the answer).
    pub fn with_local_fallbacks(
        mut self,
        fallbacks: Vec<(String, String)>,
        local_ids: &[String],
    ) -> Result<Self, UpstreamError> {
        for (id, f) in fallbacks {
            let err = |message: String| UpstreamError {
                what: "model",
                id: id.clone(),
                message,
            };
            if !local_ids.contains(&id) {
                return Err(err("`fallback` given for a model that is not served".into()));
            }
            if f == id {
                return Err(err("`fallback` names the model itself".into()));
            }
            if !local_ids.contains(&f) && !self.routes.contains_key(&f) {
                return Err(err(format!(
                    "`fallback`: no local model or upstream is called {f:?}"
                )));
            }
            self.local_fallbacks.insert(id, f);
        }
        Ok(self)
    }

    pub fn is_upstream(&self, id: &str) -> bool {
        self.routes.contains_key(id)
    }

    /// The routes, in the order of the configuration.
    pub fn specs(&self) -> impl Iterator<Item = &UpstreamSpec> {
        self.order.iter().map(|id| &self.routes[id].spec)
    }

    /// Start the health checks (once; needs a tokio runtime, else nothing happens). They stop
    /// when the routes are dropped.
    pub fn start_health_checks(self: &Arc<Self>) {
        if self.settings.health_interval.is_zero() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.health_started.call_once(|| {
            let weak: Weak<Self> = Arc::downgrade(self);
            let every = self.settings.health_interval;
            rt.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(ups) = weak.upgrade() else { return };
                    ups.check_all().await;
                }
            });
        });
    }

    /// One round of health checks over every target.
    pub async fn check_all(&self) {
        let mut checks = Vec::new();
        for route in self.routes.values() {
            for t in &route.targets {
                checks.push(async move {
                    let mut req = self
                        .client
                        .get(format!("{}/models", t.url))
                        .timeout(Duration::from_secs(5));
                    if let Some(k) = &route.api_key {
                        req = req.bearer_auth(k);
                    }
                    let ok = matches!(req.send().await, Ok(r) if r.status().is_success());
                    let mut b = t.breaker();
                    if ok {
                        b.success();
                    } else {
                        // A check counts as one failure; it opens the breaker like requests do.
                        b.failure(Instant::now(), &self.settings);
                    }
                });
            }
        }
        futures::future::join_all(checks).await;
    }

    /// Prometheus lines: `hearth_upstream_up` (1 while the breaker is not open) and
    /// `hearth_upstream_requests_total` by route, target index and outcome.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let now = Instant::now();
        out.push_str("# HELP hearth_upstream_up Whether an upstream target's circuit breaker lets requests through.\n# TYPE hearth_upstream_up gauge\n");
        for id in &self.order {
            for (i, t) in self.routes[id].targets.iter().enumerate() {
                let up = u8::from(t.breaker().state(now) != "open");
                let _ = writeln!(
                    out,
                    "hearth_upstream_up{{model=\"{}\",target=\"{i}\"}} {up}",
                    escape(id)
                );
            }
        }
        out.push_str("# HELP hearth_upstream_requests_total Requests sent to upstream targets.\n# TYPE hearth_upstream_requests_total counter\n");
        for id in &self.order {
            for (i, t) in self.routes[id].targets.iter().enumerate() {
                for (outcome, n) in [("ok", &t.ok), ("failed", &t.failed)] {
                    let _ = writeln!(
                        out,
                        "hearth_upstream_requests_total{{model=\"{}\",target=\"{i}\",outcome=\"{outcome}\"}} {}",
                        escape(id),
                        n.load(Ordering::Relaxed)
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP hearth_upstream_fallbacks_total Requests sent to a route's fallback model.\n# TYPE hearth_upstream_fallbacks_total counter\nhearth_upstream_fallbacks_total {}",
            self.fallbacks.load(Ordering::Relaxed)
        );
    }

    /// The breaker state of each target of a route (for tests and the admin status).
    pub fn target_states(&self, id: &str) -> Vec<&'static str> {
        let now = Instant::now();
        self.routes
            .get(id)
            .map(|r| r.targets.iter().map(|t| t.breaker().state(now)).collect())
            .unwrap_or_default()
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Endpoint {
    Chat,
    Completions,
    /// OpenAI's Responses API (`input`, `instructions`, typed stream events).
    Responses,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat/completions",
            Endpoint::Completions => "completions",
            Endpoint::Responses => "responses",
        }
    }

    /// The body field that caps the generated tokens.
    fn token_field(self, body: &Value) -> &'static str {
        match self {
            Endpoint::Responses => "max_output_tokens",
            _ if body.get("max_completion_tokens").is_some() => "max_completion_tokens",
            _ => "max_tokens",
        }
    }

    /// The names of the prompt and completion counts in `usage`.
    fn usage_fields(self) -> (&'static str, &'static str) {
        match self {
            Endpoint::Responses => ("input_tokens", "output_tokens"),
            _ => ("prompt_tokens", "completion_tokens"),
        }
    }
}

/// Middleware on the generation routes: requests for an upstream id are forwarded; a local
/// model with a saturation fallback runs locally unless its queue is full; the rest go on to
/// the local handler untouched.
pub async fn intercept(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let Some(ups) = state.config.upstreams.clone() else {
        return next.run(req).await;
    };
    let endpoint = match req.uri().path() {
        "/v1/chat/completions" => Endpoint::Chat,
        "/v1/completions" => Endpoint::Completions,
        "/v1/responses" => Endpoint::Responses,
        _ => return next.run(req).await,
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, state.config.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return crate::json::body_error(&e, state.config.max_body_bytes).into_response(),
    };
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    let model = parsed
        .as_ref()
        .and_then(|v| v.get("model"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (Some(mut body), Some(model)) = (parsed, model) else {
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    };
    let (mut model, mut first) = (model, true);
    if !ups.is_upstream(&model) {
        let Some(f) = ups.local_fallbacks.get(&model).cloned() else {
            return next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
        };
        let resp = next
            .clone()
            .run(Request::from_parts(parts.clone(), Body::from(bytes)))
            .await;
        if resp.extensions().get::<QueueFull>().is_none() {
            return resp;
        }
        // The local model is saturated: its fallback instead (one hop, as for a route).
        ups.fallbacks.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(model = %model, fallback = %f, "the local model's queue is full; using the fallback");
        body["model"] = Value::String(f.clone());
        if !ups.is_upstream(&f) {
            return run_local(next, parts, &f, &body).await;
        }
        (model, first) = (f, false);
    }
    loop {
        match forward(&state, &ups, endpoint, &model, body, first).await {
            Ok(Forwarded::Response(mut resp)) => {
                if !first {
                    mark_fallback(&mut resp, &model);
                }
                return resp;
            }
            Ok(Forwarded::Fallback(f, b)) if ups.is_upstream(&f) => {
                (model, body, first) = (f, b, false);
            }
            // A local model: the normal handler, with the original (unredacted) body.
            Ok(Forwarded::Fallback(f, b)) => return run_local(next, parts, &f, &b).await,
            Err(e) => return e.into_response(),
        }
    }
}

/// The local handler of the route on `body` (whose `model` is the fallback `model`).
async fn run_local(next: Next, mut parts: Parts, model: &str, body: &Value) -> Response {
    parts.headers.remove(header::CONTENT_LENGTH);
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    mark_fallback(&mut resp, model);
    resp
}

fn mark_fallback(resp: &mut Response, model: &str) {
    if let Ok(v) = HeaderValue::from_str(model) {
        resp.headers_mut().insert("x-hearth-fallback", v);
    }
}

enum Forwarded {
    Response(Response),
    /// Every target failed: run this body (its `model` set to the fallback) locally.
    Fallback(String, Value),
}

/// `(role, JSON pointer, text)` of every text in the request (the pointer writes a
/// redaction back).
fn texts(endpoint: Endpoint, body: &Value) -> ApiResult<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    // A `content` that is a string or a list of parts with `text`, at `at`.
    let content = |out: &mut Vec<_>, role: &str, at: String, c: Option<&Value>| match c {
        Some(Value::String(s)) => out.push((role.to_string(), at, s.clone())),
        Some(Value::Array(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                if let Some(s) = p.get("text").and_then(Value::as_str) {
                    out.push((role.to_string(), format!("{at}/{j}/text"), s.to_string()));
                }
            }
        }
        _ => {}
    };
    match endpoint {
        Endpoint::Chat => {
            let msgs = body
                .get("messages")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    ApiError::invalid_param("messages", "`messages` must be an array.")
                })?;
            for (i, m) in msgs.iter().enumerate() {
                let role = m.get("role").and_then(Value::as_str).unwrap_or("");
                content(
                    &mut out,
                    role,
                    format!("/messages/{i}/content"),
                    m.get("content"),
                );
            }
        }
        Endpoint::Completions => match body.get("prompt") {
            Some(Value::String(s)) => out.push(("user".into(), "/prompt".into(), s.clone())),
            Some(Value::Array(a)) => {
                for (i, p) in a.iter().enumerate() {
                    if let Some(s) = p.as_str() {
                        out.push(("user".into(), format!("/prompt/{i}"), s.to_string()));
                    }
                }
            }
            _ => {}
        },
        Endpoint::Responses => {
            if let Some(s) = body.get("instructions").and_then(Value::as_str) {
                out.push(("system".into(), "/instructions".into(), s.to_string()));
            }
            match body.get("input") {
                Some(Value::String(s)) => out.push(("user".into(), "/input".into(), s.clone())),
                Some(Value::Array(items)) => {
                    for (i, it) in items.iter().enumerate() {
                        match it.get("type").and_then(Value::as_str).unwrap_or("message") {
                            "message" => {
                                let role = it.get("role").and_then(Value::as_str).unwrap_or("");
                                let at = format!("/input/{i}/content");
                                content(&mut out, role, at, it.get("content"));
                            }
                            // A tool's result (it may hold what the tool looked up).
                            "function_call_output" => {
                                let at = format!("/input/{i}/output");
                                content(&mut out, "tool", at, it.get("output"));
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The server's input guardrails, then the route's PII policy; redactions written back.
fn guard_input(
    state: &SharedState,
    route: &Route,
    endpoint: Endpoint,
    body: &mut Value,
) -> ApiResult<usize> {
    let found = texts(endpoint, body)?;
    let pairs: Vec<(&str, &str)> = found
        .iter()
        .map(|(r, _, t)| (r.as_str(), t.as_str()))
        .collect();
    let mut current: Vec<String> = found.iter().map(|(_, _, t)| t.clone()).collect();
    if let Some(red) = crate::guard::check_input(state, &pairs)? {
        current = red;
    }
    if let Some(g) = &route.pii {
        let pairs: Vec<(&str, &str)> = found
            .iter()
            .zip(&current)
            .map(|((r, _, _), t)| (r.as_str(), t.as_str()))
            .collect();
        let v = g.check_input(&pairs);
        crate::guard::record(state, "input", &v.fired);
        if let Some(body) = v.error_body() {
            return Err(ApiError::content_filter(body));
        }
        if let Some(red) = v.redacted {
            current = red;
        }
    }
    let mut chars = 0;
    for ((_, at, orig), now) in found.iter().zip(current) {
        chars += now.chars().count();
        if *orig != now {
            if let Some(slot) = body.pointer_mut(at) {
                *slot = Value::String(now);
            }
        }
    }
    Ok(chars)
}

/// The prompt's size in tokens before the upstream says it: about 4 characters a token for
/// English text with OpenAI's and Llama's tokenizers (fewer for Chinese), plus a few tokens of
/// chat markup per message (or Responses input item). Only for admission; billing uses the
/// upstream's `usage`.
fn estimate_prompt_tokens(chars: usize, endpoint: Endpoint, body: &Value) -> u64 {
    let count = |key| body.get(key).and_then(Value::as_array).map_or(0, Vec::len);
    let messages = match endpoint {
        Endpoint::Chat => count("messages"),
        Endpoint::Completions => 0,
        Endpoint::Responses => {
            count("input").max(usize::from(body.get("input").is_some()))
                + usize::from(body.get("instructions").is_some())
        }
    };
    (chars as u64).div_ceil(4) + 4 * messages as u64
}

fn upstream_error(status: StatusCode, message: String) -> ApiError {
    ApiError {
        status,
        message,
        kind: "server_error",
        param: None,
        code: Some("upstream_unavailable"),
        retry_after_s: None,
        body_override: None,
    }
}

/// Send `body` to the route's targets in turn; `allow_fallback` is false on the fallback hop
/// itself (one hop only, so fallbacks never loop).
async fn forward(
    state: &SharedState,
    ups: &Upstreams,
    endpoint: Endpoint,
    id: &str,
    mut body: Value,
    allow_fallback: bool,
) -> ApiResult<Forwarded> {
    state.check_not_draining()?;
    let route = &ups.routes[id];
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "The request body must be a JSON object.",
        ));
    }
    let original = body.clone();
    let chars = guard_input(state, route, endpoint, &mut body)?;
    let n = match endpoint {
        Endpoint::Responses => 1,
        _ => body.get("n").and_then(Value::as_u64).unwrap_or(1).max(1),
    };
    let token_field = endpoint.token_field(&body);
    let requested = body.get(token_field).and_then(Value::as_u64);
    let estimate = estimate_prompt_tokens(chars, endpoint, &body);
    let reserve = requested.unwrap_or(DEFAULT_RESERVE);
    let (meter, allowed) = crate::gateway::admit(id, estimate, n, reserve).await?;
    if allowed < reserve {
        // A monthly budget clamped the request: the upstream must not generate more.
        body[token_field] = Value::from(allowed);
    }
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let client_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if stream && endpoint != Endpoint::Responses {
        // Ask for usage so that streamed requests are billed what the upstream counted (a
        // Responses stream always ends with it, in `response.completed`).
        body["stream_options"] = serde_json::json!({"include_usage": true});
    }
    body["model"] = Value::String(route.spec.model.clone().unwrap_or_else(|| id.to_string()));

    let n_targets = route.targets.len();
    let start = route.next.fetch_add(1, Ordering::Relaxed);
    let mut failures: Vec<String> = Vec::new();
    for k in 0..n_targets {
        let ti = (start + k) % n_targets;
        let t = &route.targets[ti];
        if !t.breaker().allow(Instant::now()) {
            failures.push(format!("target {ti}: circuit open"));
            continue;
        }
        let mut req = ups
            .client
            .post(format!("{}/{}", t.url, endpoint.path()))
            .json(&body);
        if let Some(key) = &route.api_key {
            req = req.bearer_auth(key);
        }
        // The answer's head within the timeout (a non-streamed answer's body has its own).
        let why = match tokio::time::timeout(route.timeout, req.send()).await {
            Err(_) => "timed out".to_string(),
            Ok(Err(e)) if e.is_connect() => "cannot connect".to_string(),
            Ok(Err(e)) if e.is_timeout() => "timed out".to_string(),
            Ok(Err(_)) => "request failed".to_string(),
            Ok(Ok(r)) if r.status().is_server_error() => format!("HTTP {}", r.status().as_u16()),
            Ok(Ok(r)) if r.status() == StatusCode::TOO_MANY_REQUESTS => {
                // Saturated, not down: the breaker does not count it; try the next target.
                t.breaker().trial = false;
                t.failed.fetch_add(1, Ordering::Relaxed);
                failures.push(format!("target {ti}: HTTP 429"));
                continue;
            }
            Ok(Ok(r)) => {
                t.breaker().success();
                t.ok.fetch_add(1, Ordering::Relaxed);
                let resp = if stream && r.status().is_success() {
                    let relay: Box<dyn Relay> = match endpoint {
                        Endpoint::Responses => Box::new(ResponsesRelay::new(state, id)),
                        _ => Box::new(ChatRelay::new(state, endpoint, id, client_usage, n)),
                    };
                    stream_response(id, r, meter, relay, estimate, route.timeout)
                } else {
                    whole_response(
                        state,
                        endpoint,
                        id,
                        r,
                        meter.as_deref(),
                        estimate,
                        route.timeout,
                    )
                    .await?
                };
                return Ok(Forwarded::Response(resp));
            }
        };
        t.failed.fetch_add(1, Ordering::Relaxed);
        t.breaker().failure(Instant::now(), &ups.settings);
        tracing::warn!(model = id, target = ti, %why, "upstream target failed");
        failures.push(format!("target {ti}: {why}"));
    }
    drop(meter);
    match &route.spec.fallback {
        Some(f) if allow_fallback => {
            ups.fallbacks.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(model = id, fallback = %f, "every upstream target failed; using the fallback");
            let mut body = original;
            body["model"] = Value::String(f.clone());
            Ok(Forwarded::Fallback(f.clone(), body))
        }
        _ => {
            let mut e = upstream_error(
                StatusCode::BAD_GATEWAY,
                format!(
                    "No upstream of model '{id}' answered ({}).",
                    failures.join("; ")
                ),
            );
            e.retry_after_s = Some(ups.settings.open_for.as_secs().max(1));
            Err(e)
        }
    }
}

/// The prompt and completion counts of the `usage` in `v` (an answer, a chunk, or the
/// `response` of a Responses event).
fn usage_of(endpoint: Endpoint, v: &Value) -> (Option<u64>, Option<u64>) {
    let (p, c) = endpoint.usage_fields();
    let u = v.get("usage");
    let get = |k| u.and_then(|u| u.get(k)).and_then(Value::as_u64);
    (get(p), get(c))
}

/// Where a choice's text is: `message.content` / `delta.content` (chat) or `text`.
fn text_pointer(endpoint: Endpoint, streamed: bool) -> &'static str {
    match (endpoint, streamed) {
        (Endpoint::Chat, false) => "/message/content",
        (Endpoint::Chat, true) => "/delta/content",
        _ => "/text",
    }
}

/// One whole text through the output guardrails: `None` when they only log (the text is
/// sent as it is), else the text to send and whether a rule blocked the rest.
fn filter_whole(state: &SharedState, text: &str) -> Option<(String, bool)> {
    let (mut f, enforcing) = crate::guard::output_filter(state);
    let mut e = f.push(text);
    let rest = f.finish();
    e.text_to_send.push_str(&rest.text_to_send);
    e.fired.extend(rest.fired);
    let blocked = e.blocked.or(rest.blocked);
    crate::guard::record(state, "output", &e.fired);
    if !enforcing {
        return None;
    }
    if let Some(hit) = &blocked {
        crate::guard::record(state, "output", std::slice::from_ref(hit));
    }
    Some((e.text_to_send, blocked.is_some()))
}

/// The `output_text` parts of a Responses output item, with their content index.
fn output_texts(item: &mut Value) -> impl Iterator<Item = (usize, &mut Value)> + '_ {
    item.get_mut("content")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, p)| p.get("type").and_then(Value::as_str) == Some("output_text"))
}

/// A non-streamed answer (or an upstream's 4xx refusal, passed on as it is).
async fn whole_response(
    state: &SharedState,
    endpoint: Endpoint,
    id: &str,
    r: reqwest::Response,
    meter: Option<&crate::gateway::Meter>,
    estimate: u64,
    timeout: Duration,
) -> ApiResult<Response> {
    let status = r.status();
    let bytes = match tokio::time::timeout(timeout, r.bytes()).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) | Err(_) => {
            return Err(upstream_error(
                StatusCode::BAD_GATEWAY,
                format!("The upstream of model '{id}' did not send its whole answer."),
            ))
        }
    };
    if !status.is_success() {
        // The upstream refused the request itself: its error goes back (in OpenAI's shape).
        let body = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(|v| v.get("error").is_some())
            .unwrap_or_else(|| {
                serde_json::json!({"error": {
                    "message": format!("The upstream of model '{id}' answered HTTP {}.", status.as_u16()),
                    "type": "invalid_request_error", "param": null, "code": "upstream_error"}})
            });
        return Ok((status, axum::Json(body)).into_response());
    }
    let mut v: Value = serde_json::from_slice(&bytes).map_err(|_| {
        upstream_error(
            StatusCode::BAD_GATEWAY,
            format!("The upstream of model '{id}' sent an answer that is not JSON."),
        )
    })?;
    if let Some(m) = meter {
        let (p, c) = usage_of(endpoint, &v);
        m.set_prompt_tokens(p.unwrap_or(estimate));
        m.add_completion(c.unwrap_or(0));
    }
    v["model"] = Value::String(id.to_string());
    if endpoint == Endpoint::Responses {
        let mut blocked = false;
        for item in v
            .get_mut("output")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            for (_, part) in output_texts(item) {
                let text = part["text"].as_str().unwrap_or("").to_string();
                if let Some((t, b)) = filter_whole(state, &text) {
                    part["text"] = Value::String(t);
                    blocked |= b;
                }
            }
        }
        if blocked {
            v["status"] = Value::from("incomplete");
            v["incomplete_details"] = serde_json::json!({"reason": "content_filter"});
        }
        return Ok(axum::Json(v).into_response());
    }
    let ptr = text_pointer(endpoint, false);
    if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
        for c in choices {
            let Some(text) = c.pointer(ptr).and_then(Value::as_str).map(str::to_owned) else {
                continue;
            };
            if let Some((t, blocked)) = filter_whole(state, &text) {
                if blocked {
                    c["finish_reason"] = Value::from("content_filter");
                }
                if let Some(slot) = c.pointer_mut(ptr) {
                    *slot = Value::String(t);
                }
            }
        }
    }
    Ok(axum::Json(v).into_response())
}

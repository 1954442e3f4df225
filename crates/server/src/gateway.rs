//! The gateway in front of every route: who is calling ([`Principal`]), whether they may,
//! how much (rate limits and budgets), and the audit record of each request.
//!
//! Decided in two places only, each once for every route:
//! - [`gate`] (middleware, every request): authenticates the key, classifies the route from a
//!   normalized path (so `/ADMIN//v1/keys/`, `%61dmin` or HEAD cannot slip past a role check:
//!   the check runs on the normalized spelling whatever axum later routes), checks the role,
//!   and writes the audit record when the response body ends (or is dropped by a client that
//!   left).
//! - [`admit`] (called by `api::common::launch`, where a request is handed to the backend): the
//!   model allow-list on the model actually dispatched, and the limiter with the real prompt
//!   token count.
//!
//! The request's [`RequestCtx`] reaches `launch` through a task-local: axum runs the handler
//! inside the middleware's future, so every handler gets it without an extractor.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use futures::StreamExt as _;
use hearth_gateway::limits::{
    self, Ask, LimitKind, Limiter, Limits, MonthIndex, Permit, RateHeaders, Scope,
};
use hearth_gateway::limits_redis::RedisLimiter;
use sha2::Digest as _;

use crate::error::ApiError;
use crate::state::SharedState;

pub use hearth_gateway::store::{AuditRecord as AuditEntry, KeyOwner as Principal, Role};

/// How much of the request and response bodies the audit keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyPolicy {
    None,
    /// The SHA-256 of each body (hex): proves what was sent without keeping it.
    #[default]
    Sha256,
    Full,
}

impl BodyPolicy {
    pub fn reduce(self, body: &[u8]) -> Option<String> {
        match self {
            BodyPolicy::None => None,
            BodyPolicy::Sha256 => Some(
                sha2::Sha256::digest(body)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            ),
            BodyPolicy::Full => Some(String::from_utf8_lossy(body).into_owned()),
        }
    }
}

/// What the gateway needs from the database (`hearth_gateway`'s store implements it in the
/// `hearth` binary; tests use an in-memory one).
pub trait GatewayStore: Send + Sync + 'static {
    /// The principal of a presented key; `None` for unknown, expired or revoked keys (checked
    /// on every request, so a revocation takes effect at once).
    fn authenticate<'a>(&'a self, key: &'a str)
        -> BoxFuture<'a, Result<Option<Principal>, String>>;
    /// Tokens billed to `scope` in `month` so far.
    fn monthly_tokens_used<'a>(
        &'a self,
        scope: &'a Scope,
        month: MonthIndex,
    ) -> BoxFuture<'a, Result<u64, String>>;
    /// Queue an audit record; must not block (the store batches writes).
    fn audit(&self, entry: AuditEntry);
}

/// The SQL store (SQLite or PostgreSQL) with its batching audit writer.
pub struct SqlStore {
    pub store: hearth_gateway::store::Store,
    pub sink: hearth_gateway::store::AuditSink,
}

impl GatewayStore for SqlStore {
    fn authenticate<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, String>> {
        Box::pin(async move {
            self.store
                .authenticate(key)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn monthly_tokens_used<'a>(
        &'a self,
        scope: &'a Scope,
        month: MonthIndex,
    ) -> BoxFuture<'a, Result<u64, String>> {
        Box::pin(async move {
            self.store
                .monthly_tokens_used(scope, month)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn audit(&self, entry: AuditEntry) {
        self.sink.send(entry);
    }
}

/// The gateway's settings and shared parts.
pub struct Gateway {
    /// Whether requests must carry a key. Off only for a loopback bind without
    /// `--require-auth` / `--api-key`: then every request runs as the local admin.
    pub auth_required: bool,
    /// `--api-key`: one admin key that needs no database (vLLM's and llama-server's flag).
    pub admin_key: Option<String>,
    /// Keys, usage and audit. `None` in tests and embedders that need none.
    pub store: Option<Arc<dyn GatewayStore>>,
    /// The SQL store behind the admin API (`None`: the admin API answers 404).
    pub sql: Option<hearth_gateway::store::Store>,
    pub body_policy: BodyPolicy,
    pub limiter: SharedLimiter,
    /// Limits over all callers together.
    pub global_limits: Limits,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the admin key.
        f.debug_struct("Gateway")
            .field("auth_required", &self.auth_required)
            .field("admin_key", &self.admin_key.as_ref().map(|_| "<set>"))
            .field("store", &self.store.is_some())
            .field("global_limits", &self.global_limits)
            .finish()
    }
}

impl Gateway {
    /// No database: auth only with `admin_key` (when given), no limits, no audit.
    pub fn without_store(admin_key: Option<String>) -> Self {
        Gateway {
            auth_required: admin_key.is_some(),
            admin_key,
            store: None,
            sql: None,
            body_policy: BodyPolicy::Sha256,
            limiter: SharedLimiter::Local(Limiter::new()),
            global_limits: Limits::default(),
        }
    }

    pub(crate) async fn authenticate(
        &self,
        presented: &str,
    ) -> Result<Option<Principal>, ApiError> {
        if let Some(k) = &self.admin_key {
            if constant_time_eq(presented.as_bytes(), k.as_bytes()) {
                let mut p = Principal::local_admin();
                p.key_id = "api-key".into();
                p.key_name = "--api-key".into();
                return Ok(Some(p));
            }
        }
        match &self.store {
            Some(store) => store.authenticate(presented).await.map_err(|e| {
                tracing::error!("key lookup failed: {e}");
                ApiError::internal("The key store is unavailable.")
            }),
            None => Ok(None),
        }
    }
}

/// Where the limit counters live: in this process, or in Redis for replicas that share them.
#[derive(Clone)]
pub enum SharedLimiter {
    Local(Limiter),
    Redis(RedisLimiter),
}

impl SharedLimiter {
    async fn admit(
        &self,
        ask: &Ask,
        month: MonthIndex,
    ) -> Result<Result<Permit, limits::Refusal>, ApiError> {
        match self {
            SharedLimiter::Local(l) => Ok(l.admit(ask, Instant::now(), month)),
            SharedLimiter::Redis(r) => r.admit(ask, month).await.map_err(|e| {
                tracing::error!("{e}");
                ApiError::unavailable("The rate-limit store is unavailable.")
            }),
        }
    }

    async fn needs_seed(&self, scope: &Scope, month: MonthIndex) -> Result<bool, ApiError> {
        match self {
            SharedLimiter::Local(l) => Ok(l.needs_seed(scope, month)),
            SharedLimiter::Redis(r) => r.needs_seed(scope, month).await.map_err(|e| {
                tracing::error!("{e}");
                ApiError::unavailable("The rate-limit store is unavailable.")
            }),
        }
    }

    async fn seed_month(
        &self,
        scope: &Scope,
        month: MonthIndex,
        used: u64,
    ) -> Result<(), ApiError> {
        match self {
            SharedLimiter::Local(l) => {
                l.seed_month(scope, month, used);
                Ok(())
            }
            SharedLimiter::Redis(r) => r.seed_month(scope, month, used).await.map_err(|e| {
                tracing::error!("{e}");
                ApiError::unavailable("The rate-limit store is unavailable.")
            }),
        }
    }
}

/// `GET /v1/limits`: every limit and budget that applies to the caller's key, with what
/// remains of each now (the explain endpoint of issue 7).
pub async fn explain(State(state): State<SharedState>) -> Response {
    let Some(meter) = current() else {
        return ApiError::internal("no request context").into_response();
    };
    let Some(p) = meter.principal() else {
        return ApiError::unauthorized("Missing API key.").into_response();
    };
    let (month, _) = month_now();
    // A budget nobody has spent from since this process (or the Redis server) started is
    // loaded from the usage store first, as admission does, so the reply is the real one.
    if let Err(e) = seed_budgets(&state.gateway, &meter, month).await {
        return e.into_response();
    }
    let scopes = scopes_of(&state.gateway, p);
    let remaining = match &state.gateway.limiter {
        SharedLimiter::Local(l) => l.explain(&scopes, Instant::now(), month),
        // Read back from the counters every replica shares.
        SharedLimiter::Redis(r) => match r.explain(&scopes, month).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!("{e}");
                return ApiError::unavailable("The rate-limit store is unavailable.")
                    .into_response();
            }
        },
    };
    let rows: Vec<serde_json::Value> = remaining
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "scope": r.scope.to_string(),
                "limit": r.kind.to_string(),
                "value": r.limit,
                "remaining": r.remaining,
            })
        })
        .collect();
    axum::Json(serde_json::json!({
        "object": "list",
        "key_id": p.key_id,
        "role": p.role.as_str(),
        "models": p.models,
        "data": rows,
    }))
    .into_response()
}

/// What kind of route a request is for, from its normalized path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteClass {
    /// `/health`, `/api/auth/*` and the web UI's static files: no key needed.
    Public,
    /// `/v1/...`, `/tokenize`, `/detokenize`: admin and user roles.
    Inference,
    /// Reading usage, audit and metrics: admin and auditor roles.
    Audit,
    /// Everything else under `/admin`: admin role only.
    Admin,
}

/// The path as the role check sees it: percent-decoded, lower-cased, with empty segments,
/// `.` and trailing slashes removed and `..` applied. Routing never sees this spelling; it only
/// makes sure that every spelling of an admin path is checked as one.
pub fn normalize_path(raw: &str) -> String {
    let decoded = percent_decode(raw).to_lowercase();
    let mut segs: Vec<&str> = Vec::new();
    for s in decoded.split(['/', '\\']) {
        match s {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    format!("/{}", segs.join("/"))
}

fn percent_decode(s: &str) -> String {
    // Decode repeatedly so `%2561dmin` (double-encoded) is seen as `admin` too.
    let mut cur = s.to_string();
    for _ in 0..3 {
        let b = cur.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                let hex = |c: u8| (c as char).to_digit(16);
                if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        let next = String::from_utf8_lossy(&out).into_owned();
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

pub fn classify(path: &str) -> RouteClass {
    let p = normalize_path(path);
    let under = |prefix: &str| p == prefix || p.starts_with(&format!("{prefix}/"));
    if under("/admin/v1/usage")
        || under("/admin/v1/audit")
        || under("/metrics")
        || p == "/api/admin/status"
    {
        RouteClass::Audit
    } else if under("/api/auth") {
        // Login, logout and "who am I": open to anyone (the handlers check what they need).
        RouteClass::Public
    } else if under("/admin") || under("/api/admin") {
        RouteClass::Admin
    } else if under("/v1") || under("/tokenize") || under("/detokenize") || under("/api") {
        RouteClass::Inference
    } else {
        RouteClass::Public
    }
}

fn role_allows(role: Role, class: RouteClass, method: &Method) -> bool {
    match (role, class) {
        (_, RouteClass::Public) | (Role::Admin, _) => true,
        (Role::User, RouteClass::Inference) => true,
        // Auditors read: no inference, no changes.
        (Role::Auditor, RouteClass::Audit) => {
            matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        }
        _ => false,
    }
}

/// One request's record, filled as it goes and written to the audit log when the last
/// holder (the middleware, the response body, the generations) lets go of it.
pub struct Meter {
    gateway: Arc<Gateway>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Why the gateway refused, when it did (for metrics).
    refusal: Mutex<Option<&'static str>>,
    pub request_id: String,
    principal: Option<Principal>,
    client: Option<SocketAddr>,
    route: String,
    started: Instant,
    time_unix: i64,
    status: AtomicU16,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    model: Mutex<Option<String>>,
    permit: Mutex<Option<Permit>>,
    request_body: Mutex<Option<String>>,
    response_body: Mutex<Vec<u8>>,
    guardrails: Mutex<Option<String>>,
    /// False for `/api/auth/*`: login bodies (passwords, keys, session tokens) are never kept.
    keep_bodies: bool,
}

impl Meter {
    pub fn add_completion(&self, n: u64) {
        self.completion_tokens.fetch_add(n, Ordering::Relaxed);
    }

    /// The prompt's real size, once known (an upstream's `usage` replaces the estimate that
    /// admitted the request); billed when the meter is dropped.
    pub fn set_prompt_tokens(&self, n: u64) {
        self.prompt_tokens.store(n, Ordering::Relaxed);
    }

    /// Add guardrail hits (rule ids, actions, scores; never the matched text) to the audit.
    pub fn add_guardrails(&self, direction: &str, hits: &[hearth_guard::Hit]) {
        let mut g = self.guardrails.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<serde_json::Value> = g
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        for h in hits {
            all.push(serde_json::json!({
                "direction": direction, "rule": h.rule_id, "kind": h.kind.name(),
                "action": h.action, "score": (f64::from(h.score) * 1000.0).round() / 1000.0,
                "pattern": h.pattern,
            }));
        }
        *g = serde_json::to_string(&all).ok();
    }

    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let prompt = self.prompt_tokens.load(Ordering::Relaxed);
        let completion = self.completion_tokens.load(Ordering::Relaxed);
        // Bill what was generated (also for a client that left), release the reservation.
        if let Some(mut p) = self
            .permit
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            p.record(prompt, completion);
        }
        let principal = self.principal.as_ref();
        let status = self.status.load(Ordering::Relaxed);
        let outcome = match (
            status,
            *self.refusal.get_mut().unwrap_or_else(|p| p.into_inner()),
        ) {
            (_, Some(r)) => r,
            (401, _) => "unauthorized",
            (403, _) => "forbidden",
            (400..=499, _) => "client_error",
            (500.., _) => "server_error",
            _ => "ok",
        };
        // Only models the server serves become label values (known ids are set at dispatch).
        let model_label = self
            .model
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        self.metrics.gateway(
            principal.map_or("", |p| p.key_id.as_str()),
            principal.and_then(|p| p.team.as_deref()).unwrap_or(""),
            &model_label,
            outcome,
            prompt,
            completion,
        );
        let Some(store) = &self.gateway.store else {
            return;
        };
        let response_body = std::mem::take(
            self.response_body
                .get_mut()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let rec = AuditEntry {
            time: self.time_unix,
            request_id: self.request_id.clone(),
            key_id: principal.map(|p| p.key_id.clone()),
            user: principal.and_then(|p| p.user.clone()),
            team: principal.and_then(|p| p.team.clone()),
            role: principal.map(|p| p.role.as_str().to_string()),
            client_addr: self.client.map(|a| a.ip().to_string()),
            route: self.route.clone(),
            model: self
                .model
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
            status: self.status.load(Ordering::Relaxed),
            latency_ms: self.started.elapsed().as_millis() as u64,
            prompt_tokens: prompt,
            completion_tokens: completion,
            guardrails: self
                .guardrails
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
            request_body: self
                .request_body
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
            response_body: if self.keep_bodies {
                self.gateway.body_policy.reduce(&response_body)
            } else {
                None
            },
        };
        store.audit(rec);
    }
}

tokio::task_local! {
    static CURRENT: Arc<Meter>;
}

/// The current request's meter (inside a handler).
pub fn current() -> Option<Arc<Meter>> {
    CURRENT.try_with(Arc::clone).ok()
}

fn month_now() -> (MonthIndex, i64) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    (limits::month_of_unix(secs), secs)
}

fn scopes_of(gw: &Gateway, p: &Principal) -> Vec<(Scope, Limits)> {
    let mut v = Vec::with_capacity(3);
    if !p.key_limits.is_unlimited() {
        v.push((Scope::Key(p.key_id.clone()), p.key_limits));
    }
    if let Some(t) = &p.team {
        if !p.team_limits.is_unlimited() {
            v.push((Scope::Team(t.clone()), p.team_limits));
        }
    }
    if !gw.global_limits.is_unlimited() {
        v.push((Scope::Global, gw.global_limits));
    }
    v
}

/// Admission of a generation request (called where it is dispatched): the model allow-list,
/// then the limits with the real token counts. Returns the meter the choices bill into and
/// the `max_tokens` each choice may generate (clamped by a budget).
pub async fn admit(
    model: &str,
    prompt_tokens: u64,
    choices: u64,
    max_tokens: u64,
) -> Result<(Option<Arc<Meter>>, u64), ApiError> {
    let Some(meter) = current() else {
        return Ok((None, max_tokens));
    };
    *meter.model.lock().unwrap_or_else(|p| p.into_inner()) = Some(model.to_string());
    meter.prompt_tokens.store(prompt_tokens, Ordering::Relaxed);
    let Some(p) = meter.principal.as_ref() else {
        return Ok((Some(meter), max_tokens));
    };
    if let Some(allowed) = &p.models {
        if !allowed.iter().any(|m| m == model) {
            return Err(ApiError::forbidden(
                "model_not_allowed",
                format!("This key may not use model '{model}'."),
            ));
        }
    }
    if !matches!(p.role, Role::Admin | Role::User) {
        return Err(ApiError::forbidden(
            "role_not_allowed",
            "This key's role may not run inference.",
        ));
    }
    // Admitted once per request: a request that an upstream route sent on to its fallback
    // model keeps the permit it got (rpm and concurrency count it once).
    let held = meter
        .permit
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|p| p.max_tokens);
    if let Some(held) = held {
        let per_choice = (held / choices.max(1)).max(1).min(max_tokens);
        return Ok((Some(meter), per_choice));
    }
    let scopes = scopes_of(&meter.gateway, p);
    if scopes.is_empty() {
        return Ok((Some(meter), max_tokens));
    }
    let ask = Ask {
        scopes,
        prompt_tokens,
        max_tokens: max_tokens.saturating_mul(choices),
    };
    let (month, _) = month_now();
    match meter.gateway.limiter.admit(&ask, month).await? {
        Ok(permit) => {
            let per_choice = (permit.max_tokens / choices.max(1)).max(1).min(max_tokens);
            *meter.permit.lock().unwrap_or_else(|p| p.into_inner()) = Some(permit);
            Ok((Some(meter), per_choice))
        }
        Err(r) => {
            *meter.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(match r.kind {
                LimitKind::MonthlyTokens => "insufficient_quota",
                _ => "rate_limited",
            });
            Err(ApiError::too_many_requests(
                match r.kind {
                    LimitKind::MonthlyTokens => "insufficient_quota",
                    LimitKind::TokensPerMinute => "tokens",
                    _ => "requests",
                },
                r.code(),
                r.to_string(),
                r.retry_after.map(|d| d.as_secs_f64().ceil() as u64),
            ))
        }
    }
}

/// The middleware: authenticate, check the role for the route class, meter and audit.
pub async fn gate(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let gw = state.gateway.clone();
    let started = Instant::now();
    let (month, unix) = month_now();
    let request_id = format!("req_{}", uuid::Uuid::new_v4().simple());
    let client = req
        .extensions()
        .get::<ConnectInfo<crate::serve::ClientAddr>>()
        .map(|c| c.0 .0);
    let class = classify(req.uri().path());
    let route = format!("{} {}", req.method(), req.uri().path());

    let auth_path = class == RouteClass::Public && under_auth(req.uri().path());
    let mut session: Option<SessionInfo> = None;
    let principal = if !gw.auth_required {
        Ok(Some(Principal::local_admin()))
    } else if let Some(k) = presented_key(req.headers()) {
        if class == RouteClass::Public && !auth_path {
            Ok(None)
        } else {
            match gw.authenticate(k).await {
                Ok(Some(p)) => Ok(Some(p)),
                // `/api/auth/me` with a bad key: nobody (it needs no auth).
                Ok(None) if auth_path => Ok(None),
                // One message for unknown, expired and revoked keys: no hint whether it exists.
                Ok(None) => Err(ApiError::unauthorized(
                    "Incorrect API key provided, or the key has expired or been revoked.",
                )),
                Err(e) => Err(e),
            }
        }
    } else if let Some(token) = session_cookie(req.headers()) {
        if class == RouteClass::Public && !auth_path {
            Ok(None)
        } else {
            match resolve_session(&gw, token).await {
                Ok(Some((p, info))) => {
                    session = Some(info);
                    Ok(Some(p))
                }
                Ok(None) if auth_path => Ok(None),
                Ok(None) => Err(ApiError::unauthorized(
                    "Your session has expired or ended: log in again.",
                )
                .with_code("session_expired")),
                Err(e) => Err(e),
            }
        }
    } else if class == RouteClass::Public {
        Ok(None)
    } else {
        Err(ApiError::unauthorized(
            "Missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`.",
        ))
    };
    // A request authenticated by the session cookie that may change something must prove it
    // comes from the UI's own pages: the CSRF token, which other sites cannot read.
    let csrf_refusal = session.as_ref().and_then(|s| {
        let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        let sent = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        (!safe && !constant_time_eq(sent.as_bytes(), s.csrf_token.as_bytes())).then(|| {
            ApiError::forbidden(
                "csrf_failed",
                "This request needs the `x-csrf-token` header of your session.",
            )
        })
    });
    let refusal = match &principal {
        Err(e) => Some(e.clone()),
        _ if csrf_refusal.is_some() => csrf_refusal,
        Ok(Some(p)) if !role_allows(p.role, class, req.method()) => Some(ApiError::forbidden(
            "role_not_allowed",
            format!(
                "The role '{}' may not use {}.",
                p.role.as_str(),
                req.uri().path()
            ),
        )),
        _ => None,
    };
    let mut req = req;
    if let Some(s) = session {
        req.extensions_mut().insert(s);
    }
    let meter = Arc::new(Meter {
        gateway: gw.clone(),
        metrics: state.metrics.clone(),
        refusal: Mutex::new(None),
        request_id: request_id.clone(),
        principal: principal.ok().flatten(),
        client,
        route,
        started,
        time_unix: unix,
        status: AtomicU16::new(0),
        prompt_tokens: AtomicU64::new(0),
        completion_tokens: AtomicU64::new(0),
        model: Mutex::new(None),
        permit: Mutex::new(None),
        request_body: Mutex::new(None),
        response_body: Mutex::new(Vec::new()),
        guardrails: Mutex::new(None),
        keep_bodies: !auth_path,
    });
    let mut resp = match refusal {
        Some(e) => e.into_response(),
        None => {
            if let Err(e) = seed_budgets(&gw, &meter, month).await {
                e.into_response()
            } else {
                match capture_request(&state, &meter, req).await {
                    Ok(req) => CURRENT.scope(meter.clone(), next.run(req)).await,
                    Err(e) => e.into_response(),
                }
            }
        }
    };
    meter
        .status
        .store(resp.status().as_u16(), Ordering::Relaxed);
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(HeaderName::from_static("x-request-id"), v);
    }
    let rate = meter
        .permit
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|p| p.headers.clone());
    if let Some(rate) = rate {
        add_rate_headers(headers, &rate);
    }
    // The audit entry is written when the last holder of the meter lets go: the choices of a
    // streamed generation hold it until they end. Only a body the audit keeps is read here.
    let capture = gw.store.is_some() && gw.body_policy != BodyPolicy::None && !auth_path;
    if !capture {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    if let Some(len) = axum::body::HttpBody::size_hint(&body).exact() {
        // Already in memory (JSON): keep it whole so Content-Length stays.
        if let Ok(bytes) = axum::body::to_bytes(body, len as usize).await {
            meter
                .response_body
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(&bytes);
            return Response::from_parts(parts, Body::from(bytes));
        }
        return Response::from_parts(parts, Body::empty());
    }
    let m = meter;
    let stream = body.into_data_stream().map(move |chunk| {
        if let Ok(bytes) = &chunk {
            m.response_body
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(bytes);
        }
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

fn add_rate_headers(h: &mut HeaderMap, rate: &RateHeaders) {
    for (name, value) in rate.pairs() {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
}

/// Load this month's billed tokens for every budgeted scope the limiter has not seen yet.
async fn seed_budgets(gw: &Gateway, meter: &Meter, month: MonthIndex) -> Result<(), ApiError> {
    let (Some(store), Some(p)) = (&gw.store, &meter.principal) else {
        return Ok(());
    };
    for (scope, lim) in scopes_of(gw, p) {
        if lim.monthly_tokens.is_none() || !gw.limiter.needs_seed(&scope, month).await? {
            continue;
        }
        let used = store
            .monthly_tokens_used(&scope, month)
            .await
            .map_err(|e| {
                tracing::error!("usage lookup failed: {e}");
                ApiError::internal("The usage store is unavailable.")
            })?;
        gw.limiter.seed_month(&scope, month, used).await?;
    }
    Ok(())
}

/// Buffer the request body (within the size limit) so the audit can keep it per policy.
async fn capture_request(
    state: &SharedState,
    meter: &Meter,
    req: Request,
) -> Result<Request, ApiError> {
    let gw = &state.gateway;
    if gw.store.is_none()
        || gw.body_policy == BodyPolicy::None
        || req.method() == Method::GET
        || under_auth(req.uri().path())
    {
        // Login bodies hold passwords and keys: never kept, not even hashed.
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, state.config.max_body_bytes)
        .await
        .map_err(|e| crate::json::body_error(&e, state.config.max_body_bytes))?;
    let kept = redact_password(req_path_is_users(&parts.uri), &bytes);
    *meter.request_body.lock().unwrap_or_else(|p| p.into_inner()) = gw.body_policy.reduce(&kept);
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The web UI's session cookie.
pub const SESSION_COOKIE: &str = "hearth_session";
/// The readable cookie holding the session's CSRF token.
pub const CSRF_COOKIE: &str = "hearth_csrf";

/// The session a request was authenticated by (a request extension, for the auth handlers).
#[derive(Clone)]
pub struct SessionInfo {
    pub token_hash: String,
    pub csrf_token: String,
}

fn under_auth(raw: &str) -> bool {
    let p = normalize_path(raw);
    p == "/api/auth" || p.starts_with("/api/auth/")
}

/// The value of the `hearth_session` cookie, if sent.
pub fn session_cookie(h: &HeaderMap) -> Option<&str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// SHA-256 of a session token, hex (what the database keeps).
pub fn token_hash(token: &str) -> String {
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The principal of a session token: the key it was opened with (still valid), or the user
/// (role and team as they are now). `None`: unknown, expired, or its user or key is gone.
async fn resolve_session(
    gw: &Gateway,
    token: &str,
) -> Result<Option<(Principal, SessionInfo)>, ApiError> {
    let Some(store) = &gw.sql else {
        return Ok(None);
    };
    let unavailable = |e: hearth_gateway::store::StoreError| {
        tracing::error!("session lookup failed: {e}");
        ApiError::internal("The session store is unavailable.")
    };
    let hash = token_hash(token);
    let Some(s) = store.session(&hash).await.map_err(unavailable)? else {
        return Ok(None);
    };
    let principal = match s.key_id.as_deref() {
        Some("api-key") if gw.admin_key.is_some() => {
            let mut p = Principal::local_admin();
            p.key_id = "api-key".into();
            p.key_name = "--api-key".into();
            Some(p)
        }
        Some("api-key") => None,
        Some(id) => store.key_principal(id).await.map_err(unavailable)?,
        None => store.user_principal(&s.user).await.map_err(unavailable)?,
    };
    Ok(principal.map(|p| {
        (
            p,
            SessionInfo {
                token_hash: hash,
                csrf_token: s.csrf_token,
            },
        )
    }))
}

/// Whose conversations, runs and generations a principal sees: its user name, `local` for the
/// local admin, `key:ID` for a key without a user.
pub fn owner_of(p: &Principal) -> String {
    match (&p.user, p.key_id.as_str()) {
        (Some(u), _) => u.clone(),
        (None, "local") => "local".into(),
        (None, id) => format!("key:{id}"),
    }
}

/// Run `fut` with the current request's meter (if any) as its task-local, so a task spawned
/// from a handler is admitted, billed and audited as part of that request.
pub fn carry<F>(fut: F) -> futures::future::BoxFuture<'static, F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match current() {
        Some(m) => Box::pin(CURRENT.scope(m, fut)),
        None => Box::pin(fut),
    }
}

fn req_path_is_users(uri: &axum::http::Uri) -> bool {
    let p = normalize_path(uri.path());
    p == "/admin/v1/users" || p.starts_with("/admin/v1/users/")
}

/// A user body as the audit keeps it: `"password"` replaced, so neither the password nor a
/// hash of a body holding it (which a guess could be checked against) is ever stored.
fn redact_password(users_route: bool, body: &[u8]) -> Vec<u8> {
    if !users_route {
        return body.to_vec();
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut m)) => {
            if m.contains_key("password") {
                m.insert("password".into(), "<redacted>".into());
            }
            serde_json::to_vec(&m).unwrap_or_default()
        }
        // Not JSON: the handler refuses it; keep nothing that might be a password.
        _ => Vec::new(),
    }
}

fn presented_key(h: &HeaderMap) -> Option<&str> {
    if let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim());
        }
    }
    h.get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Compare without an early exit, so response timing does not reveal how much of a guessed
/// key was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_path_spellings_all_classify_as_admin() {
        for p in [
            "/admin/v1/keys",
            "/ADMIN/v1/keys",
            "//admin//v1/keys/",
            "/%61dmin/v1/keys",
            "/%2561dmin/v1/keys",
            "/v1/../admin/v1/keys",
            "/./admin/v1/users",
            "/Admin/V1/Teams",
            "\\admin\\v1\\keys",
        ] {
            assert_eq!(classify(p), RouteClass::Admin, "{p}");
        }
        assert_eq!(classify("/admin/v1/usage"), RouteClass::Audit);
        assert_eq!(classify("/ADMIN/v1/Audit/"), RouteClass::Audit);
        assert_eq!(classify("/v1/chat/completions"), RouteClass::Inference);
        assert_eq!(classify("/V1//models"), RouteClass::Inference);
        assert_eq!(classify("/health"), RouteClass::Public);
        assert_eq!(classify("/"), RouteClass::Public);
        assert_eq!(classify("/adminx"), RouteClass::Public);
        // The web UI's API.
        assert_eq!(classify("/api/auth/login"), RouteClass::Public);
        assert_eq!(classify("/API//auth/me/"), RouteClass::Public);
        assert_eq!(classify("/api/authx"), RouteClass::Inference);
        assert_eq!(
            classify("/api/auth/../conversations"),
            RouteClass::Inference
        );
        assert_eq!(classify("/api/conversations/c_1"), RouteClass::Inference);
        assert_eq!(classify("/api/admin/status"), RouteClass::Audit);
        assert_eq!(classify("/api/%61dmin/Status/"), RouteClass::Audit);
        assert_eq!(classify("/api/admin/status/x"), RouteClass::Admin);
        assert_eq!(classify("/api/admin/other"), RouteClass::Admin);
        assert_eq!(classify("/api/admin"), RouteClass::Admin);
        assert_eq!(classify("/api/auth/%2e%2e/admin/x"), RouteClass::Admin);
    }

    #[test]
    fn passwords_are_redacted_from_user_bodies_only() {
        let body = br#"{"name":"frank","role":"user","password":"hunter2-long"}"#;
        let kept = String::from_utf8(redact_password(true, body)).unwrap();
        assert!(!kept.contains("hunter2"), "{kept}");
        assert!(
            kept.contains("<redacted>") && kept.contains("frank"),
            "{kept}"
        );
        assert_eq!(redact_password(false, body), body.to_vec());
        assert!(redact_password(true, b"not json password").is_empty());
        let uri: axum::http::Uri = "/ADMIN//v1/users/frank".parse().unwrap();
        assert!(req_path_is_users(&uri));
        let uri: axum::http::Uri = "/admin/v1/usersx".parse().unwrap();
        assert!(!req_path_is_users(&uri));
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; hearth_csrf=x; hearth_session=tok ; b=2"),
        );
        assert_eq!(session_cookie(&h), Some("tok"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("hearth_sessionx=1"),
        );
        assert_eq!(session_cookie(&h), None);
    }

    #[test]
    fn roles() {
        let get = Method::GET;
        let post = Method::POST;
        assert!(role_allows(Role::User, RouteClass::Inference, &post));
        assert!(!role_allows(Role::User, RouteClass::Admin, &get));
        assert!(!role_allows(Role::User, RouteClass::Audit, &get));
        assert!(role_allows(Role::Auditor, RouteClass::Audit, &get));
        assert!(!role_allows(Role::Auditor, RouteClass::Audit, &post));
        assert!(!role_allows(Role::Auditor, RouteClass::Inference, &post));
        assert!(role_allows(Role::Admin, RouteClass::Admin, &post));
    }

    #[test]
    fn keys_from_either_header() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  abc "),
        );
        assert_eq!(presented_key(&h), Some("abc"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("xyz"));
        assert_eq!(presented_key(&h), Some("xyz"));
        assert_eq!(presented_key(&HeaderMap::new()), None);
    }
}

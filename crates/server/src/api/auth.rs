//! `/api/auth/me`, `/api/auth/login`, `/api/auth/logout`: the web UI's sessions
//! (docs/UI-API.md). The session itself is checked by the gateway's `gate`, which accepts the
//! `hearth_session` cookie on every route and demands the CSRF header for unsafe methods.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hearth_gateway::store::UiSession;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::gateway::{self, Principal, SessionInfo, CSRF_COOKIE, SESSION_COOKIE};
use crate::json::JsonBody;
use crate::serve::ClientAddr;
use crate::state::SharedState;

/// How long a session lasts.
pub const SESSION_SECONDS: i64 = 12 * 3600;
/// The window of the login rate limit.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(300);
pub const MAX_FAILURES_PER_USER: usize = 5;
pub const MAX_FAILURES_PER_ADDR: usize = 20;

/// Failed logins per user name and per client address over the last five minutes.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// `Err(seconds to wait)` when a key is over its limit.
    fn check(&self, keys: &[(String, usize)]) -> Result<(), u64> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut wait = None;
        for (k, max) in keys {
            if let Some(q) = map.get_mut(k) {
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= LOGIN_WINDOW)
                {
                    q.pop_front();
                }
                if q.len() >= *max {
                    // Free again when the oldest failure that keeps it full leaves the window.
                    let oldest = q[q.len() - max];
                    let left = LOGIN_WINDOW.saturating_sub(now.duration_since(oldest));
                    let s = left.as_secs_f64().ceil() as u64;
                    wait = Some(wait.unwrap_or(0).max(s.max(1)));
                }
            }
        }
        match wait {
            Some(s) => Err(s),
            None => Ok(()),
        }
    }

    fn fail(&self, keys: &[(String, usize)]) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if map.len() > 100_000 {
            map.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.duration_since(*t) < LOGIN_WINDOW)
            });
        }
        for (k, _) in keys {
            map.entry(k.clone()).or_default().push_back(now);
        }
    }

    fn clear(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// The user object of `/api/auth/me` and login.
pub fn user_json(p: &Principal) -> Value {
    let name = match (&p.user, p.key_id.as_str()) {
        (Some(u), _) => u.clone(),
        (None, "local") => "local".into(),
        (None, _) => p.key_name.clone(),
    };
    json!({"name": name, "role": p.role.as_str(), "team": p.team})
}

fn mode(state: &SharedState) -> &'static str {
    if state.gateway.auth_required {
        "auth"
    } else {
        "local"
    }
}

/// `GET /api/auth/me`.
pub async fn me(
    State(state): State<SharedState>,
    session: Option<Extension<SessionInfo>>,
) -> Response {
    let user = gateway::current()
        .and_then(|m| m.principal().map(user_json))
        .unwrap_or(Value::Null);
    Json(json!({
        "mode": mode(&state),
        "user": user,
        "csrf_token": session.map(|Extension(s)| s.csrf_token),
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: Option<String>,
    password: Option<String>,
    api_key: Option<String>,
}

fn invalid_credentials(msg: &str) -> ApiError {
    ApiError::unauthorized(msg).with_code("invalid_credentials")
}

fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn cookie(
    state: &SharedState,
    name: &str,
    value: &str,
    http_only: bool,
    max_age: i64,
) -> HeaderValue {
    cookie_value(state.config.tls.is_some(), name, value, http_only, max_age)
}

/// A `Set-Cookie` value: `SameSite=Strict; Path=/`, `HttpOnly` when asked, `Secure` under TLS.
fn cookie_value(
    secure: bool,
    name: &str,
    value: &str,
    http_only: bool,
    max_age: i64,
) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; SameSite=Strict; Max-Age={max_age}");
    if http_only {
        c.push_str("; HttpOnly");
    }
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `POST /api/auth/login`: `{"username", "password"}` or `{"api_key"}`.
pub async fn login(
    State(state): State<SharedState>,
    addr: Option<Extension<ConnectInfo<ClientAddr>>>,
    body: Result<JsonBody<LoginBody>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(b) = body?;
    let gw = state.gateway.clone();
    if !gw.auth_required {
        // Local mode: everyone is the local admin already; nothing to open.
        let p = Principal::local_admin();
        return Ok(Json(json!({"user": user_json(&p), "csrf_token": null})).into_response());
    }
    let Some(store) = gw.sql.clone() else {
        return Err(ApiError::bad_request(
            "This server runs without a database: there are no sessions; send an API key.",
        ));
    };
    let ip: Option<IpAddr> = addr.map(|Extension(ConnectInfo(a))| a.0.ip());
    let addr_key = format!("addr:{}", ip.map(|i| i.to_string()).unwrap_or_default());
    let (principal, key_id) = match (&b.username, &b.password, &b.api_key) {
        (Some(user), Some(password), None) => {
            let user_key = format!("user:{user}");
            let keys = [
                (user_key.clone(), MAX_FAILURES_PER_USER),
                (addr_key.clone(), MAX_FAILURES_PER_ADDR),
            ];
            check_limit(&state, &keys)?;
            let found = store.user_password_hash(user).await.map_err(|e| {
                tracing::error!("login lookup failed: {e}");
                ApiError::internal("The user store is unavailable.")
            })?;
            let stored = found.as_ref().and_then(|(_, h)| h.clone());
            let password = password.clone();
            let ok = tokio::task::spawn_blocking(move || {
                hearth_gateway::password::verify_or_dummy(&password, stored.as_deref())
            })
            .await
            .unwrap_or(false);
            let principal = if ok {
                store.user_principal(user).await.map_err(|e| {
                    tracing::error!("login lookup failed: {e}");
                    ApiError::internal("The user store is unavailable.")
                })?
            } else {
                None
            };
            match principal {
                Some(p) => {
                    state.login_limiter.clear(&user_key);
                    (p, None)
                }
                None => {
                    state.login_limiter.fail(&keys);
                    tracing::info!(user = %user, "failed login");
                    return Err(invalid_credentials("Incorrect user name or password."));
                }
            }
        }
        (None, None, Some(key)) => {
            let keys = [(addr_key, MAX_FAILURES_PER_ADDR)];
            check_limit(&state, &keys)?;
            match gw.authenticate(key).await? {
                Some(p) => {
                    let id = p.key_id.clone();
                    (p, Some(id))
                }
                None => {
                    state.login_limiter.fail(&keys);
                    return Err(invalid_credentials(
                        "Incorrect API key provided, or the key has expired or been revoked.",
                    ));
                }
            }
        }
        _ => {
            return Err(ApiError::bad_request(
                "Send {\"username\", \"password\"} or {\"api_key\"}.",
            ))
        }
    };
    let token = random_token();
    let csrf = uuid::Uuid::new_v4().simple().to_string();
    let now = crate::ids::unix_now() as i64;
    let user_name = gateway::owner_of(&principal);
    store
        .create_session(&UiSession {
            token_hash: gateway::token_hash(&token),
            user: user_name,
            key_id,
            role: principal.role,
            csrf_token: csrf.clone(),
            created: now,
            expires: now + SESSION_SECONDS,
        })
        .await
        .map_err(|e| {
            tracing::error!("session write failed: {e}");
            ApiError::internal("The session store is unavailable.")
        })?;
    // Expired sessions go now and then (a login is a fine moment).
    if rand_percent() < 5 {
        let _ = store.purge_sessions().await;
    }
    let mut resp = Json(json!({"user": user_json(&principal), "csrf_token": csrf})).into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        cookie(&state, SESSION_COOKIE, &token, true, SESSION_SECONDS),
    );
    h.append(
        header::SET_COOKIE,
        cookie(&state, CSRF_COOKIE, &csrf, false, SESSION_SECONDS),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

fn rand_percent() -> u8 {
    uuid::Uuid::new_v4().as_bytes()[0] % 100
}

fn check_limit(state: &SharedState, keys: &[(String, usize)]) -> Result<(), ApiError> {
    state.login_limiter.check(keys).map_err(|wait| {
        ApiError::too_many_requests(
            "requests",
            "rate_limit_exceeded",
            format!("Too many failed logins: try again in {wait} seconds."),
            Some(wait),
        )
    })
}

/// `POST /api/auth/logout`: deletes the session (when there is one) and clears the cookies.
pub async fn logout(
    State(state): State<SharedState>,
    session: Option<Extension<SessionInfo>>,
) -> Result<Response, ApiError> {
    if let (Some(Extension(s)), Some(store)) = (session, &state.gateway.sql) {
        store.delete_session(&s.token_hash).await.map_err(|e| {
            tracing::error!("session delete failed: {e}");
            ApiError::internal("The session store is unavailable.")
        })?;
    }
    let mut resp = (StatusCode::OK, Json(json!({}))).into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        cookie(&state, SESSION_COOKIE, "", true, 0),
    );
    h.append(
        header::SET_COOKIE,
        cookie(&state, CSRF_COOKIE, "", false, 0),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_strict_and_secure_under_tls() {
        let c = cookie_value(true, SESSION_COOKIE, "tok", true, 60);
        assert_eq!(
            c.to_str().unwrap(),
            "hearth_session=tok; Path=/; SameSite=Strict; Max-Age=60; HttpOnly; Secure"
        );
        let c = cookie_value(false, CSRF_COOKIE, "x", false, 0);
        assert_eq!(
            c.to_str().unwrap(),
            "hearth_csrf=x; Path=/; SameSite=Strict; Max-Age=0"
        );
    }

    #[test]
    fn limiter_counts_failures_per_key() {
        let l = LoginLimiter::default();
        let keys = [("user:a".to_string(), 2), ("addr:x".to_string(), 3)];
        assert!(l.check(&keys).is_ok());
        l.fail(&keys);
        assert!(l.check(&keys).is_ok());
        l.fail(&keys);
        let wait = l.check(&keys).unwrap_err();
        assert!((299..=300).contains(&wait), "{wait}");
        // Another user from the same address: one more failure allowed there.
        let other = [("user:b".to_string(), 2), ("addr:x".to_string(), 3)];
        assert!(l.check(&other).is_ok());
        l.fail(&other);
        assert!(l.check(&other).is_err());
        l.clear("user:a");
        assert!(l.check(&[("user:a".to_string(), 2)]).is_ok());
    }
}

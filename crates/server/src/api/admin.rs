//! The admin API (`/admin/v1/...`): keys, users, teams, usage and the audit log. The gateway
//! middleware has already checked the role (admin; auditor for reading usage and audit)
//! before any handler here runs.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use hearth_gateway::limits::Limits;
use hearth_gateway::store::{
    AuditFilter, GroupBy, NewKey, Role, Store, StoreError, Team, UsageFilter, User, Verdict,
};
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::json::JsonBody;
use crate::state::SharedState;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/admin/v1/keys", get(list_keys).post(create_key))
        .route("/admin/v1/keys/{id}", delete(revoke_key))
        .route("/admin/v1/users", get(list_users).post(create_user))
        .route(
            "/admin/v1/users/{name}",
            delete(delete_user).patch(update_user),
        )
        .route("/admin/v1/teams", get(list_teams).post(create_team))
        .route(
            "/admin/v1/teams/{name}",
            delete(delete_team).patch(update_team),
        )
        .route("/admin/v1/usage", get(usage))
        .route("/admin/v1/audit", get(audit))
        .route("/admin/v1/audit/verify", get(verify))
}

fn store(state: &SharedState) -> Result<&Store, ApiError> {
    state.gateway.sql.as_ref().ok_or_else(|| {
        ApiError::not_found("This server runs without a database: the admin API is off.")
    })
}

fn err(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound { .. } => ApiError::not_found(e.to_string()),
        StoreError::Invalid(m) => ApiError::bad_request(m),
        e => {
            tracing::error!("admin store error: {e}");
            ApiError::internal("The database failed; see the server log.")
        }
    }
}

fn list<T: serde::Serialize>(data: Vec<T>) -> Response {
    Json(json!({"object": "list", "data": data})).into_response()
}

async fn list_keys(State(s): State<SharedState>) -> Result<Response, ApiError> {
    Ok(list(store(&s)?.list_keys().await.map_err(err)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    user: Option<String>,
    team: Option<String>,
    role: Option<Role>,
    models: Option<Vec<String>>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    max_concurrent: Option<u64>,
    monthly_tokens: Option<u64>,
    /// UNIX seconds.
    expires: Option<i64>,
}

/// Creates a key; the response is the only time the secret (`key`) is shown.
async fn create_key(
    State(s): State<SharedState>,
    body: Result<JsonBody<CreateKey>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(b) = body?;
    let (info, secret) = store(&s)?
        .create_key(&NewKey {
            name: b.name,
            user: b.user,
            team: b.team,
            role: b.role,
            models: b.models,
            limits: Limits {
                rpm: b.rpm,
                tpm: b.tpm,
                max_concurrent: b.max_concurrent,
                monthly_tokens: b.monthly_tokens,
            },
            expires: b.expires,
        })
        .await
        .map_err(err)?;
    let mut v = serde_json::to_value(&info).unwrap_or_default();
    v["key"] = json!(secret);
    Ok((axum::http::StatusCode::CREATED, Json(v)).into_response())
}

async fn revoke_key(
    State(s): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    store(&s)?.revoke_key(&id).await.map_err(err)?;
    Ok(Json(json!({"id": id, "revoked": true})).into_response())
}

async fn list_users(State(s): State<SharedState>) -> Result<Response, ApiError> {
    Ok(list(store(&s)?.list_users().await.map_err(err)?))
}

#[derive(Deserialize)]
struct CreateUser {
    name: String,
    role: Role,
    team: Option<String>,
    /// The web UI password (stored as an argon2id hash; never returned).
    password: Option<String>,
}

/// Hash a password on the blocking pool (argon2id takes tens of milliseconds).
async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hearth_gateway::password::hash(&password))
        .await
        .map_err(|e| ApiError::internal(format!("password hashing panicked: {e}")))?
        .map_err(|e| ApiError::invalid_param("password", e.to_string()))
}

async fn create_user(
    State(s): State<SharedState>,
    body: Result<JsonBody<CreateUser>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(b) = body?;
    let st = store(&s)?;
    // Checked before the user exists, so a bad password leaves nothing behind.
    let hash = match b.password {
        Some(p) => Some(hash_password(p).await?),
        None => None,
    };
    let u = st
        .create_user(&User {
            name: b.name,
            role: b.role,
            team: b.team,
            created: 0,
        })
        .await
        .map_err(err)?;
    if let Some(h) = hash {
        st.set_password_hash(&u.name, &h).await.map_err(err)?;
    }
    Ok((axum::http::StatusCode::CREATED, Json(u)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    role: Option<Role>,
    /// `null` removes the team.
    #[serde(default, deserialize_with = "some_or_null")]
    team: Option<Option<String>>,
    password: Option<String>,
}

/// For `PATCH` fields: absent is `None` (unchanged), `null` is `Some(None)` (cleared).
fn some_or_null<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /admin/v1/users/{name}`: role, team and/or password (a new password ends the
/// user's open web sessions).
async fn update_user(
    State(s): State<SharedState>,
    Path(name): Path<String>,
    body: Result<JsonBody<UpdateUser>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(b) = body?;
    let st = store(&s)?;
    let mut u = st.get_user(&name).await.map_err(err)?;
    let hash = match b.password {
        Some(p) => Some(hash_password(p).await?),
        None => None,
    };
    if b.role.is_some() || b.team.is_some() {
        if let Some(r) = b.role {
            u.role = r;
        }
        if let Some(t) = b.team {
            u.team = t;
        }
        u = st.update_user(&u).await.map_err(err)?;
    }
    if let Some(h) = hash {
        st.set_password_hash(&name, &h).await.map_err(err)?;
        st.delete_user_sessions(&name).await.map_err(err)?;
    }
    Ok(Json(u).into_response())
}

async fn delete_user(
    State(s): State<SharedState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    store(&s)?.delete_user(&name).await.map_err(err)?;
    Ok(Json(json!({"name": name, "deleted": true})).into_response())
}

async fn list_teams(State(s): State<SharedState>) -> Result<Response, ApiError> {
    Ok(list(store(&s)?.list_teams().await.map_err(err)?))
}

async fn create_team(
    State(s): State<SharedState>,
    body: Result<JsonBody<Team>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(t) = body?;
    let t = store(&s)?.create_team(&t).await.map_err(err)?;
    Ok((axum::http::StatusCode::CREATED, Json(t)).into_response())
}

/// The limits a `PATCH` changes: each absent one stays, `null` removes it.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsPatch {
    #[serde(default, deserialize_with = "some_or_null")]
    rpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "some_or_null")]
    tpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "some_or_null")]
    max_concurrent: Option<Option<u64>>,
    #[serde(default, deserialize_with = "some_or_null")]
    monthly_tokens: Option<Option<u64>>,
}

impl LimitsPatch {
    fn apply(self, l: &mut Limits) {
        for (new, old) in [
            (self.rpm, &mut l.rpm),
            (self.tpm, &mut l.tpm),
            (self.max_concurrent, &mut l.max_concurrent),
            (self.monthly_tokens, &mut l.monthly_tokens),
        ] {
            if let Some(v) = new {
                *old = v;
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateTeam {
    #[serde(default)]
    limits: LimitsPatch,
    /// `null`: any model.
    #[serde(default, deserialize_with = "some_or_null")]
    models: Option<Option<Vec<String>>>,
}

/// `PATCH /admin/v1/teams/{name}`: limits and the model allow-list, in the shape of a team
/// (`{"limits": {"rpm": 60, "tpm": null}, "models": ["smollm2"]}`). Checked as on create;
/// they apply from the team's next request.
async fn update_team(
    State(s): State<SharedState>,
    Path(name): Path<String>,
    body: Result<JsonBody<UpdateTeam>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(b) = body?;
    let st = store(&s)?;
    let mut t = st.get_team(&name).await.map_err(err)?;
    b.limits.apply(&mut t.limits);
    if let Some(m) = b.models {
        t.models = m;
    }
    Ok(Json(st.update_team(&t).await.map_err(err)?).into_response())
}

async fn delete_team(
    State(s): State<SharedState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    store(&s)?.delete_team(&name).await.map_err(err)?;
    Ok(Json(json!({"name": name, "deleted": true})).into_response())
}

#[derive(Deserialize)]
struct UsageQuery {
    group_by: Option<GroupBy>,
    key: Option<String>,
    user: Option<String>,
    team: Option<String>,
    model: Option<String>,
    /// First day, YYYY-MM-DD (default: 30 days ago).
    since: Option<String>,
    /// Last day, YYYY-MM-DD, inclusive (default: today).
    until: Option<String>,
}

fn day_of(s: &str, param: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::invalid_param(
            param,
            format!("`{param}` must be a date YYYY-MM-DD, got {s:?}."),
        )
    };
    let mut it = s.split('-');
    let (y, m, d) = (it.next(), it.next(), it.next());
    let (Some(y), Some(m), Some(d), None) = (y, m, d, it.next()) else {
        return Err(bad());
    };
    let (y, m, d): (i64, u32, u32) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    Ok(hearth_gateway::store::days_from_civil(y, m, d))
}

async fn usage(
    State(s): State<SharedState>,
    Query(q): Query<UsageQuery>,
) -> Result<Response, ApiError> {
    let today = crate::ids::unix_now() as i64 / 86_400;
    let since = match &q.since {
        Some(d) => day_of(d, "since")?,
        None => today - 30,
    };
    let until = match &q.until {
        Some(d) => day_of(d, "until")? + 1,
        None => today + 1,
    };
    let rows = store(&s)?
        .usage_filtered(&UsageFilter {
            group_by: Some(q.group_by.unwrap_or(GroupBy::Key)),
            since_day: Some(since),
            until_day: Some(until),
            key: q.key,
            user: q.user,
            team: q.team,
            model: q.model,
        })
        .await
        .map_err(err)?;
    Ok(list(rows))
}

#[derive(Deserialize)]
struct AuditQuery {
    /// Records after this sequence number (paging: pass the last `seq` you got).
    after: Option<i64>,
    limit: Option<i64>,
    /// UNIX seconds.
    since: Option<i64>,
    until: Option<i64>,
    request_id: Option<String>,
    key: Option<String>,
    user: Option<String>,
    team: Option<String>,
    model: Option<String>,
    status: Option<u16>,
}

async fn audit(
    State(s): State<SharedState>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let filter = AuditFilter {
        since: q.since,
        until: q.until,
        request_id: q.request_id,
        key: q.key,
        user: q.user,
        team: q.team,
        model: q.model,
        status: q.status,
    };
    let page = store(&s)?
        .query_audit(&filter, q.after.unwrap_or(0), limit)
        .await
        .map_err(err)?;
    let next = page.last().map(|r| r.seq);
    Ok(Json(json!({"object": "list", "data": page, "next_after": next})).into_response())
}

async fn verify(State(s): State<SharedState>) -> Result<Response, ApiError> {
    Ok(match store(&s)?.verify_audit().await.map_err(err)? {
        Verdict::Ok { records } => Json(json!({"ok": true, "records": records})),
        Verdict::Broken {
            seq,
            request_id,
            reason,
        } => Json(json!({"ok": false, "seq": seq, "request_id": request_id, "reason": reason})),
    }
    .into_response())
}

//! One module per endpoint, each with its request types and handler.

pub mod admin;
pub mod admin_models;
pub mod auth;
pub mod chat;
pub mod common;
pub mod compare;
pub mod completions;
pub mod conversations;
pub mod health;
pub mod metrics;
pub mod models;
pub mod responses;
pub mod tokenize;

use std::sync::Arc;

use crate::generations;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;

use crate::backend::Backend;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::state::{AppState, SharedState};

/// The whole API as an axum router (no listener): what [`crate::serve`]
/// runs, and what tests and embedders mount.
pub fn router(backend: Arc<dyn Backend>, config: ServerConfig) -> Router {
    router_with_state(Arc::new(AppState::new(backend, config)))
}

pub(crate) fn router_with_state(state: SharedState) -> Router {
    let limit = state.config.max_body_bytes;
    let body_limit = state.config.body_read_timeout;
    let cors = cors_layer(&state.config.cors_origins);
    if let Some(u) = &state.config.upstreams {
        u.start_health_checks();
    }
    // Requests for an upstream model id are forwarded before the local handlers see them.
    let upstream = || middleware::from_fn_with_state(state.clone(), crate::upstream::intercept);
    let router = Router::new()
        .route(
            "/v1/chat/completions",
            post(chat::handler).route_layer(upstream()),
        )
        .route(
            "/v1/completions",
            post(completions::handler).route_layer(upstream()),
        )
        .route(
            "/v1/responses",
            post(responses::handler).route_layer(upstream()),
        )
        .route("/v1/models", get(models::list))
        .route("/v1/limits", get(crate::gateway::explain))
        .route("/v1/models/{*id}", get(models::get))
        .route("/health", get(health::health))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .route("/metrics", get(metrics::metrics))
        .merge(admin::routes())
        .merge(admin_models::routes())
        .merge(ui_routes())
        .fallback(crate::ui::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::gateway::gate,
        ))
        .with_state(state);
    // Every request body must arrive within the deadline (slow clients: issue 7).
    let router = router.layer(middleware::map_request(move |req: Request| async move {
        req.map(|b| axum::body::Body::new(crate::json::DeadlineBody::new(b, body_limit)))
    }));
    // Outermost: a browser's preflight (no credentials) is answered before authentication.
    match cors {
        Some(c) => router.layer(c),
        None => router,
    }
}

/// The web UI's API (docs/UI-API.md).
fn ui_routes() -> Router<SharedState> {
    use self::conversations as conv;
    Router::new()
        .route("/api/auth/me", get(auth::me))
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/conversations", get(conv::list).post(conv::create))
        .route("/api/conversations/import", post(conv::import))
        .route(
            "/api/conversations/{id}",
            get(conv::get).patch(conv::patch).delete(conv::delete),
        )
        .route("/api/conversations/{id}/messages", post(conv::send))
        .route("/api/conversations/{id}/export", get(conv::export))
        .route("/api/generations", get(generations::list))
        .route("/api/generations/{id}/events", get(generations::events))
        .route("/api/generations/{id}/stop", post(generations::stop))
        .route(
            "/api/compare/runs",
            get(compare::list).post(compare::create),
        )
        .route(
            "/api/compare/runs/{id}",
            get(compare::get).put(compare::put).delete(compare::delete),
        )
        .route(
            "/api/compare/leaderboard",
            get(compare::leaderboard_handler),
        )
        .route("/api/admin/status", get(compare::status))
}

/// CORS for the configured origins (`None` when none are: off by default).
fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{header, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("x-api-key"),
            ])
            .expose_headers([
                header::RETRY_AFTER,
                header::HeaderName::from_static("x-request-id"),
                header::HeaderName::from_static("x-ratelimit-remaining-requests"),
                header::HeaderName::from_static("x-ratelimit-remaining-tokens"),
            ]),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::method_not_allowed(format!(
        "Method {} is not allowed on {}",
        req.method(),
        req.uri().path()
    ))
}

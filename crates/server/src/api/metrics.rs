//! `GET /metrics` in the Prometheus text format.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::state::SharedState;

pub async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    let mut body = state.metrics.render(state.backend.stats());
    if let Some(u) = &state.config.upstreams {
        u.render_metrics(&mut body);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

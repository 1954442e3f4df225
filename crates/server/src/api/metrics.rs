//! `GET /metrics` in the Prometheus text format.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::state::SharedState;

pub async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    let body = state.metrics.render(state.backend.stats());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

//! `GET /health`: 200 `{"status": "ok"}` when the backend can serve, 503 in
//! the OpenAI error shape otherwise (loading, broken, shutting down).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::state::SharedState;

pub async fn health(State(state): State<SharedState>) -> ApiResult<Json<Value>> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(ApiError::unavailable("The server is shutting down."));
    }
    state
        .backend
        .health()
        .map_err(|why| ApiError::unavailable(format!("The backend is not ready: {why}")))?;
    Ok(Json(json!({"status": "ok"})))
}

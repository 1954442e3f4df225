//! `GET /v1/models`, `GET /v1/models/{id}` (OpenAI Models API).

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::backend::ModelCard;
use crate::error::ApiResult;
use crate::state::SharedState;

/// OpenAI's model object, plus `context_length` (an extension many clients
/// read to size prompts; unknown fields are ignored by OpenAI SDKs).
fn model_json(m: &ModelCard) -> Value {
    json!({
        "id": m.id,
        "object": "model",
        "created": m.created,
        "owned_by": m.owned_by,
        "context_length": m.context_length,
    })
}

pub async fn list(State(state): State<SharedState>) -> Json<Value> {
    let mut data: Vec<Value> = state.backend.models().iter().map(model_json).collect();
    if let Some(u) = &state.config.upstreams {
        data.extend(u.specs().map(upstream_json));
    }
    Json(json!({"object": "list", "data": data}))
}

/// A model served by upstream servers (`owned_by: "upstream"`).
fn upstream_json(s: &crate::upstream::UpstreamSpec) -> Value {
    json!({
        "id": s.id,
        "object": "model",
        "created": 0,
        "owned_by": "upstream",
        "context_length": s.context_length,
    })
}

/// `{id}` may contain slashes (`org/name`), hence the wildcard route.
pub async fn get(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    if let Some(s) = state
        .config
        .upstreams
        .as_ref()
        .and_then(|u| u.specs().find(|s| s.id == id))
    {
        return Ok(Json(upstream_json(s)));
    }
    Ok(Json(model_json(&state.model(&id)?)))
}

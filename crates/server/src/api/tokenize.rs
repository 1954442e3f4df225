//! `POST /tokenize`, `POST /detokenize` with llama-server's bodies
//! (`tools/server/README.md` in llama.cpp): `{"content": "...",
//! "add_special": false, "with_pieces": false}` → `{"tokens": [...]}` and
//! `{"tokens": [...]}` → `{"content": "..."}`. An optional `model` picks the
//! model (default: the backend's first).

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::json::JsonBody;
use crate::state::SharedState;

#[derive(Debug, Deserialize)]
pub struct TokenizeRequest {
    pub content: String,
    #[serde(default)]
    pub add_special: bool,
    #[serde(default)]
    pub with_pieces: bool,
    pub model: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct DetokenizeRequest {
    pub tokens: Vec<u32>,
    pub model: Option<String>,
}

fn pick_model(state: &SharedState, model: Option<String>) -> ApiResult<String> {
    match model {
        Some(m) => Ok(state.model(&m)?.id),
        None => state
            .backend
            .models()
            .into_iter()
            .next()
            .map(|m| m.id)
            .ok_or_else(|| ApiError::unavailable("No model is loaded.")),
    }
}

pub async fn tokenize(
    State(state): State<SharedState>,
    JsonBody(req): JsonBody<TokenizeRequest>,
) -> ApiResult<Json<Value>> {
    let model = pick_model(&state, req.model)?;
    let with_pieces = req.with_pieces;
    let result = state
        .blocking(move |b| {
            let ids = b.tokenize(&model, &req.content, req.add_special)?;
            if !with_pieces {
                return Ok(json!({"tokens": ids}));
            }
            // Each piece is the token detokenized alone (a byte-fallback
            // piece that is not valid UTF-8 on its own comes back with
            // U+FFFD; llama-server would send the raw bytes there).
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let piece = b.detokenize(&model, &[id])?;
                out.push(json!({"id": id, "piece": piece}));
            }
            Ok(json!({"tokens": out}))
        })
        .await?;
    Ok(Json(result))
}

pub async fn detokenize(
    State(state): State<SharedState>,
    JsonBody(req): JsonBody<DetokenizeRequest>,
) -> ApiResult<Json<Value>> {
    let model = pick_model(&state, req.model)?;
    let content = state
        .blocking(move |b| b.detokenize(&model, &req.tokens))
        .await?;
    Ok(Json(json!({"content": content})))
}

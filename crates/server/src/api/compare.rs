//! `/api/compare/...`: stored comparison runs (the UI's JSON documents, per user) and the
//! leaderboard over every stored vote; and `GET /api/admin/status` for the admin pages.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_gateway::store::CompareRun;
use serde_json::{json, Map, Value};

use super::conversations::{db, owner, store};
use crate::error::ApiError;
use crate::json::JsonBody;
use crate::state::SharedState;

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("No comparison run '{id}'."))
}

/// The Run object: the stored document with the server's id and times.
fn run_json(r: &CompareRun, with_questions: bool) -> Value {
    let mut v = match &r.document {
        Value::Object(m) => Value::Object(m.clone()),
        _ => Value::Object(Map::new()),
    };
    v["id"] = json!(r.id);
    v["title"] = json!(r.title);
    v["created"] = json!(r.created);
    v["updated"] = json!(r.updated);
    if !with_questions {
        if let Some(m) = v.as_object_mut() {
            m.remove("questions");
        }
    }
    v
}

/// Check a Run body and return (title, document without the server's fields).
fn document(body: Value) -> Result<(String, Value), ApiError> {
    let Value::Object(mut m) = body else {
        return Err(ApiError::bad_request("A run must be a JSON object."));
    };
    for k in ["id", "created", "updated"] {
        m.remove(k);
    }
    let title = match m.get("title") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "title",
                "`title` must be a string.",
            ))
        }
    };
    match m.get("columns") {
        None | Some(Value::Array(_)) => {}
        Some(_) => {
            return Err(ApiError::invalid_param(
                "columns",
                "`columns` must be an array.",
            ))
        }
    }
    match m.get("questions") {
        None | Some(Value::Array(_)) => {}
        Some(_) => {
            return Err(ApiError::invalid_param(
                "questions",
                "`questions` must be an array.",
            ))
        }
    }
    m.remove("title");
    Ok((title, Value::Object(m)))
}

/// `GET /api/compare/runs`: the caller's runs, without their questions.
pub async fn list(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let owner = owner()?;
    let runs = store(&state)?.list_compare_runs(&owner).await.map_err(db)?;
    let data: Vec<Value> = runs.iter().map(|r| run_json(r, false)).collect();
    Ok(Json(json!({"data": data})).into_response())
}

/// `POST /api/compare/runs`.
pub async fn create(
    State(state): State<SharedState>,
    body: Result<JsonBody<Value>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(b) = body?;
    let owner = owner()?;
    let (title, document) = document(b)?;
    let t = crate::ids::unix_now() as i64;
    let r = CompareRun {
        id: format!("r_{}", uuid::Uuid::new_v4().simple()),
        user: owner,
        title,
        document,
        created: t,
        updated: t,
    };
    store(&state)?.create_compare_run(&r).await.map_err(db)?;
    Ok((StatusCode::CREATED, Json(run_json(&r, true))).into_response())
}

/// `GET /api/compare/runs/{id}`.
pub async fn get(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let owner = owner()?;
    let r = store(&state)?
        .compare_run(&owner, &id)
        .await
        .map_err(db)?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(run_json(&r, true)).into_response())
}

/// `PUT /api/compare/runs/{id}`: the whole run (answers, votes, scores).
pub async fn put(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    body: Result<JsonBody<Value>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(b) = body?;
    let owner = owner()?;
    let st = store(&state)?;
    let old = st
        .compare_run(&owner, &id)
        .await
        .map_err(db)?
        .ok_or_else(|| not_found(&id))?;
    let (title, document) = document(b)?;
    let r = CompareRun {
        title,
        document,
        updated: crate::ids::unix_now() as i64,
        ..old
    };
    if !st.update_compare_run(&r).await.map_err(db)? {
        return Err(not_found(&id));
    }
    Ok(Json(run_json(&r, true)).into_response())
}

/// `DELETE /api/compare/runs/{id}`.
pub async fn delete(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let owner = owner()?;
    if !store(&state)?
        .delete_compare_run(&owner, &id)
        .await
        .map_err(db)?
    {
        return Err(not_found(&id));
    }
    Ok(Json(json!({"deleted": true})).into_response())
}

#[derive(Default)]
struct Tally {
    wins: u64,
    losses: u64,
    ties: u64,
    votes: u64,
    score_sum: f64,
    scores: u64,
}

/// Wins, losses, ties and mean scores per model over run documents. A vote for column `i` is
/// a win for `i` and a loss for every other column; `"tie"` (or -1) is a tie for all.
pub fn leaderboard(docs: &[Value]) -> Vec<Value> {
    let mut t: BTreeMap<String, Tally> = BTreeMap::new();
    for d in docs {
        let models: Vec<String> = d
            .get("columns")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        c.get("model")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let Some(questions) = d.get("questions").and_then(Value::as_array) else {
            continue;
        };
        for q in questions {
            let vote = q.get("vote");
            let tie = matches!(vote, Some(Value::String(s)) if s == "tie")
                || vote.and_then(Value::as_i64) == Some(-1);
            let winner = vote
                .and_then(Value::as_u64)
                .filter(|&v| (v as usize) < models.len());
            if tie || winner.is_some() {
                for (i, m) in models.iter().enumerate().filter(|(_, m)| !m.is_empty()) {
                    let e = t.entry(m.clone()).or_default();
                    e.votes += 1;
                    match winner {
                        _ if tie => e.ties += 1,
                        Some(w) if w as usize == i => e.wins += 1,
                        _ => e.losses += 1,
                    }
                }
            }
            if let Some(scores) = q.get("scores").and_then(Value::as_array) {
                for (i, s) in scores.iter().enumerate() {
                    if let (Some(m), Some(x)) = (models.get(i), s.as_f64()) {
                        if !m.is_empty() {
                            let e = t.entry(m.clone()).or_default();
                            e.score_sum += x;
                            e.scores += 1;
                        }
                    }
                }
            }
        }
    }
    let mut rows: Vec<(String, Tally)> = t.into_iter().collect();
    rows.sort_by(|a, b| {
        let rate = |x: &Tally| {
            if x.votes == 0 {
                0.0
            } else {
                (x.wins as f64 + 0.5 * x.ties as f64) / x.votes as f64
            }
        };
        rate(&b.1)
            .total_cmp(&rate(&a.1))
            .then(b.1.wins.cmp(&a.1.wins))
            .then(a.0.cmp(&b.0))
    });
    rows.into_iter()
        .map(|(m, x)| {
            let mean =
                (x.scores > 0).then(|| ((x.score_sum / x.scores as f64) * 100.0).round() / 100.0);
            json!({"model": m, "wins": x.wins, "losses": x.losses, "ties": x.ties,
                   "votes": x.votes, "mean_score": mean})
        })
        .collect()
}

/// `GET /api/compare/leaderboard`.
pub async fn leaderboard_handler(State(state): State<SharedState>) -> Result<Response, ApiError> {
    owner()?;
    let docs = store(&state)?.all_compare_documents().await.map_err(db)?;
    Ok(Json(json!({"data": leaderboard(&docs)})).into_response())
}

/// `GET /api/admin/status` (admin and auditor).
pub async fn status(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let stats = state.backend.stats();
    let models: Vec<Value> = state
        .backend
        .models()
        .iter()
        .map(|m| {
            let d = state.backend.model_details(&m.id).unwrap_or_default();
            json!({
                "id": m.id,
                "architecture": d.architecture,
                "context_length": m.context_length,
                "file_size": d.file_size,
                "quantization": d.quantization,
            })
        })
        .collect();
    Ok(Json(json!({
        "models": models,
        "running": stats.running,
        "waiting": stats.waiting,
        "kv_blocks_used": stats.kv.map(|k| k.blocks_used),
        "kv_blocks_total": stats.kv.map(|k| k.blocks_total),
        "generated_tokens_total": state.metrics.generated_tokens_total(),
        "uptime_s": state.started.elapsed().as_secs(),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_and_scores_add_up() {
        let docs = [
            json!({"columns": [{"model": "a"}, {"model": "b"}],
                   "questions": [
                       {"vote": 0, "scores": [8, 4]},
                       {"vote": 1, "scores": [null, 6]},
                       {"vote": null, "scores": [10, null]},
                       {"vote": "tie"}]}),
            json!({"columns": [{"model": "b"}, {"model": "c"}, {"model": "a"}],
                   "questions": [{"vote": 2}, {"vote": 7}]}),
            json!({"title": "no questions"}),
        ];
        let rows = leaderboard(&docs);
        let get = |m: &str| rows.iter().find(|r| r["model"] == m).unwrap().clone();
        assert_eq!(get("a")["wins"], 2);
        assert_eq!(get("a")["losses"], 1);
        assert_eq!(get("a")["ties"], 1);
        assert_eq!(get("a")["votes"], 4);
        assert_eq!(get("a")["mean_score"], 9.0);
        assert_eq!(get("b")["wins"], 1);
        assert_eq!(get("b")["losses"], 2);
        assert_eq!(get("b")["mean_score"], 5.0);
        assert_eq!(get("c")["losses"], 1);
        assert_eq!(get("c")["mean_score"], Value::Null);
        assert_eq!(rows[0]["model"], "a");
    }
}

//! `/admin/v1/models`: the served models with their state, loading a model from the server's
//! disk, unloading one, and the default model. The gateway has already checked the admin role
//! (and the CSRF token of a cookie session) and audits every call, as for the rest of
//! `/admin`. What may change is [`crate::config::ModelAdminPolicy`]'s; the backend does the
//! work through [`ModelAdmin`].
//!
//! A load runs on the blocking pool, in a task of its own: the request may wait for it (the
//! default) or not (`"wait": false`, then 202), and a client that goes away does not stop it.
//! While it runs, and after it failed, the model is listed with `state` `loading` or `failed`
//! (with the engine's message) from [`LoadJobs`]; once loaded it is the backend's.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Mutex;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::backend::{ModelAdmin, ModelAdminError, ModelCard};
use crate::error::ApiError;
use crate::json::JsonBody;
use crate::state::SharedState;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/admin/v1/models", get(list).post(load))
        // Model ids may contain slashes (`org/name`), hence the wildcard.
        .route(
            "/admin/v1/models/{*id}",
            get(get_one).patch(patch).delete(unload),
        )
}

/// Loads that are running or failed, by model id.
#[derive(Default)]
pub struct LoadJobs(Mutex<BTreeMap<String, Job>>);

#[derive(Clone, Debug)]
struct Job {
    path: String,
    /// Unix seconds.
    started: u64,
    since: std::time::Instant,
    /// `None` while loading.
    error: Option<String>,
}

impl LoadJobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Job>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a load of `id`, unless one runs or the id is served already. A failed load
    /// of the same id is replaced.
    fn begin(&self, id: &str, path: &FsPath, served: bool) -> Result<(), ApiError> {
        let mut jobs = self.lock();
        if jobs.get(id).is_some_and(|j| j.error.is_none()) {
            return Err(ApiError::conflict(format!(
                "The model `{id}` is being loaded already."
            )));
        }
        if served {
            return Err(admin_err(ModelAdminError::Exists(id.into())));
        }
        jobs.insert(
            id.into(),
            Job {
                path: path.display().to_string(),
                started: crate::ids::unix_now(),
                since: std::time::Instant::now(),
                error: None,
            },
        );
        Ok(())
    }

    fn finish(&self, id: &str, error: Option<String>) {
        let mut jobs = self.lock();
        match error {
            None => {
                jobs.remove(id);
            }
            Some(e) => {
                if let Some(j) = jobs.get_mut(id) {
                    j.error = Some(e);
                }
            }
        }
    }
}

fn job_json(id: &str, j: &Job) -> Value {
    json!({
        "id": id,
        "object": "model",
        "state": if j.error.is_some() { "failed" } else { "loading" },
        "path": j.path,
        "started": j.started,
        "elapsed_s": j.since.elapsed().as_secs_f64(),
        "error": j.error,
    })
}

fn ready_json(state: &SharedState, m: &ModelCard, default: bool) -> Value {
    let d = state.backend.model_details(&m.id).unwrap_or_default();
    json!({
        "id": m.id,
        "object": "model",
        "state": "ready",
        "default": default,
        "path": d.path,
        "architecture": d.architecture,
        "context_length": m.context_length,
        "file_size": d.file_size,
        "quantization": d.quantization,
        "memory": d.memory.map(|mm| json!({
            "weights_mapped_bytes": mm.weights_mapped,
            "weights_resident_bytes": mm.weights_resident,
            "weights_owned_bytes": mm.weights_owned,
            "kv_cache_bytes": mm.kv_cache,
            "kv_cache_used_bytes": mm.kv_cache_used,
        })),
        "created": m.created,
    })
}

/// The served models (the default first), then the loads that run or failed.
fn entries(state: &SharedState) -> Vec<Value> {
    let models = state.backend.models();
    let mut out: Vec<Value> = models
        .iter()
        .enumerate()
        .map(|(i, m)| ready_json(state, m, i == 0))
        .collect();
    out.extend(
        state
            .model_jobs
            .lock()
            .iter()
            .filter(|(id, _)| !models.iter().any(|m| &m.id == *id))
            .map(|(id, j)| job_json(id, j)),
    );
    out
}

fn admin_err(e: ModelAdminError) -> ApiError {
    match &e {
        ModelAdminError::NotFound(id) => ApiError::model_not_found(id),
        ModelAdminError::Exists(id) => {
            ApiError::conflict(format!("A model with the id `{id}` is served already."))
                .with_code("model_exists")
        }
        ModelAdminError::Load(m) => {
            ApiError::invalid_param("path", m).with_code("model_load_failed")
        }
    }
}

/// The backend's model admin, if this server may change its models.
fn admin(state: &SharedState) -> Result<&dyn ModelAdmin, ApiError> {
    if state.config.model_admin.disabled {
        return Err(ApiError::forbidden(
            "model_admin_disabled",
            "Model management is turned off on this server (--no-model-admin).",
        ));
    }
    state.backend.model_admin().ok_or_else(|| {
        ApiError::forbidden(
            "model_admin_disabled",
            "This server's backend cannot load or unload models.",
        )
    })
}

async fn list(State(s): State<SharedState>) -> Response {
    let policy = &s.config.model_admin;
    let enabled = !policy.disabled && s.backend.model_admin().is_some();
    Json(json!({
        "object": "list",
        "data": entries(&s),
        "default": s.backend.models().first().map(|m| m.id.clone()),
        "management": {
            "enabled": enabled,
            "models_dir": policy.models_dir.as_ref().filter(|_| enabled).map(|d| d.display().to_string()),
        },
    }))
    .into_response()
}

fn entry(s: &SharedState, id: &str) -> Result<Value, ApiError> {
    entries(s)
        .into_iter()
        .find(|e| e["id"] == id)
        .ok_or_else(|| ApiError::model_not_found(id))
}

async fn get_one(
    State(s): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(entry(&s, &id)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadBody {
    /// The id clients will put in `"model"`.
    id: String,
    /// A `.gguf` file or a Hugging Face directory, under the models directory (relative to it,
    /// or absolute).
    path: String,
    /// Answer when the load has ended (the default), or at once with 202.
    #[serde(default = "yes")]
    wait: bool,
    /// Make it the default model once loaded.
    #[serde(default)]
    default: bool,
}

fn yes() -> bool {
    true
}

/// Ids are what clients type in `"model"`: printable, no spaces, at most 128 bytes.
fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('/')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_param(
            "id",
            format!(
                "Invalid model id {id:?}: use 1-128 letters, digits and - _ . : / @ + \
                 (not starting with /)."
            ),
        ))
    }
}

/// `given` as a real path under `dir` (symbolic links and `..` resolved first, so neither
/// leads out of it).
fn resolve(dir: &FsPath, given: &str) -> Result<PathBuf, ApiError> {
    if given.trim().is_empty() {
        return Err(ApiError::invalid_param("path", "`path` is empty."));
    }
    let p = FsPath::new(given);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    };
    let real = std::fs::canonicalize(&joined).map_err(|e| {
        ApiError::invalid_param(
            "path",
            format!("Cannot open the model path `{given}`: {e}."),
        )
        .with_code("model_load_failed")
    })?;
    let root = std::fs::canonicalize(dir).map_err(|e| {
        tracing::error!(
            "the models directory {} cannot be opened: {e}",
            dir.display()
        );
        ApiError::internal("The models directory cannot be opened; see the server log.")
    })?;
    if !real.starts_with(&root) {
        return Err(ApiError::forbidden(
            "path_not_allowed",
            format!(
                "`{given}` is outside the models directory {}: only models under it can be \
                 loaded.",
                root.display()
            ),
        ));
    }
    Ok(real)
}

/// `POST /admin/v1/models` `{"id", "path", "wait"?, "default"?}`: 201 with the model once
/// loaded, 202 with it loading (`"wait": false`), 400 with the engine's message when the
/// file cannot be loaded.
async fn load(
    State(s): State<SharedState>,
    body: Result<JsonBody<LoadBody>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(b) = body?;
    admin(&s)?;
    s.check_not_draining()?;
    check_id(&b.id)?;
    if let Some(u) = &s.config.upstreams {
        if u.specs().any(|sp| sp.id == b.id) {
            return Err(admin_err(ModelAdminError::Exists(b.id)));
        }
    }
    let dir = s.config.model_admin.models_dir.clone().ok_or_else(|| {
        ApiError::forbidden(
            "model_loading_disabled",
            "Loading models needs a models directory: start the server with --models-dir DIR \
             (HEARTH_MODELS_DIR); models can then be loaded from under it.",
        )
    })?;
    let given = b.path.clone();
    let path = tokio::task::spawn_blocking(move || resolve(&dir, &given))
        .await
        .map_err(|e| ApiError::internal(format!("path check panicked: {e}")))??;
    let served = s.backend.models().iter().any(|m| m.id == b.id);
    s.model_jobs.begin(&b.id, &path, served)?;
    tracing::info!("admin: loading model '{}' from {}", b.id, path.display());

    let (st, id, make_default) = (s.clone(), b.id.clone(), b.default);
    let task = tokio::spawn(async move {
        let (st2, id2) = (st.clone(), id.clone());
        let r = tokio::task::spawn_blocking(move || {
            let admin = admin(&st2).map_err(|e| ModelAdminError::Load(e.message))?;
            admin.load(&id2, &path)?;
            if make_default {
                admin.set_default(&id2)?;
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(ModelAdminError::Load(format!("loading panicked: {e}"))));
        if let Err(e) = &r {
            tracing::warn!("admin: loading model '{id}' failed: {e}");
        }
        st.model_jobs
            .finish(&id, r.as_ref().err().map(ToString::to_string));
        r
    });
    if !b.wait {
        return Ok((StatusCode::ACCEPTED, Json(entry(&s, &b.id)?)).into_response());
    }
    task.await
        .map_err(|e| ApiError::internal(format!("model load task failed: {e}")))?
        .map_err(admin_err)?;
    Ok((StatusCode::CREATED, Json(entry(&s, &b.id)?)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    /// `true` makes this model the default (there is always one: to change it, set another).
    default: Option<bool>,
}

/// `PATCH /admin/v1/models/{id}` `{"default": true}`.
async fn patch(
    State(s): State<SharedState>,
    Path(id): Path<String>,
    body: Result<JsonBody<PatchBody>, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBody(b) = body?;
    let admin = admin(&s)?;
    match b.default {
        Some(true) => admin.set_default(&id).map_err(admin_err)?,
        Some(false) => {
            return Err(ApiError::invalid_param(
                "default",
                "There is always a default model: make another model the default instead.",
            ))
        }
        None => {}
    }
    tracing::info!("admin: '{id}' is the default model");
    Ok(Json(entry(&s, &id)?).into_response())
}

#[derive(Deserialize)]
struct UnloadQuery {
    /// End the model's running generations now (they get an error) instead of letting them
    /// finish.
    #[serde(default)]
    cancel: bool,
}

/// `DELETE /admin/v1/models/{id}?cancel=true|false`: unload a served model, or forget a failed
/// load.
async fn unload(
    State(s): State<SharedState>,
    Path(id): Path<String>,
    Query(q): Query<UnloadQuery>,
) -> Result<Response, ApiError> {
    let admin = admin(&s)?;
    {
        let mut jobs = s.model_jobs.lock();
        match jobs.get(&id) {
            Some(j) if j.error.is_none() => {
                return Err(ApiError::conflict(format!(
                    "The model `{id}` is still loading; unload it once it is ready."
                )))
            }
            Some(_) => {
                jobs.remove(&id);
                return Ok(Json(json!({"id": id, "deleted": true})).into_response());
            }
            None => {}
        }
    }
    admin.unload(&id, q.cancel).map_err(admin_err)?;
    Ok(Json(json!({"id": id, "unloaded": true, "cancelled": q.cancel})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        for ok in ["smollm2", "org/name-7b", "qwen3:8b", "a.b_c+d@e"] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/abs", "with space", "new\nline", &"x".repeat(129)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_stay_under_the_models_directory() {
        let root =
            std::env::temp_dir().join(format!("hearth-models-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/m.gguf"), b"GGUF").unwrap();
        let outside = root.with_extension("outside.gguf");
        std::fs::write(&outside, b"GGUF").unwrap();
        let real = std::fs::canonicalize(root.join("sub/m.gguf")).unwrap();
        assert_eq!(resolve(&root, "sub/m.gguf").unwrap(), real);
        assert_eq!(resolve(&root, real.to_str().unwrap()).unwrap(), real);
        let e = resolve(&root, "sub/missing.gguf").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("sub/missing.gguf"), "{}", e.message);
        for escape in [
            "../".to_string() + outside.file_name().unwrap().to_str().unwrap(),
            outside.display().to_string(),
        ] {
            let e = resolve(&root, &escape).unwrap_err();
            assert_eq!(e.code, Some("path_not_allowed"), "{escape}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&outside, root.join("link.gguf")).unwrap();
            assert_eq!(
                resolve(&root, "link.gguf").unwrap_err().code,
                Some("path_not_allowed")
            );
        }
        assert!(resolve(&root, " ").is_err());
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_file(&outside);
    }
}

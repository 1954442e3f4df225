//! What every handler shares.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::backend::{Backend, BackendError, ModelCard};
use crate::config::ServerConfig;
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;

pub struct AppState {
    pub backend: Arc<dyn Backend>,
    pub config: ServerConfig,
    pub metrics: Arc<Metrics>,
    /// Set once shutdown began: new generations get 503, `/health` too.
    pub draining: AtomicBool,
    /// Set when the drain deadline passes: in-flight generations end now
    /// (streams with an in-band error, others with 503). Needed because the
    /// HTTP connections run on their own tasks and outlive the accept loop.
    pub abort: tokio::sync::watch::Sender<bool>,
    /// `/v1/responses` conversations kept for `previous_response_id` (bounded LRU).
    pub responses: std::sync::Mutex<crate::api::responses::ResponseStore>,
    /// Keys, roles, limits and audit (see [`crate::gateway`]).
    pub gateway: Arc<crate::gateway::Gateway>,
    /// Guardrails (the default policy unless `--guardrails FILE`).
    pub guard: Arc<crate::guard::Guardrails>,
    /// The web UI's server-owned generations.
    pub generations: crate::generations::Registry,
    /// Failed logins per user name and client address (`/api/auth/login`).
    pub login_limiter: crate::api::auth::LoginLimiter,
    /// Model loads started from the admin API that run or failed (`/admin/v1/models`).
    pub model_jobs: crate::api::admin_models::LoadJobs,
    pub started: std::time::Instant,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    pub fn new(backend: Arc<dyn Backend>, config: ServerConfig) -> Self {
        let guard = config
            .guardrails
            .clone()
            .unwrap_or_else(|| Arc::new(crate::guard::Guardrails::default_policy()));
        guard.watch_sighup();
        let gateway = config.gateway.clone().unwrap_or_else(|| {
            Arc::new(crate::gateway::Gateway::without_store(
                config.api_key.clone(),
            ))
        });
        AppState {
            backend,
            config,
            metrics: Arc::new(Metrics::default()),
            draining: AtomicBool::new(false),
            abort: tokio::sync::watch::channel(false).0,
            responses: crate::api::responses::new_store(),
            gateway,
            guard,
            generations: Default::default(),
            login_limiter: Default::default(),
            model_jobs: Default::default(),
            started: std::time::Instant::now(),
        }
    }

    /// Resolves once the drain deadline has passed.
    pub async fn aborted(&self) {
        let mut rx = self.abort.subscribe();
        // Err only if the sender is gone, and it lives as long as `self`.
        let _ = rx.wait_for(|&a| a).await;
    }

    pub fn model(&self, id: &str) -> ApiResult<ModelCard> {
        self.backend
            .models()
            .into_iter()
            .find(|m| m.id == id)
            .ok_or_else(|| ApiError::model_not_found(id))
    }

    pub fn check_not_draining(&self) -> ApiResult<()> {
        if self.draining.load(Ordering::Relaxed) {
            let mut e = ApiError::unavailable("The server is shutting down.");
            e.retry_after_s = Some(5);
            return Err(e);
        }
        Ok(())
    }

    /// Run a (possibly CPU-heavy) synchronous backend call on the blocking
    /// pool, so tokenizing a long prompt never stalls the async workers.
    pub async fn blocking<T, F>(self: &Arc<Self>, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Backend) -> Result<T, BackendError> + Send + 'static,
    {
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || f(backend.as_ref()))
            .await
            .map_err(|e| ApiError::internal(format!("backend call panicked: {e}")))?
            .map_err(ApiError::from)
    }
}

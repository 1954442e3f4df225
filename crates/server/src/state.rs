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
}

pub type SharedState = Arc<AppState>;

impl AppState {
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

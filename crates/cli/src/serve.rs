//! `hearth serve`: the OpenAI-compatible API over one or more local models.

use anyhow::Context;
use hearth_engine::scheduler::SchedulerConfig;
use hearth_engine::LoadedModel;
use hearth_server::config::ServerConfig;
use hearth_server::local::LocalBackend;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// One or more .gguf files; the first is the default model.
    #[arg(required = true)]
    pub models: Vec<PathBuf>,
    /// Model ids, in the order of MODELS (default: each file's stem).
    #[arg(long, value_delimiter = ',')]
    pub alias: Vec<String>,
    #[arg(long, env = "HEARTH_HOST", default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, env = "HEARTH_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Worker threads per model (default: physical cores).
    #[arg(long, env = "HEARTH_THREADS")]
    pub threads: Option<usize>,
    /// Sequences decoded together at most (continuous batching).
    #[arg(long, env = "HEARTH_MAX_RUNNING", default_value_t = 16)]
    pub max_running: usize,
    /// Requests waiting for a slot at most; beyond it requests get 429 with Retry-After.
    #[arg(long, env = "HEARTH_MAX_WAITING", default_value_t = 64)]
    pub max_waiting: usize,
    /// Tokens per forward pass at most (decode tokens plus prompt chunks).
    #[arg(long, env = "HEARTH_STEP_TOKENS", default_value_t = 256)]
    pub step_tokens: usize,
    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(long, env = "HEARTH_API_KEY")]
    pub api_key: Option<String>,
    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT.
    #[arg(long, env = "HEARTH_DRAIN_SECONDS", default_value_t = 30)]
    pub drain_seconds: u64,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let threads = a.threads.unwrap_or_else(crate::sys::physical_cores);
    let mut models = Vec::new();
    for (i, p) in a.models.iter().enumerate() {
        let lm = LoadedModel::load(p).with_context(|| format!("loading {}", p.display()))?;
        let id = a.alias.get(i).cloned().unwrap_or_else(|| {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("model-{i}"))
        });
        tracing::info!(
            "model '{id}': {} ({}, {} layers, context {}) loaded in {:.2}s",
            lm.path.display(),
            lm.model.info().arch,
            lm.model.info().n_layer,
            lm.n_ctx(),
            lm.load_s
        );
        models.push((id, Arc::new(lm)));
    }
    let cfg = SchedulerConfig {
        threads,
        max_running: a.max_running,
        max_waiting: a.max_waiting,
        step_tokens: a.step_tokens,
        ..Default::default()
    };
    let backend = Arc::new(LocalBackend::new(models, cfg));
    let addr: SocketAddr = format!("{}:{}", a.host, a.port)
        .parse()
        .with_context(|| format!("bad --host/--port {}:{}", a.host, a.port))?;
    let config = ServerConfig {
        addr,
        api_key: a.api_key,
        drain_timeout: std::time::Duration::from_secs(a.drain_seconds),
        ..Default::default()
    };
    tracing::info!("listening on http://{addr} (OpenAI API under /v1)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(hearth_server::serve(backend, config))
}

//! `hearth serve`: the OpenAI-compatible API over one or more local models.

use crate::config::{self, ServeConfig};
use anyhow::Context;
use hearth_engine::kv::KvType;
use hearth_engine::weights::Quantize;
use hearth_engine::LoadedModel;
use hearth_gateway::limits::{Limiter, Limits};
use hearth_gateway::limits_redis::RedisLimiter;
use hearth_gateway::store::{default_database_url, redact_url, AuditSink, Store};
use hearth_server::config::ServerConfig;
use hearth_server::gateway::{BodyPolicy, Gateway, SharedLimiter, SqlStore};
use hearth_server::guard::Guardrails;
use hearth_server::local::LocalBackend;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

/// Shown by `hearth serve --help` (not `-h`): the config file, precedence and environment.
const CONFIG_HELP: &str = "\
CONFIGURATION
  Precedence: command-line flag > config file > HEARTH_* variable > built-in default.
  Every knob can be set three ways; for each knob the first of these that sets it wins:
    1. a command-line flag            (--max-running 8)
    2. the TOML config file           (max_running = 8)
    3. a HEARTH_* environment variable (HEARTH_MAX_RUNNING=8)
    4. the built-in default
  An empty environment variable counts as unset. Boolean variables accept
  true/false, 1/0, yes/no, on/off.

  The config file is named by --config FILE or HEARTH_CONFIG. Its keys are the long
  flags' names, in snake_case or kebab-case: host, port, threads, max_running,
  max_waiting, step_tokens, kv_cache_mb, kv_cache_type, quantize, no_prefix_caching, api_key,
  require_auth, guardrails, cors_origins, tls_cert, tls_key, data_dir, database, redis_url, audit_bodies, global_rpm, global_tpm,
  global_max_concurrent, drain_seconds, no_ui, models_dir, no_model_admin. Models go in a [[models]] array of tables (path, optional alias, optional
  fallback: the model id that takes its requests while its queue is full);
  a relative path is relative to the config file's directory. MODEL arguments on the
  command line replace the file's [[models]]; --alias renames models in order.
  Unknown keys and mistyped values are errors that name the key, line and file.

  Example (hearth.toml):
    port = 8081
    max_running = 8
    kv_cache_mb = 512
    kv_cache_type = \"q8_0\"
    api_key = \"change-me\"

    [[models]]
    path = \"SmolLM2-135M-Instruct.Q4_1.gguf\"
    alias = \"smollm2\"

  `hearth serve --config hearth.toml --print-config` shows the merged result, each value
  commented with where it came from, without loading any model.";

#[derive(clap::Args, Debug, Default)]
#[command(
    after_help = "`hearth serve --help` describes the config file and precedence.",
    after_long_help = CONFIG_HELP
)]
pub struct Args {
    /// .gguf files (or directories holding one) to serve; the first is the default model.
    /// Replaces the config file's [[models]].
    #[arg(value_name = "MODEL")]
    pub models: Vec<PathBuf>,
    /// Model ids, comma-separated, in the order of the models (default: each file's stem).
    #[arg(long, value_delimiter = ',', value_name = "ID")]
    pub alias: Vec<String>,
    /// TOML config file (format under CONFIGURATION in --help). [env: HEARTH_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the resolved configuration as TOML (each value commented with its source; the
    /// API key is never shown) and exit without loading models.
    #[arg(long)]
    pub print_config: bool,
    /// Address to listen on (an IP or a host name). [env: HEARTH_HOST] [default: 127.0.0.1]
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on. [env: HEARTH_PORT] [default: 8080]
    #[arg(long)]
    pub port: Option<u16>,
    /// Worker threads per model. [env: HEARTH_THREADS] [default: physical cores]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Sequences decoded together at most (continuous batching). [env: HEARTH_MAX_RUNNING]
    /// [default: 16]
    #[arg(long, value_name = "N")]
    pub max_running: Option<usize>,
    /// Requests waiting for a slot at most; beyond it requests get 429 with Retry-After.
    /// [env: HEARTH_MAX_WAITING] [default: 64]
    #[arg(long, value_name = "N")]
    pub max_waiting: Option<usize>,
    /// Tokens per forward pass at most (decode tokens plus prompt chunks).
    /// [env: HEARTH_STEP_TOKENS] [default: 256]
    #[arg(long, value_name = "N")]
    pub step_tokens: Option<usize>,
    /// Memory budget of the paged KV cache in MiB, per model; past it the youngest sequence
    /// is preempted and recomputed later. [env: HEARTH_KV_CACHE_MB] [default: 1024]
    #[arg(long, value_name = "MIB")]
    pub kv_cache_mb: Option<usize>,
    /// Storage type of the KV cache: f16, or q8_0 (about half the memory).
    /// [env: HEARTH_KV_CACHE_TYPE] [default: f16]
    #[arg(long, value_name = "f16|q8_0", value_parser = parse_kv_type)]
    pub kv_cache_type: Option<KvType>,
    /// Quantize the models' F32/F16/BF16 weight matrices once at load (models the admin API
    /// loads too): q8_0, q4_k (rows not a multiple of 256 values fall back to q8_0), or mxfp4
    /// (MoE experts MXFP4, other matrices q8_0). Quantized tensors are kept as they are.
    /// [env: HEARTH_QUANTIZE] [default: none]
    #[arg(long, value_name = "q8_0|q4_k|mxfp4")]
    pub quantize: Option<Quantize>,
    /// Don't reuse cached KV blocks across requests that share a prompt prefix
    /// (`--no-prefix-caching=false` turns caching back on over the file or environment).
    /// [env: HEARTH_NO_PREFIX_CACHING] [default: false]
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = config::parse_bool
    )]
    pub no_prefix_caching: Option<bool>,
    /// Require `Authorization: Bearer KEY` on every route but /health. [env: HEARTH_API_KEY]
    /// [default: none]
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Require an API key on every route but /health even on a loopback address (it is always
    /// required on other addresses, and when --api-key is given).
    /// [env: HEARTH_REQUIRE_AUTH] [default: false]
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = config::parse_bool
    )]
    pub require_auth: Option<bool>,
    /// Directory for the database and other state. [env: HEARTH_DATA_DIR]
    /// [default: the platform data directory, e.g. ~/.local/share/hearth]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database for keys, users, teams, usage and audit: sqlite://PATH or postgres://...
    /// [env: HEARTH_DATABASE] [default: sqlite://DATA_DIR/hearth.db]
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// What the audit log keeps of request and response bodies: none, sha256 or full.
    /// [env: HEARTH_AUDIT_BODIES] [default: sha256]
    #[arg(long, value_name = "none|sha256|full")]
    pub audit_bodies: Option<String>,
    /// PEM certificate chain: serve HTTPS (with --tls-key). [env: HEARTH_TLS_CERT]
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert. [env: HEARTH_TLS_KEY]
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Guardrails policy (TOML; see docs/SECURITY.md), re-read when the file changes.
    /// [env: HEARTH_GUARDRAILS] [default: built-in PII and injection rules in log mode]
    #[arg(long, value_name = "FILE")]
    pub guardrails: Option<PathBuf>,
    /// Origins allowed to call the API from a browser, comma-separated (`*`: any).
    /// [env: HEARTH_CORS_ORIGINS] [default: none: CORS off]
    #[arg(long, value_delimiter = ',', value_name = "ORIGIN")]
    pub cors_origins: Option<Vec<String>>,
    /// Redis for rate-limit counters shared by several replicas (redis://HOST:PORT[/DB]).
    /// [env: HEARTH_REDIS_URL] [default: none: counters in this process]
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Requests per minute over all callers together. [env: HEARTH_GLOBAL_RPM] [default: none]
    #[arg(long, value_name = "N")]
    pub global_rpm: Option<u64>,
    /// Tokens per minute over all callers together. [env: HEARTH_GLOBAL_TPM] [default: none]
    #[arg(long, value_name = "N")]
    pub global_tpm: Option<u64>,
    /// Concurrent requests over all callers together. [env: HEARTH_GLOBAL_MAX_CONCURRENT]
    /// [default: none]
    #[arg(long, value_name = "N")]
    pub global_max_concurrent: Option<u64>,
    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT.
    /// [env: HEARTH_DRAIN_SECONDS] [default: 30]
    #[arg(long, value_name = "SECONDS")]
    pub drain_seconds: Option<u64>,
    /// Don't serve the web UI at / (the API is unchanged; unknown paths answer JSON 404s).
    /// [env: HEARTH_NO_UI] [default: false]
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = config::parse_bool
    )]
    pub no_ui: Option<bool>,
    /// Directory the admin API may load models from (`POST /admin/v1/models`; paths under
    /// it only). [env: HEARTH_MODELS_DIR] [default: none: loading at run time is refused]
    #[arg(long, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// Refuse loading, unloading and changing the default model from the admin API (the
    /// list stays readable). [env: HEARTH_NO_MODEL_ADMIN] [default: false]
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = config::parse_bool
    )]
    pub no_model_admin: Option<bool>,
}

fn parse_kv_type(s: &str) -> Result<KvType, String> {
    s.parse()
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let cfg = config::resolve(&a, &config::os_env)?;
    if a.print_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    serve(cfg)
}

fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    if cfg.models.is_empty() {
        anyhow::bail!(
            "no models to serve: pass MODEL paths, or [[models]] tables in a config file \
             (--config FILE or HEARTH_CONFIG)"
        );
    }
    // Resolve the address before loading models (which takes seconds) so a typo fails fast.
    let addr: SocketAddr = (cfg.host.value.as_str(), cfg.port.value)
        .to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .with_context(|| {
            format!(
                "cannot listen on host {:?} (from {}) port {} (from {})",
                cfg.host.value, cfg.host.source, cfg.port.value, cfg.port.source
            )
        })?;
    // Likewise the models directory the admin API loads from: a typo should not surface
    // only at the first load.
    if let Some(d) = &cfg.models_dir.value {
        if !d.is_dir() {
            anyhow::bail!(
                "models_dir {} (from {}) is not a directory",
                d.display(),
                cfg.models_dir.source
            );
        }
    }
    let mut models = Vec::new();
    for m in &cfg.models {
        let lm = LoadedModel::load_quantized(&m.path, cfg.quantize.value)
            .with_context(|| format!("loading model '{}' from {}", m.id, m.path.display()))?;
        tracing::info!(
            "model '{}': {} ({}, {} layers, context {}) loaded in {:.2}s",
            m.id,
            lm.path.display(),
            lm.model.info().arch,
            lm.model.info().n_layer,
            lm.n_ctx(),
            lm.load_s
        );
        models.push((m.id.clone(), Arc::new(lm)));
    }
    let sched = cfg.scheduler();
    tracing::info!(
        "scheduler: {} threads, max_running {}, max_waiting {}, step_tokens {}, KV cache {} MiB {}, prefix caching {}",
        sched.threads,
        sched.max_running,
        sched.max_waiting,
        sched.step_tokens,
        sched.kv_cache_mb,
        sched.kv_type,
        if sched.prefix_caching { "on" } else { "off" }
    );
    let local_ids: Vec<String> = models.iter().map(|(id, _)| id.clone()).collect();
    let local_fallbacks: Vec<(String, String)> = cfg
        .models
        .iter()
        .filter_map(|m| Some((m.id.clone(), m.fallback.clone()?)))
        .collect();
    let upstreams = if cfg.upstreams.is_empty() && local_fallbacks.is_empty() {
        None
    } else {
        let u = hearth_server::upstream::Upstreams::new(
            cfg.upstreams.clone(),
            &local_ids,
            Default::default(),
        )
        .context("[[upstreams]] in the config file")?
        .with_local_fallbacks(local_fallbacks.clone(), &local_ids)
        .context("[[models]] in the config file")?;
        for (id, f) in &local_fallbacks {
            tracing::info!("model '{id}': fallback '{f}' while its queue is full");
        }
        for s in u.specs() {
            tracing::info!(
                "upstream model '{}': {} target(s), pii {:?}{}",
                s.id,
                s.urls.len(),
                s.pii,
                s.fallback
                    .as_ref()
                    .map(|f| format!(", fallback '{f}'"))
                    .unwrap_or_default()
            );
        }
        Some(Arc::new(u))
    };
    let backend = Arc::new(LocalBackend::new(models, sched).with_quantize(cfg.quantize.value));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (gateway, audit) = rt.block_on(gateway(&cfg, addr))?;
    let tls = match (&cfg.tls_cert.value, &cfg.tls_key.value) {
        (Some(c), Some(k)) => Some(hearth_server::tls::load(c, k)?),
        (None, None) => None,
        _ => anyhow::bail!(
            "HTTPS needs both a certificate and a key: tls_cert (from {}) and tls_key (from {})",
            cfg.tls_cert.source,
            cfg.tls_key.source
        ),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let guardrails = match &cfg.guardrails.value {
        Some(p) => {
            let g = Guardrails::from_file(p)
                .with_context(|| format!("guardrails (from {})", cfg.guardrails.source))?;
            tracing::info!("guardrails: {}", p.display());
            Some(Arc::new(g))
        }
        None => {
            tracing::info!("guardrails: default policy (PII and injection detection, log only)");
            None
        }
    };
    let config = ServerConfig {
        addr,
        api_key: cfg.api_key.value.clone(),
        drain_timeout: std::time::Duration::from_secs(cfg.drain_seconds.value),
        gateway: Some(Arc::new(gateway)),
        tls,
        guardrails,
        cors_origins: cfg.cors_origins.value.clone(),
        ui: if cfg.no_ui.value {
            hearth_server::ui::UiMode::Off
        } else {
            hearth_server::ui::UiMode::Embedded
        },
        upstreams,
        model_admin: hearth_server::config::ModelAdminPolicy {
            disabled: cfg.no_model_admin.value,
            models_dir: cfg.models_dir.value.clone(),
        },
        ..Default::default()
    };
    match (&cfg.models_dir.value, cfg.no_model_admin.value) {
        (_, true) => tracing::info!("admin API: model management is off (no_model_admin)"),
        (Some(d), false) => {
            tracing::info!("admin API: models can be loaded from under {}", d.display())
        }
        (None, false) => {
            tracing::info!("admin API: models can be unloaded, but not loaded (no models_dir)")
        }
    }
    tracing::info!("listening on {scheme}://{addr} (OpenAI API under /v1)");
    if !cfg.no_ui.value {
        // On stderr whatever the log filter: the address to open is what a person looks for.
        let host = if addr.ip().is_unspecified() {
            "localhost".to_string()
        } else {
            match addr {
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
                SocketAddr::V4(a) => a.ip().to_string(),
            }
        };
        let built = if hearth_server::ui::embedded() {
            ""
        } else {
            " (not built into this binary: run scripts/build-ui.sh, then rebuild)"
        };
        eprintln!("Web UI: {scheme}://{host}:{}/{built}", addr.port());
    }
    let served = rt.block_on(hearth_server::serve(backend, config));
    // Requests that ended during the drain are still queued for the audit log.
    rt.block_on(audit.flush());
    served
}

/// The gateway `hearth serve` runs with: auth on unless the address is loopback (and neither
/// `--require-auth` nor `--api-key` asks for it), limits in this process or in Redis.
async fn gateway(cfg: &ServeConfig, addr: SocketAddr) -> anyhow::Result<(Gateway, AuditSink)> {
    let auth_required =
        !addr.ip().is_loopback() || cfg.require_auth.value || cfg.api_key.value.is_some();
    let limiter = match &cfg.redis_url.value {
        Some(url) => SharedLimiter::Redis(
            RedisLimiter::connect(url, "hearth:rl")
                .await
                .with_context(|| format!("--redis-url (from {})", cfg.redis_url.source))?,
        ),
        None => SharedLimiter::Local(Limiter::new()),
    };
    let body_policy = match cfg.audit_bodies.value.as_str() {
        "none" => BodyPolicy::None,
        "full" => BodyPolicy::Full,
        _ => BodyPolicy::Sha256,
    };
    if auth_required {
        tracing::info!("auth: every route but /health needs an API key");
    } else {
        tracing::warn!(
            "auth: off (loopback address, no --require-auth or --api-key): every request runs \
             as the local admin"
        );
    }
    let url = match &cfg.database.value {
        Some(u) => u.clone(),
        None => default_database_url(cfg.data_dir.value.as_deref()),
    };
    let store = Store::open(&url).await.with_context(|| {
        format!(
            "opening the gateway database (from {}; --database or --data-dir choose another)",
            cfg.database.source
        )
    })?;
    tracing::info!("gateway database: {}", redact_url(&url));
    let sink = AuditSink::spawn(store.clone());
    let gw = Gateway {
        auth_required,
        admin_key: cfg.api_key.value.clone(),
        store: Some(Arc::new(SqlStore {
            store: store.clone(),
            sink: sink.clone(),
        })),
        sql: Some(store),
        body_policy,
        limiter,
        global_limits: Limits {
            rpm: cfg.global_rpm.value,
            tpm: cfg.global_tpm.value,
            max_concurrent: cfg.global_max_concurrent.value,
            monthly_tokens: None,
        },
    };
    Ok((gw, sink))
}

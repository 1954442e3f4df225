//! `hearth serve` configuration: command-line flags, a TOML file and `HEARTH_*` environment
//! variables, merged per knob in that order of precedence over the built-in defaults.
//!
//! clap's own `env = ...` would read a variable into the flag's value, which puts the
//! environment *above* the config file and hides where a value came from. So the flags are
//! parsed without defaults or env (every knob is an `Option`), and [`resolve`] picks, for each
//! knob, the first of: flag, file, environment, default — remembering the [`Source`] so
//! `--print-config` and error messages can say where a value came from.

use crate::serve::Args;
use hearth_engine::kv::KvType;
use hearth_engine::scheduler::SchedulerConfig;
use hearth_engine::weights::Quantize;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Environment variable naming the config file (`--config` beats it).
pub const ENV_CONFIG: &str = "HEARTH_CONFIG";

pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_DRAIN_SECONDS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The underlying errors are part of the message rather than `source()`s: `main` prints
    // the whole chain, and a chained source would print the toml excerpt twice.
    #[error("cannot read config file {}: {err}", path.display())]
    Read { path: PathBuf, err: std::io::Error },
    /// toml's message gives the line and column and quotes the line; `key` names the
    /// setting in words (toml's type errors alone only say what type was expected).
    #[error("config file {}{}: {err}", path.display(), key.as_deref().map(|k| format!(", key `{k}`")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        key: Option<String>,
        // Boxed: toml's error carries its source text and would bloat every Result.
        err: Box<toml::de::Error>,
    },
    #[error("environment variable {var}={value:?}: {msg}")]
    Env {
        var: &'static str,
        value: String,
        msg: String,
    },
    #[error("{knob} = {value} (from {from}): {msg}")]
    Invalid {
        knob: &'static str,
        value: String,
        from: Source,
        msg: String,
    },
    #[error("{0}")]
    Models(String),
}

/// Where a resolved value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Flag(&'static str),
    File(PathBuf),
    Env(&'static str),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "command line {flag}"),
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::Env(var) => write!(f, "environment {var}"),
            Source::Default => f.write_str("default"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// The config file. Keys mirror the long flags; kebab-case spellings are accepted as aliases
/// so a flag name can be pasted as is. Unknown keys are errors: a misspelt knob silently
/// falling back to its default is the failure mode worth preventing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub threads: Option<usize>,
    #[serde(alias = "max-running")]
    pub max_running: Option<usize>,
    #[serde(alias = "max-waiting")]
    pub max_waiting: Option<usize>,
    #[serde(alias = "step-tokens")]
    pub step_tokens: Option<usize>,
    #[serde(alias = "kv-cache-mb")]
    pub kv_cache_mb: Option<usize>,
    #[serde(alias = "kv-cache-type", default, deserialize_with = "de_kv_type")]
    pub kv_cache_type: Option<KvType>,
    #[serde(default, deserialize_with = "de_quantize")]
    pub quantize: Option<Quantize>,
    #[serde(alias = "no-prefix-caching")]
    pub no_prefix_caching: Option<bool>,
    #[serde(alias = "api-key")]
    pub api_key: Option<String>,
    #[serde(alias = "require-auth")]
    pub require_auth: Option<bool>,
    pub guardrails: Option<PathBuf>,
    #[serde(alias = "cors-origins")]
    pub cors_origins: Option<Vec<String>>,
    #[serde(alias = "tls-cert")]
    pub tls_cert: Option<PathBuf>,
    #[serde(alias = "tls-key")]
    pub tls_key: Option<PathBuf>,
    #[serde(alias = "data-dir")]
    pub data_dir: Option<PathBuf>,
    pub database: Option<String>,
    #[serde(alias = "redis-url")]
    pub redis_url: Option<String>,
    #[serde(alias = "audit-bodies")]
    pub audit_bodies: Option<String>,
    #[serde(alias = "global-rpm")]
    pub global_rpm: Option<u64>,
    #[serde(alias = "global-tpm")]
    pub global_tpm: Option<u64>,
    #[serde(alias = "global-max-concurrent")]
    pub global_max_concurrent: Option<u64>,
    #[serde(alias = "drain-seconds")]
    pub drain_seconds: Option<u64>,
    #[serde(alias = "no-ui")]
    pub no_ui: Option<bool>,
    #[serde(alias = "models-dir")]
    pub models_dir: Option<PathBuf>,
    #[serde(alias = "no-model-admin")]
    pub no_model_admin: Option<bool>,
    #[serde(default)]
    pub models: Vec<FileModel>,
    /// Model ids served by other OpenAI-compatible servers (`[[upstreams]]` tables; only in
    /// the file: a route has too many parts for a flag).
    #[serde(default)]
    pub upstreams: Vec<hearth_server::upstream::UpstreamSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileModel {
    pub path: PathBuf,
    pub alias: Option<String>,
    /// The model (local or upstream id) that takes this model's requests while its queue is
    /// full.
    pub fallback: Option<String>,
}

/// Parsing inside deserialization (rather than after) lets toml point at the offending line.
fn de_kv_type<'de, D: Deserializer<'de>>(d: D) -> Result<Option<KvType>, D::Error> {
    let s = String::deserialize(d)?;
    KvType::from_str(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn de_quantize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Quantize>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: path.to_path_buf(),
            err,
        })?;
        let parse_err = |key: Option<String>, err| ConfigError::Parse {
            path: path.to_path_buf(),
            key,
            err: Box::new(err),
        };
        let de = toml::Deserializer::parse(&text).map_err(|e| parse_err(None, e))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            // "." is the document itself (an unknown top-level key, whose name toml quotes).
            let key = (key != ".").then_some(key);
            parse_err(key, e.into_inner())
        })
    }
}

/// One model to serve, with the id clients name it by.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub id: String,
    pub path: PathBuf,
    /// Where requests go while this model's queue is full (only from the config file).
    pub fallback: Option<String>,
}

/// Everything `hearth serve` runs with, each knob with its source.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub config_file: Option<Setting<PathBuf>>,
    /// The first is the default model. Empty only when nothing named a model.
    pub models: Vec<ModelSpec>,
    pub models_source: Source,
    /// `[[upstreams]]` of the config file.
    pub upstreams: Vec<hearth_server::upstream::UpstreamSpec>,
    pub host: Setting<String>,
    pub port: Setting<u16>,
    pub threads: Setting<usize>,
    pub max_running: Setting<usize>,
    pub max_waiting: Setting<usize>,
    pub step_tokens: Setting<usize>,
    pub kv_cache_mb: Setting<usize>,
    pub kv_cache_type: Setting<KvType>,
    /// `None`: weights as the file has them.
    pub quantize: Setting<Option<Quantize>>,
    pub no_prefix_caching: Setting<bool>,
    pub api_key: Setting<Option<String>>,
    pub require_auth: Setting<bool>,
    pub guardrails: Setting<Option<PathBuf>>,
    pub cors_origins: Setting<Vec<String>>,
    pub tls_cert: Setting<Option<PathBuf>>,
    pub tls_key: Setting<Option<PathBuf>>,
    pub data_dir: Setting<Option<PathBuf>>,
    pub database: Setting<Option<String>>,
    pub redis_url: Setting<Option<String>>,
    pub audit_bodies: Setting<String>,
    pub global_rpm: Setting<Option<u64>>,
    pub global_tpm: Setting<Option<u64>>,
    pub global_max_concurrent: Setting<Option<u64>>,
    pub drain_seconds: Setting<u64>,
    pub no_ui: Setting<bool>,
    pub models_dir: Setting<Option<PathBuf>>,
    pub no_model_admin: Setting<bool>,
}

impl ServeConfig {
    pub fn scheduler(&self) -> SchedulerConfig {
        SchedulerConfig {
            threads: self.threads.value,
            max_running: self.max_running.value,
            max_waiting: self.max_waiting.value,
            step_tokens: self.step_tokens.value,
            kv_cache_mb: self.kv_cache_mb.value,
            kv_type: self.kv_cache_type.value,
            prefix_caching: !self.no_prefix_caching.value,
            ..SchedulerConfig::default()
        }
    }

    /// The resolved configuration as a TOML document the config file accepts, each knob
    /// commented with its source. The API key is never printed (only whether it is set).
    pub fn to_toml(&self) -> String {
        fn line(out: &mut String, key: &str, v: toml::Value, src: &Source) {
            out.push_str(&format!("{key} = {v}  # {src}\n"));
        }
        let mut o = String::from("# hearth serve: resolved configuration\n");
        if let Some(c) = &self.config_file {
            o.push_str(&format!(
                "# config file: {} ({})\n",
                c.value.display(),
                c.source
            ));
        }
        line(
            &mut o,
            "host",
            self.host.value.clone().into(),
            &self.host.source,
        );
        line(
            &mut o,
            "port",
            i64::from(self.port.value).into(),
            &self.port.source,
        );
        for (k, s) in [
            ("threads", &self.threads),
            ("max_running", &self.max_running),
            ("max_waiting", &self.max_waiting),
            ("step_tokens", &self.step_tokens),
            ("kv_cache_mb", &self.kv_cache_mb),
        ] {
            line(&mut o, k, (s.value as i64).into(), &s.source);
        }
        line(
            &mut o,
            "kv_cache_type",
            self.kv_cache_type.value.to_string().into(),
            &self.kv_cache_type.source,
        );
        match self.quantize.value {
            Some(q) => line(
                &mut o,
                "quantize",
                q.to_string().into(),
                &self.quantize.source,
            ),
            None => o.push_str("# quantize: none (weights as the file has them)  # default\n"),
        }
        line(
            &mut o,
            "no_prefix_caching",
            self.no_prefix_caching.value.into(),
            &self.no_prefix_caching.source,
        );
        line(
            &mut o,
            "drain_seconds",
            (self.drain_seconds.value as i64).into(),
            &self.drain_seconds.source,
        );
        line(&mut o, "no_ui", self.no_ui.value.into(), &self.no_ui.source);
        line(
            &mut o,
            "no_model_admin",
            self.no_model_admin.value.into(),
            &self.no_model_admin.source,
        );
        let key_state = if self.api_key.value.is_some() {
            "set (not shown)"
        } else {
            "not set"
        };
        o.push_str(&format!(
            "# api_key: {key_state}  # {}\n",
            self.api_key.source
        ));
        line(
            &mut o,
            "require_auth",
            self.require_auth.value.into(),
            &self.require_auth.source,
        );
        if self.models_dir.value.is_none() {
            o.push_str("# models_dir: not set (the admin API cannot load models)  # default\n");
        }
        for (k, s) in [
            ("models_dir", &self.models_dir),
            ("guardrails", &self.guardrails),
            ("tls_cert", &self.tls_cert),
            ("tls_key", &self.tls_key),
        ] {
            if let Some(p) = &s.value {
                line(
                    &mut o,
                    k,
                    p.to_string_lossy().into_owned().into(),
                    &s.source,
                );
            }
        }
        if !self.cors_origins.value.is_empty() {
            let list: Vec<toml::Value> = self
                .cors_origins
                .value
                .iter()
                .map(|o| o.clone().into())
                .collect();
            line(
                &mut o,
                "cors_origins",
                list.into(),
                &self.cors_origins.source,
            );
        }
        match &self.data_dir.value {
            Some(d) => line(
                &mut o,
                "data_dir",
                d.to_string_lossy().into_owned().into(),
                &self.data_dir.source,
            ),
            None => o.push_str("# data_dir: platform default  # default\n"),
        }
        // A database URL may carry a password: say only which kind it is.
        match self.database.value.as_deref() {
            Some(u) => o.push_str(&format!(
                "# database: {} URL set (not shown)  # {}\n",
                u.split(':').next().unwrap_or("?"),
                self.database.source
            )),
            None => o.push_str("# database: sqlite under data_dir  # default\n"),
        }
        o.push_str(&format!(
            "# redis_url: {}  # {}\n",
            if self.redis_url.value.is_some() {
                "set (not shown)"
            } else {
                "none"
            },
            self.redis_url.source
        ));
        line(
            &mut o,
            "audit_bodies",
            self.audit_bodies.value.clone().into(),
            &self.audit_bodies.source,
        );
        for (k, s) in [
            ("global_rpm", &self.global_rpm),
            ("global_tpm", &self.global_tpm),
            ("global_max_concurrent", &self.global_max_concurrent),
        ] {
            match s.value {
                Some(v) => line(&mut o, k, (v as i64).into(), &s.source),
                None => o.push_str(&format!("# {k}: none  # {}\n", s.source)),
            }
        }
        if self.models.is_empty() {
            o.push_str("# models: none\n");
        }
        for m in &self.models {
            o.push_str(&format!("\n[[models]]  # {}\n", self.models_source));
            o.push_str(&format!(
                "path = {}\nalias = {}\n",
                toml::Value::from(m.path.to_string_lossy().into_owned()),
                toml::Value::from(m.id.clone())
            ));
            if let Some(f) = &m.fallback {
                o.push_str(&format!("fallback = {}\n", toml::Value::from(f.clone())));
            }
        }
        for u in &self.upstreams {
            o.push_str("\n[[upstreams]]  # config file\n");
            let s = |v: &str| toml::Value::from(v.to_string());
            o.push_str(&format!("id = {}\n", s(&u.id)));
            let urls: Vec<toml::Value> = u.urls.iter().map(|x| s(x)).collect();
            o.push_str(&format!("urls = {}\n", toml::Value::Array(urls)));
            if u.api_key.is_some() {
                o.push_str("# api_key: set (not shown)\n");
            }
            for (k, v) in [
                ("api_key_env", &u.api_key_env),
                ("model", &u.model),
                ("fallback", &u.fallback),
            ] {
                if let Some(v) = v {
                    o.push_str(&format!("{k} = {}\n", s(v)));
                }
            }
            let pii = match u.pii {
                hearth_server::upstream::PiiPolicy::Allow => "allow",
                hearth_server::upstream::PiiPolicy::Redact => "redact",
                hearth_server::upstream::PiiPolicy::Block => "block",
            };
            o.push_str(&format!("pii = {}\n", s(pii)));
            if let Some(n) = u.context_length {
                o.push_str(&format!("context_length = {n}\n"));
            }
            if let Some(n) = u.timeout_s {
                o.push_str(&format!("timeout_s = {n}\n"));
            }
        }
        o
    }
}

/// Reads the environment, treating an empty variable as unset (compose files and shells
/// often export `VAR=` to mean "nothing").
pub fn os_env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

/// Picks one knob: flag, then file, then environment (read only when needed, so a malformed
/// variable that is overridden anyway does no harm), then the default.
fn pick<T>(
    flag: (Option<T>, &'static str),
    file: (Option<T>, &Option<PathBuf>),
    env: &dyn Fn(&str) -> Option<String>,
    var: &'static str,
    parse: impl Fn(&str) -> Result<T, String>,
    default: impl FnOnce() -> T,
) -> Result<Setting<T>, ConfigError> {
    if let Some(value) = flag.0 {
        return Ok(Setting {
            value,
            source: Source::Flag(flag.1),
        });
    }
    if let (Some(value), Some(p)) = (file.0, file.1) {
        return Ok(Setting {
            value,
            source: Source::File(p.clone()),
        });
    }
    if let Some(raw) = env(var) {
        let value = parse(&raw).map_err(|msg| ConfigError::Env {
            var,
            value: raw.clone(),
            msg,
        })?;
        return Ok(Setting {
            value,
            source: Source::Env(var),
        });
    }
    Ok(Setting {
        value: default(),
        source: Source::Default,
    })
}

fn parse_num<T: FromStr>(s: &str) -> Result<T, String>
where
    T::Err: fmt::Display,
{
    s.trim().parse::<T>().map_err(|e| e.to_string())
}

/// Booleans from the environment: the spellings people use in shell and compose files.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true/false (or 1/0, yes/no, on/off)".into()),
    }
}

/// A relative `path` in the config file is relative to the file's directory (so a config next
/// to its models works from any working directory); `~/` is expanded since no shell does it.
fn file_model_path(p: &Path, config: &Path) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    if p.is_relative() {
        if let Some(dir) = config.parent() {
            return dir.join(p);
        }
    }
    p.to_path_buf()
}

fn default_id(p: &Path, i: usize) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("model-{i}"))
}

/// Merges flags, the config file (from `--config` or `HEARTH_CONFIG`) and the environment.
/// `env` is the environment lookup (injected so tests need not mutate the process's).
pub fn resolve(a: &Args, env: &dyn Fn(&str) -> Option<String>) -> Result<ServeConfig, ConfigError> {
    let config_file = match (&a.config, env(ENV_CONFIG)) {
        (Some(p), _) => Some(Setting {
            value: p.clone(),
            source: Source::Flag("--config"),
        }),
        (None, Some(p)) => Some(Setting {
            value: PathBuf::from(p),
            source: Source::Env(ENV_CONFIG),
        }),
        (None, None) => None,
    };
    let file = match &config_file {
        Some(c) => FileConfig::load(&c.value)?,
        None => FileConfig::default(),
    };
    let fp = config_file.as_ref().map(|c| c.value.clone());

    let host = pick(
        (a.host.clone(), "--host"),
        (file.host.clone(), &fp),
        env,
        "HEARTH_HOST",
        |s| Ok(s.to_string()),
        || DEFAULT_HOST.to_string(),
    )?;
    let port = pick(
        (a.port, "--port"),
        (file.port, &fp),
        env,
        "HEARTH_PORT",
        parse_num,
        || DEFAULT_PORT,
    )?;
    let threads = pick(
        (a.threads, "--threads"),
        (file.threads, &fp),
        env,
        "HEARTH_THREADS",
        parse_num,
        crate::sys::physical_cores,
    )?;
    let d = SchedulerConfig::default();
    let max_running = pick(
        (a.max_running, "--max-running"),
        (file.max_running, &fp),
        env,
        "HEARTH_MAX_RUNNING",
        parse_num,
        || d.max_running,
    )?;
    let max_waiting = pick(
        (a.max_waiting, "--max-waiting"),
        (file.max_waiting, &fp),
        env,
        "HEARTH_MAX_WAITING",
        parse_num,
        || d.max_waiting,
    )?;
    let step_tokens = pick(
        (a.step_tokens, "--step-tokens"),
        (file.step_tokens, &fp),
        env,
        "HEARTH_STEP_TOKENS",
        parse_num,
        || d.step_tokens,
    )?;
    let kv_cache_mb = pick(
        (a.kv_cache_mb, "--kv-cache-mb"),
        (file.kv_cache_mb, &fp),
        env,
        "HEARTH_KV_CACHE_MB",
        parse_num,
        || d.kv_cache_mb,
    )?;
    let kv_cache_type = pick(
        (a.kv_cache_type, "--kv-cache-type"),
        (file.kv_cache_type, &fp),
        env,
        "HEARTH_KV_CACHE_TYPE",
        |s| KvType::from_str(s.trim()),
        || d.kv_type,
    )?;
    let quantize = pick(
        (a.quantize.map(Some), "--quantize"),
        (file.quantize.map(Some), &fp),
        env,
        "HEARTH_QUANTIZE",
        |s| s.parse::<Quantize>().map(Some),
        || None,
    )?;
    let no_prefix_caching = pick(
        (a.no_prefix_caching, "--no-prefix-caching"),
        (file.no_prefix_caching, &fp),
        env,
        "HEARTH_NO_PREFIX_CACHING",
        parse_bool,
        || !d.prefix_caching,
    )?;
    let api_key = pick(
        (a.api_key.clone().map(Some), "--api-key"),
        (file.api_key.clone().map(Some), &fp),
        env,
        "HEARTH_API_KEY",
        |s| Ok(Some(s.to_string())),
        || None,
    )?;
    let require_auth = pick(
        (a.require_auth, "--require-auth"),
        (file.require_auth, &fp),
        env,
        "HEARTH_REQUIRE_AUTH",
        parse_bool,
        || false,
    )?;
    let no_ui = pick(
        (a.no_ui, "--no-ui"),
        (file.no_ui, &fp),
        env,
        "HEARTH_NO_UI",
        parse_bool,
        || false,
    )?;
    let no_model_admin = pick(
        (a.no_model_admin, "--no-model-admin"),
        (file.no_model_admin, &fp),
        env,
        "HEARTH_NO_MODEL_ADMIN",
        parse_bool,
        || false,
    )?;
    let models_dir = pick(
        (a.models_dir.clone().map(Some), "--models-dir"),
        (
            file.models_dir
                .as_ref()
                .zip(fp.as_ref())
                .map(|(d, f)| Some(file_model_path(d, f))),
            &fp,
        ),
        env,
        "HEARTH_MODELS_DIR",
        |s| Ok(Some(PathBuf::from(s))),
        || None,
    )?;
    let guardrails = pick(
        (a.guardrails.clone().map(Some), "--guardrails"),
        (file.guardrails.clone().map(Some), &fp),
        env,
        "HEARTH_GUARDRAILS",
        |s| Ok(Some(PathBuf::from(s))),
        || None,
    )?;
    let cors_origins = pick(
        (a.cors_origins.clone(), "--cors-origins"),
        (file.cors_origins.clone(), &fp),
        env,
        "HEARTH_CORS_ORIGINS",
        |s| {
            Ok(s.split(',')
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .collect())
        },
        Vec::new,
    )?;
    let tls_cert = pick(
        (a.tls_cert.clone().map(Some), "--tls-cert"),
        (file.tls_cert.clone().map(Some), &fp),
        env,
        "HEARTH_TLS_CERT",
        |s| Ok(Some(PathBuf::from(s))),
        || None,
    )?;
    let tls_key = pick(
        (a.tls_key.clone().map(Some), "--tls-key"),
        (file.tls_key.clone().map(Some), &fp),
        env,
        "HEARTH_TLS_KEY",
        |s| Ok(Some(PathBuf::from(s))),
        || None,
    )?;
    let data_dir = pick(
        (a.data_dir.clone().map(Some), "--data-dir"),
        (file.data_dir.clone().map(Some), &fp),
        env,
        "HEARTH_DATA_DIR",
        |s| Ok(Some(PathBuf::from(s))),
        || None,
    )?;
    let database = pick(
        (a.database.clone().map(Some), "--database"),
        (file.database.clone().map(Some), &fp),
        env,
        "HEARTH_DATABASE",
        |s| Ok(Some(s.to_string())),
        || None,
    )?;
    let redis_url = pick(
        (a.redis_url.clone().map(Some), "--redis-url"),
        (file.redis_url.clone().map(Some), &fp),
        env,
        "HEARTH_REDIS_URL",
        |s| Ok(Some(s.to_string())),
        || None,
    )?;
    let audit_bodies = pick(
        (a.audit_bodies.clone(), "--audit-bodies"),
        (file.audit_bodies.clone(), &fp),
        env,
        "HEARTH_AUDIT_BODIES",
        |s| Ok(s.trim().to_string()),
        || "sha256".to_string(),
    )?;
    if !["none", "sha256", "full"].contains(&audit_bodies.value.as_str()) {
        return Err(ConfigError::Invalid {
            knob: "audit_bodies",
            value: audit_bodies.value.clone(),
            from: audit_bodies.source.clone(),
            msg: "must be none, sha256 or full".into(),
        });
    }
    let opt_num = |s: &str| parse_num::<u64>(s).map(Some);
    let global_rpm = pick(
        (a.global_rpm.map(Some), "--global-rpm"),
        (file.global_rpm.map(Some), &fp),
        env,
        "HEARTH_GLOBAL_RPM",
        opt_num,
        || None,
    )?;
    let global_tpm = pick(
        (a.global_tpm.map(Some), "--global-tpm"),
        (file.global_tpm.map(Some), &fp),
        env,
        "HEARTH_GLOBAL_TPM",
        opt_num,
        || None,
    )?;
    let global_max_concurrent = pick(
        (a.global_max_concurrent.map(Some), "--global-max-concurrent"),
        (file.global_max_concurrent.map(Some), &fp),
        env,
        "HEARTH_GLOBAL_MAX_CONCURRENT",
        opt_num,
        || None,
    )?;
    let drain_seconds = pick(
        (a.drain_seconds, "--drain-seconds"),
        (file.drain_seconds, &fp),
        env,
        "HEARTH_DRAIN_SECONDS",
        parse_num,
        || DEFAULT_DRAIN_SECONDS,
    )?;

    // Zero would stall the scheduler (nothing ever runs) rather than fail loudly.
    for (knob, s) in [
        ("threads", &threads),
        ("max_running", &max_running),
        ("step_tokens", &step_tokens),
        ("kv_cache_mb", &kv_cache_mb),
    ] {
        if s.value == 0 {
            return Err(ConfigError::Invalid {
                knob,
                value: "0".into(),
                from: s.source.clone(),
                msg: "must be at least 1".into(),
            });
        }
    }
    if host.value.trim().is_empty() {
        return Err(ConfigError::Invalid {
            knob: "host",
            value: "\"\"".into(),
            from: host.source.clone(),
            msg: "must name an address or host".into(),
        });
    }

    // Models: positional MODELS replace the file's [[models]] as a whole (the flag wins);
    // --alias then names them in order, over any alias the file gave.
    let (paths, file_aliases, models_source): (Vec<PathBuf>, Vec<Option<String>>, Source) =
        if !a.models.is_empty() {
            (
                a.models.clone(),
                vec![None; a.models.len()],
                Source::Flag("MODEL"),
            )
        } else if let (false, Some(p)) = (file.models.is_empty(), &fp) {
            (
                file.models
                    .iter()
                    .map(|m| file_model_path(&m.path, p))
                    .collect(),
                file.models.iter().map(|m| m.alias.clone()).collect(),
                Source::File(p.clone()),
            )
        } else {
            (Vec::new(), Vec::new(), Source::Default)
        };
    if a.alias.len() > paths.len() {
        return Err(ConfigError::Models(format!(
            "--alias gives {} ids ({}) but there are {} models",
            a.alias.len(),
            a.alias.join(","),
            paths.len()
        )));
    }
    let mut models: Vec<ModelSpec> = Vec::with_capacity(paths.len());
    for (i, path) in paths.into_iter().enumerate() {
        let id = a
            .alias
            .get(i)
            .cloned()
            .or_else(|| file_aliases[i].clone())
            .unwrap_or_else(|| default_id(&path, i));
        if id.trim().is_empty() {
            return Err(ConfigError::Models(format!(
                "model {} has an empty alias",
                path.display()
            )));
        }
        if let Some(prev) = models.iter().find(|m| m.id == id) {
            return Err(ConfigError::Models(format!(
                "model id '{id}' is used by both {} and {}: give one another alias",
                prev.path.display(),
                path.display()
            )));
        }
        // A fallback comes only with the file's own [[models]] (MODEL arguments replace them).
        let fallback = match models_source {
            Source::File(_) => file.models[i].fallback.clone(),
            _ => None,
        };
        models.push(ModelSpec { id, path, fallback });
    }

    let upstreams = file.upstreams.clone();
    Ok(ServeConfig {
        config_file,
        models,
        models_source,
        upstreams,
        host,
        port,
        threads,
        max_running,
        max_waiting,
        step_tokens,
        kv_cache_mb,
        kv_cache_type,
        quantize,
        no_prefix_caching,
        api_key,
        require_auth,
        guardrails,
        cors_origins,
        tls_cert,
        tls_key,
        data_dir,
        database,
        redis_url,
        audit_bodies,
        global_rpm,
        global_tpm,
        global_max_concurrent,
        drain_seconds,
        no_ui,
        models_dir,
        no_model_admin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::collections::HashMap;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: Args,
    }

    fn args(v: &[&str]) -> Args {
        T::try_parse_from(std::iter::once("serve").chain(v.iter().copied()))
            .unwrap()
            .a
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned().filter(|v| !v.is_empty())
    }

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hearth-config-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn defaults_match_the_engine() {
        let c = resolve(&args(&[]), &env_of(&[])).unwrap();
        let d = SchedulerConfig::default();
        let s = c.scheduler();
        assert_eq!(
            (
                s.max_running,
                s.max_waiting,
                s.step_tokens,
                s.kv_cache_mb,
                s.kv_type,
                s.prefix_caching
            ),
            (
                d.max_running,
                d.max_waiting,
                d.step_tokens,
                d.kv_cache_mb,
                d.kv_type,
                d.prefix_caching
            )
        );
        assert_eq!(c.port.source, Source::Default);
        assert!(c.models.is_empty());
    }

    #[test]
    fn quantize_from_each_source_and_bad_values_name_the_choices() {
        let c = resolve(&args(&[]), &env_of(&[])).unwrap();
        assert_eq!(
            (c.quantize.value, &c.quantize.source),
            (None, &Source::Default)
        );
        assert!(c.to_toml().contains("# quantize: none"));
        let env = env_of(&[("HEARTH_QUANTIZE", "q4_k")]);
        let c = resolve(&args(&[]), &env).unwrap();
        assert_eq!(c.quantize.value, Some(Quantize::Q4_K));
        let f = write("quant.toml", "quantize = \"mxfp4\"\n");
        let c = resolve(&args(&["--config", f.to_str().unwrap()]), &env).unwrap();
        assert_eq!(c.quantize.value, Some(Quantize::Mxfp4));
        let back: FileConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back.quantize, Some(Quantize::Mxfp4));
        let c = resolve(
            &args(&["--config", f.to_str().unwrap(), "--quantize", "Q8_0"]),
            &env,
        )
        .unwrap();
        assert_eq!(c.quantize.value, Some(Quantize::Q8_0));
        assert_eq!(c.quantize.source, Source::Flag("--quantize"));
        let e = resolve(&args(&[]), &env_of(&[("HEARTH_QUANTIZE", "q3")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("HEARTH_QUANTIZE") && e.contains("q8_0, q4_k, mxfp4"),
            "{e}"
        );
        let f = write("quant_bad.toml", "quantize = \"int4\"\n");
        let e = resolve(&args(&["--config", f.to_str().unwrap()]), &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("quantize") && e.contains("int4"), "{e}");
    }

    #[test]
    fn flag_beats_file_beats_env() {
        let f = write(
            "prec.toml",
            "port = 9001\nmax-running = 3\nkv_cache_type = \"q8_0\"\n",
        );
        let env = env_of(&[
            ("HEARTH_PORT", "9002"),
            ("HEARTH_MAX_RUNNING", "5"),
            ("HEARTH_STEP_TOKENS", "77"),
            ("HEARTH_KV_CACHE_TYPE", "f16"),
        ]);
        let c = resolve(
            &args(&["--config", f.to_str().unwrap(), "--port", "9000"]),
            &env,
        )
        .unwrap();
        assert_eq!(c.port.value, 9000);
        assert_eq!(c.port.source, Source::Flag("--port"));
        assert_eq!(c.max_running.value, 3);
        assert_eq!(c.max_running.source, Source::File(f.clone()));
        assert_eq!(c.step_tokens.value, 77);
        assert_eq!(c.kv_cache_type.value, KvType::Q8_0);
        assert_eq!(c.max_waiting.source, Source::Default);
    }

    #[test]
    fn no_ui_from_flag_file_or_env() {
        let c = resolve(&args(&[]), &env_of(&[])).unwrap();
        assert_eq!((c.no_ui.value, c.no_ui.source), (false, Source::Default));
        let c = resolve(&args(&["--no-ui"]), &env_of(&[])).unwrap();
        assert_eq!(
            (c.no_ui.value, c.no_ui.source),
            (true, Source::Flag("--no-ui"))
        );
        let c = resolve(&args(&[]), &env_of(&[("HEARTH_NO_UI", "yes")])).unwrap();
        assert_eq!(
            (c.no_ui.value, c.no_ui.source),
            (true, Source::Env("HEARTH_NO_UI"))
        );
        let f = write("noui.toml", "no-ui = true\n");
        let c = resolve(
            &args(&["--config", f.to_str().unwrap()]),
            &env_of(&[("HEARTH_NO_UI", "false")]),
        )
        .unwrap();
        assert_eq!(
            (c.no_ui.value, c.no_ui.source),
            (true, Source::File(f.clone()))
        );
        // The flag turns it back on over the file.
        let c = resolve(
            &args(&["--config", f.to_str().unwrap(), "--no-ui=false"]),
            &env_of(&[]),
        )
        .unwrap();
        assert!(!c.no_ui.value);
        let e = resolve(&args(&[]), &env_of(&[("HEARTH_NO_UI", "maybe")])).unwrap_err();
        assert!(e.to_string().contains("HEARTH_NO_UI"), "{e}");
        assert!(c
            .to_toml()
            .contains("no_ui = false  # command line --no-ui"));
    }

    #[test]
    fn model_admin_from_flag_file_or_env() {
        let c = resolve(&args(&[]), &env_of(&[])).unwrap();
        assert_eq!(
            (c.models_dir.value, c.models_dir.source),
            (None, Source::Default)
        );
        assert_eq!(
            (c.no_model_admin.value, c.no_model_admin.source),
            (false, Source::Default)
        );
        let c = resolve(
            &args(&[]),
            &env_of(&[
                ("HEARTH_MODELS_DIR", "/srv/models"),
                ("HEARTH_NO_MODEL_ADMIN", "on"),
            ]),
        )
        .unwrap();
        assert_eq!(c.models_dir.value, Some(PathBuf::from("/srv/models")));
        assert_eq!(c.models_dir.source, Source::Env("HEARTH_MODELS_DIR"));
        assert_eq!(
            (c.no_model_admin.value, c.no_model_admin.source),
            (true, Source::Env("HEARTH_NO_MODEL_ADMIN"))
        );
        // A relative directory in the file is relative to the file, and beats the environment.
        let f = write(
            "admin.toml",
            "models-dir = \"weights\"\nno_model_admin = false\n",
        );
        let c = resolve(
            &args(&["--config", f.to_str().unwrap()]),
            &env_of(&[
                ("HEARTH_MODELS_DIR", "/srv/models"),
                ("HEARTH_NO_MODEL_ADMIN", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.models_dir.value,
            Some(f.parent().unwrap().join("weights"))
        );
        assert_eq!(c.models_dir.source, Source::File(f.clone()));
        assert!(!c.no_model_admin.value);
        // Flags beat the file.
        let c = resolve(
            &args(&[
                "--config",
                f.to_str().unwrap(),
                "--models-dir",
                "here",
                "--no-model-admin",
            ]),
            &env_of(&[]),
        )
        .unwrap();
        assert_eq!(c.models_dir.value, Some(PathBuf::from("here")));
        assert_eq!(c.models_dir.source, Source::Flag("--models-dir"));
        assert_eq!(
            (c.no_model_admin.value, &c.no_model_admin.source),
            (true, &Source::Flag("--no-model-admin"))
        );
        let toml = c.to_toml();
        assert!(
            toml.contains("models_dir = \"here\"  # command line --models-dir"),
            "{toml}"
        );
        assert!(
            toml.contains("no_model_admin = true  # command line --no-model-admin"),
            "{toml}"
        );
        let e = resolve(&args(&[]), &env_of(&[("HEARTH_NO_MODEL_ADMIN", "maybe")])).unwrap_err();
        assert!(e.to_string().contains("HEARTH_NO_MODEL_ADMIN"), "{e}");
    }

    #[test]
    fn env_errors_name_the_variable_only_when_used() {
        let e = resolve(&args(&[]), &env_of(&[("HEARTH_PORT", "eighty")])).unwrap_err();
        assert!(e.to_string().contains("HEARTH_PORT"), "{e}");
        // Overridden by the flag: never parsed.
        resolve(
            &args(&["--port", "1"]),
            &env_of(&[("HEARTH_PORT", "eighty")]),
        )
        .unwrap();
    }

    #[test]
    fn models_from_file_are_relative_to_it_and_alias_flag_overrides() {
        let f = write(
            "models.toml",
            "[[models]]\npath = \"a/one.gguf\"\n[[models]]\npath = \"/abs/two.gguf\"\nalias = \"second\"\n",
        );
        let c = resolve(&args(&["--config", f.to_str().unwrap()]), &env_of(&[])).unwrap();
        let dir = f.parent().unwrap();
        assert_eq!(
            c.models[0],
            ModelSpec {
                id: "one".into(),
                path: dir.join("a/one.gguf"),
                fallback: None,
            }
        );
        assert_eq!(c.models[1].id, "second");
        let c = resolve(
            &args(&["--config", f.to_str().unwrap(), "--alias", "x"]),
            &env_of(&[]),
        )
        .unwrap();
        assert_eq!(
            (c.models[0].id.as_str(), c.models[1].id.as_str()),
            ("x", "second")
        );
        // Positional models replace the file's list.
        let c = resolve(
            &args(&["--config", f.to_str().unwrap(), "m.gguf"]),
            &env_of(&[]),
        )
        .unwrap();
        assert_eq!(
            c.models,
            vec![ModelSpec {
                id: "m".into(),
                path: "m.gguf".into(),
                fallback: None,
            }]
        );
    }

    #[test]
    fn duplicate_ids_and_extra_aliases_are_errors() {
        let e = resolve(&args(&["a/m.gguf", "b/m.gguf"]), &env_of(&[])).unwrap_err();
        assert!(e.to_string().contains("'m'"), "{e}");
        let e = resolve(&args(&["m.gguf", "--alias", "x,y"]), &env_of(&[])).unwrap_err();
        assert!(e.to_string().contains("--alias"), "{e}");
    }

    #[test]
    fn zero_is_rejected_with_its_source() {
        let e = resolve(&args(&[]), &env_of(&[("HEARTH_MAX_RUNNING", "0")])).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("max_running") && m.contains("HEARTH_MAX_RUNNING"),
            "{m}"
        );
    }

    #[test]
    fn printed_config_reads_back() {
        let c = resolve(
            &args(&[
                "x.gguf",
                "--alias",
                "m",
                "--kv-cache-type",
                "q8_0",
                "--api-key",
                "secret",
            ]),
            &env_of(&[]),
        )
        .unwrap();
        let text = c.to_toml();
        assert!(!text.contains("secret"));
        let back: FileConfig = toml::from_str(&text).unwrap();
        assert_eq!(back.kv_cache_type, Some(KvType::Q8_0));
        assert_eq!(back.models[0].alias.as_deref(), Some("m"));
    }

    #[test]
    fn a_model_fallback_comes_from_the_file_only() {
        let p = write(
            "model-fallback.toml",
            "[[models]]\npath = \"one.gguf\"\nalias = \"small\"\nfallback = \"cloud\"\n",
        );
        let c = resolve(&args(&["--config", p.to_str().unwrap()]), &env_of(&[])).unwrap();
        assert_eq!(c.models[0].fallback.as_deref(), Some("cloud"));
        let back: FileConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back.models[0].fallback.as_deref(), Some("cloud"));
        // MODEL arguments replace the file's [[models]], fallbacks included.
        let c = resolve(
            &args(&["--config", p.to_str().unwrap(), "m.gguf"]),
            &env_of(&[]),
        )
        .unwrap();
        assert_eq!(c.models[0].fallback, None);
    }

    #[test]
    fn upstreams_come_from_the_file_and_print_without_their_key() {
        let p = write(
            "upstreams.toml",
            "[[upstreams]]\nid = \"cloud\"\nurls = [\"https://llm.example/v1\", \"http://10.0.0.2:8000/v1\"]\napi_key = \"sk-very-secret\"\nmodel = \"big\"\nfallback = \"m\"\npii = \"redact\"\n",
        );
        let c = resolve(
            &args(&["x.gguf", "--alias", "m", "--config", p.to_str().unwrap()]),
            &env_of(&[]),
        )
        .unwrap();
        assert_eq!(c.upstreams.len(), 1);
        let u = &c.upstreams[0];
        assert_eq!(u.urls.len(), 2);
        assert_eq!(u.pii, hearth_server::upstream::PiiPolicy::Redact);
        let text = c.to_toml();
        assert!(!text.contains("sk-very-secret"), "{text}");
        let back: FileConfig = toml::from_str(&text).unwrap();
        assert_eq!(back.upstreams[0].urls, u.urls);
        assert_eq!(back.upstreams[0].fallback.as_deref(), Some("m"));

        let bad = write(
            "upstreams-bad.toml",
            "[[upstreams]]\nid = \"cloud\"\nurls = [\"http://x/v1\"]\npii = \"maybe\"\n",
        );
        let e = resolve(
            &args(&["x.gguf", "--config", bad.to_str().unwrap()]),
            &env_of(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("upstreams-bad.toml") && e.contains("maybe"),
            "{e}"
        );
    }
}

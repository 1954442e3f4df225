//! The gateway's database: teams, users, API keys, the audit log (a hash chain) and daily usage
//! rollups, in SQLite (default, one file) or PostgreSQL (several replicas), one schema.
//!
//! Both run through sqlx's `Any` driver with portable SQL (`$N` parameters, `BIGINT`,
//! `ON CONFLICT ... DO UPDATE`), so every query and migration is written once. Migrations are
//! a numbered list applied in order and recorded in `schema_version`.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::limits::{Limits, MonthIndex, Scope};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {url}: {err}")]
    Open { url: String, err: sqlx::Error },
    #[error("database {url}: only sqlite:// and postgres:// URLs are supported")]
    Scheme { url: String },
    #[error("database query failed ({what}): {err}")]
    Query {
        what: &'static str,
        err: sqlx::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("no {kind} named '{name}'")]
    NotFound { kind: &'static str, name: String },
}

type Result<T> = std::result::Result<T, StoreError>;

mod ui;
pub use ui::{CompareRun, Conversation, ConversationPatch, Message, UiSession};

fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |err| StoreError::Query { what, err }
}

/// A caller's role (issue 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Result<Role> {
        match s {
            "admin" => Ok(Role::Admin),
            "user" => Ok(Role::User),
            "auditor" => Ok(Role::Auditor),
            _ => Err(StoreError::Invalid(format!(
                "role must be admin, user or auditor, got '{s}'"
            ))),
        }
    }
}

/// A key as listed (never with its secret).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    /// The visible start of the secret (`hk-ID`), to recognize a key in a list.
    pub prefix: String,
    pub user: Option<String>,
    pub team: Option<String>,
    pub role: Role,
    pub models: Option<Vec<String>>,
    pub limits: Limits,
    /// UNIX seconds.
    pub expires: Option<i64>,
    pub revoked: Option<i64>,
    pub created: i64,
}

/// What `create_key` needs.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct NewKey {
    pub name: String,
    pub user: Option<String>,
    pub team: Option<String>,
    pub role: Option<Role>,
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub limits: Limits,
    pub expires: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub team: Option<String>,
    #[serde(default)]
    pub created: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Team {
    pub name: String,
    #[serde(default)]
    pub limits: Limits,
    /// The models the team's keys and users may use (`None`: any). A key with a list of its
    /// own may use the models on both lists.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub created: i64,
}

/// Who a presented key belongs to, with the limits that apply.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyOwner {
    pub key_id: String,
    pub key_name: String,
    pub user: Option<String>,
    pub team: Option<String>,
    pub role: Role,
    pub models: Option<Vec<String>>,
    pub key_limits: Limits,
    pub team_limits: Limits,
}

/// The name the issue and the server use for [`KeyOwner`].
pub type Principal = KeyOwner;

impl KeyOwner {
    /// Loopback without `--require-auth`: the local user is the admin.
    pub fn local_admin() -> Self {
        KeyOwner {
            key_id: "local".into(),
            key_name: "local admin (no auth on loopback)".into(),
            user: None,
            team: None,
            role: Role::Admin,
            models: None,
            key_limits: Limits::default(),
            team_limits: Limits::default(),
        }
    }
}

impl fmt::Debug for KeyOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyOwner")
            .field("key_id", &self.key_id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// One audit record as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    pub time: i64,
    pub request_id: String,
    pub key_id: Option<String>,
    pub user: Option<String>,
    pub team: Option<String>,
    pub role: Option<String>,
    pub client_addr: Option<String>,
    pub route: String,
    pub model: Option<String>,
    pub status: u16,
    pub latency_ms: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub guardrails: Option<String>,
    pub request_body: Option<String>,
    pub response_body: Option<String>,
}

/// A stored record with its place in the chain.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChainedRecord {
    pub seq: i64,
    #[serde(flatten)]
    pub record: AuditRecord,
    pub prev_hash: String,
    pub hash: String,
}

/// Which audit records to read ([`Store::query_audit`]): a time range in UNIX seconds
/// (`until` exclusive) and optional equality filters; all `None` reads everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct AuditFilter {
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub request_id: Option<String>,
    pub key: Option<String>,
    pub user: Option<String>,
    pub team: Option<String>,
    pub model: Option<String>,
    pub status: Option<u16>,
}

/// Result of [`Store::verify_audit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok {
        records: u64,
    },
    /// The first record whose content or link does not check out.
    Broken {
        seq: i64,
        request_id: Option<String>,
        reason: String,
    },
}

/// Usage grouped by one dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Key,
    User,
    Team,
    Model,
    Day,
}

/// Which usage to sum ([`Store::usage_filtered`]): a day range (days since 1970-01-01,
/// `until_day` exclusive; open when `None`) and optional equality filters, grouped by one
/// dimension. `""` in a filter matches rows without that dimension (a request with no user).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct UsageFilter {
    pub group_by: Option<GroupBy>,
    pub since_day: Option<i64>,
    pub until_day: Option<i64>,
    pub key: Option<String>,
    pub user: Option<String>,
    pub team: Option<String>,
    pub model: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UsageRow {
    pub group: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Numbered migrations; never edit one that shipped, add the next.
const MIGRATIONS: &[&str] = &[
    // 1: the whole first schema.
    "CREATE TABLE IF NOT EXISTS teams (
        name TEXT PRIMARY KEY, rpm BIGINT, tpm BIGINT, max_concurrent BIGINT,
        monthly_tokens BIGINT, created BIGINT NOT NULL);
     CREATE TABLE IF NOT EXISTS users (
        name TEXT PRIMARY KEY, role TEXT NOT NULL, team TEXT, password_hash TEXT,
        created BIGINT NOT NULL);
     CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, prefix TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
        user_name TEXT, team TEXT, role TEXT NOT NULL, models TEXT, rpm BIGINT, tpm BIGINT,
        max_concurrent BIGINT, monthly_tokens BIGINT, expires BIGINT, revoked BIGINT,
        created BIGINT NOT NULL);
     CREATE TABLE IF NOT EXISTS audit_log (
        seq BIGINT PRIMARY KEY, time BIGINT NOT NULL, request_id TEXT NOT NULL, key_id TEXT,
        user_name TEXT, team TEXT, role TEXT, client_addr TEXT, route TEXT NOT NULL, model TEXT,
        status BIGINT NOT NULL, latency_ms BIGINT NOT NULL, prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL, guardrails TEXT, request_body TEXT,
        response_body TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
     CREATE INDEX IF NOT EXISTS audit_time ON audit_log (time);
     CREATE INDEX IF NOT EXISTS audit_key ON audit_log (key_id);
     CREATE INDEX IF NOT EXISTS audit_request ON audit_log (request_id);
     CREATE TABLE IF NOT EXISTS audit_checkpoint (
        id BIGINT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL);
     CREATE TABLE IF NOT EXISTS usage_daily (
        day BIGINT NOT NULL, key_id TEXT NOT NULL, user_name TEXT NOT NULL, team TEXT NOT NULL,
        model TEXT NOT NULL, requests BIGINT NOT NULL, prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        PRIMARY KEY (day, key_id, user_name, team, model));",
    // 2: the web UI: login sessions, conversations (messages as a tree) and comparison runs.
    "CREATE TABLE IF NOT EXISTS ui_sessions (
        token_hash TEXT PRIMARY KEY, user_name TEXT NOT NULL, key_id TEXT, role TEXT NOT NULL,
        csrf_token TEXT NOT NULL, created BIGINT NOT NULL, expires BIGINT NOT NULL);
     CREATE INDEX IF NOT EXISTS ui_sessions_expires ON ui_sessions (expires);
     CREATE TABLE IF NOT EXISTS conversations (
        id TEXT PRIMARY KEY, user_name TEXT NOT NULL, title TEXT NOT NULL, model TEXT,
        settings TEXT NOT NULL, created BIGINT NOT NULL, updated BIGINT NOT NULL);
     CREATE INDEX IF NOT EXISTS conversations_user ON conversations (user_name, updated);
     CREATE TABLE IF NOT EXISTS messages (
        id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, seq BIGINT NOT NULL,
        parent_id TEXT, role TEXT NOT NULL, content TEXT NOT NULL, reasoning TEXT, model TEXT,
        status TEXT NOT NULL, error TEXT, stats TEXT, created BIGINT NOT NULL);
     CREATE INDEX IF NOT EXISTS messages_conversation ON messages (conversation_id, seq);
     CREATE TABLE IF NOT EXISTS compare_runs (
        id TEXT PRIMARY KEY, user_name TEXT NOT NULL, title TEXT NOT NULL,
        document TEXT NOT NULL, created BIGINT NOT NULL, updated BIGINT NOT NULL);
     CREATE INDEX IF NOT EXISTS compare_runs_user ON compare_runs (user_name, updated);",
    // 3: a team's model allow-list (comma-separated, as api_keys.models).
    "ALTER TABLE teams ADD COLUMN models TEXT",
];

/// The database (cheap to clone: a connection pool).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    url_kind: &'static str,
    /// Audit writers in this process take turns here before they take a connection, so
    /// waiting writers never hold pooled connections that key lookups need.
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Store({})", self.url_kind)
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256_hex(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(|n| n.min(i64::MAX as u64) as i64)
}

fn limits_of(r: &AnyRow) -> Limits {
    let g = |c: &str| {
        r.try_get::<Option<i64>, _>(c)
            .ok()
            .flatten()
            .map(|v| v as u64)
    };
    Limits {
        rpm: g("rpm"),
        tpm: g("tpm"),
        max_concurrent: g("max_concurrent"),
        monthly_tokens: g("monthly_tokens"),
    }
}

fn models_of(s: Option<String>) -> Option<Vec<String>> {
    s.map(|s| {
        s.split(',')
            .filter(|m| !m.is_empty())
            .map(String::from)
            .collect()
    })
}

/// `sqlite://PATH` (or a path) under `data_dir`, the platform data directory by default.
pub fn default_database_url(data_dir: Option<&std::path::Path>) -> String {
    let dir = match data_dir {
        Some(d) => d.to_path_buf(),
        None => {
            let base = std::env::var_os("XDG_DATA_HOME")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME")
                        .map(|h| std::path::PathBuf::from(h).join(".local/share"))
                })
                .unwrap_or_else(|| std::path::PathBuf::from("."));
            base.join("hearth")
        }
    };
    format!("sqlite://{}", dir.join("hearth.db").display())
}

impl Store {
    /// Open (creating a SQLite file and its directory if needed) and migrate.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let open_err = |err| StoreError::Open {
            url: redact_url(url),
            err,
        };
        let (conn_url, kind, max) = if let Some(path) = url.strip_prefix("sqlite://") {
            if let Some(parent) = std::path::Path::new(path).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent).map_err(|e| open_err(sqlx::Error::Io(e)))?;
                }
            }
            let sep = if path.contains('?') { "&" } else { "?" };
            // One writer at a time is SQLite's model; a small pool still lets reads overlap.
            (format!("sqlite://{path}{sep}mode=rwc"), "sqlite", 4)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_string(), "postgres", 8)
        } else {
            return Err(StoreError::Scheme {
                url: redact_url(url),
            });
        };
        let sqlite = kind == "sqlite";
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            // Per-connection SQLite settings. WAL: readers (key lookups) never wait for the
            // audit writer. synchronous=NORMAL: in WAL mode a commit survives a crash of the
            // process (not of the OS), and commits skip an fsync each. busy_timeout: a writer
            // waits for the lock instead of failing.
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if sqlite {
                        for p in [
                            "PRAGMA journal_mode=WAL",
                            "PRAGMA synchronous=NORMAL",
                            "PRAGMA busy_timeout=5000",
                        ] {
                            sqlx::query(p).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&conn_url)
            .await
            .map_err(open_err)?;
        let store = Store {
            pool,
            url_kind: kind,
            writer: Default::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Apply the migrations not applied yet, all in one transaction. On PostgreSQL a
    /// transaction-scoped advisory lock makes replicas starting together take turns (two
    /// concurrent `CREATE TABLE IF NOT EXISTS` can otherwise collide there).
    async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(q("begin migration"))?;
        if self.url_kind == "postgres" {
            // The key is arbitrary but fixed: "hearth" in ASCII.
            sqlx::query("SELECT pg_advisory_xact_lock(104101097114116104)")
                .execute(&mut *tx)
                .await
                .map_err(q("migration lock"))?;
        }
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY)")
            .execute(&mut *tx)
            .await
            .map_err(q("create schema_version"))?;
        let done: Option<i64> = sqlx::query("SELECT MAX(version) AS v FROM schema_version")
            .fetch_one(&mut *tx)
            .await
            .map_err(q("read schema_version"))?
            .try_get("v")
            .ok()
            .flatten();
        let done = done.unwrap_or(0) as usize;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(done) {
            for stmt in m.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(sqlx::AssertSqlSafe(stmt.to_string()))
                    .execute(&mut *tx)
                    .await
                    .map_err(q("migration"))?;
            }
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                .bind((i + 1) as i64)
                .execute(&mut *tx)
                .await
                .map_err(q("record migration"))?;
        }
        tx.commit().await.map_err(q("commit migration"))?;
        Ok(())
    }

    // ---- teams and users ----

    pub async fn create_team(&self, t: &Team) -> Result<Team> {
        valid_team(t)?;
        let created = now();
        sqlx::query(
            "INSERT INTO teams (name, rpm, tpm, max_concurrent, monthly_tokens, models, created)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&t.name)
        .bind(opt_i64(t.limits.rpm))
        .bind(opt_i64(t.limits.tpm))
        .bind(opt_i64(t.limits.max_concurrent))
        .bind(opt_i64(t.limits.monthly_tokens))
        .bind(t.models.as_ref().map(|m| m.join(",")))
        .bind(created)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict(e, "team", &t.name))?;
        Ok(Team {
            created,
            ..t.clone()
        })
    }

    pub async fn list_teams(&self) -> Result<Vec<Team>> {
        let rows = sqlx::query("SELECT * FROM teams ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(q("list teams"))?;
        rows.iter().map(team_of).collect()
    }

    pub async fn get_team(&self, name: &str) -> Result<Team> {
        let r = sqlx::query("SELECT * FROM teams WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("get team"))?
            .ok_or_else(|| StoreError::NotFound {
                kind: "team",
                name: name.into(),
            })?;
        team_of(&r)
    }

    /// Replace the limits and model allow-list of the team `t.name` (checked as
    /// [`Store::create_team`] checks them). They apply from the next request: nothing caches
    /// them.
    pub async fn update_team(&self, t: &Team) -> Result<Team> {
        valid_team(t)?;
        let n = sqlx::query(
            "UPDATE teams SET rpm = $1, tpm = $2, max_concurrent = $3, monthly_tokens = $4,
               models = $5
             WHERE name = $6",
        )
        .bind(opt_i64(t.limits.rpm))
        .bind(opt_i64(t.limits.tpm))
        .bind(opt_i64(t.limits.max_concurrent))
        .bind(opt_i64(t.limits.monthly_tokens))
        .bind(t.models.as_ref().map(|m| m.join(",")))
        .bind(&t.name)
        .execute(&self.pool)
        .await
        .map_err(q("update team"))?
        .rows_affected();
        found(n, "team", &t.name)?;
        self.get_team(&t.name).await
    }

    pub async fn delete_team(&self, name: &str) -> Result<()> {
        let n = sqlx::query("DELETE FROM teams WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(q("delete team"))?
            .rows_affected();
        found(n, "team", name)
    }

    pub async fn create_user(&self, u: &User) -> Result<User> {
        valid_name("user", &u.name)?;
        if let Some(t) = &u.team {
            self.team_exists(t).await?;
        }
        let created = now();
        sqlx::query("INSERT INTO users (name, role, team, created) VALUES ($1, $2, $3, $4)")
            .bind(&u.name)
            .bind(u.role.as_str())
            .bind(u.team.clone())
            .bind(created)
            .execute(&self.pool)
            .await
            .map_err(|e| conflict(e, "user", &u.name))?;
        Ok(User {
            created,
            ..u.clone()
        })
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT name, role, team, created FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(q("list users"))?;
        rows.iter()
            .map(|r| {
                Ok(User {
                    name: r.try_get("name").map_err(q("users.name"))?,
                    role: Role::parse(&r.try_get::<String, _>("role").map_err(q("users.role"))?)?,
                    team: r.try_get("team").ok().flatten(),
                    created: r.try_get("created").unwrap_or_default(),
                })
            })
            .collect()
    }

    pub async fn get_user(&self, name: &str) -> Result<User> {
        let r = sqlx::query("SELECT name, role, team, created FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("get user"))?
            .ok_or_else(|| StoreError::NotFound {
                kind: "user",
                name: name.into(),
            })?;
        Ok(User {
            name: r.try_get("name").map_err(q("users.name"))?,
            role: Role::parse(&r.try_get::<String, _>("role").map_err(q("users.role"))?)?,
            team: r.try_get("team").ok().flatten(),
            created: r.try_get("created").unwrap_or_default(),
        })
    }

    /// Change a user's role and team (`u.name` picks the user). Keys made earlier keep the
    /// role and team they were created with: a key's own columns are what authenticate reads.
    pub async fn update_user(&self, u: &User) -> Result<User> {
        if let Some(t) = &u.team {
            self.team_exists(t).await?;
        }
        let n = sqlx::query("UPDATE users SET role = $1, team = $2 WHERE name = $3")
            .bind(u.role.as_str())
            .bind(u.team.clone())
            .bind(&u.name)
            .execute(&self.pool)
            .await
            .map_err(q("update user"))?
            .rows_affected();
        found(n, "user", &u.name)?;
        self.get_user(&u.name).await
    }

    pub async fn delete_user(&self, name: &str) -> Result<()> {
        let n = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(q("delete user"))?
            .rows_affected();
        found(n, "user", name)
    }

    async fn team_exists(&self, name: &str) -> Result<()> {
        let n = sqlx::query("SELECT name FROM teams WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("find team"))?;
        match n {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound {
                kind: "team",
                name: name.into(),
            }),
        }
    }

    // ---- keys ----

    /// Create a key; the secret is returned once and only its SHA-256 is stored.
    pub async fn create_key(&self, k: &NewKey) -> Result<(KeyInfo, String)> {
        if k.name.trim().is_empty() {
            return Err(StoreError::Invalid("a key needs a --name".into()));
        }
        valid_models(&k.models)?;
        // The user's team and role apply unless the key names its own.
        let mut team = k.team.clone();
        let mut role = k.role;
        if let Some(u) = &k.user {
            let row = sqlx::query("SELECT role, team FROM users WHERE name = $1")
                .bind(u)
                .fetch_optional(&self.pool)
                .await
                .map_err(q("find user"))?
                .ok_or_else(|| StoreError::NotFound {
                    kind: "user",
                    name: u.clone(),
                })?;
            if team.is_none() {
                team = row.try_get("team").ok().flatten();
            }
            if role.is_none() {
                role = Some(Role::parse(
                    &row.try_get::<String, _>("role").unwrap_or_default(),
                )?);
            }
        }
        if let Some(t) = &team {
            self.team_exists(t).await?;
        }
        let role = role.unwrap_or(Role::User);
        // 2 × 122 random bits from the OS generator (UUID v4), hex.
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let secret = format!(
            "hk-{id}-{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let prefix = format!("hk-{id}");
        let created = now();
        let models = k.models.as_ref().map(|m| m.join(","));
        sqlx::query(
            "INSERT INTO api_keys (id, name, prefix, hash, user_name, team, role, models, rpm, tpm,
               max_concurrent, monthly_tokens, expires, revoked, created)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, $14)",
        )
        .bind(&id)
        .bind(&k.name)
        .bind(&prefix)
        .bind(sha256_hex(secret.as_bytes()))
        .bind(k.user.clone())
        .bind(team.clone())
        .bind(role.as_str())
        .bind(models)
        .bind(opt_i64(k.limits.rpm))
        .bind(opt_i64(k.limits.tpm))
        .bind(opt_i64(k.limits.max_concurrent))
        .bind(opt_i64(k.limits.monthly_tokens))
        .bind(k.expires)
        .bind(created)
        .execute(&self.pool)
        .await
        .map_err(q("create key"))?;
        let info = KeyInfo {
            id,
            name: k.name.clone(),
            prefix,
            user: k.user.clone(),
            team,
            role,
            models: k.models.clone(),
            limits: k.limits,
            expires: k.expires,
            revoked: None,
            created,
        };
        Ok((info, secret))
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created, id")
            .fetch_all(&self.pool)
            .await
            .map_err(q("list keys"))?;
        rows.iter().map(key_info).collect()
    }

    pub async fn get_key(&self, id: &str) -> Result<KeyInfo> {
        let r = sqlx::query("SELECT * FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("get key"))?
            .ok_or_else(|| StoreError::NotFound {
                kind: "key",
                name: id.into(),
            })?;
        key_info(&r)
    }

    /// Remove a key entirely (revocation keeps it listed; this forgets it). Its audit records
    /// and usage stay: they name the key's id.
    pub async fn delete_key(&self, id: &str) -> Result<()> {
        let n = sqlx::query("DELETE FROM api_keys WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("delete key"))?
            .rows_affected();
        found(n, "key", id)
    }

    /// Revoke a key: it fails on the very next request (nothing caches keys).
    pub async fn revoke_key(&self, id: &str) -> Result<()> {
        let n = sqlx::query("UPDATE api_keys SET revoked = $1 WHERE id = $2 AND revoked IS NULL")
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("revoke key"))?
            .rows_affected();
        found(n, "key (not revoked)", id)
    }

    /// The owner of a presented secret; `None` when unknown, expired or revoked.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<KeyOwner>> {
        let hash = sha256_hex(presented.as_bytes());
        let row = sqlx::query(
            "SELECT k.*, t.rpm AS t_rpm, t.tpm AS t_tpm, t.max_concurrent AS t_max_concurrent,
                    t.monthly_tokens AS t_monthly_tokens, t.models AS t_models
             FROM api_keys k LEFT JOIN teams t ON t.name = k.team WHERE k.hash = $1",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("authenticate"))?;
        let Some(r) = row else { return Ok(None) };
        // The index found it by hash; compare again without an early exit anyway, so the
        // decision never rests on a short-circuiting string comparison.
        let stored: String = r.try_get("hash").map_err(q("api_keys.hash"))?;
        if !constant_time_eq(stored.as_bytes(), hash.as_bytes()) {
            return Ok(None);
        }
        owner_of_key_row(&r)
    }

    // ---- usage ----

    /// Tokens billed to `scope` in `month` (from the daily rollups).
    pub async fn monthly_tokens_used(&self, scope: &Scope, month: MonthIndex) -> Result<u64> {
        let (y, m) = (month.div_euclid(12), month.rem_euclid(12) + 1);
        let first = days_from_civil(y, m as u32, 1);
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        let next = days_from_civil(ny, nm as u32, 1);
        let (col, val) = match scope {
            Scope::Global => ("''", String::new()),
            Scope::Team(t) => ("team", t.clone()),
            Scope::Key(k) => ("key_id", k.clone()),
        };
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS BIGINT) AS n
             FROM usage_daily
             WHERE day >= $1 AND day < $2 AND {col} = $3"
        );
        // Only the column name is spliced in, from the fixed match above.
        let n: i64 = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(first)
            .bind(next)
            .bind(val)
            .fetch_one(&self.pool)
            .await
            .map_err(q("monthly usage"))?
            .try_get("n")
            .unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    /// Requests and tokens grouped by key, user, team, model or day, between two days
    /// (days since 1970-01-01, `until` exclusive).
    pub async fn usage(
        &self,
        group_by: GroupBy,
        since_day: i64,
        until_day: i64,
    ) -> Result<Vec<UsageRow>> {
        self.usage_filtered(&UsageFilter {
            group_by: Some(group_by),
            since_day: Some(since_day),
            until_day: Some(until_day),
            ..Default::default()
        })
        .await
    }

    /// Requests and tokens from the daily rollups, filtered and grouped (a `user` role's own
    /// usage is `key: Some(its key id)`).
    pub async fn usage_filtered(&self, f: &UsageFilter) -> Result<Vec<UsageRow>> {
        let col = match f.group_by.unwrap_or(GroupBy::Key) {
            GroupBy::Key => "key_id",
            GroupBy::User => "user_name",
            GroupBy::Team => "team",
            GroupBy::Model => "model",
            GroupBy::Day => "day",
        };
        let mut extra = String::new();
        let mut values = Vec::new();
        for (c, v) in [
            ("key_id", &f.key),
            ("user_name", &f.user),
            ("team", &f.team),
            ("model", &f.model),
        ] {
            if let Some(v) = v {
                values.push(v.as_str());
                extra.push_str(&format!(" AND {c} = ${}", values.len() + 2));
            }
        }
        let sql = format!(
            // PostgreSQL sums BIGINT into NUMERIC, which the Any driver cannot decode.
            "SELECT CAST({col} AS TEXT) AS g, CAST(SUM(requests) AS BIGINT) AS r,
                    CAST(SUM(prompt_tokens) AS BIGINT) AS p,
                    CAST(SUM(completion_tokens) AS BIGINT) AS c
             FROM usage_daily WHERE day >= $1 AND day < $2{extra} GROUP BY {col} ORDER BY {col}"
        );
        // Only column names and parameter numbers are spliced in, from the fixed lists here;
        // every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(f.since_day.unwrap_or(i64::MIN / 2))
            .bind(f.until_day.unwrap_or(i64::MAX / 2));
        for v in &values {
            query = query.bind(v.to_string());
        }
        let rows = query.fetch_all(&self.pool).await.map_err(q("usage"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let n = |c: &str| r.try_get::<i64, _>(c).unwrap_or(0).max(0) as u64;
                UsageRow {
                    group: r.try_get("g").unwrap_or_default(),
                    requests: n("r"),
                    prompt_tokens: n("p"),
                    completion_tokens: n("c"),
                }
            })
            .collect())
    }

    // ---- audit ----

    /// Append records to the chain and roll their usage up, in one transaction. Writers take
    /// turns (a mutex in this process, the database's write lock across processes and
    /// replicas), so each appends on top of the previous one's head.
    pub async fn append_audit(&self, recs: &[AuditRecord]) -> Result<()> {
        if recs.is_empty() {
            return Ok(());
        }
        let _turn = self.writer.lock().await;
        let mut last_err = None;
        // With the locks above a retry is only for a transient failure (a busy timeout, a
        // dropped connection); back off a little so it is not spent at once.
        for attempt in 0..5u64 {
            match self.try_append(recs).await {
                Ok(()) => return Ok(()),
                Err(e) => last_err = Some(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
        }
        Err(last_err.expect("tried at least once"))
    }

    /// A transaction that owns the audit chain's head until it ends. The chain reads the last
    /// record and then inserts after it, so two writers must never interleave: SQLite's
    /// `BEGIN IMMEDIATE` takes the write lock up front (a deferred transaction would fail with
    /// SQLITE_BUSY_SNAPSHOT when it tries to upgrade after another writer committed), and on
    /// PostgreSQL an advisory lock serializes the replicas. Callers hold `self.writer` first.
    async fn begin_chain_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        if self.url_kind == "sqlite" {
            return self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(q("begin audit write"));
        }
        let mut tx = self.pool.begin().await.map_err(q("begin audit write"))?;
        // A fixed key, distinct from the migration lock: "audit" in ASCII.
        sqlx::query("SELECT pg_advisory_xact_lock(418581342580)")
            .execute(&mut *tx)
            .await
            .map_err(q("audit write lock"))?;
        Ok(tx)
    }

    async fn try_append(&self, recs: &[AuditRecord]) -> Result<()> {
        let mut tx = self.begin_chain_write().await?;
        let (mut seq, mut prev) =
            match sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(q("audit head"))?
            {
                Some(r) => (
                    r.try_get::<i64, _>("seq").map_err(q("audit seq"))?,
                    r.try_get::<String, _>("hash").map_err(q("audit hash"))?,
                ),
                None => self.checkpoint_in(&mut tx).await?,
            };
        for rec in recs {
            seq += 1;
            let hash = chain_hash(seq, &prev, rec);
            sqlx::query(
                "INSERT INTO audit_log (seq, time, request_id, key_id, user_name, team, role,
                   client_addr, route, model, status, latency_ms, prompt_tokens, completion_tokens,
                   guardrails, request_body, response_body, prev_hash, hash)
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)",
            )
            .bind(seq)
            .bind(rec.time)
            .bind(&rec.request_id)
            .bind(rec.key_id.clone())
            .bind(rec.user.clone())
            .bind(rec.team.clone())
            .bind(rec.role.clone())
            .bind(rec.client_addr.clone())
            .bind(&rec.route)
            .bind(rec.model.clone())
            .bind(rec.status as i64)
            .bind(rec.latency_ms as i64)
            .bind(rec.prompt_tokens as i64)
            .bind(rec.completion_tokens as i64)
            .bind(rec.guardrails.clone())
            .bind(rec.request_body.clone())
            .bind(rec.response_body.clone())
            .bind(&prev)
            .bind(&hash)
            .execute(&mut *tx)
            .await
            .map_err(q("append audit"))?;
            if rec.model.is_some() || rec.prompt_tokens + rec.completion_tokens > 0 {
                sqlx::query(
                    "INSERT INTO usage_daily (day, key_id, user_name, team, model, requests,
                       prompt_tokens, completion_tokens) VALUES ($1, $2, $3, $4, $5, 1, $6, $7)
                     ON CONFLICT (day, key_id, user_name, team, model) DO UPDATE SET
                       requests = usage_daily.requests + 1,
                       prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens,
                       completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens",
                )
                .bind(rec.time.div_euclid(86_400))
                .bind(rec.key_id.clone().unwrap_or_default())
                .bind(rec.user.clone().unwrap_or_default())
                .bind(rec.team.clone().unwrap_or_default())
                .bind(rec.model.clone().unwrap_or_default())
                .bind(rec.prompt_tokens as i64)
                .bind(rec.completion_tokens as i64)
                .execute(&mut *tx)
                .await
                .map_err(q("usage rollup"))?;
            }
            prev = hash;
        }
        tx.commit().await.map_err(q("commit audit"))?;
        Ok(())
    }

    /// Where the chain starts: after the last record removed by retention, or the genesis.
    async fn checkpoint_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> Result<(i64, String)> {
        let r = sqlx::query("SELECT seq, hash FROM audit_checkpoint WHERE id = 1")
            .fetch_optional(&mut **tx)
            .await
            .map_err(q("audit checkpoint"))?;
        Ok(match r {
            Some(r) => (
                r.try_get("seq").map_err(q("checkpoint seq"))?,
                r.try_get("hash").map_err(q("checkpoint hash"))?,
            ),
            None => (0, GENESIS.to_string()),
        })
    }

    /// Records in order, `limit` from `after_seq` (paging), optionally between two times.
    pub async fn audit_page(
        &self,
        after_seq: i64,
        limit: i64,
        since: Option<i64>,
        until: Option<i64>,
    ) -> Result<Vec<ChainedRecord>> {
        // Without a time range, no time predicate at all: given `time >= $2 AND time < $3`
        // with unknown bounds, SQLite plans a scan of the time index and then sorts every
        // matching row by seq for each page, which made paging the whole log (verify, export)
        // quadratic: 10 million records did not verify in 8 minutes (bench: audit_bench).
        let query = if since.is_none() && until.is_none() {
            sqlx::query("SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(after_seq)
                .bind(limit)
        } else {
            sqlx::query(
                "SELECT * FROM audit_log WHERE seq > $1 AND time >= $2 AND time < $3
                 ORDER BY seq LIMIT $4",
            )
            .bind(after_seq)
            .bind(since.unwrap_or(i64::MIN))
            .bind(until.unwrap_or(i64::MAX))
            .bind(limit)
        };
        let rows = query.fetch_all(&self.pool).await.map_err(q("read audit"))?;
        rows.iter().map(chained).collect()
    }

    /// Records matching `f` in chain order, at most `limit` (capped at 10 000) after sequence
    /// number `after_seq` (pass the last `seq` of a page to get the next). The filters use the
    /// indexes on time, key and request id.
    pub async fn query_audit(
        &self,
        f: &AuditFilter,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<ChainedRecord>> {
        // `time` predicates only with a range: see `audit_page` for the plan they cause.
        let mut sql = String::from("SELECT * FROM audit_log WHERE seq > $1");
        if f.since.is_some() || f.until.is_some() {
            sql.push_str(" AND time >= $2 AND time < $3");
        } else {
            // Keep the parameter numbering: $2 and $3 are bound either way.
            sql.push_str(" AND $2 <= $3");
        }
        let mut values: Vec<&str> = Vec::new();
        for (c, v) in [
            ("request_id", &f.request_id),
            ("key_id", &f.key),
            ("user_name", &f.user),
            ("team", &f.team),
            ("model", &f.model),
        ] {
            if let Some(v) = v {
                values.push(v.as_str());
                sql.push_str(&format!(" AND {c} = ${}", values.len() + 3));
            }
        }
        let n = values.len() + 3;
        if f.status.is_some() {
            sql.push_str(&format!(" AND status = ${}", n + 1));
        }
        let lim = n + 1 + usize::from(f.status.is_some());
        sql.push_str(&format!(" ORDER BY seq LIMIT ${lim}"));
        // Only column names and parameter numbers are spliced in, from the fixed list above.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after_seq)
            .bind(f.since.unwrap_or(i64::MIN))
            .bind(f.until.unwrap_or(i64::MAX));
        for v in &values {
            query = query.bind(v.to_string());
        }
        if let Some(st) = f.status {
            query = query.bind(i64::from(st));
        }
        let rows = query
            .bind(limit.clamp(0, 10_000))
            .fetch_all(&self.pool)
            .await
            .map_err(q("query audit"))?;
        rows.iter().map(chained).collect()
    }

    /// Walk the whole chain: every record's hash must be its content's, every link must point
    /// at the previous record, and sequence numbers must not skip (a deleted record).
    pub async fn verify_audit(&self) -> Result<Verdict> {
        let mut tx = self.pool.begin().await.map_err(q("begin verify"))?;
        let (mut seq, mut prev) = self.checkpoint_in(&mut tx).await?;
        drop(tx);
        let mut n = 0u64;
        loop {
            let page = self.audit_page(seq, 1000, None, None).await?;
            if page.is_empty() {
                return Ok(Verdict::Ok { records: n });
            }
            for c in page {
                let broken = |reason: String| Verdict::Broken {
                    seq: c.seq,
                    request_id: Some(c.record.request_id.clone()),
                    reason,
                };
                if c.seq != seq + 1 {
                    return Ok(Verdict::Broken {
                        seq: seq + 1,
                        request_id: None,
                        reason: format!(
                            "record {} is missing (the next one is {}): deleted",
                            seq + 1,
                            c.seq
                        ),
                    });
                }
                if c.prev_hash != prev {
                    return Ok(broken("its link does not match the previous record".into()));
                }
                if chain_hash(c.seq, &c.prev_hash, &c.record) != c.hash {
                    return Ok(broken("its content does not match its hash: edited".into()));
                }
                seq = c.seq;
                prev = c.hash;
                n += 1;
            }
        }
    }

    /// Delete records older than `days` days, keeping the chain verifiable: the last deleted
    /// record's hash becomes the checkpoint the chain starts from.
    pub async fn apply_retention(&self, days: u32) -> Result<u64> {
        let cutoff = now() - i64::from(days) * 86_400;
        let _turn = self.writer.lock().await;
        let mut tx = self.begin_chain_write().await?;
        let last = sqlx::query(
            "SELECT seq, hash FROM audit_log WHERE time < $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(cutoff)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q("retention cut"))?;
        let Some(last) = last else { return Ok(0) };
        let seq: i64 = last.try_get("seq").map_err(q("cut seq"))?;
        let hash: String = last.try_get("hash").map_err(q("cut hash"))?;
        // Only a prefix of the chain may go: records are deleted up to the cut, by seq.
        let n = sqlx::query("DELETE FROM audit_log WHERE seq <= $1")
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(q("retention delete"))?
            .rows_affected();
        sqlx::query(
            "INSERT INTO audit_checkpoint (id, seq, hash) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        )
        .bind(seq)
        .bind(&hash)
        .execute(&mut *tx)
        .await
        .map_err(q("retention checkpoint"))?;
        tx.commit().await.map_err(q("commit retention"))?;
        Ok(n)
    }

    /// Raw SQL, for tests that tamper with the log.
    #[doc(hidden)]
    pub async fn execute_raw(&self, sql: &str) -> Result<u64> {
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&self.pool)
            .await
            .map_err(q("raw"))?
            .rows_affected())
    }
}

/// The chain hash: SHA-256 over the previous hash and a canonical JSON of the record (fixed
/// field order from the struct), with its sequence number.
pub fn chain_hash(seq: i64, prev: &str, rec: &AuditRecord) -> String {
    let body = serde_json::to_string(rec).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(body.as_bytes());
    hex(&h.finalize())
}

fn chained(r: &AnyRow) -> Result<ChainedRecord> {
    let s = |c: &str| r.try_get::<Option<String>, _>(c).ok().flatten();
    let n = |c: &str| r.try_get::<i64, _>(c).unwrap_or(0);
    Ok(ChainedRecord {
        seq: r.try_get("seq").map_err(q("audit seq"))?,
        record: AuditRecord {
            time: n("time"),
            request_id: s("request_id").unwrap_or_default(),
            key_id: s("key_id"),
            user: s("user_name"),
            team: s("team"),
            role: s("role"),
            client_addr: s("client_addr"),
            route: s("route").unwrap_or_default(),
            model: s("model"),
            status: n("status") as u16,
            latency_ms: n("latency_ms") as u64,
            prompt_tokens: n("prompt_tokens") as u64,
            completion_tokens: n("completion_tokens") as u64,
            guardrails: s("guardrails"),
            request_body: s("request_body"),
            response_body: s("response_body"),
        },
        prev_hash: s("prev_hash").unwrap_or_default(),
        hash: s("hash").unwrap_or_default(),
    })
}

/// The owner of a key row (joined with its team's limits as `t_*`); `None` when the key is
/// revoked or expired.
fn owner_of_key_row(r: &AnyRow) -> Result<Option<KeyOwner>> {
    let revoked: Option<i64> = r.try_get("revoked").ok().flatten();
    let expires: Option<i64> = r.try_get("expires").ok().flatten();
    if revoked.is_some() || expires.is_some_and(|e| e <= now()) {
        return Ok(None);
    }
    let g = |c: &str| {
        r.try_get::<Option<i64>, _>(c)
            .ok()
            .flatten()
            .map(|v| v as u64)
    };
    Ok(Some(KeyOwner {
        key_id: r.try_get("id").map_err(q("api_keys.id"))?,
        key_name: r.try_get("name").unwrap_or_default(),
        user: r.try_get("user_name").ok().flatten(),
        team: r.try_get("team").ok().flatten(),
        role: Role::parse(&r.try_get::<String, _>("role").unwrap_or_default())?,
        models: allowed_models(
            models_of(r.try_get("models").ok().flatten()),
            models_of(r.try_get("t_models").ok().flatten()),
        ),
        key_limits: limits_of(r),
        team_limits: Limits {
            rpm: g("t_rpm"),
            tpm: g("t_tpm"),
            max_concurrent: g("t_max_concurrent"),
            monthly_tokens: g("t_monthly_tokens"),
        },
    }))
}

fn key_info(r: &AnyRow) -> Result<KeyInfo> {
    Ok(KeyInfo {
        id: r.try_get("id").map_err(q("api_keys.id"))?,
        name: r.try_get("name").unwrap_or_default(),
        prefix: r.try_get("prefix").unwrap_or_default(),
        user: r.try_get("user_name").ok().flatten(),
        team: r.try_get("team").ok().flatten(),
        role: Role::parse(&r.try_get::<String, _>("role").unwrap_or_default())?,
        models: models_of(r.try_get("models").ok().flatten()),
        limits: limits_of(r),
        expires: r.try_get("expires").ok().flatten(),
        revoked: r.try_get("revoked").ok().flatten(),
        created: r.try_get("created").unwrap_or_default(),
    })
}

fn team_of(r: &AnyRow) -> Result<Team> {
    Ok(Team {
        name: r.try_get("name").map_err(q("teams.name"))?,
        limits: limits_of(r),
        models: models_of(r.try_get("models").ok().flatten()),
        created: r.try_get("created").unwrap_or_default(),
    })
}

/// What a team must be to be stored (on create and on update alike).
fn valid_team(t: &Team) -> Result<()> {
    valid_name("team", &t.name)?;
    valid_models(&t.models)
}

/// Model ids in an allow-list: stored comma-separated, so none may hold a comma.
fn valid_models(models: &Option<Vec<String>>) -> Result<()> {
    models
        .iter()
        .flatten()
        .try_for_each(|m| valid_name("model", m))
}

/// The models a key may use: those on its own list and on its team's, when both have one.
fn allowed_models(key: Option<Vec<String>>, team: Option<Vec<String>>) -> Option<Vec<String>> {
    match (key, team) {
        (Some(k), Some(t)) => Some(k.into_iter().filter(|m| t.contains(m)).collect()),
        (k, t) => k.or(t),
    }
}

fn valid_name(kind: &str, n: &str) -> Result<()> {
    if n.trim().is_empty() || n.len() > 128 || n.contains(',') {
        return Err(StoreError::Invalid(format!(
            "{kind} name must be 1-128 characters without commas, got {n:?}"
        )));
    }
    Ok(())
}

fn conflict(e: sqlx::Error, kind: &'static str, name: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Invalid(format!("a {kind} named '{name}' already exists"))
        }
        _ => StoreError::Query {
            what: "insert",
            err: e,
        },
    }
}

fn found(n: u64, kind: &'static str, name: &str) -> Result<()> {
    if n == 0 {
        Err(StoreError::NotFound {
            kind,
            name: name.into(),
        })
    } else {
        Ok(())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A URL with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

enum SinkMsg {
    Record(Box<AuditRecord>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Batches audit records from request handlers into the database on a background task, so
/// recording never waits on the database: a record is queued in memory, and written with
/// the others that arrived within ~100 ms (up to 256 per transaction).
#[derive(Clone)]
pub struct AuditSink {
    tx: tokio::sync::mpsc::UnboundedSender<SinkMsg>,
}

impl AuditSink {
    /// Start the writer task (needs a tokio runtime).
    pub fn spawn(store: Store) -> AuditSink {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<SinkMsg>();
        tokio::spawn(async move {
            let mut batch: Vec<AuditRecord> = Vec::new();
            let mut waiters = Vec::new();
            while let Some(first) = rx.recv().await {
                fn take(
                    m: SinkMsg,
                    batch: &mut Vec<AuditRecord>,
                    waiters: &mut Vec<tokio::sync::oneshot::Sender<()>>,
                ) {
                    match m {
                        SinkMsg::Record(r) => batch.push(*r),
                        SinkMsg::Flush(w) => waiters.push(w),
                    }
                }
                take(first, &mut batch, &mut waiters);
                // Gather what arrives shortly after, unless a flush is waiting.
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(100);
                while batch.len() < 256 && waiters.is_empty() {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(m)) => take(m, &mut batch, &mut waiters),
                        _ => break,
                    }
                }
                while let Ok(m) = rx.try_recv() {
                    take(m, &mut batch, &mut waiters);
                }
                // A failed write keeps the batch for the next round (nothing is dropped while
                // the process lives); the error is logged once per attempt.
                if let Err(e) = store.append_audit(&batch).await {
                    tracing::error!(records = batch.len(), "audit write failed, will retry: {e}");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                } else {
                    batch.clear();
                }
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
            }
            if !batch.is_empty() {
                let _ = store.append_audit(&batch).await;
            }
        });
        AuditSink { tx }
    }

    /// Queue a record (never blocks).
    pub fn send(&self, rec: AuditRecord) {
        if self.tx.send(SinkMsg::Record(Box::new(rec))).is_err() {
            tracing::error!("audit writer is gone: a record was not written");
        }
    }

    /// Wait until everything queued before this call is written (shutdown, tests).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(SinkMsg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

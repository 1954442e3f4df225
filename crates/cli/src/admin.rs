//! `hearth keys|users|teams|audit`: manage the gateway's database from the command line (the
//! same database `hearth serve` uses: `--data-dir` / `--database`).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args as ClapArgs, Subcommand};
use hearth_gateway::limits::Limits;
use hearth_gateway::store::{
    days_from_civil, default_database_url, redact_url, NewKey, Role, Store, Team, User, Verdict,
};

/// Where the database is (shared by every subcommand).
#[derive(ClapArgs, Debug, Clone)]
pub struct Db {
    /// Directory for the database and other state. [env: HEARTH_DATA_DIR]
    /// [default: the platform data directory, e.g. ~/.local/share/hearth]
    #[arg(long, value_name = "DIR", env = "HEARTH_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://... [env: HEARTH_DATABASE] [default: sqlite://DATA_DIR/hearth.db]
    #[arg(long, value_name = "URL", env = "HEARTH_DATABASE", global = true)]
    pub database: Option<String>,
}

impl Db {
    fn open(&self, rt: &tokio::runtime::Runtime) -> anyhow::Result<Store> {
        let url = self
            .database
            .clone()
            .unwrap_or_else(|| default_database_url(self.data_dir.as_deref()));
        rt.block_on(Store::open(&url))
            .with_context(|| format!("opening {}", redact_url(&url)))
    }
}

/// Limit flags shared by keys and teams.
#[derive(ClapArgs, Debug, Clone, Default)]
pub struct LimitArgs {
    /// Requests per minute.
    #[arg(long, value_name = "N")]
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion) per minute.
    #[arg(long, value_name = "N")]
    pub tpm: Option<u64>,
    /// Requests running at once.
    #[arg(long, value_name = "N")]
    pub max_concurrent: Option<u64>,
    /// Tokens per calendar month (UTC).
    #[arg(long, value_name = "N")]
    pub monthly_tokens: Option<u64>,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            rpm: self.rpm,
            tpm: self.tpm,
            max_concurrent: self.max_concurrent,
            monthly_tokens: self.monthly_tokens,
        }
    }
}

#[derive(ClapArgs, Debug)]
pub struct KeysArgs {
    #[command(flatten)]
    db: Db,
    #[command(subcommand)]
    cmd: KeysCmd,
}

#[derive(Subcommand, Debug)]
enum KeysCmd {
    /// Create a key; its secret is printed once and stored only as a hash.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        team: Option<String>,
        /// admin, user or auditor (default: the user's role, else user).
        #[arg(long, value_parser = parse_role)]
        role: Option<Role>,
        /// Models the key may use, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        #[command(flatten)]
        limits: LimitArgs,
        /// Last valid day, YYYY-MM-DD (UTC; the key stops working at the end of it).
        #[arg(long, value_name = "DATE")]
        expires: Option<String>,
        /// Print one JSON object (with `id` and `key`).
        #[arg(long)]
        json: bool,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: it fails from the next request on.
    Revoke { id: String },
}

#[derive(ClapArgs, Debug)]
pub struct UsersArgs {
    #[command(flatten)]
    db: Db,
    #[command(subcommand)]
    cmd: UsersCmd,
}

#[derive(Subcommand, Debug)]
enum UsersCmd {
    Create {
        name: String,
        #[arg(long, value_parser = parse_role, default_value = "user")]
        role: Role,
        #[arg(long)]
        team: Option<String>,
        /// Read the user's web UI password from standard input (first line; at least 8
        /// characters). Stored as an argon2id hash.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set (or replace) a user's web UI password, read from standard input; ends the user's
    /// open sessions.
    SetPassword {
        name: String,
        /// Read the password from standard input (first line). Required: a password is never
        /// taken as an argument, which would show in `ps` and shell history.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Delete {
        name: String,
    },
}

#[derive(ClapArgs, Debug)]
pub struct TeamsArgs {
    #[command(flatten)]
    db: Db,
    #[command(subcommand)]
    cmd: TeamsCmd,
}

#[derive(Subcommand, Debug)]
enum TeamsCmd {
    Create {
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Delete {
        name: String,
    },
}

#[derive(ClapArgs, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    db: Db,
    #[command(subcommand)]
    cmd: AuditCmd,
}

#[derive(Subcommand, Debug)]
enum AuditCmd {
    /// Check the hash chain; exits 1 naming the first edited or deleted record.
    Verify,
    /// Write records as JSON lines or CSV to stdout.
    Export {
        /// First day, YYYY-MM-DD (UTC).
        #[arg(long)]
        since: Option<String>,
        /// Last day, YYYY-MM-DD (UTC), inclusive.
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
        format: String,
    },
    /// Delete records older than DAYS days (the chain stays verifiable).
    Retention {
        #[arg(long)]
        days: u32,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).map_err(|e| e.to_string())
}

fn parse_day(s: &str, flag: &str) -> anyhow::Result<i64> {
    let p: Vec<&str> = s.split('-').collect();
    let ok = p.len() == 3;
    let (y, m, d) = match (ok, p.as_slice()) {
        (true, [y, m, d]) => (y.parse::<i64>(), m.parse::<u32>(), d.parse::<u32>()),
        _ => anyhow::bail!("{flag} must be a date YYYY-MM-DD, got {s:?}"),
    };
    match (y, m, d) {
        (Ok(y), Ok(m @ 1..=12), Ok(d @ 1..=31)) => Ok(days_from_civil(y, m, d)),
        _ => anyhow::bail!("{flag} must be a date YYYY-MM-DD, got {s:?}"),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn show_limits(l: &Limits) -> String {
    let mut v = Vec::new();
    for (k, x) in [
        ("rpm", l.rpm),
        ("tpm", l.tpm),
        ("concurrent", l.max_concurrent),
        ("monthly", l.monthly_tokens),
    ] {
        if let Some(x) = x {
            v.push(format!("{k}={x}"));
        }
    }
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

pub fn keys(a: KeysArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let s = a.db.open(&rt)?;
    match a.cmd {
        KeysCmd::Create {
            name,
            user,
            team,
            role,
            models,
            limits,
            expires,
            json,
        } => {
            let expires = expires
                .map(|d| parse_day(&d, "--expires").map(|day| (day + 1) * 86_400))
                .transpose()?;
            let (info, secret) = rt.block_on(s.create_key(&NewKey {
                name,
                user,
                team,
                role,
                models,
                limits: limits.limits(),
                expires,
            }))?;
            if json {
                let mut v = serde_json::to_value(&info)?;
                v["key"] = serde_json::Value::String(secret);
                println!("{v}");
            } else {
                println!("id:   {}", info.id);
                println!("key:  {secret}");
                eprintln!("Store the key now: it is not shown again.");
            }
        }
        KeysCmd::List { json } => {
            let keys = rt.block_on(s.list_keys())?;
            if json {
                println!("{}", serde_json::to_string(&keys)?);
            } else {
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "ID            PREFIX           NAME  ROLE  USER  TEAM  LIMITS  STATE"
                )?;
                for k in keys {
                    let state = if k.revoked.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    writeln!(
                        out,
                        "{}  {}  {}  {}  {}  {}  {}  {}",
                        k.id,
                        k.prefix,
                        k.name,
                        k.role.as_str(),
                        k.user.as_deref().unwrap_or("-"),
                        k.team.as_deref().unwrap_or("-"),
                        show_limits(&k.limits),
                        state
                    )?;
                }
            }
        }
        KeysCmd::Revoke { id } => {
            rt.block_on(s.revoke_key(&id))?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

pub fn users(a: UsersArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let s = a.db.open(&rt)?;
    match a.cmd {
        UsersCmd::Create {
            name,
            role,
            team,
            password_stdin,
        } => {
            // Read and hash first: a bad password must not leave a user without one.
            let hash = if password_stdin {
                Some(hash_stdin_password()?)
            } else {
                None
            };
            rt.block_on(s.create_user(&User {
                name: name.clone(),
                role,
                team,
                created: 0,
            }))?;
            if let Some(h) = hash {
                rt.block_on(s.set_password_hash(&name, &h))?;
            }
            println!("created user {name}");
        }
        UsersCmd::SetPassword { name, .. } => {
            let h = hash_stdin_password()?;
            rt.block_on(s.set_password_hash(&name, &h))?;
            let ended = rt.block_on(s.delete_user_sessions(&name))?;
            println!("password set for {name} ({ended} sessions ended)");
        }
        UsersCmd::List { json } => {
            let users = rt.block_on(s.list_users())?;
            if json {
                println!("{}", serde_json::to_string(&users)?);
            } else {
                for u in users {
                    println!(
                        "{}  {}  {}",
                        u.name,
                        u.role.as_str(),
                        u.team.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        UsersCmd::Delete { name } => {
            rt.block_on(s.delete_user(&name))?;
            println!("deleted user {name}");
        }
    }
    Ok(())
}

/// The first line of standard input (without its line ending), hashed with argon2id.
fn hash_stdin_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let pw = line.trim_end_matches(['\n', '\r']);
    if pw.is_empty() {
        anyhow::bail!("no password on standard input");
    }
    Ok(hearth_gateway::password::hash(pw)?)
}

pub fn teams(a: TeamsArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let s = a.db.open(&rt)?;
    match a.cmd {
        TeamsCmd::Create { name, limits } => {
            rt.block_on(s.create_team(&Team {
                name: name.clone(),
                limits: limits.limits(),
                models: None,
                created: 0,
            }))?;
            println!("created team {name}");
        }
        TeamsCmd::List { json } => {
            let teams = rt.block_on(s.list_teams())?;
            if json {
                println!("{}", serde_json::to_string(&teams)?);
            } else {
                for t in teams {
                    println!("{}  {}", t.name, show_limits(&t.limits));
                }
            }
        }
        TeamsCmd::Delete { name } => {
            rt.block_on(s.delete_team(&name))?;
            println!("deleted team {name}");
        }
    }
    Ok(())
}

pub fn audit(a: AuditArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let s = a.db.open(&rt)?;
    match a.cmd {
        AuditCmd::Verify => match rt.block_on(s.verify_audit())? {
            Verdict::Ok { records } => println!("audit log OK: {records} records, chain intact"),
            Verdict::Broken {
                seq,
                request_id,
                reason,
            } => anyhow::bail!(
                "audit log BROKEN at record {seq}{}: {reason}",
                request_id
                    .map(|r| format!(" (request {r})"))
                    .unwrap_or_default()
            ),
        },
        AuditCmd::Export {
            since,
            until,
            format,
        } => {
            let since = since
                .map(|d| parse_day(&d, "--since").map(|x| x * 86_400))
                .transpose()?;
            let until = until
                .map(|d| parse_day(&d, "--until").map(|x| (x + 1) * 86_400))
                .transpose()?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            if format == "csv" {
                writeln!(out, "seq,time,request_id,key_id,user,team,role,client_addr,route,model,status,latency_ms,prompt_tokens,completion_tokens,guardrails,request_body,response_body,prev_hash,hash")?;
            }
            let mut after = 0;
            loop {
                let page = rt.block_on(s.audit_page(after, 1000, since, until))?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for c in &page {
                    if format == "csv" {
                        let r = &c.record;
                        let f = |s: &Option<String>| csv(s.as_deref().unwrap_or(""));
                        writeln!(
                            out,
                            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                            c.seq,
                            r.time,
                            csv(&r.request_id),
                            f(&r.key_id),
                            f(&r.user),
                            f(&r.team),
                            f(&r.role),
                            f(&r.client_addr),
                            csv(&r.route),
                            f(&r.model),
                            r.status,
                            r.latency_ms,
                            r.prompt_tokens,
                            r.completion_tokens,
                            f(&r.guardrails),
                            f(&r.request_body),
                            f(&r.response_body),
                            c.prev_hash,
                            c.hash
                        )?;
                    } else {
                        writeln!(out, "{}", serde_json::to_string(c)?)?;
                    }
                }
            }
        }
        AuditCmd::Retention { days } => {
            let n = rt.block_on(s.apply_retention(days))?;
            println!("deleted {n} records older than {days} days");
        }
    }
    Ok(())
}

/// RFC 4180 quoting.
fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

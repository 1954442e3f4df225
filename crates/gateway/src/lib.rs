//! Hearth's gateway (issue 7): who may call the server, how much, and the record of it.
//!
//! - [`limits`]: exact in-process rate limits (requests and tokens per minute, concurrency)
//!   and monthly token budgets, per key, per team and global.
//! - [`limits_redis`]: the same limits shared by several replicas through Redis.
//! - [`store`]: teams, users, API keys (hashed), the audit log as a hash chain and daily usage,
//!   in SQLite or PostgreSQL; the web UI's sessions, conversations and comparison runs.
//! - [`password`]: argon2id password hashes of the web UI's users.

pub mod limits;
pub mod limits_redis;
pub mod password;
pub mod store;

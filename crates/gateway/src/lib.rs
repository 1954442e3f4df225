//! Hearth's gateway (issue 7): who may call the server, how much, and the record of it.
//!
//! - [`limits`]: exact in-process rate limits (requests and tokens per minute, concurrency)
//!   and monthly token budgets, per key, per team and global.

pub mod limits;

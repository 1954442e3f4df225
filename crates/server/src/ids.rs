//! Response ids and timestamps in OpenAI's formats.

use std::time::{SystemTime, UNIX_EPOCH};

/// `chatcmpl-<32 hex>`, `cmpl-<32 hex>`: random (UUIDv4) so ids never repeat
/// across restarts.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// `call_<24 alphanumerics>` like OpenAI's tool-call ids.
pub fn tool_call_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("call_{}", &hex[..24])
}

/// Seconds since the Unix epoch (OpenAI's `created`).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

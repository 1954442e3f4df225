//! Passwords of the web UI's users: argon2id hashes in PHC string format
//! (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`, the `argon2` crate's defaults, OWASP's minimum
//! recommendation), in `users.password_hash`. Verification compares in constant time (the
//! crate's) and [`verify_or_dummy`] spends the same work for unknown users.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Shortest password accepted.
pub const MIN_LEN: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("a password needs at least {MIN_LEN} characters")]
    TooShort,
    #[error("a password may be at most 1024 bytes")]
    TooLong,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Hash a new password (a random 16-byte salt from the OS generator).
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    if password.len() > 1024 {
        return Err(PasswordError::TooLong);
    }
    let salt_bytes = uuid::Uuid::new_v4().into_bytes();
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches a stored PHC hash (a malformed hash never matches).
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// [`verify`] against the stored hash, or against a fixed dummy hash when there is none (no
/// such user, or no password set), so the answer takes as long either way; `false` then.
pub fn verify_or_dummy(password: &str, stored: Option<&str>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    match stored {
        Some(s) => verify(password, s),
        None => {
            let d = DUMMY.get_or_init(|| hash("not a real password").unwrap_or_default());
            let _ = verify(password, d);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify("correct horse", &h));
        assert!(!verify("correct horsE", &h));
        assert!(!verify("x", "not a hash"));
        assert!(!verify_or_dummy("correct horse", None));
        assert_ne!(hash("correct horse").unwrap(), h, "salted");
        assert!(matches!(hash("short"), Err(PasswordError::TooShort)));
    }
}

//! API keys (K1-K5): a recognisable secret shown once, stored as a hash.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Secret scanners look for this prefix (K3).
pub const SECRET_PREFIX: &str = "pak_";
/// `pak_` followed by 64 hex digits: 256 random bits.
pub const SECRET_LEN: usize = SECRET_PREFIX.len() + 64;

/// A key's metadata; the secret is never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub portal_id: Uuid,
    pub realm_id: Uuid,
    pub secret_prefix: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// Whether `secret` has the shape of a key we issue; anything else cannot
/// be one and needs no database look-up.
pub fn looks_like_secret(secret: &str) -> bool {
    secret.len() == SECRET_LEN
        && secret.starts_with(SECRET_PREFIX)
        && secret[SECRET_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The part of a secret that may be shown again: enough to recognise it.
pub fn visible_prefix(secret: &str) -> String {
    secret.chars().take(SECRET_PREFIX.len() + 6).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k3_secret_shape_is_recognisable() {
        let secret = format!("pak_{}", "ab12".repeat(16));
        assert!(looks_like_secret(&secret));
        assert_eq!(visible_prefix(&secret), "pak_ab12ab");
        assert!(!looks_like_secret("pak_short"));
        assert!(!looks_like_secret(&secret.replace("pak_", "sk__")));
        assert!(!looks_like_secret(&secret.to_uppercase()));
    }
}

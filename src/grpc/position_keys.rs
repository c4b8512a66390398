//! The server key that seals page tokens and stream cursors (SPEC §5).
//!
//! A position handed to a client comes back later, possibly to another
//! replica, so every replica must seal and open it the same way: the key is
//! derived from configured key material (`PORTAL_ACCESS_PAGE_TOKEN_SECRET`,
//! by default the HS256 token secret), never chosen per process. The seal
//! is an HMAC-SHA256 under that key, so nobody without it can make or
//! alter a position. For rotation a previous secret is still accepted:
//! positions sealed before the rotation keep working until it is dropped.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the seal carried by each token: 128 bits.
pub const SEAL_BYTES: usize = 16;

/// The derived keys: the one that seals, and the previous one still opened.
#[derive(Clone)]
pub struct PositionKeys {
    current: [u8; 32],
    previous: Option<[u8; 32]>,
}

impl std::fmt::Debug for PositionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PositionKeys")
            .field("previous", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

/// One key from secret material, separated from every other use of it.
fn derive(material: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(material).expect("HMAC takes keys of any length");
    mac.update(b"portal-access/position-seal/v1");
    mac.finalize().into_bytes().into()
}

impl PositionKeys {
    pub fn new(material: &[u8], previous: Option<&[u8]>) -> Self {
        Self {
            current: derive(material),
            previous: previous.map(derive),
        }
    }

    fn mac(key: &[u8; 32], domain: &str, payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac
    }

    /// The seal of `payload` for one kind of token (`domain`).
    pub fn seal(&self, domain: &str, payload: &[u8]) -> [u8; SEAL_BYTES] {
        let full = Self::mac(&self.current, domain, payload)
            .finalize()
            .into_bytes();
        let mut seal = [0; SEAL_BYTES];
        seal.copy_from_slice(&full[..SEAL_BYTES]);
        seal
    }

    /// Whether `seal` was made by [`Self::seal`] under the current or the
    /// previous key (compared in constant time).
    pub fn opens(&self, domain: &str, payload: &[u8], seal: &[u8]) -> bool {
        seal.len() == SEAL_BYTES
            && std::iter::once(&self.current)
                .chain(self.previous.as_ref())
                .any(|key| {
                    Self::mac(key, domain, payload)
                        .verify_truncated_left(seal)
                        .is_ok()
                })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_opens_under_the_same_material_only() {
        let keys = PositionKeys::new(b"secret one", None);
        let seal = keys.seal("page", b"payload");
        assert!(keys.opens("page", b"payload", &seal));
        assert!(
            !keys.opens("cursor", b"payload", &seal),
            "another kind of token"
        );
        assert!(!keys.opens("page", b"payloae", &seal), "another payload");
        let other = PositionKeys::new(b"secret two", None);
        assert!(
            !other.opens("page", b"payload", &seal),
            "another replica's key"
        );
    }

    #[test]
    fn the_previous_key_still_opens_after_a_rotation() {
        let before = PositionKeys::new(b"old", None);
        let seal = before.seal("cursor", b"v2:42");
        let after = PositionKeys::new(b"new", Some(b"old"));
        assert!(after.opens("cursor", b"v2:42", &seal));
        assert!(!PositionKeys::new(b"new", None).opens("cursor", b"v2:42", &seal));
    }
}

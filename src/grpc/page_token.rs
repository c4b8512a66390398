//! Opaque page tokens. A token names the list it belongs to and the
//! resource it pages through, and is sealed with the server's key
//! ([`PositionKeys`]), so a token from another list, another deployment or
//! a hand-made one is refused with INVALID_ARGUMENT instead of silently
//! paging somewhere else (SPEC §5).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

use super::position_keys::{PositionKeys, SEAL_BYTES};
use crate::error::{Error, Result};

const FIELD: &str = "page_token";
const DOMAIN: &str = "page";

/// Encodes `position` for list `list` over `scope`.
pub fn encode(keys: &PositionKeys, list: &str, scope: Uuid, position: &str) -> String {
    let payload = format!("v2|{list}|{scope}|{position}");
    let seal = keys.seal(DOMAIN, payload.as_bytes());
    URL_SAFE_NO_PAD.encode(format!("{payload}|{}", hex::encode(seal)))
}

/// The position of a token issued by [`encode`] for the same list and
/// scope; `None` for an empty token (the first page).
pub fn decode(keys: &PositionKeys, token: &str, list: &str, scope: Uuid) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::invalid(FIELD, "is not a page token of this list");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (payload, seal) = text.rsplit_once('|').ok_or_else(invalid)?;
    let seal = hex::decode(seal).map_err(|_| invalid())?;
    if seal.len() != SEAL_BYTES || !keys.opens(DOMAIN, payload.as_bytes(), &seal) {
        return Err(invalid());
    }
    let mut parts = payload.splitn(4, '|');
    let (Some("v2"), Some(token_list), Some(token_scope), Some(position)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    if token_list != list || token_scope != scope.to_string() {
        return Err(invalid());
    }
    Ok(Some(position.to_owned()))
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    fn keys() -> PositionKeys {
        PositionKeys::new(b"test material", None)
    }

    #[test]
    fn round_trips_for_the_same_list_and_scope() {
        let scope = Uuid::new_v4();
        let token = encode(&keys(), "portals", scope, "1:abc");
        assert_eq!(
            decode(&keys(), &token, "portals", scope)
                .unwrap()
                .as_deref(),
            Some("1:abc")
        );
    }

    #[test]
    fn refuses_tokens_of_another_list_scope_or_forged() {
        let keys = keys();
        let scope = Uuid::new_v4();
        let token = encode(&keys, "portals", scope, "1:abc");
        assert!(decode(&keys, &token, "users", scope).is_err());
        assert!(decode(&keys, &token, "portals", Uuid::new_v4()).is_err());
        assert!(decode(&keys, "not-a-token", "portals", scope).is_err());
        // The old unkeyed checksum, which anyone could recompute.
        let payload = format!("portals|{scope}|0:x");
        let sum = hex::encode(&Sha256::digest(format!("portal-access/page/{payload}"))[..6]);
        let forged = URL_SAFE_NO_PAD.encode(format!("{payload}|{sum}"));
        assert!(decode(&keys, &forged, "portals", scope).is_err());
        let foreign = encode(
            &PositionKeys::new(b"other", None),
            "portals",
            scope,
            "1:abc",
        );
        assert!(decode(&keys, &foreign, "portals", scope).is_err());
    }
}

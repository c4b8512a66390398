//! Opaque page tokens. A token names the list it belongs to and the
//! resource it pages through, and carries a checksum, so a token from
//! another list or a hand-made one is refused with INVALID_ARGUMENT instead
//! of silently paging somewhere else.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{Error, Result};

const FIELD: &str = "page_token";

fn checksum(payload: &str) -> String {
    hex::encode(&Sha256::digest(format!("portal-access/page/{payload}"))[..6])
}

/// Encodes `position` for list `list` over `scope`.
pub fn encode(list: &str, scope: Uuid, position: &str) -> String {
    let payload = format!("{list}|{scope}|{position}");
    URL_SAFE_NO_PAD.encode(format!("{payload}|{}", checksum(&payload)))
}

/// The position of a token issued by [`encode`] for the same list and
/// scope; `None` for an empty token (the first page).
pub fn decode(token: &str, list: &str, scope: Uuid) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::invalid(FIELD, "is not a page token of this list");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (payload, sum) = text.rsplit_once('|').ok_or_else(invalid)?;
    if checksum(payload) != sum {
        return Err(invalid());
    }
    let mut parts = payload.splitn(3, '|');
    let (Some(token_list), Some(token_scope), Some(position)) =
        (parts.next(), parts.next(), parts.next())
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
    use super::*;

    #[test]
    fn round_trips_for_the_same_list_and_scope() {
        let scope = Uuid::new_v4();
        let token = encode("portals", scope, "1:abc");
        assert_eq!(
            decode(&token, "portals", scope).unwrap().as_deref(),
            Some("1:abc")
        );
    }

    #[test]
    fn refuses_tokens_of_another_list_scope_or_forged() {
        let scope = Uuid::new_v4();
        let token = encode("portals", scope, "1:abc");
        assert!(decode(&token, "users", scope).is_err());
        assert!(decode(&token, "portals", Uuid::new_v4()).is_err());
        assert!(decode("not-a-token", "portals", scope).is_err());
        let forged = URL_SAFE_NO_PAD.encode(format!("portals|{scope}|0:x|000000000000"));
        assert!(decode(&forged, "portals", scope).is_err());
    }
}

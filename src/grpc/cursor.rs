//! Opaque audit cursors (L2): a position in the log that a client hands
//! back to resume, possibly to another replica. Versioned and sealed with
//! the server's key ([`PositionKeys`]), so a hand-made or altered cursor is
//! refused instead of resuming somewhere else (SPEC §5).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use super::position_keys::{PositionKeys, SEAL_BYTES};
use crate::domain::InvalidValue;

const DOMAIN: &str = "cursor";

/// The cursor just after the event with this sequence.
pub fn encode(keys: &PositionKeys, sequence: i64) -> String {
    let payload = format!("v2:{sequence}");
    let seal = keys.seal(DOMAIN, payload.as_bytes());
    URL_SAFE_NO_PAD.encode(format!("{payload}:{}", hex::encode(seal)))
}

/// The sequence a cursor names.
pub fn decode(keys: &PositionKeys, cursor: &str) -> Result<i64, InvalidValue> {
    let invalid = || InvalidValue::new("is not a cursor this service issued");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (payload, seal) = text.rsplit_once(':').ok_or_else(invalid)?;
    let seal = hex::decode(seal).map_err(|_| invalid())?;
    if seal.len() != SEAL_BYTES || !keys.opens(DOMAIN, payload.as_bytes(), &seal) {
        return Err(invalid());
    }
    payload
        .strip_prefix("v2:")
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|s| *s >= 0)
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    fn keys() -> PositionKeys {
        PositionKeys::new(b"test material", None)
    }

    #[test]
    fn round_trips() {
        assert_eq!(decode(&keys(), &encode(&keys(), 42)).unwrap(), 42);
        assert_eq!(decode(&keys(), &encode(&keys(), 0)).unwrap(), 0);
    }

    #[test]
    fn refuses_forged_cursors() {
        let keys = keys();
        assert!(decode(&keys, "").is_err());
        assert!(decode(&keys, "djE6NDI").is_err());
        // The old unkeyed form, recomputed by anyone: refused.
        let payload = "v1:43";
        let sum = hex::encode(&Sha256::digest(format!("portal-access/cursor/{payload}"))[..6]);
        assert!(decode(&keys, &URL_SAFE_NO_PAD.encode(format!("{payload}:{sum}"))).is_err());
        // A genuine cursor with its number changed: refused.
        let genuine =
            String::from_utf8(URL_SAFE_NO_PAD.decode(encode(&keys, 42)).unwrap()).unwrap();
        let altered = genuine.replacen("v2:42", "v2:43", 1);
        assert!(decode(&keys, &URL_SAFE_NO_PAD.encode(altered)).is_err());
        // Another deployment's cursor: refused.
        let foreign = encode(&PositionKeys::new(b"other", None), 42);
        assert!(decode(&keys, &foreign).is_err());
    }
}

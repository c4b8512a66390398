//! The evidence bundle, JSON schema v1 (E5): one access request's events,
//! each with its leaf bytes and an inclusion proof to one signed
//! checkpoint. Documented in docs/evidence/bundle.md.
//!
//! Bytes travel as base64 strings and are decoded by the verifier, so a
//! damaged value is reported against the event that carries it. Unknown
//! fields are refused: what a reader sees in the file is all that was
//! verified.

use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::merkle::Hash;

/// The value of `format` this verifier reads.
pub const FORMAT_V1: &str = "portal-access-evidence/v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceBundle {
    /// Always [`FORMAT_V1`] for this layout.
    pub format: String,
    pub realm_id: Uuid,
    pub access_request_id: Uuid,
    /// The realm's signed checkpoint (C2SP tlog-checkpoint as a signed
    /// note) every proof leads to.
    pub checkpoint: String,
    /// The request's events in leaf order, the request itself first.
    pub events: Vec<BundleEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEvent {
    /// The event's position in the realm's tree.
    pub leaf_index: u64,
    /// base64 of the leaf bytes (docs/evidence/leaf-encoding.md).
    pub leaf_bytes: String,
    /// base64 hashes of the RFC 9162 inclusion proof, leaf end first.
    pub inclusion_proof: Vec<String>,
}

impl EvidenceBundle {
    /// A bundle as the server assembles it.
    pub fn new(
        realm_id: Uuid,
        access_request_id: Uuid,
        checkpoint: String,
        events: Vec<BundleEvent>,
    ) -> Self {
        Self {
            format: FORMAT_V1.to_owned(),
            realm_id,
            access_request_id,
            checkpoint,
            events,
        }
    }

    pub fn to_json(&self) -> String {
        // Plain strings, integers and UUIDs: serialization cannot fail.
        serde_json::to_string_pretty(self).expect("bundle serializes")
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

impl BundleEvent {
    pub fn new(leaf_index: u64, leaf_bytes: &[u8], inclusion_proof: &[Hash]) -> Self {
        Self {
            leaf_index,
            leaf_bytes: STANDARD.encode(leaf_bytes),
            inclusion_proof: inclusion_proof.iter().map(|h| STANDARD.encode(h)).collect(),
        }
    }
}

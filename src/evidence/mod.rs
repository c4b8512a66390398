//! Evidence bundles and their offline verifier (E5, E6).
//!
//! Separate from the server's write path and small enough to audit: it
//! depends only on the pure modules that define what is verified
//! (`domain::merkle`, `domain::signed_note`/`domain::checkpoint`,
//! `domain::leaf`), serde_json and base64. The server builds an
//! [`EvidenceBundle`]; `portal-access verify-evidence` calls
//! [`verify_evidence_file`] with the customer's verifier key(s).

mod bundle;
mod summary;
mod verify;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use bundle::{BundleEvent, EvidenceBundle, FORMAT_V1};
pub use summary::{SessionEnd, Summary};
pub use verify::{Failure, verify_bundle};

use crate::domain::signed_note::VerifierKey;

/// Reads a bundle file and verifies it against `verifier_keys` (signed-note
/// verifier key strings): the summary to print, or the first failure.
pub fn verify_evidence_file(path: &Path, verifier_keys: &[String]) -> Result<String, String> {
    let keys = verifier_keys
        .iter()
        .enumerate()
        .map(|(i, text)| {
            VerifierKey::parse(text.trim()).map_err(|e| format!("verifier key #{}: {e}", i + 1))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let bundle = EvidenceBundle::from_json(&text)
        .map_err(|e| format!("{}: not an evidence bundle: {e}", path.display()))?;
    verify_bundle(&bundle, &keys)
        .map(|summary| summary.text().to_owned())
        .map_err(|failure| format!("NOT VERIFIED: {failure}"))
}

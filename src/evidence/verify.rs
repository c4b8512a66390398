//! The offline verifier of an evidence bundle (E6). No server, no
//! database: the bundle, the customer's verifier key(s), and the three
//! pure modules it checks against (merkle, signed checkpoint, leaf
//! encoding).
//!
//! In order, stopping at the first failure:
//! 1. the format is v1;
//! 2. the checkpoint carries a valid signature of a given key, and its
//!    origin is the bundle's realm;
//! 3. each event, in bundle order: its leaf bytes hash to a leaf that the
//!    inclusion proof leads to the checkpoint's root; they decode; they
//!    name the same leaf index, the realm and the access request;
//! 4. leaf indexes strictly increase;
//! 5. the back-links (E5) run unbroken: the first event is the request
//!    with no back-link, and each next event links to the one before it.
//!
//! Then the events are summarised. A bundle whose last events are missing
//! still verifies (nothing in it is false), and the summary says the
//! session's end is not inside.

use base64::{Engine, engine::general_purpose::STANDARD};
use uuid::Uuid;

use super::bundle::{BundleEvent, EvidenceBundle, FORMAT_V1};
use super::summary::{Summary, summarise};
use crate::domain::checkpoint::Checkpoint;
use crate::domain::leaf::{LeafError, LeafEvent};
use crate::domain::merkle::{Hash, leaf_hash, verify_inclusion};
use crate::domain::signed_note::{VerifierKey, open_note};

/// The action of the event that opens an access request.
pub(super) const REQUESTED: &str = "support_access.requested";

/// The first thing wrong with a bundle. `position` counts events from 1
/// in bundle order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Format {
        found: String,
    },
    NoVerifierKey,
    Checkpoint {
        reason: String,
    },
    Origin {
        realm_id: Uuid,
        origin: String,
    },
    NoEvents,
    Encoding {
        position: usize,
        leaf_index: u64,
        part: String,
    },
    BeyondCheckpoint {
        position: usize,
        leaf_index: u64,
        size: u64,
    },
    Inclusion {
        position: usize,
        leaf_index: u64,
        size: u64,
    },
    LeafBytes {
        position: usize,
        leaf_index: u64,
        error: LeafError,
    },
    LeafIndex {
        position: usize,
        in_bundle: u64,
        in_leaf: u64,
    },
    Realm {
        position: usize,
        leaf_index: u64,
        found: Uuid,
    },
    Request {
        position: usize,
        leaf_index: u64,
        found: Option<Uuid>,
    },
    Order {
        position: usize,
        leaf_index: u64,
        previous: u64,
    },
    FirstIsNotTheRequest {
        leaf_index: u64,
        action: String,
        back_link: Option<u64>,
    },
    BackLink {
        position: usize,
        leaf_index: u64,
        expected: u64,
        found: Option<u64>,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Format { found } => {
                write!(f, "format {found:?} is not {FORMAT_V1:?}")
            }
            Failure::NoVerifierKey => f.write_str("no verifier key given"),
            Failure::Checkpoint { reason } => write!(f, "checkpoint: {reason}"),
            Failure::Origin { realm_id, origin } => write!(
                f,
                "checkpoint: origin {origin:?} is not the log of realm {realm_id}"
            ),
            Failure::NoEvents => f.write_str("the bundle has no events"),
            Failure::Encoding {
                position,
                leaf_index,
                part,
            } => write!(
                f,
                "event #{position} (leaf {leaf_index}): {part} is not valid base64 of the right length"
            ),
            Failure::BeyondCheckpoint {
                position,
                leaf_index,
                size,
            } => write!(
                f,
                "event #{position} (leaf {leaf_index}): beyond the checkpoint's tree of {size} leaves"
            ),
            Failure::Inclusion {
                position,
                leaf_index,
                size,
            } => write!(
                f,
                "event #{position} (leaf {leaf_index}): its inclusion proof does not lead to the \
                 checkpoint's root (tree size {size}): the leaf bytes or the proof were altered"
            ),
            Failure::LeafBytes {
                position,
                leaf_index,
                error,
            } => write!(
                f,
                "event #{position} (leaf {leaf_index}): leaf bytes do not decode: {error}"
            ),
            Failure::LeafIndex {
                position,
                in_bundle,
                in_leaf,
            } => write!(
                f,
                "event #{position}: listed at leaf {in_bundle} but its leaf bytes say leaf {in_leaf}"
            ),
            Failure::Realm {
                position,
                leaf_index,
                found,
            } => write!(
                f,
                "event #{position} (leaf {leaf_index}): belongs to realm {found}, not the bundle's"
            ),
            Failure::Request {
                position,
                leaf_index,
                found,
            } => match found {
                Some(other) => write!(
                    f,
                    "event #{position} (leaf {leaf_index}): belongs to access request {other}, not the bundle's"
                ),
                None => write!(
                    f,
                    "event #{position} (leaf {leaf_index}): belongs to no access request"
                ),
            },
            Failure::Order {
                position,
                leaf_index,
                previous,
            } => write!(
                f,
                "event #{position} (leaf {leaf_index}): out of order, after leaf {previous}"
            ),
            Failure::FirstIsNotTheRequest {
                leaf_index,
                action,
                back_link,
            } => match back_link {
                Some(link) => write!(
                    f,
                    "event #1 (leaf {leaf_index}, {action}): links back to leaf {link}, so the \
                     events before it, the request's included, are missing"
                ),
                None => write!(
                    f,
                    "event #1 (leaf {leaf_index}): is {action}, not the request ({REQUESTED})"
                ),
            },
            Failure::BackLink {
                position,
                leaf_index,
                expected,
                found,
            } => match found {
                Some(link) => write!(
                    f,
                    "event #{position} (leaf {leaf_index}): links back to leaf {link}, but the \
                     event before it in the bundle is leaf {expected}: the request's events \
                     between them are missing"
                ),
                None => write!(
                    f,
                    "event #{position} (leaf {leaf_index}): has no back-link, but follows leaf \
                     {expected} of the same request"
                ),
            },
        }
    }
}

impl std::error::Error for Failure {}

/// Verifies everything in the bundle against `keys`; the summary of what
/// it proves, or the first failure.
pub fn verify_bundle(bundle: &EvidenceBundle, keys: &[VerifierKey]) -> Result<Summary, Failure> {
    if bundle.format != FORMAT_V1 {
        return Err(Failure::Format {
            found: bundle.format.clone(),
        });
    }
    let (checkpoint, signed_by) = verified_checkpoint(bundle, keys)?;
    if bundle.events.is_empty() {
        return Err(Failure::NoEvents);
    }
    let mut leaves = Vec::with_capacity(bundle.events.len());
    for (i, event) in bundle.events.iter().enumerate() {
        leaves.push(verified_leaf(bundle, &checkpoint, i + 1, event)?);
    }
    check_order(&leaves)?;
    check_back_links(&leaves)?;
    Ok(summarise(bundle, &checkpoint, signed_by, &leaves))
}

fn verified_checkpoint(
    bundle: &EvidenceBundle,
    keys: &[VerifierKey],
) -> Result<(Checkpoint, Vec<String>), Failure> {
    if keys.is_empty() {
        return Err(Failure::NoVerifierKey);
    }
    let checkpoint_failure = |reason: String| Failure::Checkpoint { reason };
    let opened =
        open_note(&bundle.checkpoint, keys).map_err(|e| checkpoint_failure(e.to_string()))?;
    let checkpoint =
        Checkpoint::parse(&opened.text).map_err(|e| checkpoint_failure(e.to_string()))?;
    // The origin is `<prefix>/<realm id>`; the prefix is the deployment's
    // (PORTAL_ACCESS_LOG_ORIGIN) and vouched for by the key.
    let suffix = format!("/{}", bundle.realm_id);
    let origin = checkpoint.origin();
    if !(origin.ends_with(&suffix) && origin.len() > suffix.len()) {
        return Err(Failure::Origin {
            realm_id: bundle.realm_id,
            origin: origin.to_owned(),
        });
    }
    Ok((checkpoint, opened.verified_by))
}

fn verified_leaf(
    bundle: &EvidenceBundle,
    checkpoint: &Checkpoint,
    position: usize,
    event: &BundleEvent,
) -> Result<LeafEvent, Failure> {
    let leaf_index = event.leaf_index;
    let encoding = |part: String| Failure::Encoding {
        position,
        leaf_index,
        part,
    };
    let bytes = STANDARD
        .decode(&event.leaf_bytes)
        .map_err(|_| encoding("leaf_bytes".into()))?;
    let proof = event
        .inclusion_proof
        .iter()
        .enumerate()
        .map(|(i, b64)| {
            STANDARD
                .decode(b64)
                .ok()
                .and_then(|h| Hash::try_from(h).ok())
                .ok_or_else(|| encoding(format!("inclusion_proof[{i}]")))
        })
        .collect::<Result<Vec<Hash>, Failure>>()?;
    let size = checkpoint.size();
    if leaf_index >= size {
        return Err(Failure::BeyondCheckpoint {
            position,
            leaf_index,
            size,
        });
    }
    if !verify_inclusion(
        &leaf_hash(&bytes),
        leaf_index,
        size,
        &proof,
        checkpoint.root(),
    ) {
        return Err(Failure::Inclusion {
            position,
            leaf_index,
            size,
        });
    }
    let leaf = LeafEvent::decode(&bytes).map_err(|error| Failure::LeafBytes {
        position,
        leaf_index,
        error,
    })?;
    if leaf.leaf_index != leaf_index {
        return Err(Failure::LeafIndex {
            position,
            in_bundle: leaf_index,
            in_leaf: leaf.leaf_index,
        });
    }
    if leaf.realm_id != bundle.realm_id {
        return Err(Failure::Realm {
            position,
            leaf_index,
            found: leaf.realm_id,
        });
    }
    if leaf.access_request_id != Some(bundle.access_request_id) {
        return Err(Failure::Request {
            position,
            leaf_index,
            found: leaf.access_request_id,
        });
    }
    Ok(leaf)
}

fn check_order(leaves: &[LeafEvent]) -> Result<(), Failure> {
    for (i, pair) in leaves.windows(2).enumerate() {
        if pair[1].leaf_index <= pair[0].leaf_index {
            return Err(Failure::Order {
                position: i + 2,
                leaf_index: pair[1].leaf_index,
                previous: pair[0].leaf_index,
            });
        }
    }
    Ok(())
}

fn check_back_links(leaves: &[LeafEvent]) -> Result<(), Failure> {
    let first = &leaves[0];
    if first.action != REQUESTED || first.previous_request_leaf.is_some() {
        return Err(Failure::FirstIsNotTheRequest {
            leaf_index: first.leaf_index,
            action: first.action.clone(),
            back_link: first.previous_request_leaf,
        });
    }
    for (i, pair) in leaves.windows(2).enumerate() {
        if pair[1].previous_request_leaf != Some(pair[0].leaf_index) {
            return Err(Failure::BackLink {
                position: i + 2,
                leaf_index: pair[1].leaf_index,
                expected: pair[0].leaf_index,
                found: pair[1].previous_request_leaf,
            });
        }
    }
    Ok(())
}

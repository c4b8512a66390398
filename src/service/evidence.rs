//! Verifiable evidence (E2–E5): signed checkpoints of each realm's Merkle
//! tree, inclusion and consistency proofs, and per-session evidence
//! bundles a customer verifies offline.
//!
//! Signing stays off the write path: a checkpoint is signed when asked for
//! and kept per (realm, size), so a busy realm costs one signature per
//! checkpoint someone reads, not one per event.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use super::{Caller, Services};
use crate::domain::checkpoint::{Checkpoint, realm_origin};
use crate::domain::merkle::{self, Hash, ProofPlan};
use crate::domain::signed_note::{NoteSigner, VerifierKey};
use crate::domain::{Principal, Scope};
use crate::error::{Error, Reason, Result};
use crate::evidence::{BundleEvent, EvidenceBundle};

/// Signed checkpoints kept before the cache is emptied and refilled.
const MAX_CACHED: usize = 4096;

/// The log's signing key, the verifier keys it publishes, and the
/// checkpoints signed so far.
pub struct LogSigner {
    signer: Option<NoteSigner>,
    /// Published beside the signer's own key: older keys during a rotation.
    extra_keys: Vec<VerifierKey>,
    origin_prefix: String,
    signed: Mutex<HashMap<(Uuid, u64), String>>,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSigner")
            .field("signer", &self.signer.as_ref().map(NoteSigner::name))
            .field("extra_keys", &self.extra_keys.len())
            .finish_non_exhaustive()
    }
}

impl LogSigner {
    /// `signer`: `None` when no key is configured (PostgreSQL without
    /// PORTAL_ACCESS_LOG_SIGNING_KEY): checkpoints are then refused.
    pub fn new(
        signer: Option<NoteSigner>,
        extra_keys: Vec<VerifierKey>,
        origin_prefix: &str,
    ) -> Self {
        Self {
            signer,
            extra_keys,
            origin_prefix: origin_prefix.to_owned(),
            signed: Mutex::default(),
        }
    }

    /// Every verifier key a checkpoint of this log may be signed with.
    pub fn verifier_keys(&self) -> Vec<VerifierKey> {
        self.signer
            .iter()
            .map(NoteSigner::verifier_key)
            .chain(self.extra_keys.iter().cloned())
            .collect()
    }

    fn origin(&self, realm_id: Uuid) -> String {
        realm_origin(&self.origin_prefix, realm_id)
    }

    /// The signed note of the realm's tree at `size` with `root`.
    fn sign(&self, realm_id: Uuid, size: u64, root: Hash) -> Result<String> {
        let key = (realm_id, size);
        if let Some(note) = self.signed.lock().expect("checkpoint cache").get(&key) {
            return Ok(note.clone());
        }
        let signer = self.signer.as_ref().ok_or_else(|| {
            Error::new(
                Reason::LogSigningKeyMissing,
                "this deployment has no log signing key (PORTAL_ACCESS_LOG_SIGNING_KEY)",
            )
        })?;
        let note = Checkpoint::new(&self.origin(realm_id), size, root)
            .and_then(|c| c.sign(&[signer]))
            .map_err(|e| Error::internal(format!("signing a checkpoint: {e}")))?;
        let mut signed = self.signed.lock().expect("checkpoint cache");
        if signed.len() >= MAX_CACHED {
            signed.clear();
        }
        signed.insert(key, note.clone());
        Ok(note)
    }
}

/// A realm's signed checkpoint.
#[derive(Debug, Clone)]
pub struct SignedCheckpoint {
    pub size: u64,
    pub root: Hash,
    /// The C2SP signed note.
    pub note: String,
}

/// An inclusion proof, with the leaf it proves.
#[derive(Debug, Clone)]
pub struct InclusionProof {
    pub leaf_bytes: Vec<u8>,
    pub hashes: Vec<Hash>,
}

impl Services {
    /// E3: full top-level admins of the realm, services with audit.read.
    fn log_reader(&self, caller: &Caller, realm_id: Uuid) -> Result<()> {
        self.audit_reader(caller, Some(realm_id))
    }

    /// The realm's tree now: size and right border, or NOT_FOUND.
    async fn current_tree(&self, realm_id: Uuid) -> Result<(u64, Vec<Hash>)> {
        self.store
            .realm_tree(realm_id)
            .await?
            .ok_or_else(|| Error::not_found(Reason::RealmNotFound, "realm", realm_id))
    }

    /// Runs a proof plan against the realm's stored hashes in one read.
    async fn run_plan(&self, realm_id: Uuid, plan: &ProofPlan) -> Result<Vec<Hash>> {
        let hashes = self.store.tree_nodes(realm_id, plan.needs()).await?;
        plan.assemble(&hashes)
            .map_err(|e| Error::internal(format!("assembling a proof: {e}")))
    }

    /// The root of the realm's tree at `size` (at most the current size).
    async fn root_at(&self, realm_id: Uuid, size: u64, current: &(u64, Vec<Hash>)) -> Result<Hash> {
        if size == current.0 {
            return Ok(merkle::root_of_border(&current.1));
        }
        let root = self.run_plan(realm_id, &ProofPlan::root(size)).await?;
        root.first()
            .copied()
            .ok_or_else(|| Error::internal("a root plan gave no hash"))
    }

    /// The checkpoint of a realm at `size` leaves, for a caller already
    /// authorized (the stream's progress messages, E4).
    pub(crate) async fn checkpoint_at(&self, realm_id: Uuid, size: u64) -> Result<String> {
        let current = self.current_tree(realm_id).await?;
        let size = size.min(current.0);
        let root = self.root_at(realm_id, size, &current).await?;
        self.log_signer.sign(realm_id, size, root)
    }

    /// E2: the realm's latest signed checkpoint.
    pub async fn log_checkpoint(
        &self,
        caller: &Caller,
        realm_id: Uuid,
    ) -> Result<SignedCheckpoint> {
        self.log_reader(caller, realm_id)?;
        let current = self.current_tree(realm_id).await?;
        let root = merkle::root_of_border(&current.1);
        let note = self.log_signer.sign(realm_id, current.0, root)?;
        Ok(SignedCheckpoint {
            size: current.0,
            root,
            note,
        })
    }

    /// E3: RFC 9162 inclusion proof of leaf `index` in the tree of `size`.
    pub async fn inclusion_proof(
        &self,
        caller: &Caller,
        realm_id: Uuid,
        index: u64,
        size: u64,
    ) -> Result<InclusionProof> {
        self.log_reader(caller, realm_id)?;
        let current = self.current_tree(realm_id).await?;
        if size > current.0 {
            return Err(Error::invalid(
                "tree_size",
                format!("is beyond the realm's tree ({} leaves)", current.0),
            ));
        }
        if index >= size {
            return Err(Error::invalid("leaf_index", "must be less than tree_size"));
        }
        let plan = ProofPlan::inclusion(index, size)
            .map_err(|e| Error::invalid("leaf_index", e.to_string()))?;
        let hashes = self.run_plan(realm_id, &plan).await?;
        let leaf_bytes = self
            .store
            .event_at_leaf(realm_id, index)
            .await?
            .and_then(|e| e.leaf_event())
            .map(|leaf| leaf.encode())
            .ok_or_else(|| Error::internal("a leaf of the tree has no event"))?;
        Ok(InclusionProof { leaf_bytes, hashes })
    }

    /// E3: RFC 9162 consistency proof from `old` to `new` leaves.
    pub async fn consistency_proof(
        &self,
        caller: &Caller,
        realm_id: Uuid,
        old: u64,
        new: u64,
    ) -> Result<Vec<Hash>> {
        self.log_reader(caller, realm_id)?;
        let current = self.current_tree(realm_id).await?;
        if new > current.0 {
            return Err(Error::invalid(
                "new_size",
                format!("is beyond the realm's tree ({} leaves)", current.0),
            ));
        }
        if old == 0 {
            return Err(Error::invalid(
                "old_size",
                "must be at least 1 (every tree extends the empty one)",
            ));
        }
        if old > new {
            return Err(Error::invalid("old_size", "must not exceed new_size"));
        }
        let plan = ProofPlan::consistency(old, new)
            .map_err(|e| Error::invalid("old_size", e.to_string()))?;
        self.run_plan(realm_id, &plan).await
    }

    /// E2: the keys checkpoints are verified with.
    pub fn log_verifier_keys(&self, caller: &Caller) -> Result<Vec<VerifierKey>> {
        match caller.principal() {
            Principal::Service { .. } if caller.principal().has_scope(Scope::AuditRead) => {}
            Principal::Service { .. } => {
                return Err(Error::permission_denied(
                    Reason::MissingScope,
                    "the log's keys are for services with audit.read",
                ));
            }
            Principal::Account { .. } => {
                let standing = caller.standing().expect("an account caller has a standing");
                if standing.is_support_temporary() {
                    return Err(Error::permission_denied(
                        Reason::SupportAdminRestricted,
                        "temporary support admins cannot read the audit log",
                    ));
                }
                super::portals::require_full_top_level_admin(standing)?;
            }
            _ => {
                return Err(super::caller::wrong_kind(
                    caller,
                    "a top-level admin with settings access or a service with audit.read",
                ));
            }
        }
        Ok(self.log_signer.verifier_keys())
    }

    /// E5: one support session's events with their leaves and inclusion
    /// proofs to one signed checkpoint.
    pub async fn export_access_evidence(
        &self,
        caller: &Caller,
        access_request_id: Uuid,
    ) -> Result<EvidenceBundle> {
        // The caller's kind, scope and right first (an account's in its
        // own realm), so no request id's existence leaks (SPEC §5).
        let own_realm = caller.standing().map(|s| s.account.realm_id);
        self.audit_reader(caller, own_realm)?;
        let not_found = || {
            Error::not_found(
                Reason::AccessRequestNotFound,
                "access request",
                access_request_id,
            )
        };
        let request = self
            .store
            .access_request(access_request_id)
            .await?
            .filter(|r| own_realm.is_none_or(|realm| realm == r.realm_id))
            .ok_or_else(not_found)?;
        let events = self.store.session_events(access_request_id).await?;
        let current = self.current_tree(request.realm_id).await?;
        let root = merkle::root_of_border(&current.1);
        let checkpoint = self.log_signer.sign(request.realm_id, current.0, root)?;
        let plans: Vec<ProofPlan> = events
            .iter()
            .map(|e| {
                let index = e.leaf.expect("session events have leaves").leaf_index;
                ProofPlan::inclusion(index, current.0)
                    .map_err(|err| Error::internal(format!("a session leaf: {err}")))
            })
            .collect::<Result<_>>()?;
        // Every proof's hashes in one pass over the store.
        let mut needed: Vec<merkle::SubtreeId> = plans
            .iter()
            .flat_map(|p| p.needs().iter().copied())
            .collect();
        needed.sort_unstable_by_key(|id| id.key());
        needed.dedup();
        let hashes = self.store.tree_nodes(request.realm_id, &needed).await?;
        let by_id: HashMap<i64, Hash> = needed.iter().map(|id| id.key()).zip(hashes).collect();
        let mut bundle_events = Vec::with_capacity(events.len());
        for (event, plan) in events.iter().zip(&plans) {
            let wanted: Vec<Hash> = plan.needs().iter().map(|id| by_id[&id.key()]).collect();
            let proof = plan
                .assemble(&wanted)
                .map_err(|e| Error::internal(format!("assembling a proof: {e}")))?;
            let leaf = event.leaf_event().expect("session events have leaves");
            bundle_events.push(BundleEvent::new(leaf.leaf_index, &leaf.encode(), &proof));
        }
        Ok(EvidenceBundle::new(
            request.realm_id,
            access_request_id,
            checkpoint,
            bundle_events,
        ))
    }
}

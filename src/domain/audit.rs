//! Audit events (S9, S11) and their tamper-evident hash chain (L6).
//!
//! Each realm's events form a chain: `hash = SHA-256(prev_hash ‖ canonical
//! bytes)`, where `prev_hash` is the raw 32 bytes of the realm's previous
//! event hash (nothing for its first event). The canonical bytes include the
//! event's global `sequence`, so reordering rows breaks the chain as surely
//! as editing or deleting them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Principal, clock::to_micros};

/// The two families of events the stream can filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditCategory {
    SupportSession,
    Security,
}

impl AuditCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditCategory::SupportSession => "support_session",
            AuditCategory::Security => "security",
        }
    }

    pub fn from_stored(value: &str) -> Option<Self> {
        match value {
            "support_session" => Some(AuditCategory::SupportSession),
            "security" => Some(AuditCategory::Security),
            _ => None,
        }
    }
}

/// Action names, stable for consumers such as a SIEM exporter.
pub mod action {
    pub const REALM_CREATED: &str = "realm.created";
    pub const REALM_SETTINGS_CHANGED: &str = "realm.settings_changed";
    pub const PORTAL_CREATED: &str = "portal.created";
    pub const ADMIN_CREATED: &str = "admin.created";
    pub const USER_CREATED: &str = "user.created";
    pub const USER_TYPE_CHANGED: &str = "user.type_changed";
    pub const SETTINGS_ACCESS_CHANGED: &str = "admin.settings_access_changed";
    pub const MEMBERSHIP_REMOVED: &str = "user.removed_from_portal";
    pub const USER_DELETED: &str = "user.deleted";
    pub const API_KEYS_GENERATED: &str = "api_keys.generated";
    pub const SUPPORT_REQUESTED: &str = "support_access.requested";
    pub const SUPPORT_WITHDRAWN: &str = "support_access.withdrawn";
    pub const SUPPORT_DECLINED: &str = "support_access.declined";
    pub const SUPPORT_REQUEST_EXPIRED: &str = "support_access.request_expired";
    pub const SUPPORT_ALLOWED: &str = "support_access.allowed";
    pub const SUPPORT_EXTENDED: &str = "support_access.extended";
    pub const SUPPORT_REVOKED: &str = "support_access.revoked";
    pub const SUPPORT_EXPIRED: &str = "support_access.expired";
    pub const TEMPORARY_ADMIN_CREATED: &str = "support_access.temporary_admin_created";
    pub const TEMPORARY_ADMIN_DELETED: &str = "support_access.temporary_admin_deleted";
    pub const SUPPORT_ACTION: &str = "support_access.action";
    /// G1: a realm's support-access policy changed (security category).
    pub const SUPPORT_POLICY_CHANGED: &str = "support_access.policy_changed";
    /// G5: a first allow proposed access under N-of-M approval.
    pub const SUPPORT_PROPOSED: &str = "support_access.proposed";
    /// G5: another full top-level admin approved the proposal.
    pub const SUPPORT_APPROVED: &str = "support_access.approved";
    /// G5: the N-th approval started the proposal's grants.
    pub const SUPPORT_STARTED: &str = "support_access.started";
    /// G5: a proposal ended without starting (declined, withdrawn, replaced, ended by support).
    pub const SUPPORT_PROPOSAL_CANCELLED: &str = "support_access.proposal_cancelled";
    /// G6: the first use of a first-use grant started its clock.
    pub const SUPPORT_CLAIMED: &str = "support_access.claimed";
    /// G7: support, or the ticketing system, ended a grant early.
    pub const SUPPORT_RELINQUISHED: &str = "support_access.relinquished";
    /// A call a temporary support admin made to this service (S9).
    pub const SUPPORT_CALL: &str = "support_access.call";

    /// Entries of the support session log that change no permission.
    pub fn is_session_log(action: &str) -> bool {
        action == SUPPORT_ACTION || action == SUPPORT_CALL
    }
}

/// What kind of principal caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    Account,
    ApiClient,
    SupportAgent,
    Operator,
    Service,
    /// portal-access itself, e.g. the expiry sweeper.
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Account => "account",
            ActorKind::ApiClient => "api_client",
            ActorKind::SupportAgent => "support_agent",
            ActorKind::Operator => "operator",
            ActorKind::Service => "service",
            ActorKind::System => "system",
        }
    }

    pub fn from_stored(value: &str) -> Option<Self> {
        [
            ActorKind::Account,
            ActorKind::ApiClient,
            ActorKind::SupportAgent,
            ActorKind::Operator,
            ActorKind::Service,
            ActorKind::System,
        ]
        .into_iter()
        .find(|k| k.as_str() == value)
    }
}

/// Who did it. Support's entries keep the human's id and name so the log
/// outlives the temporary admin (S9, S12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: String,
    pub agent_id: Option<Uuid>,
    pub agent_name: Option<String>,
}

impl Actor {
    pub fn system() -> Self {
        Self {
            kind: ActorKind::System,
            id: String::new(),
            agent_id: None,
            agent_name: None,
        }
    }
}

impl From<&Principal> for Actor {
    fn from(principal: &Principal) -> Self {
        match principal {
            Principal::Account {
                account_id, agent, ..
            } => Actor {
                kind: ActorKind::Account,
                id: account_id.to_string(),
                agent_id: agent.as_ref().map(|a| a.id),
                agent_name: agent.as_ref().map(|a| a.name.clone()),
            },
            Principal::ApiClient { key_id, .. } => Actor {
                kind: ActorKind::ApiClient,
                id: key_id.clone(),
                agent_id: None,
                agent_name: None,
            },
            Principal::SupportAgent(agent) => Actor {
                kind: ActorKind::SupportAgent,
                id: agent.id.to_string(),
                agent_id: Some(agent.id),
                agent_name: Some(agent.name.clone()),
            },
            Principal::Operator { operator_id } => Actor {
                kind: ActorKind::Operator,
                id: operator_id.to_string(),
                agent_id: None,
                agent_name: None,
            },
            Principal::Service { service_id, .. } => Actor {
                kind: ActorKind::Service,
                id: service_id.to_string(),
                agent_id: None,
                agent_name: None,
            },
        }
    }
}

/// An event about to be appended in the same transaction as its change (L1).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    /// Chosen up front so the writer can refer to the event before commit.
    pub id: Uuid,
    pub realm_id: Uuid,
    pub portal_id: Option<Uuid>,
    pub category: AuditCategory,
    pub action: &'static str,
    pub actor: Actor,
    pub target_type: String,
    pub target_id: String,
    pub details: BTreeMap<String, String>,
    /// The support session (access request) the event belongs to, if any:
    /// its events are chained to each other in the evidence log (E5).
    pub access_request_id: Option<Uuid>,
}

impl NewAuditEvent {
    pub fn security(realm_id: Uuid, action: &'static str, actor: Actor) -> Self {
        Self {
            id: Uuid::now_v7(),
            realm_id,
            portal_id: None,
            category: AuditCategory::Security,
            action,
            actor,
            target_type: String::new(),
            target_id: String::new(),
            details: BTreeMap::new(),
            access_request_id: None,
        }
    }

    pub fn support(realm_id: Uuid, action: &'static str, actor: Actor) -> Self {
        Self {
            category: AuditCategory::SupportSession,
            ..Self::security(realm_id, action, actor)
        }
    }

    pub fn in_portal(mut self, portal_id: Uuid) -> Self {
        self.portal_id = Some(portal_id);
        self
    }

    pub fn target(mut self, target_type: &str, target_id: impl ToString) -> Self {
        self.target_type = target_type.to_owned();
        self.target_id = target_id.to_string();
        self
    }

    /// E5: the event is part of this access request's session.
    pub fn for_request(mut self, access_request_id: Uuid) -> Self {
        self.access_request_id = Some(access_request_id);
        self
    }

    pub fn detail(mut self, key: &str, value: impl ToString) -> Self {
        self.details.insert(key.to_owned(), value.to_string());
        self
    }
}

/// Which bytes an event's chain hash covers (L6).
///
/// The first form includes the platform-wide `sequence`, so it can only be
/// computed by a writer that numbers its events before commit. W1 numbers
/// them after commit; its events use the second form, which leaves the
/// sequence out (the realm's order is the chain itself). Each event records
/// its form, so one chain may hold both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChainForm {
    /// `portal-access/audit/v1`: with the sequence.
    #[default]
    WithSequence,
    /// `portal-access/audit/v2`: without it.
    WithoutSequence,
}

impl ChainForm {
    /// As stored (`audit_events.chain_form`).
    pub fn as_stored(self) -> i16 {
        match self {
            ChainForm::WithSequence => 1,
            ChainForm::WithoutSequence => 2,
        }
    }

    /// An unknown value reads as the second form, whose hash then fails
    /// verification if it was not.
    pub fn from_stored(value: i16) -> Self {
        match value {
            1 => ChainForm::WithSequence,
            _ => ChainForm::WithoutSequence,
        }
    }
}

/// A committed event, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Its place in the platform-wide order (L2); 0 while a committed event
    /// waits for the numbering leader (W1), which readers never see.
    pub sequence: i64,
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub realm_id: Uuid,
    pub portal_id: Option<Uuid>,
    pub category: AuditCategory,
    pub action: String,
    pub actor: Actor,
    pub target_type: String,
    pub target_id: String,
    pub details: BTreeMap<String, String>,
    /// Hex SHA-256 of the realm's previous event; empty for the first.
    pub prev_hash: String,
    /// Hex SHA-256 of `prev_hash ‖ canonical_bytes()`.
    pub hash: String,
    /// Where the event sits in its realm's Merkle tree (E1, E5); `None`
    /// only for an event an older release wrote that has not joined the
    /// tree yet.
    pub leaf: Option<LeafPosition>,
    pub chain_form: ChainForm,
}

/// An event's place in the evidence log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafPosition {
    pub leaf_index: u64,
    /// The support session (access request) the event belongs to.
    pub access_request_id: Option<Uuid>,
    /// The leaf of the session's previous event (E5 back-link).
    pub previous_request_leaf: Option<u64>,
}

impl AuditEvent {
    /// The event's leaf (E1), once it is in the tree.
    pub fn leaf_event(&self) -> Option<super::leaf::LeafEvent> {
        self.leaf.map(|at| {
            super::leaf::LeafEvent::from_audit(
                self,
                at.leaf_index,
                at.access_request_id,
                at.previous_request_leaf,
            )
        })
    }

    /// Length-prefixed fields in a fixed order: unambiguous, so two
    /// different events never share canonical bytes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        match self.chain_form {
            ChainForm::WithSequence => {
                field(b"portal-access/audit/v1");
                field(self.sequence.to_string().as_bytes());
            }
            ChainForm::WithoutSequence => field(b"portal-access/audit/v2"),
        }
        field(self.id.as_bytes());
        field(to_micros(self.occurred_at).to_string().as_bytes());
        field(self.realm_id.as_bytes());
        field(
            self.portal_id
                .map(|p| p.to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
        field(self.category.as_str().as_bytes());
        field(self.action.as_bytes());
        field(self.actor.kind.as_str().as_bytes());
        field(self.actor.id.as_bytes());
        field(
            self.actor
                .agent_id
                .map(|a| a.to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
        field(self.actor.agent_name.as_deref().unwrap_or("").as_bytes());
        field(self.target_type.as_bytes());
        field(self.target_id.as_bytes());
        field(self.details.len().to_string().as_bytes());
        for (key, value) in &self.details {
            field(key.as_bytes());
            field(value.as_bytes());
        }
        out
    }

    /// The hash this event must carry after `prev_hash` (L6).
    pub fn expected_hash(&self, prev_hash: &str) -> String {
        chain_hash(prev_hash, &self.canonical_bytes())
    }
}

/// `SHA-256(prev_hash ‖ canonical)`, hex; `prev_hash` is hex or empty.
pub fn chain_hash(prev_hash: &str, canonical: &[u8]) -> String {
    let mut hasher = Sha256::new();
    if let Ok(prev) = hex::decode(prev_hash) {
        hasher.update(prev);
    }
    hasher.update(canonical);
    hex::encode(hasher.finalize())
}

/// The first link of a realm's chain that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub sequence: i64,
    pub expected_hash: String,
    pub found_hash: String,
}

/// Walks a realm's events in sequence order, one at a time, so a long log
/// is checked without loading it whole.
#[derive(Debug, Default)]
pub struct ChainVerifier {
    head: String,
    count: i64,
    last_sequence: i64,
    broken: Option<BrokenLink>,
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next event; keeps only the first break.
    pub fn feed(&mut self, event: &AuditEvent) {
        if self.broken.is_some() {
            return;
        }
        self.count += 1;
        self.last_sequence = event.sequence;
        if event.prev_hash != self.head {
            // A deleted or reordered predecessor.
            self.broken = Some(BrokenLink {
                sequence: event.sequence,
                expected_hash: self.head.clone(),
                found_hash: event.prev_hash.clone(),
            });
            return;
        }
        let expected = event.expected_hash(&self.head);
        if expected != event.hash {
            self.broken = Some(BrokenLink {
                sequence: event.sequence,
                expected_hash: expected,
                found_hash: event.hash.clone(),
            });
            return;
        }
        self.head = event.hash.clone();
    }

    /// The hash of the last event fed that held.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// Compares the end of the chain with the head the realm recorded at
    /// its last append, which catches deleted tail events.
    pub fn finish(self, recorded_head: &str) -> ChainVerdict {
        let broken = self.broken.or_else(|| {
            (self.head != recorded_head).then(|| BrokenLink {
                sequence: self.last_sequence + 1,
                expected_hash: recorded_head.to_owned(),
                found_hash: self.head.clone(),
            })
        });
        ChainVerdict {
            event_count: self.count,
            head_hash: self.head,
            broken,
        }
    }
}

/// The outcome of [`ChainVerifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainVerdict {
    pub event_count: i64,
    pub head_hash: String,
    pub broken: Option<BrokenLink>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(sequence: i64, prev_hash: &str) -> AuditEvent {
        let mut event = AuditEvent {
            sequence,
            id: Uuid::from_u128(sequence as u128),
            occurred_at: DateTime::from_timestamp(1_800_000_000 + sequence, 0).unwrap(),
            realm_id: Uuid::from_u128(7),
            portal_id: None,
            category: AuditCategory::Security,
            action: action::ADMIN_CREATED.to_owned(),
            actor: Actor::system(),
            target_type: "account".to_owned(),
            target_id: format!("a{sequence}"),
            details: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
            leaf: None,
            chain_form: ChainForm::WithSequence,
        };
        event.hash = event.expected_hash(prev_hash);
        event
    }

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut events: Vec<AuditEvent> = Vec::new();
        for seq in 1..=n {
            let prev = events.last().map(|e| e.hash.clone()).unwrap_or_default();
            events.push(event(seq * 10, &prev));
        }
        events
    }

    fn verify(events: &[AuditEvent], recorded_head: &str) -> ChainVerdict {
        let mut verifier = ChainVerifier::new();
        events.iter().for_each(|e| verifier.feed(e));
        verifier.finish(recorded_head)
    }

    #[test]
    fn l6_untouched_chain_verifies() {
        let events = chain(5);
        let verdict = verify(&events, &events[4].hash);
        assert_eq!(verdict.broken, None);
        assert_eq!(verdict.event_count, 5);
        assert_eq!(verdict.head_hash, events[4].hash);
    }

    #[test]
    fn l6_edited_event_is_the_first_broken_link() {
        let mut events = chain(5);
        events[2].target_id = "someone-else".to_owned();
        let verdict = verify(&events, &events[4].hash.clone());
        assert_eq!(verdict.broken.unwrap().sequence, 30);
    }

    #[test]
    fn l6_deleted_event_breaks_the_next_link() {
        let mut events = chain(5);
        let head = events[4].hash.clone();
        events.remove(1);
        assert_eq!(verify(&events, &head).broken.unwrap().sequence, 30);
    }

    #[test]
    fn l6_deleted_tail_is_caught_by_the_recorded_head() {
        let mut events = chain(5);
        let head = events[4].hash.clone();
        events.pop();
        let broken = verify(&events, &head).broken.unwrap();
        assert_eq!(broken.expected_hash, head);
    }

    #[test]
    fn l6_swapped_sequences_break_the_chain() {
        let mut events = chain(3);
        let head = events[2].hash.clone();
        let (a, b) = (events[0].sequence, events[1].sequence);
        events[0].sequence = b;
        events[1].sequence = a;
        events.swap(0, 1);
        assert!(verify(&events, &head).broken.is_some());
    }

    #[test]
    fn canonical_bytes_are_unambiguous() {
        let mut a = event(1, "");
        let mut b = event(1, "");
        a.target_type = "ab".to_owned();
        a.target_id = "c".to_owned();
        b.target_type = "a".to_owned();
        b.target_id = "bc".to_owned();
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
    }

    #[test]
    fn l6_the_second_form_leaves_the_sequence_out_and_the_first_keeps_it() {
        let mut a = event(1, "");
        a.chain_form = ChainForm::WithoutSequence;
        let mut renumbered = a.clone();
        renumbered.sequence = 9;
        assert_eq!(a.expected_hash(""), renumbered.expected_hash(""));
        let mut first = a.clone();
        first.chain_form = ChainForm::WithSequence;
        assert_ne!(a.expected_hash(""), first.expected_hash(""));
        let mut moved = first.clone();
        moved.sequence = 9;
        assert_ne!(first.expected_hash(""), moved.expected_hash(""));
    }

    #[test]
    fn l6_a_chain_may_hold_both_forms() {
        let mut events = chain(4);
        let mut prev = events[1].hash.clone();
        for event in events.iter_mut().skip(2) {
            event.chain_form = ChainForm::WithoutSequence;
            event.prev_hash = prev.clone();
            event.hash = event.expected_hash(&prev);
            prev = event.hash.clone();
        }
        let mut verifier = ChainVerifier::new();
        events.iter().for_each(|e| verifier.feed(e));
        assert!(verifier.finish(&prev).broken.is_none());
    }
}

//! Support access (S1-S12): requests, grants and what support may record.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::InvalidValue;
use super::governance::{GrantPhase, SupportAccessLevel, phase_at};

/// The states of an access request (S2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessRequestState {
    Pending,
    Approved,
    Declined,
    Withdrawn,
    Expired,
}

impl AccessRequestState {
    pub const ALL: [AccessRequestState; 5] = [
        AccessRequestState::Pending,
        AccessRequestState::Approved,
        AccessRequestState::Declined,
        AccessRequestState::Withdrawn,
        AccessRequestState::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccessRequestState::Pending => "pending",
            AccessRequestState::Approved => "approved",
            AccessRequestState::Declined => "declined",
            AccessRequestState::Withdrawn => "withdrawn",
            AccessRequestState::Expired => "expired",
        }
    }

    pub fn from_stored(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// A support agent's request to enter a realm's portals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    pub id: Uuid,
    pub realm_id: Uuid,
    pub agent_id: Uuid,
    pub agent_name: String,
    pub reason: String,
    pub ticket_reference: String,
    /// As stored; see [`AccessRequest::state_at`] for what it is now.
    pub state: AccessRequestState,
    pub created_at: DateTime<Utc>,
    /// When a pending request lapses unless someone acts on it.
    pub expires_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    /// The level support asked for (G3); unset in the request means admin.
    pub level: SupportAccessLevel,
}

impl AccessRequest {
    /// The state at `now`: a pending request past its expiry has expired,
    /// whether or not the sweeper has recorded it yet (as grants do, S8).
    pub fn state_at(&self, now: DateTime<Utc>) -> AccessRequestState {
        match self.state {
            AccessRequestState::Pending if now >= self.expires_at => AccessRequestState::Expired,
            state => state,
        }
    }

    /// Whether an admin may still decline it, or the agent withdraw it.
    pub fn is_pending_at(&self, now: DateTime<Utc>) -> bool {
        self.state_at(now) == AccessRequestState::Pending
    }
}

/// Whether `AllowAccess` may answer a request: a pending one, or an
/// approved one while one of its grants is still active (so the admin can
/// add portals or extend the session). Once all its grants have ended,
/// consent is spent and support must ask again.
pub fn may_allow(request: &AccessRequest, now: DateTime<Utc>, has_active_grant: bool) -> bool {
    match request.state_at(now) {
        AccessRequestState::Pending => true,
        AccessRequestState::Approved => has_active_grant,
        _ => false,
    }
}

/// An allowed, time-boxed access of support to one portal (S4-S8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportGrant {
    pub id: Uuid,
    pub realm_id: Uuid,
    pub portal_id: Uuid,
    pub access_request_id: Uuid,
    pub temporary_account_id: Uuid,
    pub created_at: DateTime<Utc>,
    /// When support's window opens (G6): the allow, the start time, or the
    /// first use; `None` while a first-use grant is unclaimed.
    pub starts_at: Option<DateTime<Utc>>,
    /// When it ends (S8); for an unclaimed grant, its claim deadline.
    pub expires_at: DateTime<Utc>,
    /// G3: what support may do there.
    pub level: SupportAccessLevel,
    /// The length of the window; a first-use grant's clock starts at claim.
    pub duration: Duration,
    /// G6: set for a first-use grant: unclaimed by then, it lapses.
    pub claim_deadline: Option<DateTime<Utc>>,
}

impl SupportGrant {
    /// Where the grant stands at `now` (G6, S8).
    pub fn phase_at(&self, now: DateTime<Utc>) -> GrantPhase {
        phase_at(self.starts_at, self.expires_at, now)
    }

    /// S8, G6: support may act now: started and not yet expired.
    pub fn is_active_at(&self, now: DateTime<Utc>) -> bool {
        self.phase_at(now) == GrantPhase::Active
    }

    /// Not lapsed: active, scheduled or unclaimed (S8: ends exactly at
    /// its expiry or claim deadline).
    pub fn is_open_at(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

/// Why a grant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantEnd {
    Revoked,
    Expired,
    /// G6: a first-use grant nobody claimed before its deadline.
    Unclaimed,
    /// G7: the support agent ended its own access.
    Relinquished,
    /// G7: the ticketing system closed the ticket.
    TicketClosed,
}

impl GrantEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantEnd::Revoked => "revoked",
            GrantEnd::Expired => "expired",
            GrantEnd::Unclaimed => "unclaimed",
            GrantEnd::Relinquished => "relinquished",
            GrantEnd::TicketClosed => "ticket_closed",
        }
    }
}

/// How long support access lasts (S4): 15 minutes to 30 days, 1 day unless
/// said otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportDuration(Duration);

impl SupportDuration {
    pub const MIN: Duration = Duration::minutes(15);
    pub const MAX: Duration = Duration::days(30);
    pub const DEFAULT: Duration = Duration::days(1);

    pub fn parse(requested: Option<Duration>) -> Result<Self, InvalidValue> {
        let duration = requested.unwrap_or(Self::DEFAULT);
        if duration < Self::MIN || duration > Self::MAX {
            return Err(InvalidValue::new("must be between 15 minutes and 30 days"));
        }
        Ok(Self(duration))
    }

    pub fn get(self) -> Duration {
        self.0
    }
}

/// The most portals one AllowAccess or RevokeAccess may name (S4).
pub const MAX_BULK_PORTALS: usize = 500;

/// Why support wants in (S2): 1-2000 characters, trimmed.
pub fn parse_reason(raw: &str) -> Result<String, InvalidValue> {
    bounded_text(raw, 1, 2000)
}

/// An optional ticket reference (S2): up to 200 characters.
pub fn parse_ticket_reference(raw: &str) -> Result<String, InvalidValue> {
    bounded_text(raw, 0, 200)
}

/// What support did elsewhere (S9), as another service reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportAction {
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub details: BTreeMap<String, String>,
}

impl SupportAction {
    /// `course.viewed`-like names: lowercase letters, digits, `.`, `_`, `-`.
    pub fn parse_action(raw: &str) -> Result<String, InvalidValue> {
        let action = bounded_text(raw, 1, 100)?;
        if !action
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        {
            return Err(InvalidValue::new(
                "must use lowercase letters, digits, '.', '_' and '-' only, e.g. course.viewed",
            ));
        }
        Ok(action)
    }

    pub fn parse_target_type(raw: &str) -> Result<String, InvalidValue> {
        bounded_text(raw, 0, 100)
    }

    pub fn parse_target_id(raw: &str) -> Result<String, InvalidValue> {
        bounded_text(raw, 0, 200)
    }

    /// At most 32 entries; keys 1-64 characters, values up to 1000.
    pub fn parse_details(
        raw: &std::collections::HashMap<String, String>,
    ) -> Result<BTreeMap<String, String>, InvalidValue> {
        if raw.len() > 32 {
            return Err(InvalidValue::new("must have at most 32 entries"));
        }
        let mut details = BTreeMap::new();
        for (key, value) in raw {
            let key = bounded_text(key, 1, 64)
                .map_err(|e| InvalidValue::new(format!("key {key:?} {}", e.description)))?;
            if value.chars().count() > 1000 || value.chars().any(char::is_control) {
                return Err(InvalidValue::new(format!(
                    "value of {key:?} must be at most 1000 characters without control characters"
                )));
            }
            details.insert(key, value.clone());
        }
        Ok(details)
    }
}

fn bounded_text(raw: &str, min: usize, max: usize) -> Result<String, InvalidValue> {
    let text = raw.trim();
    let chars = text.chars().count();
    if chars < min {
        return Err(InvalidValue::new("must not be empty"));
    }
    if chars > max {
        return Err(InvalidValue::new(format!(
            "must be at most {max} characters"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(InvalidValue::new("must not contain control characters"));
    }
    Ok(text.to_owned())
}

/// The login of a grant's temporary support admin: unique per grant, and in
/// a reserved domain no real person can hold.
pub fn temporary_admin_email(grant_id: Uuid) -> String {
    format!("support-{}@support.invalid", grant_id.simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(state: AccessRequestState, expires_at: DateTime<Utc>) -> AccessRequest {
        AccessRequest {
            id: Uuid::from_u128(1),
            realm_id: Uuid::from_u128(2),
            agent_id: Uuid::from_u128(3),
            agent_name: "Ana".into(),
            reason: "ticket".into(),
            ticket_reference: String::new(),
            state,
            created_at: expires_at - Duration::days(7),
            expires_at,
            decided_at: None,
            decided_by: None,
            level: SupportAccessLevel::Admin,
        }
    }

    #[test]
    fn s2_pending_request_expires_exactly_at_its_expiry() {
        let at = Utc::now();
        let r = request(AccessRequestState::Pending, at);
        assert_eq!(
            r.state_at(at - Duration::microseconds(1)),
            AccessRequestState::Pending
        );
        assert_eq!(r.state_at(at), AccessRequestState::Expired);
        assert!(!may_allow(&r, at, false));
    }

    #[test]
    fn s4_approved_request_stays_open_only_while_a_grant_is_active() {
        let at = Utc::now();
        let r = request(AccessRequestState::Approved, at - Duration::days(1));
        assert!(may_allow(&r, at, true));
        assert!(!may_allow(&r, at, false));
        assert!(!may_allow(
            &request(AccessRequestState::Declined, at + Duration::days(1)),
            at,
            true
        ));
    }

    #[test]
    fn s4_durations_between_15_minutes_and_30_days() {
        assert_eq!(
            SupportDuration::parse(None).unwrap().get(),
            Duration::days(1)
        );
        assert!(SupportDuration::parse(Some(Duration::minutes(15))).is_ok());
        assert!(SupportDuration::parse(Some(Duration::days(30))).is_ok());
        assert!(
            SupportDuration::parse(Some(Duration::minutes(15) - Duration::seconds(1))).is_err()
        );
        assert!(SupportDuration::parse(Some(Duration::days(30) + Duration::seconds(1))).is_err());
        assert!(SupportDuration::parse(Some(Duration::seconds(-5))).is_err());
    }

    #[test]
    fn s8_grant_is_active_until_exactly_its_expiry() {
        let at = Utc::now();
        let grant = SupportGrant {
            id: Uuid::from_u128(1),
            realm_id: Uuid::from_u128(2),
            portal_id: Uuid::from_u128(3),
            access_request_id: Uuid::from_u128(4),
            temporary_account_id: Uuid::from_u128(5),
            created_at: at - Duration::hours(1),
            starts_at: Some(at - Duration::hours(1)),
            expires_at: at,
            level: SupportAccessLevel::Admin,
            duration: Duration::hours(1),
            claim_deadline: None,
        };
        assert!(grant.is_active_at(at - Duration::microseconds(1)));
        assert!(!grant.is_active_at(at));
    }

    #[test]
    fn s2_reason_is_required_and_bounded() {
        assert!(parse_reason("  ").is_err());
        assert_eq!(parse_reason(" login fails ").unwrap(), "login fails");
        assert!(parse_reason(&"x".repeat(2001)).is_err());
        assert!(parse_ticket_reference("").is_ok());
        assert!(parse_ticket_reference(&"x".repeat(201)).is_err());
    }

    #[test]
    fn s9_action_names_are_plain_identifiers() {
        assert!(SupportAction::parse_action("course.viewed").is_ok());
        assert!(SupportAction::parse_action("Course Viewed").is_err());
        assert!(SupportAction::parse_action("").is_err());
    }
}

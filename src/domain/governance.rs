//! Consent governance (G1-G7): the realm's support-access policy, access
//! levels, N-of-M approval and when a grant's window opens.
//!
//! - G1, G2: [`SupportPolicy`] with its defaults (today's behaviour) and
//!   bounds; a disabled policy refuses requests, allows and approvals.
//! - G3, G4: [`SupportAccessLevel`], ordered: an allow may narrow the level
//!   asked for, never widen it.
//! - G5: [`Proposal`], the terms the first allow proposes and the N-th
//!   approval starts.
//! - G6: [`GrantTiming`]: at once, at a start time, or at first use within
//!   a claim window; [`GrantPhase`] says where a grant stands at an instant.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::InvalidValue;
use super::support::SupportDuration;

/// What support may do inside a portal (G3, G4). `ViewOnly < Admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SupportAccessLevel {
    /// Sees the portal as an admin does and changes nothing (G4).
    ViewOnly,
    /// The seed's temporary support admin (S10).
    Admin,
}

impl SupportAccessLevel {
    pub const ALL: [SupportAccessLevel; 2] =
        [SupportAccessLevel::ViewOnly, SupportAccessLevel::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            SupportAccessLevel::ViewOnly => "view_only",
            SupportAccessLevel::Admin => "admin",
        }
    }

    pub fn from_stored(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == value)
    }
}

/// Stored form of a set of levels: `view_only,admin`.
pub fn levels_to_stored(levels: &[SupportAccessLevel]) -> String {
    levels
        .iter()
        .map(|l| l.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn levels_from_stored(value: &str) -> Vec<SupportAccessLevel> {
    let mut levels: Vec<SupportAccessLevel> = value
        .split(',')
        .filter_map(SupportAccessLevel::from_stored)
        .collect();
    levels.sort();
    levels.dedup();
    levels
}

/// G1: how many distinct full top-level admins must approve, 1-3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequiredApprovals(u8);

impl RequiredApprovals {
    pub fn parse(value: i64) -> Result<Self, InvalidValue> {
        match value {
            1..=3 => Ok(Self(value as u8)),
            _ => Err(InvalidValue::new("must be between 1 and 3")),
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// A realm's support-access policy (G1). The defaults are the seed's
/// behaviour: enabled, up to 30 days, one approval, both levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportPolicy {
    pub enabled: bool,
    pub max_duration: SupportDuration,
    pub required_approvals: RequiredApprovals,
    /// Sorted, without repeats, never empty.
    pub allowed_levels: Vec<SupportAccessLevel>,
}

impl Default for SupportPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            max_duration: SupportDuration::parse(Some(SupportDuration::MAX))
                .expect("30 days is a valid duration"),
            required_approvals: RequiredApprovals(1),
            allowed_levels: SupportAccessLevel::ALL.to_vec(),
        }
    }
}

impl SupportPolicy {
    pub fn allows_level(&self, level: SupportAccessLevel) -> bool {
        self.allowed_levels.contains(&level)
    }

    /// G2: the duration of an allow. Unset means one day, or the policy's
    /// maximum when that is shorter; a longer one is refused (`None`).
    pub fn duration_for(&self, requested: Option<SupportDuration>) -> Option<SupportDuration> {
        match requested {
            None if self.max_duration.get() < SupportDuration::DEFAULT => Some(self.max_duration),
            None => SupportDuration::parse(None).ok(),
            Some(d) if d.get() > self.max_duration.get() => None,
            Some(d) => Some(d),
        }
    }
}

/// G1: the allowed levels of a policy: at least one, each known.
pub fn parse_allowed_levels(
    levels: Vec<SupportAccessLevel>,
) -> Result<Vec<SupportAccessLevel>, InvalidValue> {
    let mut levels = levels;
    levels.sort();
    levels.dedup();
    if levels.is_empty() {
        return Err(InvalidValue::new("must name at least one level"));
    }
    Ok(levels)
}

/// G6: when a grant's window opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantTiming {
    /// At once (the seed's behaviour).
    Immediate,
    /// At a start time: `SCHEDULED` until then.
    StartAt(DateTime<Utc>),
    /// At first use, if that comes within the claim window.
    OnFirstUse { claim_window: Duration },
}

impl GrantTiming {
    pub const CLAIM_WINDOW_MIN: Duration = Duration::minutes(15);
    pub const CLAIM_WINDOW_MAX: Duration = Duration::days(7);
    pub const CLAIM_WINDOW_DEFAULT: Duration = Duration::days(1);
    pub const START_AHEAD_MAX: Duration = Duration::days(30);

    /// G6: a claim window of 15 minutes to 7 days; unset means one day.
    pub fn claim_window(requested: Option<Duration>) -> Result<Duration, InvalidValue> {
        let window = requested.unwrap_or(Self::CLAIM_WINDOW_DEFAULT);
        if window < Self::CLAIM_WINDOW_MIN || window > Self::CLAIM_WINDOW_MAX {
            return Err(InvalidValue::new("must be between 15 minutes and 7 days"));
        }
        Ok(window)
    }

    /// G6: a start time after `now` and at most 30 days ahead.
    pub fn start_at(start: DateTime<Utc>, now: DateTime<Utc>) -> Result<Self, InvalidValue> {
        if start <= now {
            return Err(InvalidValue::new("must be in the future"));
        }
        if start > now + Self::START_AHEAD_MAX {
            return Err(InvalidValue::new("must be at most 30 days ahead"));
        }
        Ok(GrantTiming::StartAt(start))
    }
}

/// Where a grant stands at an instant (G6, S8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantPhase {
    /// Before its start time.
    Scheduled,
    /// First-use grant nobody has used yet, inside its claim window.
    Unclaimed,
    /// Support may act.
    Active,
    /// Past its expiry (or its claim deadline), swept or not.
    Ended,
}

/// The phase of a window `[starts_at, expires_at)`; `starts_at = None` is
/// an unclaimed first-use grant whose `expires_at` is the claim deadline.
pub fn phase_at(
    starts_at: Option<DateTime<Utc>>,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> GrantPhase {
    if now >= expires_at {
        return GrantPhase::Ended;
    }
    match starts_at {
        None => GrantPhase::Unclaimed,
        Some(start) if now < start => GrantPhase::Scheduled,
        Some(_) => GrantPhase::Active,
    }
}

/// What an allow asks for, once checked against the policy (G2, G3, G6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantTerms {
    pub duration: SupportDuration,
    pub level: SupportAccessLevel,
    pub timing: GrantTiming,
}

/// G5: the terms the first allow proposed, waiting for approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub id: Uuid,
    pub realm_id: Uuid,
    pub access_request_id: Uuid,
    pub portal_ids: Vec<Uuid>,
    pub terms: GrantTerms,
    pub proposed_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub state: ProposalState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalState {
    /// Waiting for approvals.
    Open,
    /// The N-th approval started its grants.
    Started,
    /// Declined, withdrawn, replaced by a new allow, or ended by support.
    Cancelled,
}

impl ProposalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalState::Open => "open",
            ProposalState::Started => "started",
            ProposalState::Cancelled => "cancelled",
        }
    }

    pub fn from_stored(value: &str) -> Option<Self> {
        [
            ProposalState::Open,
            ProposalState::Started,
            ProposalState::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

/// One full top-level admin's approval of a proposal (G5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Approval {
    pub admin_id: Uuid,
    pub approved_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g1_defaults_keep_the_seed_behaviour() {
        let p = SupportPolicy::default();
        assert!(p.enabled);
        assert_eq!(p.max_duration.get(), Duration::days(30));
        assert_eq!(p.required_approvals.get(), 1);
        assert!(p.allows_level(SupportAccessLevel::ViewOnly));
        assert!(p.allows_level(SupportAccessLevel::Admin));
    }

    #[test]
    fn g1_required_approvals_between_1_and_3() {
        assert!(RequiredApprovals::parse(0).is_err());
        assert!(RequiredApprovals::parse(4).is_err());
        assert_eq!(RequiredApprovals::parse(3).unwrap().get(), 3);
    }

    #[test]
    fn g2_duration_over_the_maximum_is_refused_and_unset_fits_it() {
        let p = SupportPolicy {
            max_duration: SupportDuration::parse(Some(Duration::hours(2))).unwrap(),
            ..SupportPolicy::default()
        };
        assert_eq!(p.duration_for(None).unwrap().get(), Duration::hours(2));
        let three = SupportDuration::parse(Some(Duration::hours(3))).unwrap();
        assert!(p.duration_for(Some(three)).is_none());
    }

    #[test]
    fn g3_view_only_is_narrower_than_admin() {
        assert!(SupportAccessLevel::ViewOnly < SupportAccessLevel::Admin);
        assert_eq!(
            levels_from_stored("admin,view_only,admin"),
            vec![SupportAccessLevel::ViewOnly, SupportAccessLevel::Admin]
        );
    }

    #[test]
    fn g6_windows_and_bounds() {
        let now = Utc::now();
        assert!(GrantTiming::start_at(now, now).is_err());
        assert!(GrantTiming::start_at(now + Duration::days(31), now).is_err());
        assert!(GrantTiming::start_at(now + Duration::hours(1), now).is_ok());
        assert!(GrantTiming::claim_window(Some(Duration::minutes(14))).is_err());
        assert!(GrantTiming::claim_window(Some(Duration::days(8))).is_err());
        let end = now + Duration::hours(1);
        assert_eq!(phase_at(None, end, now), GrantPhase::Unclaimed);
        assert_eq!(
            phase_at(Some(now + Duration::minutes(1)), end, now),
            GrantPhase::Scheduled
        );
        assert_eq!(phase_at(Some(now), end, now), GrantPhase::Active);
        assert_eq!(phase_at(Some(now), end, end), GrantPhase::Ended);
    }
}

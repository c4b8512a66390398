//! Accounts and their memberships, and what an account is in its realm.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::UserType;
use super::governance::{GrantPhase, SupportAccessLevel, phase_at};

/// A person's login within one realm.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: Uuid,
    pub realm_id: Uuid,
    pub email: String,
    pub display_name: String,
    /// A9: account-wide, the same in every portal of the realm.
    pub can_access_portal_settings: bool,
    pub invited: bool,
    /// Set for a temporary support admin (S10).
    pub support_grant_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// One account's user type in one portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub portal_id: Uuid,
    pub user_type: UserType,
}

/// The window in which a temporary support admin may act (S6, S8, G6),
/// and at which level (G3). Kept in the cached standing, so the hot path
/// decides level and window without a database read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportWindow {
    pub grant_id: Uuid,
    pub portal_id: Uuid,
    /// G6: when the window opens; `None` for an unclaimed first-use grant.
    pub starts_at: Option<DateTime<Utc>>,
    /// When it ends; for an unclaimed grant, its claim deadline.
    pub expires_at: DateTime<Utc>,
    /// The support agent whose request the grant answers.
    pub requested_by: Uuid,
    /// G3, G4: what the temporary admin may do.
    pub level: SupportAccessLevel,
}

impl SupportWindow {
    pub fn phase_at(&self, now: DateTime<Utc>) -> GrantPhase {
        phase_at(self.starts_at, self.expires_at, now)
    }

    /// S8, G6: support acts only inside the window: started (or claimed)
    /// and not expired, whether or not cleanup has run.
    pub fn is_open_at(&self, now: DateTime<Utc>) -> bool {
        self.phase_at(now) == GrantPhase::Active
    }
}

/// Everything the permission rules need to know about an account: the
/// account, its memberships and its realm's top-level portal.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    pub account: Account,
    pub top_level_portal_id: Uuid,
    pub memberships: Vec<Membership>,
    /// Set for a temporary support admin whose grant has not ended.
    pub support: Option<SupportWindow>,
}

impl Standing {
    pub fn membership_in(&self, portal_id: Uuid) -> Option<UserType> {
        self.memberships
            .iter()
            .find(|m| m.portal_id == portal_id)
            .map(|m| m.user_type)
    }

    pub fn is_support_temporary(&self) -> bool {
        self.account.support_grant_id.is_some()
    }

    /// G6: a temporary admin whose first-use grant nobody has claimed yet
    /// and whose claim window is still open at `now`.
    pub fn unclaimed_support_grant(&self, now: DateTime<Utc>) -> Option<Uuid> {
        self.support
            .filter(|w| w.phase_at(now) == GrantPhase::Unclaimed)
            .map(|w| w.grant_id)
    }

    /// An admin of the top-level portal (A1). Temporary support admins never
    /// are: their grant covers exactly one portal (S6, S10).
    pub fn is_top_level_admin(&self) -> bool {
        !self.is_support_temporary()
            && self.membership_in(self.top_level_portal_id) == Some(UserType::Admin)
    }

    /// A top-level admin with settings access: the only kind that creates
    /// sub-portals (P3) and manages support access (S1); A16 keeps one.
    pub fn is_full_top_level_admin(&self) -> bool {
        self.is_top_level_admin() && self.account.can_access_portal_settings
    }

    /// The user type that counts in `portal_id` at `now`: a top-level admin
    /// is admin everywhere in the realm (A1, A4); a temporary support admin
    /// only in its portal and only until expiry (S6, S8).
    pub fn effective_type_in(&self, portal_id: Uuid, now: DateTime<Utc>) -> Option<UserType> {
        if let Some(window) = &self.support {
            return (window.portal_id == portal_id && window.is_open_at(now))
                .then_some(UserType::Admin);
        }
        if self.is_support_temporary() {
            return None;
        }
        if self.is_top_level_admin() {
            return Some(UserType::Admin);
        }
        self.membership_in(portal_id)
    }

    /// Whether the account sees the portal at all.
    pub fn can_see_portal(&self, portal_id: Uuid, now: DateTime<Utc>) -> bool {
        self.effective_type_in(portal_id, now).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(memberships: Vec<Membership>, settings: bool) -> Standing {
        Standing {
            account: Account {
                id: Uuid::from_u128(1),
                realm_id: Uuid::from_u128(2),
                email: "a@x.io".into(),
                display_name: "A".into(),
                can_access_portal_settings: settings,
                invited: false,
                support_grant_id: None,
                created_at: Utc::now(),
            },
            top_level_portal_id: Uuid::from_u128(10),
            memberships,
            support: None,
        }
    }

    #[test]
    fn a1_top_level_admin_is_admin_in_every_portal() {
        let s = standing(
            vec![Membership {
                portal_id: Uuid::from_u128(10),
                user_type: UserType::Admin,
            }],
            true,
        );
        assert!(s.is_full_top_level_admin());
        assert_eq!(
            s.effective_type_in(Uuid::from_u128(11), Utc::now()),
            Some(UserType::Admin)
        );
    }

    #[test]
    fn a5_sub_portal_admin_holds_other_types_elsewhere() {
        let s = standing(
            vec![
                Membership {
                    portal_id: Uuid::from_u128(11),
                    user_type: UserType::Admin,
                },
                Membership {
                    portal_id: Uuid::from_u128(12),
                    user_type: UserType::Learner,
                },
            ],
            true,
        );
        let now = Utc::now();
        assert!(!s.is_top_level_admin());
        assert_eq!(
            s.effective_type_in(Uuid::from_u128(11), now),
            Some(UserType::Admin)
        );
        assert_eq!(
            s.effective_type_in(Uuid::from_u128(12), now),
            Some(UserType::Learner)
        );
        assert_eq!(s.effective_type_in(Uuid::from_u128(10), now), None);
    }

    #[test]
    fn s8_support_window_closes_exactly_at_expiry() {
        let expires_at = Utc::now();
        let mut s = standing(vec![], true);
        s.account.support_grant_id = Some(Uuid::from_u128(99));
        s.support = Some(SupportWindow {
            grant_id: Uuid::from_u128(99),
            portal_id: Uuid::from_u128(11),
            starts_at: Some(expires_at - chrono::Duration::hours(1)),
            expires_at,
            requested_by: Uuid::from_u128(7),
            level: SupportAccessLevel::Admin,
        });
        let just_before = expires_at - chrono::Duration::microseconds(1);
        assert!(s.can_see_portal(Uuid::from_u128(11), just_before));
        assert!(!s.can_see_portal(Uuid::from_u128(11), expires_at));
        // S6: never another portal.
        assert!(!s.can_see_portal(Uuid::from_u128(10), just_before));
    }
}

//! Who may give whom which user type and permissions (A2, A3, A10, A11,
//! A13-A16, A18, A20, S10). Every route that creates or changes an account goes
//! through [`Grantor::authorize`]: create, invite, bulk import, the API, a
//! type change and a permission change. No route builds its own check.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Channel, Standing, UserType};

/// Why a change is refused. Each maps to one reason of SPEC.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The grantor is not an admin where the change happens.
    AdminRequired,
    /// A13, A14: more than the grantor holds, or for themselves.
    PrivilegeEscalation,
    /// A11: settings access is turned on by hand only.
    ManualChannelRequired,
    /// A15: sub-portal admins never change top-level admins.
    TopLevelAdminProtected,
    /// S10: temporary support admins never create or change admins.
    SupportAdminRestricted,
    /// A2: a top-level admin already reaches every portal.
    TopLevelAdminAlreadyHasAccess,
    /// A3: a top-level admin's type is fixed in sub-portals.
    TopLevelAdminTypeFixed,
    /// A16: the realm would be left without a full top-level admin.
    LastAdmin,
    /// The target is not a member of that portal.
    NotAMember,
    /// Settings access is an option on admins only (A9).
    NotAnAdmin,
}

/// Who is making the change.
#[derive(Debug, Clone, Copy)]
pub enum Grantor<'a> {
    /// A person, through the console (`interactive`) or the bulk import.
    Account {
        standing: &'a Standing,
        channel: Channel,
    },
    /// The public API acting for a portal's key: a limited admin of that
    /// portal, or a limited top-level admin for the top-level portal's key.
    ApiKey { portal_id: Uuid, top_level: bool },
}

/// What is asked for the target account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A new account with one membership (A8).
    Create {
        portal_id: Uuid,
        user_type: UserType,
        settings: Option<bool>,
        invite: bool,
    },
    /// Add or change a membership (A5, A18).
    SetType {
        portal_id: Uuid,
        user_type: UserType,
        settings: Option<bool>,
    },
    /// Settings access on or off, account-wide (A9, A12).
    SetSettingsAccess(bool),
    /// Leave one portal.
    Remove { portal_id: Uuid },
    /// Delete the account.
    Delete,
}

/// What the store must do once a change is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The target's settings access afterwards.
    pub settings_access: bool,
    /// A18: the target becomes a top-level admin, so its sub-portal
    /// memberships go in the same transaction.
    pub drop_sub_portal_memberships: bool,
    /// A16: the change may lower the number of full top-level admins, so
    /// the store must count them under the realm lock.
    pub may_remove_full_top_level_admin: bool,
}

/// The realm facts a decision needs.
#[derive(Debug, Clone, Copy)]
pub struct RealmFacts {
    pub top_level_portal_id: Uuid,
}

impl Grantor<'_> {
    pub fn channel(&self) -> Channel {
        match self {
            Grantor::Account { channel, .. } => *channel,
            Grantor::ApiKey { .. } => Channel::Api,
        }
    }

    fn settings_access(&self) -> bool {
        match self {
            Grantor::Account { standing, .. } => standing.account.can_access_portal_settings,
            Grantor::ApiKey { .. } => false,
        }
    }

    fn is_top_level(&self) -> bool {
        match self {
            Grantor::Account { standing, .. } => standing.is_top_level_admin(),
            Grantor::ApiKey { top_level, .. } => *top_level,
        }
    }

    fn is_support_temporary(&self) -> bool {
        matches!(self, Grantor::Account { standing, .. } if standing.is_support_temporary())
    }

    fn account_id(&self) -> Option<Uuid> {
        match self {
            Grantor::Account { standing, .. } => Some(standing.account.id),
            Grantor::ApiKey { .. } => None,
        }
    }

    /// Admin rights in `portal_id` at `now`.
    pub fn is_admin_in(&self, portal_id: Uuid, now: DateTime<Utc>) -> bool {
        match self {
            Grantor::Account { standing, .. } => {
                standing.effective_type_in(portal_id, now) == Some(UserType::Admin)
            }
            Grantor::ApiKey {
                portal_id: key_portal,
                top_level,
            } => *top_level || *key_portal == portal_id,
        }
    }

    /// Whether the grantor administers every portal of the realm (a
    /// top-level admin, or the top-level portal's key).
    pub fn sees_whole_realm(&self) -> bool {
        self.is_top_level()
    }

    /// Whether the grantor administers some portal the target belongs to.
    pub fn administers(&self, target: &Standing, now: DateTime<Utc>) -> bool {
        self.is_top_level()
            || target
                .memberships
                .iter()
                .any(|m| self.is_admin_in(m.portal_id, now))
    }

    /// The one grant function: decides whether `change` may happen to
    /// `target` (`None` for a new account) and what follows from it.
    pub fn authorize(
        &self,
        target: Option<&Standing>,
        change: Change,
        realm: RealmFacts,
        now: DateTime<Utc>,
    ) -> Result<Decision, Refusal> {
        if let Some(target) = target {
            self.may_touch(target, now)?;
        }
        let current_settings = target.is_some_and(|t| t.account.can_access_portal_settings);
        let target_is_admin =
            target.is_some_and(|t| t.memberships.iter().any(|m| m.user_type == UserType::Admin));
        let target_full_top = target.is_some_and(Standing::is_full_top_level_admin);
        let unchanged = Decision {
            settings_access: current_settings,
            drop_sub_portal_memberships: false,
            may_remove_full_top_level_admin: false,
        };

        match change {
            Change::Create {
                portal_id,
                user_type,
                settings,
                invite,
            } => {
                self.require_admin_in(portal_id, now)?;
                let settings_access = if user_type == UserType::Admin {
                    if self.is_support_temporary() {
                        return Err(Refusal::SupportAdminRestricted); // S10
                    }
                    self.settings_for_admin(false, settings, invite, false)?
                } else {
                    refuse_settings_on_non_admin(settings)?
                };
                Ok(Decision {
                    settings_access,
                    ..unchanged
                })
            }
            Change::SetType {
                portal_id,
                user_type,
                settings,
            } => {
                let target = target.expect("SetType has a target");
                self.require_admin_in(portal_id, now)?;
                let into_top = portal_id == realm.top_level_portal_id;
                if target.is_top_level_admin() && !into_top {
                    // A2 / A3: nothing to add or change in a sub-portal.
                    return Err(if user_type == UserType::Admin {
                        Refusal::TopLevelAdminAlreadyHasAccess
                    } else {
                        Refusal::TopLevelAdminTypeFixed
                    });
                }
                let current = target.membership_in(portal_id);
                let is_self = self.account_id() == Some(target.account.id);
                if is_self && current.is_none_or(|c| user_type > c) {
                    return Err(Refusal::PrivilegeEscalation); // A14
                }
                if user_type == UserType::Admin {
                    if self.is_support_temporary() {
                        return Err(Refusal::SupportAdminRestricted); // S10
                    }
                    // A9: an existing admin's account-wide option stays
                    // unless the request names it.
                    let settings = settings.or(target_is_admin.then_some(current_settings));
                    let settings_access =
                        self.settings_for_admin(current_settings, settings, false, is_self)?;
                    if settings_access != current_settings {
                        self.require_every_admin_portal(target, now)?;
                    }
                    Ok(Decision {
                        settings_access,
                        drop_sub_portal_memberships: into_top,
                        may_remove_full_top_level_admin: target_full_top && !settings_access,
                    })
                } else {
                    refuse_settings_on_non_admin(settings)?;
                    let still_admin_elsewhere = target
                        .memberships
                        .iter()
                        .any(|m| m.portal_id != portal_id && m.user_type == UserType::Admin);
                    Ok(Decision {
                        // Settings access belongs to admins only (A9).
                        settings_access: current_settings && still_admin_elsewhere,
                        may_remove_full_top_level_admin: target_full_top && into_top,
                        ..unchanged
                    })
                }
            }
            Change::SetSettingsAccess(on) => {
                let target = target.expect("SetSettingsAccess has a target");
                if !target_is_admin {
                    return Err(Refusal::NotAnAdmin);
                }
                if self.is_support_temporary() {
                    return Err(Refusal::SupportAdminRestricted); // S10
                }
                let is_self = self.account_id() == Some(target.account.id);
                let settings_access =
                    self.settings_for_admin(current_settings, Some(on), false, is_self)?;
                if settings_access != current_settings {
                    self.require_every_admin_portal(target, now)?;
                }
                Ok(Decision {
                    settings_access,
                    may_remove_full_top_level_admin: target_full_top && !on,
                    ..unchanged
                })
            }
            Change::Remove { portal_id } => {
                let target = target.expect("Remove has a target");
                self.require_admin_in(portal_id, now)?;
                let Some(current) = target.membership_in(portal_id) else {
                    return Err(Refusal::NotAMember);
                };
                let still_admin_elsewhere = target
                    .memberships
                    .iter()
                    .any(|m| m.portal_id != portal_id && m.user_type == UserType::Admin);
                Ok(Decision {
                    settings_access: current_settings
                        && (current != UserType::Admin || still_admin_elsewhere),
                    may_remove_full_top_level_admin: target_full_top
                        && portal_id == realm.top_level_portal_id,
                    ..unchanged
                })
            }
            Change::Delete => {
                let target = target.expect("Delete has a target");
                // Deleting reaches every membership: the grantor must
                // administer all of them.
                if !self.is_top_level()
                    && !target
                        .memberships
                        .iter()
                        .all(|m| self.is_admin_in(m.portal_id, now))
                {
                    return Err(Refusal::AdminRequired);
                }
                Ok(Decision {
                    settings_access: false,
                    may_remove_full_top_level_admin: target_full_top,
                    ..unchanged
                })
            }
        }
    }

    /// A20: settings access is one option on the whole account (A9, A12),
    /// so changing it needs authority over every portal where the target is
    /// an admin, not just one of them.
    fn require_every_admin_portal(
        &self,
        target: &Standing,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        let everywhere = self.is_top_level()
            || target
                .memberships
                .iter()
                .filter(|m| m.user_type == UserType::Admin)
                .all(|m| self.is_admin_in(m.portal_id, now));
        if everywhere {
            Ok(())
        } else {
            Err(Refusal::PrivilegeEscalation)
        }
    }

    fn require_admin_in(&self, portal_id: Uuid, now: DateTime<Utc>) -> Result<(), Refusal> {
        if self.is_admin_in(portal_id, now) {
            Ok(())
        } else {
            Err(Refusal::AdminRequired)
        }
    }

    /// Whether the grantor may change `target` at all (A13 scope, A15, S10).
    fn may_touch(&self, target: &Standing, now: DateTime<Utc>) -> Result<(), Refusal> {
        let target_is_admin = target
            .memberships
            .iter()
            .any(|m| m.user_type == UserType::Admin);
        if target.is_support_temporary() || (self.is_support_temporary() && target_is_admin) {
            return Err(Refusal::SupportAdminRestricted);
        }
        if target.is_top_level_admin() && !self.is_top_level() {
            return Err(Refusal::TopLevelAdminProtected); // A15
        }
        let is_self = self.account_id() == Some(target.account.id);
        if !is_self
            && target_is_admin
            && target.account.can_access_portal_settings
            && !self.settings_access()
        {
            // (beyond) A limited admin has no power over a full admin.
            return Err(Refusal::PrivilegeEscalation);
        }
        if !self.administers(target, now) {
            return Err(Refusal::AdminRequired);
        }
        Ok(())
    }

    /// A10, A11, A13, A14: the settings access an admin ends up with.
    /// `current`: the target's settings access now; `requested`: what the
    /// request asks, `None` for the default.
    fn settings_for_admin(
        &self,
        current: bool,
        requested: Option<bool>,
        invite: bool,
        is_self: bool,
    ) -> Result<bool, Refusal> {
        let Some(wanted) = requested else {
            // A10: manual creation defaults on, but never beyond the
            // grantor's own (A13); invitations, the API and bulk import
            // default off.
            return Ok(self.channel() == Channel::Interactive && !invite && self.settings_access());
        };
        if wanted && !current {
            if !self.channel().may_enable_settings_access() {
                return Err(Refusal::ManualChannelRequired); // A11
            }
            if is_self || !self.settings_access() {
                return Err(Refusal::PrivilegeEscalation); // A13, A14
            }
        }
        Ok(wanted)
    }
}

fn refuse_settings_on_non_admin(settings: Option<bool>) -> Result<bool, Refusal> {
    match settings {
        Some(true) => Err(Refusal::NotAnAdmin),
        _ => Ok(false),
    }
}

/// A16: a realm always keeps a top-level admin with settings access.
/// `full_top_level_admins` is counted under the realm lock, temporary
/// support admins excluded.
#[derive(Debug, Clone, Copy)]
pub struct LastAdminGuard {
    pub full_top_level_admins: u64,
}

impl LastAdminGuard {
    pub fn allows_removing_one(&self) -> Result<(), Refusal> {
        if self.full_top_level_admins <= 1 {
            Err(Refusal::LastAdmin)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Account, Membership};

    const TOP: u128 = 10;
    const SUB_A: u128 = 11;
    const SUB_B: u128 = 12;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn person(n: u128, settings: bool, memberships: &[(u128, UserType)]) -> Standing {
        Standing {
            account: Account {
                id: id(n),
                realm_id: id(1),
                email: format!("p{n}@x.io"),
                display_name: format!("P{n}"),
                can_access_portal_settings: settings,
                invited: false,
                support_grant_id: None,
                created_at: Utc::now(),
            },
            top_level_portal_id: id(TOP),
            memberships: memberships
                .iter()
                .map(|(p, t)| Membership {
                    portal_id: id(*p),
                    user_type: *t,
                })
                .collect(),
            support: None,
        }
    }

    fn realm() -> RealmFacts {
        RealmFacts {
            top_level_portal_id: id(TOP),
        }
    }

    fn create(portal: u128, user_type: UserType, settings: Option<bool>, invite: bool) -> Change {
        Change::Create {
            portal_id: id(portal),
            user_type,
            settings,
            invite,
        }
    }

    fn interactive(s: &Standing) -> Grantor<'_> {
        Grantor::Account {
            standing: s,
            channel: Channel::Interactive,
        }
    }

    #[test]
    fn a10_manual_admin_defaults_full_invited_defaults_limited() {
        let top = person(1, true, &[(TOP, UserType::Admin)]);
        let g = interactive(&top);
        let manual = g.authorize(
            None,
            create(TOP, UserType::Admin, None, false),
            realm(),
            Utc::now(),
        );
        assert!(manual.unwrap().settings_access);
        let invited = g.authorize(
            None,
            create(TOP, UserType::Admin, None, true),
            realm(),
            Utc::now(),
        );
        assert!(!invited.unwrap().settings_access);
    }

    #[test]
    fn a11_settings_on_over_api_or_bulk_is_refused_not_dropped() {
        let top = person(1, true, &[(TOP, UserType::Admin)]);
        let bulk = Grantor::Account {
            standing: &top,
            channel: Channel::BulkImport,
        };
        assert_eq!(
            bulk.authorize(
                None,
                create(TOP, UserType::Admin, Some(true), false),
                realm(),
                Utc::now()
            ),
            Err(Refusal::ManualChannelRequired)
        );
        let api = Grantor::ApiKey {
            portal_id: id(TOP),
            top_level: true,
        };
        assert_eq!(
            api.authorize(
                None,
                create(SUB_A, UserType::Admin, Some(true), false),
                realm(),
                Utc::now()
            ),
            Err(Refusal::ManualChannelRequired)
        );
        // Off is allowed everywhere, and is the API's default.
        let made = api.authorize(
            None,
            create(SUB_A, UserType::Admin, None, false),
            realm(),
            Utc::now(),
        );
        assert!(!made.unwrap().settings_access);
    }

    #[test]
    fn a13_limited_admin_creates_limited_admins_only() {
        let limited = person(1, false, &[(TOP, UserType::Admin)]);
        let g = interactive(&limited);
        let made = g.authorize(
            None,
            create(TOP, UserType::Admin, None, false),
            realm(),
            Utc::now(),
        );
        assert!(!made.unwrap().settings_access);
        assert_eq!(
            g.authorize(
                None,
                create(TOP, UserType::Admin, Some(true), false),
                realm(),
                Utc::now()
            ),
            Err(Refusal::PrivilegeEscalation)
        );
    }

    #[test]
    fn a13_sub_portal_admin_creates_only_in_own_portals() {
        let sub = person(1, true, &[(SUB_A, UserType::Admin)]);
        let g = interactive(&sub);
        assert!(
            g.authorize(
                None,
                create(SUB_A, UserType::Admin, None, false),
                realm(),
                Utc::now()
            )
            .is_ok()
        );
        for elsewhere in [SUB_B, TOP] {
            assert_eq!(
                g.authorize(
                    None,
                    create(elsewhere, UserType::Admin, None, false),
                    realm(),
                    Utc::now()
                ),
                Err(Refusal::AdminRequired)
            );
        }
    }

    #[test]
    fn a14_nobody_adds_permissions_to_themselves() {
        let limited = person(1, false, &[(TOP, UserType::Admin)]);
        let g = interactive(&limited);
        assert_eq!(
            g.authorize(
                Some(&limited),
                Change::SetSettingsAccess(true),
                realm(),
                Utc::now()
            ),
            Err(Refusal::PrivilegeEscalation)
        );
        let learner_admin = person(
            2,
            true,
            &[(SUB_A, UserType::Admin), (SUB_B, UserType::Learner)],
        );
        let g = interactive(&learner_admin);
        assert_eq!(
            g.authorize(
                Some(&learner_admin),
                Change::SetType {
                    portal_id: id(SUB_B),
                    user_type: UserType::Admin,
                    settings: None
                },
                realm(),
                Utc::now()
            ),
            Err(Refusal::AdminRequired),
            "a learner in SUB_B cannot make themselves admin there: they administer nothing there"
        );
    }

    #[test]
    fn a15_sub_portal_admin_cannot_touch_top_level_admins() {
        let sub = person(1, true, &[(SUB_A, UserType::Admin)]);
        let top = person(2, true, &[(TOP, UserType::Admin)]);
        let g = interactive(&sub);
        for change in [Change::SetSettingsAccess(false), Change::Delete] {
            assert_eq!(
                g.authorize(Some(&top), change, realm(), Utc::now()),
                Err(Refusal::TopLevelAdminProtected)
            );
        }
    }

    #[test]
    fn a20_settings_access_needs_every_portal_where_the_target_is_admin() {
        // SA: full admin of SUB_A only. SB: limited admin of SUB_B, learner
        // in SUB_A. SC: full admin of SUB_B, learner in SUB_A.
        let sa = person(1, true, &[(SUB_A, UserType::Admin)]);
        let sb = person(
            2,
            false,
            &[(SUB_A, UserType::Learner), (SUB_B, UserType::Admin)],
        );
        let sc = person(
            3,
            true,
            &[(SUB_A, UserType::Learner), (SUB_B, UserType::Admin)],
        );
        let g = interactive(&sa);
        let now = Utc::now();
        assert_eq!(
            g.authorize(Some(&sb), Change::SetSettingsAccess(true), realm(), now),
            Err(Refusal::PrivilegeEscalation)
        );
        assert_eq!(
            g.authorize(Some(&sc), Change::SetSettingsAccess(false), realm(), now),
            Err(Refusal::PrivilegeEscalation)
        );
        let promote = |settings| Change::SetType {
            portal_id: id(SUB_A),
            user_type: UserType::Admin,
            settings,
        };
        assert_eq!(
            g.authorize(Some(&sb), promote(Some(true)), realm(), now),
            Err(Refusal::PrivilegeEscalation)
        );
        assert_eq!(
            g.authorize(Some(&sc), promote(Some(false)), realm(), now),
            Err(Refusal::PrivilegeEscalation)
        );
        // Making SB an admin of SUB_A without touching the option is fine,
        // and so is an unchanged value.
        assert!(g.authorize(Some(&sb), promote(None), realm(), now).is_ok());
        assert!(
            g.authorize(Some(&sc), Change::SetSettingsAccess(true), realm(), now)
                .is_ok()
        );
        // A top-level admin administers every portal; an admin of both
        // sub-portals does too.
        let top = person(4, true, &[(TOP, UserType::Admin)]);
        assert!(
            interactive(&top)
                .authorize(Some(&sb), Change::SetSettingsAccess(true), realm(), now)
                .is_ok()
        );
        let both = person(
            5,
            true,
            &[(SUB_A, UserType::Admin), (SUB_B, UserType::Admin)],
        );
        assert!(
            interactive(&both)
                .authorize(Some(&sb), Change::SetSettingsAccess(true), realm(), now)
                .is_ok()
        );
    }

    #[test]
    fn a2_a3_top_level_admin_in_a_sub_portal() {
        let top = person(1, true, &[(TOP, UserType::Admin)]);
        let other = person(2, true, &[(TOP, UserType::Admin)]);
        let g = interactive(&top);
        let set = |t| Change::SetType {
            portal_id: id(SUB_A),
            user_type: t,
            settings: None,
        };
        assert_eq!(
            g.authorize(Some(&other), set(UserType::Admin), realm(), Utc::now()),
            Err(Refusal::TopLevelAdminAlreadyHasAccess)
        );
        assert_eq!(
            g.authorize(Some(&other), set(UserType::Learner), realm(), Utc::now()),
            Err(Refusal::TopLevelAdminTypeFixed)
        );
    }

    #[test]
    fn a18_promotion_to_top_level_admin_drops_sub_portal_memberships() {
        let top = person(1, true, &[(TOP, UserType::Admin)]);
        let learner = person(
            2,
            false,
            &[(TOP, UserType::Learner), (SUB_A, UserType::Manager)],
        );
        let decision = interactive(&top)
            .authorize(
                Some(&learner),
                Change::SetType {
                    portal_id: id(TOP),
                    user_type: UserType::Admin,
                    settings: Some(false),
                },
                realm(),
                Utc::now(),
            )
            .unwrap();
        assert!(decision.drop_sub_portal_memberships);
        assert!(!decision.settings_access);
    }

    #[test]
    fn a16_guard_refuses_removing_the_last_full_admin() {
        assert_eq!(
            LastAdminGuard {
                full_top_level_admins: 1
            }
            .allows_removing_one(),
            Err(Refusal::LastAdmin)
        );
        assert!(
            LastAdminGuard {
                full_top_level_admins: 2
            }
            .allows_removing_one()
            .is_ok()
        );
        let top = person(1, true, &[(TOP, UserType::Admin)]);
        let decision = interactive(&top)
            .authorize(
                Some(&top),
                Change::SetSettingsAccess(false),
                realm(),
                Utc::now(),
            )
            .unwrap();
        assert!(decision.may_remove_full_top_level_admin);
    }

    #[test]
    fn s10_support_admin_never_creates_admins() {
        let mut support = person(1, true, &[(SUB_A, UserType::Admin)]);
        support.account.support_grant_id = Some(id(99));
        support.support = Some(crate::domain::SupportWindow {
            grant_id: id(99),
            portal_id: id(SUB_A),
            starts_at: Some(Utc::now() - chrono::Duration::hours(1)),
            expires_at: Utc::now() + chrono::Duration::hours(1),
            requested_by: id(7),
            level: crate::domain::governance::SupportAccessLevel::Admin,
        });
        let g = interactive(&support);
        assert!(
            g.authorize(
                None,
                create(SUB_A, UserType::Learner, None, false),
                realm(),
                Utc::now()
            )
            .is_ok()
        );
        assert_eq!(
            g.authorize(
                None,
                create(SUB_A, UserType::Admin, Some(false), false),
                realm(),
                Utc::now()
            ),
            Err(Refusal::SupportAdminRestricted)
        );
        let learner = person(2, false, &[(SUB_A, UserType::Learner)]);
        assert_eq!(
            g.authorize(
                Some(&learner),
                Change::SetType {
                    portal_id: id(SUB_A),
                    user_type: UserType::Admin,
                    settings: None
                },
                realm(),
                Utc::now()
            ),
            Err(Refusal::SupportAdminRestricted)
        );
    }
}

//! What an account may do in a portal (CheckPermission, the hot path).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::governance::SupportAccessLevel;
use super::{Standing, UserType};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    ViewPortal,
    ManageUsers,
    ManageGroups,
    ManageCourses,
    ManageContent,
    AccessSettings,
    ManageAdmins,
    ManageApiKeys,
    ManageSupportAccess,
    ContactSupport,
    /// G4: see every admin page and setting (every admin tier holds it).
    ViewAdminConsole,
}

impl Permission {
    pub const ALL: [Permission; 11] = [
        Permission::ViewPortal,
        Permission::ManageUsers,
        Permission::ManageGroups,
        Permission::ManageCourses,
        Permission::ManageContent,
        Permission::AccessSettings,
        Permission::ManageAdmins,
        Permission::ManageApiKeys,
        Permission::ManageSupportAccess,
        Permission::ContactSupport,
        Permission::ViewAdminConsole,
    ];

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// A set of permissions, as a bit set: the check is a few instructions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PermissionSet(u16);

impl PermissionSet {
    pub const EMPTY: PermissionSet = PermissionSet(0);

    pub const fn of(permissions: &[Permission]) -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < permissions.len() {
            bits |= permissions[i].bit();
            i += 1;
        }
        PermissionSet(bits)
    }

    pub fn contains(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    pub fn with(self, permission: Permission) -> Self {
        PermissionSet(self.0 | permission.bit())
    }

    pub fn without(self, permission: Permission) -> Self {
        PermissionSet(self.0 & !permission.bit())
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }
}

use Permission::*;

const LEARNER: PermissionSet = PermissionSet::of(&[ViewPortal]);
const INSTRUCTOR: PermissionSet = PermissionSet::of(&[ViewPortal, ManageCourses, ManageContent]);
const MANAGER: PermissionSet = PermissionSet::of(&[ViewPortal, ManageUsers, ManageGroups]);
/// A9: what every admin reaches, with or without settings access; G4:
/// every admin tier sees the admin console.
const ADMIN: PermissionSet = PermissionSet::of(&[
    ViewPortal,
    ManageUsers,
    ManageGroups,
    ManageCourses,
    ManageContent,
    ManageAdmins,
    ViewAdminConsole,
]);
/// G4: a view-only temporary support admin sees the portal as an admin
/// does and changes nothing.
const SUPPORT_VIEW_ONLY: PermissionSet = PermissionSet::of(&[ViewPortal, ViewAdminConsole]);

/// The permissions of a user type, before admin tiers and settings.
pub fn base_permissions(user_type: UserType) -> PermissionSet {
    match user_type {
        UserType::Learner => LEARNER,
        UserType::Instructor => INSTRUCTOR,
        UserType::Manager => MANAGER,
        UserType::Admin => ADMIN,
    }
}

/// An admin's permissions in a portal where they are admin.
/// `top_level`: a top-level admin (A1). `settings`: settings access (A9).
pub fn admin_permissions(top_level: bool, settings: bool) -> PermissionSet {
    let mut set = ADMIN;
    if settings {
        // A9: portal-wide settings, which include API keys (K4).
        set = set.with(AccessSettings).with(ManageApiKeys);
    }
    if top_level && settings {
        set = set.with(ManageSupportAccess); // S1
    }
    if top_level {
        set = set.with(ContactSupport); // A19
    }
    set
}

/// S10: a temporary support admin has settings access in its one portal,
/// but never manages keys, admins or support access, nor files tickets.
pub fn support_admin_permissions() -> PermissionSet {
    ADMIN.with(AccessSettings).without(ManageAdmins)
}

/// G3, G4: a temporary support admin's permissions at its grant's level.
pub fn support_permissions(level: SupportAccessLevel) -> PermissionSet {
    match level {
        SupportAccessLevel::Admin => support_admin_permissions(),
        SupportAccessLevel::ViewOnly => SUPPORT_VIEW_ONLY,
    }
}

/// Everything `standing` may do in `portal_id` at `now`.
pub fn effective_permissions(
    standing: &Standing,
    portal_id: Uuid,
    now: DateTime<Utc>,
) -> PermissionSet {
    match standing.effective_type_in(portal_id, now) {
        None => PermissionSet::EMPTY,
        Some(UserType::Admin) if standing.is_support_temporary() => support_permissions(
            standing
                .support
                .map_or(SupportAccessLevel::ViewOnly, |w| w.level),
        ),
        Some(UserType::Admin) => admin_permissions(
            standing.is_top_level_admin(),
            standing.account.can_access_portal_settings,
        ),
        Some(other) => base_permissions(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a9_limited_admin_reaches_users_groups_courses_content_but_not_settings() {
        let limited = admin_permissions(false, false);
        for p in [
            ViewPortal,
            ManageUsers,
            ManageGroups,
            ManageCourses,
            ManageContent,
        ] {
            assert!(limited.contains(p), "{p:?}");
        }
        for p in [AccessSettings, ManageApiKeys, ManageSupportAccess] {
            assert!(!limited.contains(p), "{p:?}");
        }
    }

    #[test]
    fn s1_only_full_top_level_admins_manage_support_access() {
        assert!(admin_permissions(true, true).contains(ManageSupportAccess));
        assert!(!admin_permissions(true, false).contains(ManageSupportAccess));
        assert!(!admin_permissions(false, true).contains(ManageSupportAccess));
    }

    #[test]
    fn a19_only_top_level_admins_contact_support() {
        assert!(admin_permissions(true, false).contains(ContactSupport));
        assert!(!admin_permissions(false, true).contains(ContactSupport));
        assert!(!support_admin_permissions().contains(ContactSupport));
    }

    #[test]
    fn g4_view_only_support_sees_the_console_and_manages_nothing() {
        let view = support_permissions(SupportAccessLevel::ViewOnly);
        assert_eq!(
            view.iter().collect::<Vec<_>>(),
            vec![ViewPortal, ViewAdminConsole]
        );
        for (top, settings) in [(true, true), (true, false), (false, true), (false, false)] {
            assert!(admin_permissions(top, settings).contains(ViewAdminConsole));
        }
        assert!(support_admin_permissions().contains(ViewAdminConsole));
    }

    #[test]
    fn s10_support_admin_has_settings_but_no_keys_admins_or_support_access() {
        let support = support_admin_permissions();
        assert!(support.contains(AccessSettings));
        for p in [
            ManageApiKeys,
            ManageAdmins,
            ManageSupportAccess,
            ContactSupport,
        ] {
            assert!(!support.contains(p), "{p:?}");
        }
    }
}

//! Who may be added to a portal's groups or courses (A6, A7).

use uuid::Uuid;

use super::Standing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    GroupMember,
    CourseLearner,
    CourseInstructor,
    CourseOwner,
}

/// Why an account is not eligible; the strings are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ineligible {
    /// A6: top-level admins never join sub-portal groups.
    TopLevelAdminNotGroupable,
    /// A7: top-level admins join sub-portal courses only when the realm allows it.
    TopLevelAdminNotEnrollable,
    /// Only members of a portal join its groups and courses.
    NotAMember,
    /// S10: a temporary support admin is not a person of the realm.
    SupportTemporary,
}

impl Ineligible {
    pub fn as_str(self) -> &'static str {
        match self {
            Ineligible::TopLevelAdminNotGroupable => "TOP_LEVEL_ADMIN_NOT_GROUPABLE",
            Ineligible::TopLevelAdminNotEnrollable => "TOP_LEVEL_ADMIN_NOT_ENROLLABLE",
            Ineligible::NotAMember => "NOT_A_MEMBER",
            Ineligible::SupportTemporary => "SUPPORT_TEMPORARY",
        }
    }
}

/// Whether `target` may be added to `portal_id` for `purpose`.
/// `top_level_admins_enrollable` is the realm's A7 setting.
pub fn eligibility(
    target: &Standing,
    portal_id: Uuid,
    purpose: Purpose,
    top_level_admins_enrollable: bool,
) -> Result<(), Ineligible> {
    if target.is_support_temporary() {
        return Err(Ineligible::SupportTemporary);
    }
    let in_sub_portal = portal_id != target.top_level_portal_id;
    if target.is_top_level_admin() && in_sub_portal {
        return match purpose {
            Purpose::GroupMember => Err(Ineligible::TopLevelAdminNotGroupable),
            _ if top_level_admins_enrollable => Ok(()),
            _ => Err(Ineligible::TopLevelAdminNotEnrollable),
        };
    }
    if target.membership_in(portal_id).is_none() {
        return Err(Ineligible::NotAMember);
    }
    Ok(())
}

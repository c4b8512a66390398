//! Realms and portals (P1-P5).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Plan, PortalName, Subdomain};

/// One customer: a top-level portal plus sub-portals, with realm-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Realm {
    pub id: Uuid,
    pub name: String,
    pub top_level_portal_id: Uuid,
    pub plan: Plan,
    /// A7: top-level admins may be enrolled in sub-portal courses.
    pub top_level_admins_enrollable: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A portal. P1: the top-level portal has no parent; a sub-portal's parent
/// is its realm's top-level portal, one level only.
#[derive(Debug, Clone, PartialEq)]
pub struct Portal {
    pub id: Uuid,
    pub realm_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub name: String,
    pub subdomain: String,
    pub created_at: DateTime<Utc>,
}

impl Portal {
    pub fn is_top_level(&self) -> bool {
        self.parent_id.is_none()
    }
}

/// What CreateRealm needs, already validated.
#[derive(Debug, Clone)]
pub struct NewRealm {
    pub name: PortalName,
    pub plan: Plan,
    pub top_level_portal_name: PortalName,
    pub subdomain: Subdomain,
    pub first_admin_email: super::Email,
    pub first_admin_name: super::DisplayName,
}

/// What CreateSubPortal needs, already validated.
#[derive(Debug, Clone)]
pub struct NewSubPortal {
    pub realm_id: Uuid,
    pub name: PortalName,
    pub subdomain: Subdomain,
}

/// A change of realm settings; `None` keeps the current value (P5, A7).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RealmSettingsChange {
    pub plan: Option<Plan>,
    pub top_level_admins_enrollable: Option<bool>,
}

impl RealmSettingsChange {
    pub fn is_empty(&self) -> bool {
        self.plan.is_none() && self.top_level_admins_enrollable.is_none()
    }

    /// The realm after the change, and whether anything actually changed.
    pub fn apply_to(&self, realm: &Realm, now: DateTime<Utc>) -> (Realm, bool) {
        let mut next = realm.clone();
        if let Some(plan) = self.plan {
            next.plan = plan;
        }
        if let Some(enrollable) = self.top_level_admins_enrollable {
            next.top_level_admins_enrollable = enrollable;
        }
        let changed = next.plan != realm.plan
            || next.top_level_admins_enrollable != realm.top_level_admins_enrollable;
        if changed {
            next.updated_at = now;
        }
        (next, changed)
    }
}

//! Proto ↔ domain. Decoding validates: a value that leaves here is valid.

use chrono::{DateTime, Utc};
use prost::Message;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::portal::{Portal, Realm};
use crate::domain::{InvalidValue, Plan, Standing, UserType};
use crate::error::{Error, Result, Violations};
use crate::proto::v1 as pb;
use crate::service::RequestId;

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

pub fn parse_uuid(raw: &str) -> Result<Uuid, InvalidValue> {
    if raw.is_empty() {
        return Err(InvalidValue::new("is required"));
    }
    // Only the canonical hyphenated form: one id, one spelling.
    if raw.len() != 36 {
        return Err(InvalidValue::new(
            "must be a UUID like 0190f0c4-9a3b-7c1d-8e2f-3a4b5c6d7e8f",
        ));
    }
    Uuid::parse_str(raw)
        .map_err(|_| InvalidValue::new("must be a UUID like 0190f0c4-9a3b-7c1d-8e2f-3a4b5c6d7e8f"))
}

/// A required UUID field, alone.
pub fn required_uuid(field: &str, raw: &str) -> Result<Uuid> {
    parse_uuid(raw).map_err(|e| Error::invalid(field, e.description))
}

/// The optional idempotency key of a create RPC, with a digest of the rest
/// of the request so a reused key with another request is refused.
pub fn request_id<M: Message + Clone>(
    violations: &mut Violations,
    raw: &str,
    request: &M,
    without_id: impl FnOnce(&mut M),
) -> Option<RequestId> {
    if raw.is_empty() {
        return None;
    }
    let id = violations.check("request_id", parse_uuid(raw))?;
    let mut rest = request.clone();
    without_id(&mut rest);
    Some(RequestId {
        id,
        fingerprint: hex::encode(Sha256::digest(rest.encode_to_vec())),
    })
}

pub fn plan_from_proto(value: i32) -> Result<Plan, InvalidValue> {
    match pb::Plan::try_from(value) {
        Ok(pb::Plan::Essentials) => Ok(Plan::Essentials),
        Ok(pb::Plan::Professional) => Ok(Plan::Professional),
        Ok(pb::Plan::Enterprise) => Ok(Plan::Enterprise),
        Ok(pb::Plan::Unspecified) => Err(InvalidValue::new("must be set")),
        Err(_) => Err(InvalidValue::new("is not a known Plan value")),
    }
}

pub fn plan_to_proto(plan: Plan) -> pb::Plan {
    match plan {
        Plan::Essentials => pb::Plan::Essentials,
        Plan::Professional => pb::Plan::Professional,
        Plan::Enterprise => pb::Plan::Enterprise,
    }
}

pub fn user_type_from_proto(value: i32) -> Result<UserType, InvalidValue> {
    match pb::UserType::try_from(value) {
        Ok(pb::UserType::Learner) => Ok(UserType::Learner),
        Ok(pb::UserType::Instructor) => Ok(UserType::Instructor),
        Ok(pb::UserType::Manager) => Ok(UserType::Manager),
        Ok(pb::UserType::Admin) => Ok(UserType::Admin),
        Ok(pb::UserType::Unspecified) => Err(InvalidValue::new("must be set")),
        Err(_) => Err(InvalidValue::new("is not a known UserType value")),
    }
}

pub fn user_type_to_proto(user_type: UserType) -> pb::UserType {
    match user_type {
        UserType::Learner => pb::UserType::Learner,
        UserType::Instructor => pb::UserType::Instructor,
        UserType::Manager => pb::UserType::Manager,
        UserType::Admin => pb::UserType::Admin,
    }
}

pub fn realm_to_proto(realm: &Realm) -> pb::Realm {
    pb::Realm {
        realm_id: realm.id.to_string(),
        name: realm.name.clone(),
        top_level_portal_id: realm.top_level_portal_id.to_string(),
        plan: plan_to_proto(realm.plan) as i32,
        api_included: realm.plan.includes_api(),
        top_level_admins_enrollable: realm.top_level_admins_enrollable,
        create_time: Some(timestamp(realm.created_at)),
        update_time: Some(timestamp(realm.updated_at)),
    }
}

pub fn portal_to_proto(portal: &Portal) -> pb::Portal {
    pb::Portal {
        portal_id: portal.id.to_string(),
        realm_id: portal.realm_id.to_string(),
        parent_id: portal.parent_id.map(|p| p.to_string()).unwrap_or_default(),
        name: portal.name.clone(),
        subdomain: portal.subdomain.clone(),
        top_level: portal.is_top_level(),
        create_time: Some(timestamp(portal.created_at)),
    }
}

pub fn user_to_proto(standing: &Standing) -> pb::User {
    let account = &standing.account;
    pb::User {
        user_id: account.id.to_string(),
        realm_id: account.realm_id.to_string(),
        email: account.email.clone(),
        display_name: account.display_name.clone(),
        memberships: standing
            .memberships
            .iter()
            .map(|m| pb::Membership {
                portal_id: m.portal_id.to_string(),
                user_type: user_type_to_proto(m.user_type) as i32,
            })
            .collect(),
        top_level_admin: standing.is_top_level_admin(),
        can_access_portal_settings: account.can_access_portal_settings,
        support_temporary: standing.is_support_temporary(),
        support_agent_id: standing
            .support
            .map(|s| s.requested_by.to_string())
            .unwrap_or_default(),
        support_expire_time: standing.support.map(|s| timestamp(s.expires_at)),
        invited: account.invited,
        create_time: Some(timestamp(account.created_at)),
    }
}

pub fn permission_from_proto(
    value: i32,
) -> Result<crate::domain::permission::Permission, InvalidValue> {
    use crate::domain::permission::Permission as P;
    match pb::Permission::try_from(value) {
        Ok(pb::Permission::ViewPortal) => Ok(P::ViewPortal),
        Ok(pb::Permission::ManageUsers) => Ok(P::ManageUsers),
        Ok(pb::Permission::ManageGroups) => Ok(P::ManageGroups),
        Ok(pb::Permission::ManageCourses) => Ok(P::ManageCourses),
        Ok(pb::Permission::ManageContent) => Ok(P::ManageContent),
        Ok(pb::Permission::AccessSettings) => Ok(P::AccessSettings),
        Ok(pb::Permission::ManageAdmins) => Ok(P::ManageAdmins),
        Ok(pb::Permission::ManageApiKeys) => Ok(P::ManageApiKeys),
        Ok(pb::Permission::ManageSupportAccess) => Ok(P::ManageSupportAccess),
        Ok(pb::Permission::ContactSupport) => Ok(P::ContactSupport),
        Ok(pb::Permission::ViewAdminConsole) => Ok(P::ViewAdminConsole),
        Ok(pb::Permission::Unspecified) => Err(InvalidValue::new("must be set")),
        Err(_) => Err(InvalidValue::new("is not a known Permission value")),
    }
}

pub fn permission_to_proto(permission: crate::domain::permission::Permission) -> pb::Permission {
    use crate::domain::permission::Permission as P;
    match permission {
        P::ViewPortal => pb::Permission::ViewPortal,
        P::ManageUsers => pb::Permission::ManageUsers,
        P::ManageGroups => pb::Permission::ManageGroups,
        P::ManageCourses => pb::Permission::ManageCourses,
        P::ManageContent => pb::Permission::ManageContent,
        P::AccessSettings => pb::Permission::AccessSettings,
        P::ManageAdmins => pb::Permission::ManageAdmins,
        P::ManageApiKeys => pb::Permission::ManageApiKeys,
        P::ManageSupportAccess => pb::Permission::ManageSupportAccess,
        P::ContactSupport => pb::Permission::ContactSupport,
        P::ViewAdminConsole => pb::Permission::ViewAdminConsole,
    }
}

pub fn purpose_from_proto(value: i32) -> Result<crate::domain::eligibility::Purpose, InvalidValue> {
    use crate::domain::eligibility::Purpose;
    match pb::EligibilityPurpose::try_from(value) {
        Ok(pb::EligibilityPurpose::GroupMember) => Ok(Purpose::GroupMember),
        Ok(pb::EligibilityPurpose::CourseLearner) => Ok(Purpose::CourseLearner),
        Ok(pb::EligibilityPurpose::CourseInstructor) => Ok(Purpose::CourseInstructor),
        Ok(pb::EligibilityPurpose::CourseOwner) => Ok(Purpose::CourseOwner),
        Ok(pb::EligibilityPurpose::Unspecified) => Err(InvalidValue::new("must be set")),
        Err(_) => Err(InvalidValue::new("is not a known EligibilityPurpose value")),
    }
}

pub fn api_key_to_proto(key: &crate::domain::api_key::ApiKey) -> pb::ApiKey {
    pb::ApiKey {
        key_id: key.id.clone(),
        portal_id: key.portal_id.to_string(),
        secret_prefix: key.secret_prefix.clone(),
        create_time: Some(timestamp(key.created_at)),
        creator_id: key.created_by.clone(),
        last_use_time: key.last_used_at.map(timestamp),
        active: key.is_active(),
    }
}

/// An optional UUID field: empty means "not given".
pub fn optional_uuid(raw: &str) -> Result<Option<Uuid>, InvalidValue> {
    if raw.is_empty() {
        Ok(None)
    } else {
        parse_uuid(raw).map(Some)
    }
}

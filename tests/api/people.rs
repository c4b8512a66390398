//! Shared steps of the admin-model tests: realms with sub-portals and
//! accounts made through the API, as a real console would.

use tonic::Status;

use crate::helpers::*;
use portal_access::proto::v1 as pb;

/// A realm with two sub-portals.
pub struct World {
    pub realm: RealmFixture,
    pub sub_a: String,
    pub sub_b: String,
}

pub async fn world(app: &TestApp) -> World {
    world_named(app, "acme").await
}

pub async fn world_named(app: &TestApp, name: &str) -> World {
    let realm = app.create_realm(name).await;
    let sub_a = app
        .create_sub_portal(&realm, &format!("{name}-a"))
        .await
        .portal_id;
    let sub_b = app
        .create_sub_portal(&realm, &format!("{name}-b"))
        .await
        .portal_id;
    World {
        realm,
        sub_a,
        sub_b,
    }
}

/// A CreateUser request for a learner without settings access.
pub fn learner_request(portal_id: &str, email: &str, display_name: &str) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        request_id: String::new(),
        portal_id: portal_id.into(),
        email: email.into(),
        display_name: display_name.into(),
        user_type: pb::UserType::Learner as i32,
        invite: false,
        can_access_portal_settings: None,
    }
}

/// CreateUser as `token`.
pub async fn create_user(
    app: &TestApp,
    token: &str,
    portal_id: &str,
    email: &str,
    user_type: pb::UserType,
    settings: Option<bool>,
) -> Result<pb::User, Status> {
    create_user_with(app, token, portal_id, email, user_type, settings, false).await
}

pub async fn create_user_with(
    app: &TestApp,
    token: &str,
    portal_id: &str,
    email: &str,
    user_type: pb::UserType,
    settings: Option<bool>,
    invite: bool,
) -> Result<pb::User, Status> {
    app.admins()
        .create_user(with_token(
            pb::CreateUserRequest {
                request_id: String::new(),
                portal_id: portal_id.into(),
                email: email.into(),
                display_name: email.split('@').next().unwrap().into(),
                user_type: user_type as i32,
                invite,
                can_access_portal_settings: settings,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().user.unwrap())
}

/// A person made by the realm's first admin, with their own token.
pub struct Person {
    pub user: pb::User,
    pub token: String,
}

impl Person {
    pub fn id(&self) -> String {
        self.user.user_id.clone()
    }
}

pub async fn person(
    app: &TestApp,
    world: &World,
    portal_id: &str,
    email: &str,
    user_type: pb::UserType,
    settings: Option<bool>,
) -> Person {
    let user = create_user(
        app,
        &world.realm.admin_token,
        portal_id,
        email,
        user_type,
        settings,
    )
    .await
    .expect("create person");
    let token = app.account(&world.realm.realm_id, &user.user_id);
    Person { user, token }
}

pub async fn set_type(
    app: &TestApp,
    token: &str,
    user_id: &str,
    portal_id: &str,
    user_type: pb::UserType,
    settings: Option<bool>,
) -> Result<pb::SetUserTypeResponse, Status> {
    app.admins()
        .set_user_type(with_token(
            pb::SetUserTypeRequest {
                user_id: user_id.into(),
                portal_id: portal_id.into(),
                user_type: user_type as i32,
                can_access_portal_settings: settings,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

pub async fn set_settings(
    app: &TestApp,
    token: &str,
    user_id: &str,
    on: bool,
) -> Result<pb::UpdateAdminPermissionsResponse, Status> {
    app.admins()
        .update_admin_permissions(with_token(
            pb::UpdateAdminPermissionsRequest {
                user_id: user_id.into(),
                can_access_portal_settings: on,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

pub async fn remove_from(
    app: &TestApp,
    token: &str,
    user_id: &str,
    portal_id: &str,
) -> Result<pb::User, Status> {
    app.admins()
        .remove_user_from_portal(with_token(
            pb::RemoveUserFromPortalRequest {
                user_id: user_id.into(),
                portal_id: portal_id.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().user.unwrap())
}

pub async fn delete(
    app: &TestApp,
    token: &str,
    user_id: &str,
) -> Result<pb::DeleteUserResponse, Status> {
    app.admins()
        .delete_user(with_token(
            pb::DeleteUserRequest {
                user_id: user_id.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

pub async fn effective(
    app: &TestApp,
    token: &str,
    portal_id: &str,
    user_id: &str,
) -> pb::GetEffectivePermissionsResponse {
    app.admins()
        .get_effective_permissions(with_token(
            pb::GetEffectivePermissionsRequest {
                portal_id: portal_id.into(),
                user_id: user_id.into(),
            },
            token,
        ))
        .await
        .expect("effective permissions")
        .into_inner()
}

pub async fn allowed(
    app: &TestApp,
    token: &str,
    portal_id: &str,
    user_id: &str,
    permission: pb::Permission,
) -> bool {
    app.admins()
        .check_permission(with_token(
            pb::CheckPermissionRequest {
                portal_id: portal_id.into(),
                permission: permission as i32,
                user_id: user_id.into(),
            },
            token,
        ))
        .await
        .expect("check permission")
        .into_inner()
        .allowed
}

pub async fn get_user(app: &TestApp, token: &str, user_id: &str) -> pb::User {
    app.admins()
        .get_user(with_token(
            pb::GetUserRequest {
                user_id: user_id.into(),
            },
            token,
        ))
        .await
        .expect("get user")
        .into_inner()
        .user
        .unwrap()
}

pub fn has(effective: &pb::GetEffectivePermissionsResponse, permission: pb::Permission) -> bool {
    effective.permissions.contains(&(permission as i32))
}

pub fn type_in(user: &pb::User, portal_id: &str) -> Option<pb::UserType> {
    user.memberships
        .iter()
        .find(|m| m.portal_id == portal_id)
        .map(|m| pb::UserType::try_from(m.user_type).unwrap())
}

/// An API key of `portal_id` made by `token`, and an api_client token for it.
pub async fn api_key(
    app: &TestApp,
    token: &str,
    portal_id: &str,
) -> (pb::GenerateApiKeysResponse, String) {
    let generated = app
        .portals()
        .generate_api_keys(with_token(
            pb::GenerateApiKeysRequest {
                request_id: String::new(),
                portal_id: portal_id.into(),
            },
            token,
        ))
        .await
        .expect("generate keys")
        .into_inner();
    let mut claims = app.claims("api_client", uuid::Uuid::new_v4());
    claims.portal = Some(portal_id.into());
    claims.key_id = Some(generated.api_key.as_ref().unwrap().key_id.clone());
    let api_token = app.sign(&claims);
    (generated, api_token)
}

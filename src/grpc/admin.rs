//! AdminService: accounts, memberships, admin permissions, checks.

use tonic::{Request, Response, Status};

use super::auth::principal;
use super::convert::{
    optional_uuid, parse_uuid, permission_from_proto, permission_to_proto, purpose_from_proto,
    request_id, user_to_proto, user_type_from_proto, user_type_to_proto,
};
use super::page_token;
use crate::domain::import::check_batch_size;
use crate::domain::page::PageSize;
use crate::domain::{DisplayName, Email};
use crate::error::{Error, Violations};
use crate::proto::v1::{self as pb, admin_service_server::AdminService};
use crate::service::{Caller, NewUser, Services, UserImport, UserToImport};

pub struct AdminApi {
    services: Services,
    /// Seals page tokens and cursors (SPEC §5).
    keys: std::sync::Arc<super::position_keys::PositionKeys>,
}

impl AdminApi {
    pub fn new(
        services: Services,
        keys: std::sync::Arc<super::position_keys::PositionKeys>,
    ) -> Self {
        Self { services, keys }
    }

    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        Ok(self.services.caller(principal(request)?).await?)
    }
}

const USERS_LIST: &str = "users";

/// Both ids of a (user, portal) request, every violation reported at once.
fn user_and_portal(user_id: &str, portal_id: &str) -> Result<(uuid::Uuid, uuid::Uuid), Error> {
    let mut v = Violations::new();
    let user = v.check("user_id", parse_uuid(user_id));
    let portal = v.check("portal_id", parse_uuid(portal_id));
    v.finish()?;
    Ok((user.expect("checked"), portal.expect("checked")))
}

/// ImportUsers' rows, each bad field named `users[i].field` (AIP-233).
fn users_to_import(v: &mut Violations, users: &[pb::UserToImport]) -> Vec<UserToImport> {
    users
        .iter()
        .enumerate()
        .filter_map(|(i, user)| {
            let email = v.check(&format!("users[{i}].email"), Email::parse(&user.email));
            let display_name = v.check(
                &format!("users[{i}].display_name"),
                DisplayName::parse(&user.display_name),
            );
            let user_type = v.check(
                &format!("users[{i}].user_type"),
                user_type_from_proto(user.user_type),
            );
            Some(UserToImport {
                email: email?,
                display_name: display_name?,
                user_type: user_type?,
                invite: user.invite,
                settings: user.can_access_portal_settings,
            })
        })
        .collect()
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let request_id = request_id(&mut v, &req.request_id, &req, |r| r.request_id.clear());
        let portal_id = v.check("portal_id", parse_uuid(&req.portal_id));
        let email = v.check("email", Email::parse(&req.email));
        let display_name = v.check("display_name", DisplayName::parse(&req.display_name));
        let user_type = v.check("user_type", user_type_from_proto(req.user_type));
        v.finish()?;
        let user = self
            .services
            .create_user(
                &caller,
                NewUser {
                    portal_id: portal_id.expect("checked"),
                    email: email.expect("checked"),
                    display_name: display_name.expect("checked"),
                    user_type: user_type.expect("checked"),
                    invite: req.invite,
                    settings: req.can_access_portal_settings,
                },
                request_id,
            )
            .await?;
        Ok(Response::new(pb::CreateUserResponse {
            user: Some(user_to_proto(&user)),
        }))
    }

    async fn import_users(
        &self,
        request: Request<pb::ImportUsersRequest>,
    ) -> Result<Response<pb::ImportUsersResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let request_id = request_id(&mut v, &req.request_id, &req, |r| r.request_id.clear());
        let portal_id = v.check("portal_id", parse_uuid(&req.portal_id));
        // Rows are read only in a batch of the right size: a million bad
        // rows are one violation, not a million.
        let users = v
            .check("users", check_batch_size(req.users.len()))
            .map(|()| users_to_import(&mut v, &req.users));
        v.finish()?;
        let users = self
            .services
            .import_users(
                &caller,
                UserImport {
                    portal_id: portal_id.expect("checked"),
                    users: users.expect("checked"),
                },
                request_id,
            )
            .await?;
        Ok(Response::new(pb::ImportUsersResponse {
            users: users.iter().map(user_to_proto).collect(),
        }))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let caller = self.caller(&request).await?;
        let user_id = super::convert::required_uuid("user_id", &request.get_ref().user_id)?;
        let user = self.services.get_user(&caller, user_id).await?;
        Ok(Response::new(pb::GetUserResponse {
            user: Some(user_to_proto(&user)),
        }))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let portal_id = v.check("portal_id", parse_uuid(&req.portal_id));
        let page_size = v.check("page_size", PageSize::parse(req.page_size));
        v.finish()?;
        let (portal_id, page_size) = (portal_id.expect("checked"), page_size.expect("checked"));
        let after = page_token::decode(&self.keys, &req.page_token, USERS_LIST, portal_id)?
            .map(|raw| {
                uuid::Uuid::parse_str(&raw)
                    .map_err(|_| Error::invalid("page_token", "is not a page token of this list"))
            })
            .transpose()?;
        let page = self
            .services
            .list_users(&caller, portal_id, after, page_size.get())
            .await?;
        Ok(Response::new(pb::ListUsersResponse {
            users: page.users.iter().map(user_to_proto).collect(),
            next_page_token: page
                .next
                .map(|id| page_token::encode(&self.keys, USERS_LIST, portal_id, &id.to_string()))
                .unwrap_or_default(),
        }))
    }

    async fn set_user_type(
        &self,
        request: Request<pb::SetUserTypeRequest>,
    ) -> Result<Response<pb::SetUserTypeResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let user_id = v.check("user_id", parse_uuid(&req.user_id));
        let portal_id = v.check("portal_id", parse_uuid(&req.portal_id));
        let user_type = v.check("user_type", user_type_from_proto(req.user_type));
        v.finish()?;
        let changed = self
            .services
            .set_user_type(
                &caller,
                user_id.expect("checked"),
                portal_id.expect("checked"),
                user_type.expect("checked"),
                req.can_access_portal_settings,
            )
            .await?;
        Ok(Response::new(pb::SetUserTypeResponse {
            user: Some(user_to_proto(&changed.user)),
            removed_portal_ids: changed
                .removed_portal_ids
                .iter()
                .map(|p| p.to_string())
                .collect(),
        }))
    }

    async fn remove_user_from_portal(
        &self,
        request: Request<pb::RemoveUserFromPortalRequest>,
    ) -> Result<Response<pb::RemoveUserFromPortalResponse>, Status> {
        let caller = self.caller(&request).await?;
        let (user_id, portal_id) =
            user_and_portal(&request.get_ref().user_id, &request.get_ref().portal_id)?;
        let user = self
            .services
            .remove_user_from_portal(&caller, user_id, portal_id)
            .await?;
        Ok(Response::new(pb::RemoveUserFromPortalResponse {
            user: Some(user_to_proto(&user)),
        }))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let caller = self.caller(&request).await?;
        let user_id = super::convert::required_uuid("user_id", &request.get_ref().user_id)?;
        self.services.delete_user(&caller, user_id).await?;
        Ok(Response::new(pb::DeleteUserResponse {
            user_id: user_id.to_string(),
        }))
    }

    async fn update_admin_permissions(
        &self,
        request: Request<pb::UpdateAdminPermissionsRequest>,
    ) -> Result<Response<pb::UpdateAdminPermissionsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let user_id = super::convert::required_uuid("user_id", &req.user_id)?;
        let user = self
            .services
            .update_admin_permissions(&caller, user_id, req.can_access_portal_settings)
            .await?;
        Ok(Response::new(pb::UpdateAdminPermissionsResponse {
            user: Some(user_to_proto(&user)),
            // A17: a permission change never rotates API keys.
            api_keys_unchanged: true,
        }))
    }

    async fn get_effective_permissions(
        &self,
        request: Request<pb::GetEffectivePermissionsRequest>,
    ) -> Result<Response<pb::GetEffectivePermissionsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let portal_id = v.check("portal_id", parse_uuid(&req.portal_id));
        let user_id = v.check("user_id", optional_uuid(&req.user_id));
        v.finish()?;
        let effective = self
            .services
            .effective_permissions(
                &caller,
                portal_id.expect("checked"),
                user_id.expect("checked"),
            )
            .await?;
        Ok(Response::new(pb::GetEffectivePermissionsResponse {
            permissions: effective
                .permissions
                .iter()
                .map(|p| permission_to_proto(p) as i32)
                .collect(),
            user_type: effective
                .user_type
                .map_or(pb::UserType::Unspecified, user_type_to_proto)
                as i32,
            top_level_admin: effective.standing.is_top_level_admin(),
            can_access_portal_settings: effective.standing.account.can_access_portal_settings,
            support_temporary: effective.standing.is_support_temporary(),
        }))
    }

    async fn check_permission(
        &self,
        request: Request<pb::CheckPermissionRequest>,
    ) -> Result<Response<pb::CheckPermissionResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let portal_id = v.check("portal_id", parse_uuid(&req.portal_id));
        let permission = v.check("permission", permission_from_proto(req.permission));
        let user_id = v.check("user_id", optional_uuid(&req.user_id));
        v.finish()?;
        let effective = self
            .services
            .effective_permissions(
                &caller,
                portal_id.expect("checked"),
                user_id.expect("checked"),
            )
            .await?;
        Ok(Response::new(pb::CheckPermissionResponse {
            allowed: effective.permissions.contains(permission.expect("checked")),
        }))
    }

    async fn check_eligibility(
        &self,
        request: Request<pb::CheckEligibilityRequest>,
    ) -> Result<Response<pb::CheckEligibilityResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let portal_id = v.check("portal_id", parse_uuid(&req.portal_id));
        let user_id = v.check("user_id", parse_uuid(&req.user_id));
        let purpose = v.check("purpose", purpose_from_proto(req.purpose));
        v.finish()?;
        let verdict = self
            .services
            .check_eligibility(
                &caller,
                portal_id.expect("checked"),
                user_id.expect("checked"),
                purpose.expect("checked"),
            )
            .await?;
        Ok(Response::new(pb::CheckEligibilityResponse {
            eligible: verdict.is_ok(),
            reason: verdict
                .err()
                .map(|r| r.as_str().to_owned())
                .unwrap_or_default(),
        }))
    }
}

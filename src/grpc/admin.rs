//! AdminService: accounts, memberships, admin permissions, checks.

use tonic::{Request, Response, Status};

use crate::proto::v1::{self as pb, admin_service_server::AdminService};
use crate::service::Services;

pub struct AdminApi {
    #[allow(dead_code)]
    services: Services,
}

impl AdminApi {
    pub fn new(services: Services) -> Self {
        Self { services }
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_user(
        &self,
        _request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        Err(Status::unimplemented(
            "CreateUser arrives with the admin permission model (A1-A19)",
        ))
    }

    async fn get_user(
        &self,
        _request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        Err(Status::unimplemented(
            "GetUser arrives with the admin permission model (A1-A19)",
        ))
    }

    async fn list_users(
        &self,
        _request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        Err(Status::unimplemented(
            "ListUsers arrives with the admin permission model (A1-A19)",
        ))
    }

    async fn set_user_type(
        &self,
        _request: Request<pb::SetUserTypeRequest>,
    ) -> Result<Response<pb::SetUserTypeResponse>, Status> {
        Err(Status::unimplemented(
            "SetUserType arrives with the admin permission model (A1-A19)",
        ))
    }

    async fn remove_user_from_portal(
        &self,
        _request: Request<pb::RemoveUserFromPortalRequest>,
    ) -> Result<Response<pb::RemoveUserFromPortalResponse>, Status> {
        Err(Status::unimplemented(
            "RemoveUserFromPortal arrives with the admin permission model (A1-A19)",
        ))
    }

    async fn delete_user(
        &self,
        _request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        Err(Status::unimplemented(
            "DeleteUser arrives with the admin permission model (A1-A19)",
        ))
    }

    async fn update_admin_permissions(
        &self,
        _request: Request<pb::UpdateAdminPermissionsRequest>,
    ) -> Result<Response<pb::UpdateAdminPermissionsResponse>, Status> {
        Err(Status::unimplemented(
            "UpdateAdminPermissions arrives with the admin permission model (A1-A19)",
        ))
    }

    async fn get_effective_permissions(
        &self,
        _request: Request<pb::GetEffectivePermissionsRequest>,
    ) -> Result<Response<pb::GetEffectivePermissionsResponse>, Status> {
        Err(Status::unimplemented(
            "GetEffectivePermissions arrives with the admin permission model (A1-A19)",
        ))
    }

    async fn check_permission(
        &self,
        _request: Request<pb::CheckPermissionRequest>,
    ) -> Result<Response<pb::CheckPermissionResponse>, Status> {
        Err(Status::unimplemented(
            "CheckPermission arrives with the admin permission model (A1-A19)",
        ))
    }

    async fn check_eligibility(
        &self,
        _request: Request<pb::CheckEligibilityRequest>,
    ) -> Result<Response<pb::CheckEligibilityResponse>, Status> {
        Err(Status::unimplemented(
            "CheckEligibility arrives with the admin permission model (A1-A19)",
        ))
    }
}

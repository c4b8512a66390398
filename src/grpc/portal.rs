//! PortalService: realms, portals, realm settings, API keys.

use tonic::{Request, Response, Status};

use super::auth::principal;
use super::convert::{
    api_key_to_proto, parse_uuid, plan_from_proto, portal_to_proto, realm_to_proto, request_id,
    required_uuid, user_to_proto,
};
use super::page_token;
use crate::domain::page::PageSize;
use crate::domain::portal::{NewRealm, NewSubPortal, RealmSettingsChange};
use crate::domain::{DisplayName, Email, PortalName, Subdomain};
use crate::error::{Error, Violations};
use crate::proto::v1::{self as pb, portal_service_server::PortalService};
use crate::service::{Caller, Services};
use crate::store::PortalPosition;

pub struct PortalApi {
    services: Services,
    /// Seals page tokens and cursors (SPEC §5).
    keys: std::sync::Arc<super::position_keys::PositionKeys>,
}

impl PortalApi {
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

const PORTALS_LIST: &str = "portals";

pub(super) fn encode_position(position: PortalPosition) -> String {
    format!("{}:{}", position.depth, position.id)
}

pub(super) fn decode_position(raw: &str) -> Result<PortalPosition, Error> {
    let invalid = || Error::invalid("page_token", "is not a page token of this list");
    let (depth, id) = raw.split_once(':').ok_or_else(invalid)?;
    Ok(PortalPosition {
        depth: depth.parse().map_err(|_| invalid())?,
        id: uuid::Uuid::parse_str(id).map_err(|_| invalid())?,
    })
}

#[tonic::async_trait]
impl PortalService for PortalApi {
    async fn create_realm(
        &self,
        request: Request<pb::CreateRealmRequest>,
    ) -> Result<Response<pb::CreateRealmResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let request_id = request_id(&mut v, &req.request_id, &req, |r| r.request_id.clear());
        let name = v.check("name", PortalName::parse(&req.name));
        let plan = v.check("plan", plan_from_proto(req.plan));
        let top_name = v.check(
            "top_level_portal_name",
            PortalName::parse(&req.top_level_portal_name),
        );
        let subdomain = v.check("subdomain", Subdomain::parse(&req.subdomain));
        let admin = req.first_admin.unwrap_or_default();
        let email = v.check("first_admin.email", Email::parse(&admin.email));
        let admin_name = v.check(
            "first_admin.display_name",
            DisplayName::parse(&admin.display_name),
        );
        v.finish()?;
        let (name, plan, top_name, subdomain, email, admin_name) = (
            name.expect("checked"),
            plan.expect("checked"),
            top_name.expect("checked"),
            subdomain.expect("checked"),
            email.expect("checked"),
            admin_name.expect("checked"),
        );
        let created = self
            .services
            .create_realm(
                &caller,
                NewRealm {
                    name,
                    plan,
                    top_level_portal_name: top_name,
                    subdomain,
                    first_admin_email: email,
                    first_admin_name: admin_name,
                },
                request_id,
            )
            .await?;
        Ok(Response::new(pb::CreateRealmResponse {
            realm: Some(realm_to_proto(&created.realm)),
            top_level_portal: Some(portal_to_proto(&created.top_level_portal)),
            first_admin: Some(user_to_proto(&created.first_admin)),
        }))
    }

    async fn create_sub_portal(
        &self,
        request: Request<pb::CreateSubPortalRequest>,
    ) -> Result<Response<pb::CreateSubPortalResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let request_id = request_id(&mut v, &req.request_id, &req, |r| r.request_id.clear());
        let realm_id = v.check("realm_id", parse_uuid(&req.realm_id));
        let name = v.check("name", PortalName::parse(&req.name));
        let subdomain = v.check("subdomain", Subdomain::parse(&req.subdomain));
        v.finish()?;
        let (realm_id, name, subdomain) = (
            realm_id.expect("checked"),
            name.expect("checked"),
            subdomain.expect("checked"),
        );
        let portal = self
            .services
            .create_sub_portal(
                &caller,
                NewSubPortal {
                    realm_id,
                    name,
                    subdomain,
                },
                request_id,
            )
            .await?;
        Ok(Response::new(pb::CreateSubPortalResponse {
            portal: Some(portal_to_proto(&portal)),
        }))
    }

    async fn get_portal(
        &self,
        request: Request<pb::GetPortalRequest>,
    ) -> Result<Response<pb::GetPortalResponse>, Status> {
        let caller = self.caller(&request).await?;
        let portal_id = required_uuid("portal_id", &request.get_ref().portal_id)?;
        let view = self.services.get_portal(&caller, portal_id).await?;
        Ok(Response::new(pb::GetPortalResponse {
            portal: Some(portal_to_proto(&view.portal)),
            realm: view.realm.as_ref().map(realm_to_proto),
        }))
    }

    async fn list_portals(
        &self,
        request: Request<pb::ListPortalsRequest>,
    ) -> Result<Response<pb::ListPortalsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let realm_id = v.check("realm_id", parse_uuid(&req.realm_id));
        let page_size = v.check("page_size", PageSize::parse(req.page_size));
        v.finish()?;
        let (realm_id, page_size) = (realm_id.expect("checked"), page_size.expect("checked"));
        let after = page_token::decode(&self.keys, &req.page_token, PORTALS_LIST, realm_id)?
            .map(|raw| decode_position(&raw))
            .transpose()?;
        let page = self
            .services
            .list_portals(&caller, realm_id, after, page_size.get())
            .await?;
        Ok(Response::new(pb::ListPortalsResponse {
            portals: page.portals.iter().map(portal_to_proto).collect(),
            next_page_token: page
                .next
                .map(|p| {
                    page_token::encode(&self.keys, PORTALS_LIST, realm_id, &encode_position(p))
                })
                .unwrap_or_default(),
        }))
    }

    async fn update_realm_settings(
        &self,
        request: Request<pb::UpdateRealmSettingsRequest>,
    ) -> Result<Response<pb::UpdateRealmSettingsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let realm_id = v.check("realm_id", parse_uuid(&req.realm_id));
        let plan = match req.plan {
            Some(plan) => v.check("plan", plan_from_proto(plan)),
            None => None,
        };
        v.finish()?;
        let realm_id = realm_id.expect("checked");
        let realm = self
            .services
            .update_realm_settings(
                &caller,
                realm_id,
                RealmSettingsChange {
                    plan,
                    top_level_admins_enrollable: req.top_level_admins_enrollable,
                },
            )
            .await?;
        Ok(Response::new(pb::UpdateRealmSettingsResponse {
            realm: Some(realm_to_proto(&realm)),
        }))
    }

    async fn generate_api_keys(
        &self,
        request: Request<pb::GenerateApiKeysRequest>,
    ) -> Result<Response<pb::GenerateApiKeysResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let request_id = request_id(&mut v, &req.request_id, &req, |r| r.request_id.clear());
        let portal_id = v.check("portal_id", parse_uuid(&req.portal_id));
        v.finish()?;
        let generated = self
            .services
            .generate_api_keys(&caller, portal_id.expect("checked"), request_id)
            .await?;
        Ok(Response::new(pb::GenerateApiKeysResponse {
            api_key: Some(api_key_to_proto(&generated.key)),
            secret: generated.secret,
            revoked_key_ids: generated.revoked_key_ids,
        }))
    }

    async fn get_api_keys(
        &self,
        request: Request<pb::GetApiKeysRequest>,
    ) -> Result<Response<pb::GetApiKeysResponse>, Status> {
        let caller = self.caller(&request).await?;
        let portal_id = required_uuid("portal_id", &request.get_ref().portal_id)?;
        let active = self.services.get_api_keys(&caller, portal_id).await?;
        Ok(Response::new(pb::GetApiKeysResponse {
            api_keys: active.iter().map(api_key_to_proto).collect(),
        }))
    }

    async fn verify_api_key(
        &self,
        request: Request<pb::VerifyApiKeyRequest>,
    ) -> Result<Response<pb::VerifyApiKeyResponse>, Status> {
        let caller = self.caller(&request).await?;
        let secret = &request.get_ref().secret;
        if secret.is_empty() {
            return Err(Error::invalid("secret", "is required").into());
        }
        if secret.len() > 256 {
            return Err(Error::invalid("secret", "must be at most 256 characters").into());
        }
        let verified = self.services.verify_api_key(&caller, secret).await?;
        Ok(Response::new(match verified {
            Some(v) => pb::VerifyApiKeyResponse {
                valid: true,
                key_id: v.key.id.clone(),
                portal_id: v.key.portal_id.to_string(),
                realm_id: v.key.realm_id.to_string(),
            },
            None => pb::VerifyApiKeyResponse::default(),
        }))
    }
}

//! API keys (K1-K5).

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::acting::{Acting, lock_and_act, portal_in};
use super::caller::wrong_kind;
use super::{Caller, RequestId, Services};
use crate::domain::Scope;
use crate::domain::api_key::{ApiKey, SECRET_PREFIX, looks_like_secret, visible_prefix};
use crate::domain::audit::{Actor, NewAuditEvent, action};
use crate::domain::permission::{Permission, effective_permissions};
use crate::domain::portal::Portal;
use crate::error::{Error, Reason, Result};

/// A new key set: the secret is shown this once.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    pub key: ApiKey,
    /// Empty when answering a retried request_id: only the hash was kept.
    pub secret: String,
    pub revoked_key_ids: Vec<String>,
}

/// What VerifyApiKey found.
#[derive(Debug, Clone)]
pub struct VerifiedKey {
    pub key: ApiKey,
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// K4, S10: admins with settings access, in portals they administer;
/// never a temporary support admin nor an API key.
fn require_key_manager(
    acting: &Acting,
    portal: &Portal,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    let Acting::Account { standing, .. } = acting else {
        return Err(Error::permission_denied(
            Reason::SettingsAccessRequired,
            "API keys are managed by admins with settings access, not through the API",
        ));
    };
    if standing.is_support_temporary() {
        return Err(Error::permission_denied(
            Reason::SupportAdminRestricted,
            "temporary support admins never manage API keys",
        ));
    }
    let permissions = effective_permissions(standing, portal.id, now);
    if permissions.contains(Permission::ManageApiKeys) {
        Ok(())
    } else if standing.effective_type_in(portal.id, now) == Some(crate::domain::UserType::Admin) {
        Err(Error::permission_denied(
            Reason::SettingsAccessRequired,
            "managing API keys needs settings access",
        ))
    } else {
        Err(Error::permission_denied(
            Reason::AdminRequired,
            "managing API keys needs admin rights in the portal",
        ))
    }
}

impl Services {
    /// K1-K5: a new key set; the old one dies in the same transaction.
    pub async fn generate_api_keys(
        &self,
        caller: &Caller,
        portal_id: Uuid,
        request_id: Option<RequestId>,
    ) -> Result<GeneratedKey> {
        let now = self.now();
        let mut tx = self.store.begin_write(now).await?;
        let (realm, acting) = lock_and_act(&tx, caller).await?;
        let portal = portal_in(&tx, &realm, portal_id).await?;
        require_key_manager(&acting, &portal, now)?;
        if !realm.plan.includes_api() {
            return Err(Error::new(
                Reason::ApiNotInPlan,
                "the realm's plan does not include the API",
            ));
        }
        let scope = format!("GenerateApiKeys/{}", Actor::from(caller.principal()).id);
        let key = super::idempotency(&request_id, &scope);
        if let Some(idempotency) = &key
            && let Some(result) = tx.remembered(idempotency).await?
        {
            let key = tx
                .api_key(&result)
                .await?
                .ok_or_else(|| Error::internal("remembered key is gone"))?;
            return Ok(GeneratedKey {
                key,
                secret: String::new(),
                revoked_key_ids: Vec::new(),
            });
        }

        let revoked_key_ids = tx.revoke_api_keys(portal.id).await?;
        let secret = format!("{SECRET_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
        debug_assert!(looks_like_secret(&secret));
        let api_key = ApiKey {
            id: Uuid::now_v7().to_string(),
            portal_id: portal.id,
            realm_id: realm.id,
            secret_prefix: visible_prefix(&secret),
            created_by: Actor::from(caller.principal()).id,
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        };
        tx.insert_api_key(&api_key, &hash_secret(&secret)).await?;
        tx.record(
            NewAuditEvent::security(
                realm.id,
                action::API_KEYS_GENERATED,
                Actor::from(caller.principal()),
            )
            .in_portal(portal.id)
            .target("api_key", &api_key.id)
            .detail("revoked_key_ids", revoked_key_ids.join(",")),
        );
        if let Some(idempotency) = &key {
            tx.remember(idempotency, &api_key.id).await?;
        }
        tx.commit().await?;
        Ok(GeneratedKey {
            key: api_key,
            secret,
            revoked_key_ids,
        })
    }

    /// K3, K4: the active key's metadata, never the secret.
    pub async fn get_api_keys(&self, caller: &Caller, portal_id: Uuid) -> Result<Option<ApiKey>> {
        let acting = self
            .reader_grantor(caller)
            .ok_or_else(|| wrong_kind(caller, "an admin with settings access"))?;
        let realm_id = super::acting::realm_of(caller)?;
        let portal = self
            .store
            .portal(portal_id)
            .await?
            .filter(|p| p.realm_id == realm_id)
            .ok_or_else(|| Error::not_found(Reason::PortalNotFound, "portal", portal_id))?;
        require_key_manager(&acting, &portal, self.now())?;
        self.store.active_api_key(portal.id).await
    }

    /// K2, K3, P5: is this secret a portal's active key, on a plan with the API?
    pub async fn verify_api_key(
        &self,
        caller: &Caller,
        secret: &str,
    ) -> Result<Option<VerifiedKey>> {
        if !caller.principal().has_scope(Scope::ApiKeysVerify) {
            return Err(match caller.principal() {
                crate::domain::Principal::Service { .. } => Error::permission_denied(
                    Reason::MissingScope,
                    "this call needs the api_keys.verify scope",
                ),
                _ => wrong_kind(caller, "a service with api_keys.verify"),
            });
        }
        if !looks_like_secret(secret) {
            return Ok(None);
        }
        let Some(key) = self.store.api_key_by_hash(&hash_secret(secret)).await? else {
            return Ok(None);
        };
        let plan_has_api = self
            .store
            .realm(key.realm_id)
            .await?
            .is_some_and(|r| r.plan.includes_api());
        if !plan_has_api {
            return Ok(None);
        }
        self.store.touch_api_key(&key.id, self.now()).await?;
        Ok(Some(VerifiedKey { key }))
    }
}

//! The caller as a grantor of admin rights, re-read inside the write
//! transaction after the realm lock, so what is decided cannot go stale
//! before commit.

use uuid::Uuid;

use super::Caller;
use super::caller::wrong_kind;
use crate::domain::admin_rules::Grantor;
use crate::domain::portal::{Portal, Realm};
use crate::domain::{Channel, Standing};
use crate::error::{Error, Reason, Result};
use crate::store::WriteTx;

/// Who acts in a write, as known under the realm lock.
#[derive(Debug, Clone)]
pub(crate) enum Acting {
    Account {
        standing: Standing,
        channel: Channel,
    },
    ApiKey {
        portal: Portal,
        top_level: bool,
    },
}

impl Acting {
    pub fn grantor(&self) -> Grantor<'_> {
        match self {
            Acting::Account { standing, channel } => Grantor::Account {
                standing,
                channel: *channel,
            },
            Acting::ApiKey { portal, top_level } => Grantor::ApiKey {
                portal_id: portal.id,
                top_level: *top_level,
            },
        }
    }

    pub fn standing(&self) -> Option<&Standing> {
        match self {
            Acting::Account { standing, .. } => Some(standing),
            Acting::ApiKey { .. } => None,
        }
    }
}

/// The realm an admin-capable caller acts in.
pub(crate) fn realm_of(caller: &Caller) -> Result<Uuid> {
    match caller {
        Caller::Account { standing, .. } => Ok(standing.account.realm_id),
        Caller::ApiClient { portal, .. } => Ok(portal.realm_id),
        Caller::Other(_) => Err(wrong_kind(caller, "an admin (account or API key)")),
    }
}

/// Locks the caller's realm and re-reads the caller under the lock.
pub(crate) async fn lock_and_act(tx: &WriteTx, caller: &Caller) -> Result<(Realm, Acting)> {
    let realm_id = realm_of(caller)?;
    let realm = tx
        .lock_realm(realm_id)
        .await?
        .ok_or_else(|| Error::not_found(Reason::RealmNotFound, "realm", realm_id))?;
    let acting = match caller {
        Caller::Account {
            standing,
            principal,
        } => {
            let fresh = tx
                .standing_in(&realm, standing.account.id)
                .await?
                .ok_or_else(|| {
                    Error::new(
                        Reason::UnknownAccount,
                        "the token's account no longer exists",
                    )
                })?;
            super::caller::support_window_open(&fresh, tx.now())?;
            Acting::Account {
                standing: fresh,
                channel: principal.channel().unwrap_or(Channel::Interactive),
            }
        }
        Caller::ApiClient {
            portal,
            top_level,
            principal,
        } => {
            // K2: a key replaced by a concurrent GenerateApiKeys is dead
            // from that commit on, for writes too.
            let key_id = match principal {
                crate::domain::Principal::ApiClient { key_id, .. } => key_id,
                _ => unreachable!("an ApiClient caller has an api_client principal"),
            };
            let active = tx.active_api_key(portal.id).await?;
            if active.is_none_or(|k| &k.id != key_id) {
                return Err(Error::new(
                    Reason::ApiKeyRevoked,
                    "the token's API key is not the portal's active key",
                ));
            }
            Acting::ApiKey {
                portal: portal.clone(),
                top_level: *top_level,
            }
        }
        Caller::Other(_) => return Err(wrong_kind(caller, "an admin (account or API key)")),
    };
    Ok((realm, acting))
}

/// A portal of `realm`; any other is NOT_FOUND.
pub(crate) async fn portal_in(tx: &WriteTx, realm: &Realm, portal_id: Uuid) -> Result<Portal> {
    tx.portal(portal_id)
        .await?
        .filter(|p| p.realm_id == realm.id)
        .ok_or_else(|| Error::not_found(Reason::PortalNotFound, "portal", portal_id))
}

/// An account of `realm`; any other is NOT_FOUND.
pub(crate) async fn account_in(tx: &WriteTx, realm: &Realm, account_id: Uuid) -> Result<Standing> {
    tx.standing_in(realm, account_id)
        .await?
        .ok_or_else(|| Error::not_found(Reason::UserNotFound, "user", account_id))
}

/// The account a change is aimed at. SPEC §5: a caller who does not see
/// the whole realm is refused the same way whether the account exists or
/// lies outside its portals (the grant function refuses the latter).
pub(crate) async fn target_in(
    tx: &WriteTx,
    realm: &Realm,
    acting: &Acting,
    account_id: Uuid,
) -> Result<Standing> {
    match tx.standing_in(realm, account_id).await? {
        Some(target) => Ok(target),
        None if acting.grantor().sees_whole_realm() => {
            Err(Error::not_found(Reason::UserNotFound, "user", account_id))
        }
        None => Err(Error::permission_denied(
            Reason::AdminRequired,
            "changing an account needs admin rights in one of its portals",
        )),
    }
}

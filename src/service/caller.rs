//! Turns a verified token's principal into what the rules need: for an
//! account, its standing in its realm, loaded at the moment of the call.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Services;
use crate::domain::governance::GrantPhase;
use crate::domain::portal::Portal;
use crate::domain::{Principal, Standing};
use crate::error::{Error, Reason, Result};

/// The caller of one RPC.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A person in a realm (possibly a temporary support admin, S12).
    Account {
        principal: Principal,
        standing: Box<Standing>,
    },
    /// The API gateway for a portal's active key: a limited admin of that
    /// portal (of the whole realm for the top-level portal's key).
    ApiClient {
        principal: Principal,
        portal: Portal,
        top_level: bool,
    },
    /// Any other principal, which needs no database to be known.
    Other(Principal),
}

impl Caller {
    pub fn principal(&self) -> &Principal {
        match self {
            Caller::Account { principal, .. }
            | Caller::ApiClient { principal, .. }
            | Caller::Other(principal) => principal,
        }
    }

    pub fn standing(&self) -> Option<&Standing> {
        match self {
            Caller::Account { standing, .. } => Some(standing),
            _ => None,
        }
    }

    pub fn is_operator(&self) -> bool {
        matches!(self.principal(), Principal::Operator { .. })
    }
}

impl Services {
    /// Resolves the principal. An account that no longer exists is
    /// `UNKNOWN_ACCOUNT`; a temporary support admin's token must name the
    /// human using it, and an ordinary account's token must not (S12).
    pub async fn caller(&self, principal: Principal) -> Result<Caller> {
        if let Principal::ApiClient { portal_id, key_id } = &principal {
            let (portal, top_level) = self.api_client_portal(*portal_id, key_id).await?;
            return Ok(Caller::ApiClient {
                principal,
                portal,
                top_level,
            });
        }
        let Principal::Account {
            account_id,
            realm_id,
            agent,
            ..
        } = &principal
        else {
            return Ok(Caller::Other(principal));
        };
        let standing = self
            .store
            .standing(*realm_id, *account_id)
            .await?
            .ok_or_else(|| {
                Error::new(
                    Reason::UnknownAccount,
                    "the token's account does not exist in its realm",
                )
            })?;
        match (standing.is_support_temporary(), agent.is_some()) {
            (true, false) => {
                return Err(Error::new(
                    Reason::SupportAgentClaimsMissing,
                    "a temporary support admin's token must carry the agent and name claims",
                ));
            }
            (false, true) => {
                return Err(Error::new(
                    Reason::InvalidToken,
                    "agent claims are only valid for a temporary support admin",
                ));
            }
            _ => {}
        }
        // G6: the temporary admin's first call claims a first-use grant.
        let standing = self
            .claim_on_first_use(standing, &principal, "call")
            .await?;
        support_window_open(&standing, self.now())?;
        Ok(Caller::Account {
            principal,
            standing: Box::new(standing),
        })
    }

    /// K2: an api_client token works only while its key is the portal's
    /// active key and the realm's plan includes the API (P5).
    async fn api_client_portal(&self, portal_id: Uuid, key_id: &str) -> Result<(Portal, bool)> {
        let revoked = || {
            Error::new(
                Reason::ApiKeyRevoked,
                "the token's API key is not the portal's active key",
            )
        };
        let portal = self.store.portal(portal_id).await?.ok_or_else(revoked)?;
        let active = self.store.active_api_key(portal_id).await?;
        if active.is_none_or(|k| k.id != key_id) {
            return Err(revoked());
        }
        let realm = self
            .store
            .realm(portal.realm_id)
            .await?
            .ok_or_else(revoked)?;
        if !realm.plan.includes_api() {
            return Err(Error::new(
                Reason::ApiNotInPlan,
                "the realm's plan does not include the API",
            ));
        }
        let top_level = portal.is_top_level();
        Ok((portal, top_level))
    }

    /// Now, at the store's precision (microseconds), so an answer and a
    /// later read of the same row agree.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        crate::domain::clock::from_micros(crate::domain::clock::to_micros(self.clock.now()))
    }
}

/// S8, G6: a temporary support admin acts only inside its grant's window:
/// before a scheduled start every call is refused as not started, and at
/// `expires_at` (or an unclaimed grant's claim deadline) as ended, whether
/// or not the sweeper has run.
pub(crate) fn support_window_open(standing: &Standing, now: DateTime<Utc>) -> Result<()> {
    if !standing.is_support_temporary() {
        return Ok(());
    }
    match standing.support.map(|w| w.phase_at(now)) {
        Some(GrantPhase::Active) => Ok(()),
        Some(GrantPhase::Scheduled) => Err(Error::permission_denied(
            Reason::SupportAccessNotStarted,
            "this temporary support admin's access has not started yet",
        )),
        // Unclaimed after a claim attempt: its deadline passed meanwhile.
        Some(GrantPhase::Unclaimed | GrantPhase::Ended) | None => Err(Error::permission_denied(
            Reason::SupportAccessEnded,
            "this temporary support admin's access has ended",
        )),
    }
}

/// Refuses every principal kind but an operator.
pub(crate) fn require_operator(caller: &Caller) -> Result<()> {
    if caller.is_operator() {
        Ok(())
    } else {
        Err(wrong_kind(caller, "an operator"))
    }
}

/// The standing of an account caller of `realm_id`; another realm looks
/// like a missing one (SPEC §5).
pub(crate) fn require_account_of(caller: &Caller, realm_id: Uuid) -> Result<&Standing> {
    let standing = caller
        .standing()
        .ok_or_else(|| wrong_kind(caller, "an account of the realm"))?;
    if standing.account.realm_id != realm_id {
        return Err(Error::not_found(Reason::RealmNotFound, "realm", realm_id));
    }
    Ok(standing)
}

pub(crate) fn wrong_kind(caller: &Caller, expected: &str) -> Error {
    Error::permission_denied(
        Reason::WrongPrincipalKind,
        format!(
            "this call is for {expected}; the token is of kind {}",
            caller.principal().kind()
        ),
    )
}

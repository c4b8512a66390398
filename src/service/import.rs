//! W3: ImportUsers, the bulk importer's way in. Up to 1,000 users into one
//! portal in one transaction under the realm lock: every row goes through
//! the one grant function on the `bulk_import` channel (accounts) or `api`
//! (API keys), so A10, A11 and A13 hold exactly as for CreateUser; one bad
//! row fails the whole call naming `users[i]` and nothing is created
//! (AIP-233); a retry with the same `request_id` returns the first result.
//! One audit event per user, as CreateUser records it, all appended in one
//! statement at commit (L1).

use std::collections::HashSet;

use uuid::Uuid;

use super::acting::{Acting, lock_and_act, portal_in};
use super::admin::{created_event, facts};
use super::{Caller, RequestId, Services};
use crate::domain::admin_rules::{Change, Refusal};
use crate::domain::audit::Actor;
use crate::domain::import::{check_batch_size, first_repeated_email};
use crate::domain::{Account, Channel, DisplayName, Email, Membership, Standing, UserType};
use crate::error::{Error, Reason, Result};

/// One user of an import, already validated: the fields of CreateUser.
#[derive(Debug, Clone)]
pub struct UserToImport {
    pub email: Email,
    pub display_name: DisplayName,
    pub user_type: UserType,
    pub invite: bool,
    pub settings: Option<bool>,
}

/// What ImportUsers needs, already validated field by field.
#[derive(Debug, Clone)]
pub struct UserImport {
    pub portal_id: Uuid,
    pub users: Vec<UserToImport>,
}

impl Services {
    /// W3 (A5, A8, A10, A11, A13): creates every user of `import` in its
    /// portal, or none. Returns the new accounts in the request's order.
    pub async fn import_users(
        &self,
        caller: &Caller,
        import: UserImport,
        request_id: Option<RequestId>,
    ) -> Result<Vec<Standing>> {
        check_batch_size(import.users.len()).map_err(|e| Error::invalid("users", e.description))?;
        if let Some((first, repeated)) = first_repeated_email(import.users.iter().map(|u| &u.email))
        {
            return Err(email_taken(
                repeated,
                format!("the same email as users[{first}], in any case"),
            ));
        }
        let now = self.now();
        let mut tx = self.store.begin_write(now).await?;
        let (realm, acting) = lock_and_act(&tx, caller).await?;
        let acting = on_bulk_import_channel(acting);
        let portal = portal_in(&tx, &realm, import.portal_id).await?;
        let mut settings = Vec::with_capacity(import.users.len());
        for (index, user) in import.users.iter().enumerate() {
            let decision = acting
                .grantor()
                .authorize(
                    None,
                    Change::Create {
                        portal_id: portal.id,
                        user_type: user.user_type,
                        settings: user.settings,
                        invite: user.invite,
                    },
                    facts(&realm),
                    now,
                )
                .map_err(|refusal| refused_row(index, user, refusal))?;
            settings.push(decision.settings_access);
        }

        let scope = format!("ImportUsers/{}", Actor::from(caller.principal()).id);
        let key = super::idempotency(&request_id, &scope);
        if let Some(key) = &key
            && let Some(first) = tx.remembered(key).await?
        {
            let ids = first
                .split(',')
                .map(Uuid::parse_str)
                .collect::<Result<Vec<_>, _>>()
                .map_err(Error::internal)?;
            return tx
                .standings_of(realm.id, realm.top_level_portal_id, &ids)
                .await;
        }

        let normalized: Vec<String> = import.users.iter().map(|u| u.email.normalized()).collect();
        let taken: HashSet<String> = tx
            .emails_taken(realm.id, &normalized)
            .await?
            .into_iter()
            .collect();
        if let Some(index) = normalized.iter().position(|e| taken.contains(e)) {
            return Err(email_taken(
                index,
                "an account with this email already exists in this realm".to_owned(),
            ));
        }

        let created: Vec<(Account, Membership)> = import
            .users
            .iter()
            .zip(settings)
            .map(|(user, settings_access)| {
                (
                    Account {
                        id: Uuid::now_v7(),
                        realm_id: realm.id,
                        email: user.email.as_str().to_owned(),
                        display_name: user.display_name.as_str().to_owned(),
                        can_access_portal_settings: settings_access,
                        invited: user.invite,
                        support_grant_id: None,
                        created_at: now,
                    },
                    Membership {
                        portal_id: portal.id,
                        user_type: user.user_type,
                    },
                )
            })
            .collect();
        tx.insert_accounts_with_memberships(&created).await?;
        for ((account, membership), user) in created.iter().zip(&import.users) {
            tx.record(created_event(
                caller,
                &acting,
                &portal,
                account,
                membership.user_type,
                user.invite,
            ));
        }
        if let Some(key) = &key {
            let ids: Vec<String> = created.iter().map(|(a, _)| a.id.to_string()).collect();
            tx.remember(key, &ids.join(",")).await?;
        }
        tx.commit().await?;
        Ok(created
            .into_iter()
            .map(|(account, membership)| Standing {
                account,
                top_level_portal_id: realm.top_level_portal_id,
                memberships: vec![membership],
                support: None,
            })
            .collect())
    }
}

/// An account imports on the `bulk_import` channel whatever its token's
/// channel (A10, A11: settings access is never turned on by an import); an
/// API key is on `api` already.
fn on_bulk_import_channel(acting: Acting) -> Acting {
    match acting {
        Acting::Account { standing, .. } => Acting::Account {
            standing,
            channel: Channel::BulkImport,
        },
        api_key @ Acting::ApiKey { .. } => api_key,
    }
}

/// The grant function's refusal of row `index`, naming the row and the
/// field the refusal is about.
fn refused_row(index: usize, user: &UserToImport, refusal: Refusal) -> Error {
    let field = match refusal {
        // Not about a row: the caller may not create users in the portal.
        Refusal::AdminRequired => return Error::from(refusal).with_metadata("field", "portal_id"),
        Refusal::SupportAdminRestricted => format!("users[{index}].user_type"),
        _ if user.settings.is_some() => format!("users[{index}].can_access_portal_settings"),
        _ => format!("users[{index}].user_type"),
    };
    row_error(index, field, Error::from(refusal))
}

/// EMAIL_TAKEN for row `index`.
fn email_taken(index: usize, why: String) -> Error {
    row_error(
        index,
        format!("users[{index}].email"),
        Error::new(Reason::EmailTaken, why),
    )
}

/// Names the row in the message and in `ErrorInfo.metadata` (`index`,
/// `field`), so the importer can point at the line of its file.
fn row_error(index: usize, field: String, mut error: Error) -> Error {
    error.message = format!("{field}: {}", error.message);
    error
        .with_metadata("index", index)
        .with_metadata("field", field)
}

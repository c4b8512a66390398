//! Who is calling (SPEC §2), after the token has been verified.

use uuid::Uuid;

/// How an account's request reached us. It decides defaults and limits for
/// settings access (A10, A11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Created manually, one by one, in the admin console.
    Interactive,
    /// The bulk user import.
    BulkImport,
    /// The public REST API (every `api_client` call).
    Api,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Interactive => "interactive",
            Channel::BulkImport => "bulk_import",
            Channel::Api => "api",
        }
    }

    /// A11: only a person clicking through the console may turn settings
    /// access on.
    pub fn may_enable_settings_access(self) -> bool {
        matches!(self, Channel::Interactive)
    }
}

/// What an internal service may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    PermissionsCheck,
    ApiKeysVerify,
    AuditRead,
    SupportActionsRecord,
    /// G7: the ticketing system ends a closed ticket's support access.
    SupportSessionsEnd,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::PermissionsCheck,
        Scope::ApiKeysVerify,
        Scope::AuditRead,
        Scope::SupportActionsRecord,
        Scope::SupportSessionsEnd,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::PermissionsCheck => "permissions.check",
            Scope::ApiKeysVerify => "api_keys.verify",
            Scope::AuditRead => "audit.read",
            Scope::SupportActionsRecord => "support_actions.record",
            Scope::SupportSessionsEnd => "support_sessions.end",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// The human behind support's actions (S12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportAgent {
    pub id: Uuid,
    pub name: String,
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A person acting in one realm. `agent` is set when the account is a
    /// temporary support admin and names the support agent using it (S12).
    Account {
        account_id: Uuid,
        realm_id: Uuid,
        channel: Channel,
        agent: Option<SupportAgent>,
    },
    /// The public REST API gateway acting for one portal's API key.
    ApiClient { portal_id: Uuid, key_id: String },
    /// A member of the vendor's support team.
    SupportAgent(SupportAgent),
    /// Vendor staff who provision realms.
    Operator { operator_id: Uuid },
    /// An internal backend service.
    Service {
        service_id: Uuid,
        scopes: Vec<Scope>,
    },
}

impl Principal {
    /// The `kind` claim, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Principal::Account { .. } => "account",
            Principal::ApiClient { .. } => "api_client",
            Principal::SupportAgent(_) => "support_agent",
            Principal::Operator { .. } => "operator",
            Principal::Service { .. } => "service",
        }
    }

    pub fn has_scope(&self, scope: Scope) -> bool {
        matches!(self, Principal::Service { scopes, .. } if scopes.contains(&scope))
    }

    /// The channel a change arrives through (A10, A11); `None` for callers
    /// that never act as an admin.
    pub fn channel(&self) -> Option<Channel> {
        match self {
            Principal::Account { channel, .. } => Some(*channel),
            Principal::ApiClient { .. } => Some(Channel::Api),
            _ => None,
        }
    }
}

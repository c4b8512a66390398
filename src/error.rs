//! The one error type of the service: a stable reason (SPEC's upper-snake
//! strings), which fixes the gRPC code, plus a human message. `grpc/status.rs`
//! turns it into a `Status` in one place.

use crate::domain::InvalidValue;

/// gRPC status codes we use, as gRPC intends them (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    PermissionDenied,
    Unauthenticated,
    ResourceExhausted,
    Unavailable,
    Aborted,
    Internal,
}

macro_rules! reasons {
    ($($variant:ident => $code:ident, $text:literal;)*) => {
        /// Every `ErrorInfo.reason` the service returns. The README lists them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Reason { $($variant),* }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Reason::$variant => $text),* }
            }

            pub fn code(self) -> Code {
                match self { $(Reason::$variant => Code::$code),* }
            }
        }
    };
}

reasons! {
    // Bad input (SPEC §5); comes with BadRequest field violations.
    InvalidArgument => InvalidArgument, "INVALID_ARGUMENT";
    RequestIdReused => InvalidArgument, "REQUEST_ID_REUSED";
    MalformedRequest => InvalidArgument, "MALFORMED_REQUEST";
    // Authentication (SPEC §2).
    MissingToken => Unauthenticated, "MISSING_TOKEN";
    InvalidToken => Unauthenticated, "INVALID_TOKEN";
    TokenExpired => Unauthenticated, "TOKEN_EXPIRED";
    UnknownAccount => Unauthenticated, "UNKNOWN_ACCOUNT";
    ApiKeyRevoked => Unauthenticated, "API_KEY_REVOKED";
    SupportAgentClaimsMissing => Unauthenticated, "SUPPORT_AGENT_CLAIMS_MISSING";
    // Authorization.
    WrongPrincipalKind => PermissionDenied, "WRONG_PRINCIPAL_KIND";
    MissingScope => PermissionDenied, "MISSING_SCOPE";
    AdminRequired => PermissionDenied, "ADMIN_REQUIRED";
    TopLevelAdminRequired => PermissionDenied, "TOP_LEVEL_ADMIN_REQUIRED";
    SettingsAccessRequired => PermissionDenied, "SETTINGS_ACCESS_REQUIRED";
    PrivilegeEscalation => PermissionDenied, "PRIVILEGE_ESCALATION";
    ManualChannelRequired => PermissionDenied, "MANUAL_CHANNEL_REQUIRED";
    SupportAdminRestricted => PermissionDenied, "SUPPORT_ADMIN_RESTRICTED";
    TopLevelAdminProtected => PermissionDenied, "TOP_LEVEL_ADMIN_PROTECTED";
    SupportAccessEnded => PermissionDenied, "SUPPORT_ACCESS_ENDED";
    AccessRequestNotYours => PermissionDenied, "ACCESS_REQUEST_NOT_YOURS";
    SupportAccessReadOnly => PermissionDenied, "SUPPORT_ACCESS_READ_ONLY";
    SupportAccessNotStarted => PermissionDenied, "SUPPORT_ACCESS_NOT_STARTED";
    // Missing resources; another realm's resources look missing too (SPEC §5).
    RealmNotFound => NotFound, "REALM_NOT_FOUND";
    PortalNotFound => NotFound, "PORTAL_NOT_FOUND";
    UserNotFound => NotFound, "USER_NOT_FOUND";
    AccessRequestNotFound => NotFound, "ACCESS_REQUEST_NOT_FOUND";
    // Conflicts.
    SubdomainTaken => AlreadyExists, "SUBDOMAIN_TAKEN";
    EmailTaken => AlreadyExists, "EMAIL_TAKEN";
    // Rules that refuse a well-formed request.
    LastAdmin => FailedPrecondition, "LAST_ADMIN";
    TopLevelAdminAlreadyHasAccess => FailedPrecondition, "TOP_LEVEL_ADMIN_ALREADY_HAS_ACCESS";
    TopLevelAdminTypeFixed => FailedPrecondition, "TOP_LEVEL_ADMIN_TYPE_FIXED";
    NotAMember => FailedPrecondition, "NOT_A_MEMBER";
    NotAnAdmin => FailedPrecondition, "NOT_AN_ADMIN";
    ApiNotInPlan => FailedPrecondition, "API_NOT_IN_PLAN";
    AccessRequestNotPending => FailedPrecondition, "ACCESS_REQUEST_NOT_PENDING";
    AccessRequestNotOpen => FailedPrecondition, "ACCESS_REQUEST_NOT_OPEN";
    GrantNotActive => FailedPrecondition, "GRANT_NOT_ACTIVE";
    LogSigningKeyMissing => FailedPrecondition, "LOG_SIGNING_KEY_MISSING";
    SupportAccessDisabled => FailedPrecondition, "SUPPORT_ACCESS_DISABLED";
    PolicyMaxDuration => FailedPrecondition, "POLICY_MAX_DURATION";
    SupportLevelNotAllowed => FailedPrecondition, "SUPPORT_LEVEL_NOT_ALLOWED";
    AlreadyApproved => FailedPrecondition, "ALREADY_APPROVED";
    QuorumUnreachable => FailedPrecondition, "QUORUM_UNREACHABLE";
    NoOpenProposal => FailedPrecondition, "NO_OPEN_PROPOSAL";
    // Operations.
    Overloaded => ResourceExhausted, "OVERLOADED";
    SubscriberTooSlow => ResourceExhausted, "SUBSCRIBER_TOO_SLOW";
    DatabaseUnavailable => Unavailable, "DATABASE_UNAVAILABLE";
    ShuttingDown => Unavailable, "SHUTTING_DOWN";
    ConcurrentModification => Aborted, "CONCURRENT_MODIFICATION";
    Internal => Internal, "INTERNAL";
}

/// One bad field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason:?}: {message}")]
pub struct Error {
    pub reason: Reason,
    pub message: String,
    pub violations: Vec<FieldViolation>,
    /// Extra `ErrorInfo` metadata (e.g. the resource id that was not found).
    pub metadata: Vec<(&'static str, String)>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            violations: Vec::new(),
            metadata: Vec::new(),
        }
    }

    pub fn code(&self) -> Code {
        self.reason.code()
    }

    pub fn with_metadata(mut self, key: &'static str, value: impl ToString) -> Self {
        self.metadata.push((key, value.to_string()));
        self
    }

    /// One bad field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        let field = field.into();
        let description = description.into();
        Self {
            reason: Reason::InvalidArgument,
            message: format!("{field} {description}"),
            violations: vec![FieldViolation { field, description }],
            metadata: Vec::new(),
        }
    }

    /// Several bad fields at once, so a caller fixes them in one round.
    pub fn invalid_fields(violations: Vec<FieldViolation>) -> Self {
        let message = violations
            .iter()
            .map(|v| format!("{} {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            reason: Reason::InvalidArgument,
            message,
            violations,
            metadata: Vec::new(),
        }
    }

    pub fn not_found(reason: Reason, what: &str, id: impl ToString) -> Self {
        let id = id.to_string();
        Self::new(reason, format!("{what} {id} not found")).with_metadata("id", id)
    }

    pub fn permission_denied(reason: Reason, message: impl Into<String>) -> Self {
        Self::new(reason, message)
    }

    /// An internal failure: the detail goes to the log, never to the caller.
    /// The caller gets an incident id to quote; the log has the same id.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        let incident = uuid::Uuid::new_v4();
        tracing::error!(error = %detail, %incident, "internal error");
        Self::new(
            Reason::Internal,
            format!("internal error (incident {incident})"),
        )
        .with_metadata("incident", incident)
    }
}

/// Collects field violations while a request is decoded, so every bad field
/// is reported together.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Keeps the value, or records why it is bad and returns `None`.
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, InvalidValue>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(invalid) => {
                self.add(field, invalid.description);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Fails with every violation seen, if any.
    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid_fields(self.0))
        }
    }
}

impl From<crate::domain::admin_rules::Refusal> for Error {
    fn from(refusal: crate::domain::admin_rules::Refusal) -> Self {
        use crate::domain::admin_rules::Refusal as R;
        let (reason, message) = match refusal {
            R::AdminRequired => (
                Reason::AdminRequired,
                "this needs admin rights in that portal",
            ),
            R::PrivilegeEscalation => (
                Reason::PrivilegeEscalation,
                "an admin can grant only the same or fewer permissions than their own, never to themselves",
            ),
            R::ManualChannelRequired => (
                Reason::ManualChannelRequired,
                "settings access can only be turned on manually, in the admin console",
            ),
            R::TopLevelAdminProtected => (
                Reason::TopLevelAdminProtected,
                "sub-portal admins cannot change top-level admins",
            ),
            R::SupportAdminRestricted => (
                Reason::SupportAdminRestricted,
                "temporary support admins cannot create or change admins, and cannot be changed",
            ),
            R::TopLevelAdminAlreadyHasAccess => (
                Reason::TopLevelAdminAlreadyHasAccess,
                "a top-level admin already has access to every portal of the realm",
            ),
            R::TopLevelAdminTypeFixed => (
                Reason::TopLevelAdminTypeFixed,
                "a top-level admin's user type cannot be changed in a sub-portal",
            ),
            R::LastAdmin => (
                Reason::LastAdmin,
                "Permission cannot be disabled on the last admin account.",
            ),
            R::NotAMember => (
                Reason::NotAMember,
                "the user is not a member of that portal",
            ),
            R::NotAnAdmin => (
                Reason::NotAnAdmin,
                "settings access is an option of admins only",
            ),
        };
        Error::new(reason, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_unique_upper_snake_strings() {
        let mut seen = std::collections::HashSet::new();
        for reason in Reason::ALL {
            let text = reason.as_str();
            assert!(seen.insert(text), "duplicate {text}");
            assert!(text.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        }
    }

    #[test]
    fn every_reason_is_documented() {
        let rules = include_str!("../docs/rules.md");
        for reason in Reason::ALL {
            let text = reason.as_str();
            assert!(
                rules.contains(&format!("`{text}`")),
                "docs/rules.md (Errors) does not list {text}"
            );
        }
    }

    #[test]
    fn last_admin_is_a_failed_precondition() {
        assert_eq!(Reason::LastAdmin.code(), Code::FailedPrecondition);
        assert_eq!(Reason::LastAdmin.as_str(), "LAST_ADMIN");
    }
}

//! The product's rules as plain Rust: no gRPC, no SQL. Every rule of SPEC.md
//! can be found here by its id.

pub mod account;
pub mod admin_rules;
pub mod api_key;
pub mod audit;
pub mod checkpoint;
pub mod clock;
pub mod eligibility;
pub mod email;
pub mod governance;
pub mod import;
pub mod leaf;
pub mod merkle;
pub mod names;
pub mod page;
pub mod permission;
pub mod plan;
pub mod portal;
pub mod principal;
pub mod signed_note;
pub mod subdomain;
pub mod support;
pub mod user_type;

pub use account::{Account, Membership, Standing, SupportWindow};
pub use clock::{Clock, ManualClock, SystemClock};
pub use email::Email;
pub use names::{DisplayName, PortalName};
pub use plan::Plan;
pub use principal::{Channel, Principal, Scope};
pub use subdomain::Subdomain;
pub use user_type::UserType;

/// Why a value was refused by its `parse`; the caller names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue {
    pub description: String,
}

impl InvalidValue {
    pub fn new(description: impl Into<String>) -> Self {
        Self {
            description: description.into(),
        }
    }
}

impl std::fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

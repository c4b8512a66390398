//! SeaORM entities, one file per table.

pub mod access_request;
pub mod account;
pub mod api_key;
pub mod audit_event;
pub mod idempotency_key;
pub mod membership;
pub mod portal;
pub mod realm;
pub mod support_approval;
pub mod support_grant;
pub mod support_policy;
pub mod support_proposal;

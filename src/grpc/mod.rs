//! The gRPC transport: one file per service, thin handlers (decode,
//! authorize, call the use case, encode).

pub mod admin;
pub mod auth;
pub mod convert;
pub mod page_token;
pub mod portal;
pub mod status;
pub mod support_access;

//! The gRPC transport: one file per service, thin handlers (decode,
//! authorize, call the use case, encode).

pub mod admin;
pub mod admission;
pub mod auth;
pub mod codec;
pub mod convert;
pub mod cursor;
mod middleware;
pub mod observe;
pub mod page_token;
pub mod portal;
pub mod position_keys;
pub mod rpc_effects;
pub mod session_log;
pub mod status;
pub mod support_access;
pub mod support_convert;

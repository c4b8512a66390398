//! The generated gRPC contract, and its descriptor set for reflection.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod stream_frame;

pub mod v1 {
    tonic::include_proto!("portal_access.v1");
    pub use super::stream_frame::StreamAuditEventsResponse;
}

/// Every file of the contract, for `grpc.reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/portal_access_descriptor.bin"));

//! Compiles the gRPC contract with protox (pure Rust), so building needs no
//! system `protoc`, and writes the descriptor set served by reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "portal_access/v1/resources.proto",
    "portal_access/v1/portal_service.proto",
    "portal_access/v1/admin_service.proto",
    "portal_access/v1/support_access_service.proto",
    // Only so reflection clients can decode the error details we send.
    "google/rpc/error_details.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("portal_access_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        // Written by hand so a stream can send bytes encoded once for all
        // its subscribers (src/proto/stream_frame.rs).
        .extern_path(
            ".portal_access.v1.StreamAuditEventsResponse",
            "crate::proto::stream_frame::StreamAuditEventsResponse",
        )
        // MALFORMED_REQUEST instead of INTERNAL for undecodable messages.
        .codec_path("crate::grpc::codec::ProtobufCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}

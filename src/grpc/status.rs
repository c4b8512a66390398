//! The one mapping from the service's [`Error`] to a gRPC `Status`, with
//! `google.rpc.ErrorInfo` (domain `portal-access`) and, for bad input,
//! `google.rpc.BadRequest`.

use std::collections::HashMap;

use tonic::{Code as GrpcCode, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::{Code, Error};

pub const ERROR_DOMAIN: &str = "portal-access";

fn grpc_code(code: Code) -> GrpcCode {
    match code {
        Code::InvalidArgument => GrpcCode::InvalidArgument,
        Code::NotFound => GrpcCode::NotFound,
        Code::AlreadyExists => GrpcCode::AlreadyExists,
        Code::FailedPrecondition => GrpcCode::FailedPrecondition,
        Code::PermissionDenied => GrpcCode::PermissionDenied,
        Code::Unauthenticated => GrpcCode::Unauthenticated,
        Code::ResourceExhausted => GrpcCode::ResourceExhausted,
        Code::Unavailable => GrpcCode::Unavailable,
        Code::Aborted => GrpcCode::Aborted,
        Code::Internal => GrpcCode::Internal,
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let metadata: HashMap<String, String> = error
            .metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let mut details =
            ErrorDetails::with_error_info(error.reason.as_str(), ERROR_DOMAIN, metadata);
        for violation in &error.violations {
            details.add_bad_request_violation(&violation.field, &violation.description);
        }
        Status::with_error_details(grpc_code(error.code()), error.message, details)
    }
}

/// The status of a call from its headers (a "trailers only" error) or
/// trailers; `None` where there is none yet.
pub fn grpc_status(headers: &http::HeaderMap) -> Option<GrpcCode> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(GrpcCode::from)
}

/// The canonical name of a gRPC code, as logs and metrics spell it.
pub fn code_name(code: GrpcCode) -> &'static str {
    match code {
        GrpcCode::Ok => "OK",
        GrpcCode::Cancelled => "CANCELLED",
        GrpcCode::Unknown => "UNKNOWN",
        GrpcCode::InvalidArgument => "INVALID_ARGUMENT",
        GrpcCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
        GrpcCode::NotFound => "NOT_FOUND",
        GrpcCode::AlreadyExists => "ALREADY_EXISTS",
        GrpcCode::PermissionDenied => "PERMISSION_DENIED",
        GrpcCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
        GrpcCode::FailedPrecondition => "FAILED_PRECONDITION",
        GrpcCode::Aborted => "ABORTED",
        GrpcCode::OutOfRange => "OUT_OF_RANGE",
        GrpcCode::Unimplemented => "UNIMPLEMENTED",
        GrpcCode::Internal => "INTERNAL",
        GrpcCode::Unavailable => "UNAVAILABLE",
        GrpcCode::DataLoss => "DATA_LOSS",
        GrpcCode::Unauthenticated => "UNAUTHENTICATED",
    }
}

//! S9: every call a temporary support admin makes through this service is
//! logged, automatically, for every RPC of every service (present and
//! future): which RPC, the ids it named, its outcome, and the human behind
//! it (S12).
//!
//! It sits between the token check and the generated service, so it sees
//! the verified principal. Only calls whose token carries agent claims are
//! touched: their request message is read once to pick out its id fields
//! (named from the descriptor set, so no RPC is listed by hand), and the
//! entry is written before the response goes back, so when the caller sees
//! an answer its log entry exists. The entry is its own transaction after
//! the call: a change made by the call is recorded in the call's own
//! transaction (L1); this is the access log on top of it.
//!
//! G4: it is also where a view-only temporary admin's changing calls are
//! refused (`SUPPORT_ACCESS_READ_ONLY`), for every RPC, decided by the one
//! table in `rpc_effects.rs`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::LazyLock;
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full, Limited};
use prost::Message;
use tonic::body::Body;
use tonic::server::NamedService;
use tower_service::Service;

use super::middleware::{BoxFuture, GrpcService, take_ready};
use super::rpc_effects::{RpcEffect, effect_of};

use crate::app::MAX_MESSAGE_BYTES;
use crate::domain::Principal;
use crate::service::Services;

/// Wraps one generated service.
#[derive(Clone)]
pub struct SessionLogged<S> {
    inner: S,
    services: Services,
}

impl<S> SessionLogged<S> {
    pub fn new(inner: S, services: Services) -> Self {
        Self { inner, services }
    }
}

impl<S: NamedService> NamedService for SessionLogged<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for SessionLogged<S>
where
    S: GrpcService,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let support = match request.extensions().get::<Principal>() {
            Some(Principal::Account {
                account_id,
                realm_id,
                agent: Some(agent),
                ..
            }) => Some((*account_id, *realm_id, agent.clone())),
            _ => None,
        };
        let mut inner = take_ready(&mut self.inner);
        let Some((account_id, realm_id, agent)) = support else {
            return Box::pin(inner.call(request));
        };
        let services = self.services.clone();
        Box::pin(async move {
            let rpc = rpc_name(request.uri().path());
            let (parts, body) = request.into_parts();
            // Room for the gRPC frame header on top of the largest message.
            let bytes = match Limited::new(body, MAX_MESSAGE_BYTES + 5).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    return Ok(tonic::Status::resource_exhausted(
                        "request larger than the 4 MiB message limit",
                    )
                    .into_http());
                }
            };
            let ids = named_ids(parts.uri.path(), &bytes);
            // G4: a view-only temporary admin changes nothing, whatever the
            // RPC; the refusal is logged like any other outcome.
            let read_only = effect_of(parts.uri.path()) == RpcEffect::Changes
                && services.is_view_only_support(account_id, realm_id).await;
            let response = if read_only {
                tonic::Status::from(crate::error::Error::permission_denied(
                    crate::error::Reason::SupportAccessReadOnly,
                    "view-only support access changes nothing",
                ))
                .into_http()
            } else {
                let request = http::Request::from_parts(parts, Body::new(Full::new(bytes)));
                inner.call(request).await?
            };
            let outcome = outcome(&response);
            if let Err(err) = services
                .log_support_call(account_id, &agent, &rpc, outcome, ids)
                .await
            {
                tracing::error!(error = %err, %rpc, "could not write the support session log");
            }
            Ok(response)
        })
    }
}

/// `/portal_access.v1.AdminService/SetUserType` → `AdminService/SetUserType`.
fn rpc_name(path: &str) -> String {
    let path = path.trim_start_matches('/');
    match path.split_once('/') {
        Some((service, method)) => {
            let service = service.rsplit('.').next().unwrap_or(service);
            format!("{service}/{method}")
        }
        None => path.to_owned(),
    }
}

/// The gRPC status name of a finished call. Errors are sent "trailers
/// only", with the status in the headers; a unary success has none there.
fn outcome(response: &http::Response<Body>) -> &'static str {
    let code = super::status::grpc_status(response.headers()).unwrap_or(tonic::Code::Ok);
    super::status::code_name(code)
}

/// For each RPC path, its request's top-level string fields that name
/// resources (`…_id`, `…_ids`), by field number.
static ID_FIELDS: LazyLock<HashMap<String, HashMap<u32, String>>> = LazyLock::new(|| {
    let set = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
        .unwrap_or_default();
    let mut messages: HashMap<String, HashMap<u32, String>> = HashMap::new();
    for file in &set.file {
        let package = file.package();
        for message in &file.message_type {
            let ids = message
                .field
                .iter()
                .filter(|f| f.r#type() == prost_types::field_descriptor_proto::Type::String)
                .filter(|f| f.name().ends_with("_id") || f.name().ends_with("_ids"))
                .map(|f| (f.number() as u32, f.name().to_owned()))
                .collect();
            messages.insert(format!(".{package}.{}", message.name()), ids);
        }
    }
    let mut by_path = HashMap::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                if let Some(ids) = messages.get(method.input_type()) {
                    by_path.insert(path, ids.clone());
                }
            }
        }
    }
    by_path
});

/// At most this many values of a repeated id field are logged.
const MAX_LOGGED_VALUES: usize = 20;

/// The id fields of a gRPC-framed request, as `(field name, value)`.
/// Compressed or malformed frames yield nothing; the RPC itself answers
/// those.
fn named_ids(path: &str, frame: &[u8]) -> Vec<(String, String)> {
    let Some(fields) = ID_FIELDS.get(path) else {
        return Vec::new();
    };
    let Some(message) = frame.get(5..).filter(|_| frame.first() == Some(&0)) else {
        return Vec::new();
    };
    let mut values: Vec<(String, Vec<String>)> = Vec::new();
    for (number, bytes) in length_delimited_fields(message) {
        let Some(name) = fields.get(&number) else {
            continue;
        };
        let Ok(value) = std::str::from_utf8(bytes) else {
            continue;
        };
        match values.iter_mut().find(|(n, _)| n == name) {
            Some((_, list)) => list.push(value.to_owned()),
            None => values.push((name.clone(), vec![value.to_owned()])),
        }
    }
    values
        .into_iter()
        .map(|(name, list)| {
            let shown = list
                .iter()
                .take(MAX_LOGGED_VALUES)
                .cloned()
                .collect::<Vec<_>>();
            let mut joined = shown.join(",");
            if list.len() > MAX_LOGGED_VALUES {
                joined.push_str(&format!(",… ({} in all)", list.len()));
            }
            (name, joined)
        })
        .collect()
}

/// The top-level length-delimited fields of a protobuf message.
fn length_delimited_fields(mut bytes: &[u8]) -> Vec<(u32, &[u8])> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let Some((key, rest)) = varint(bytes) else {
            break;
        };
        bytes = rest;
        let number = (key >> 3) as u32;
        match key & 7 {
            0 => match varint(bytes) {
                Some((_, rest)) => bytes = rest,
                None => break,
            },
            1 if bytes.len() >= 8 => bytes = &bytes[8..],
            5 if bytes.len() >= 4 => bytes = &bytes[4..],
            2 => {
                let Some((len, rest)) = varint(bytes) else {
                    break;
                };
                let Some(value) = rest.get(..len as usize) else {
                    break;
                };
                fields.push((number, value));
                bytes = &rest[len as usize..];
            }
            _ => break,
        }
    }
    fields
}

fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1 as pb;

    fn framed(message: &impl Message) -> Vec<u8> {
        let body = message.encode_to_vec();
        let mut frame = vec![0];
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        frame
    }

    #[test]
    fn s9_picks_the_id_fields_of_any_rpc() {
        let request = pb::SetUserTypeRequest {
            user_id: "u-1".into(),
            portal_id: "p-1".into(),
            user_type: pb::UserType::Admin as i32,
            ..Default::default()
        };
        let ids = named_ids(
            "/portal_access.v1.AdminService/SetUserType",
            &framed(&request),
        );
        assert!(ids.contains(&("user_id".into(), "u-1".into())));
        assert!(ids.contains(&("portal_id".into(), "p-1".into())));
    }

    #[test]
    fn s9_repeated_ids_are_joined_and_capped() {
        let request = pb::RevokeAccessRequest {
            realm_id: "r".into(),
            portal_ids: (0..25).map(|i| format!("p{i}")).collect(),
        };
        let ids = named_ids(
            "/portal_access.v1.SupportAccessService/RevokeAccess",
            &framed(&request),
        );
        let portals = &ids.iter().find(|(n, _)| n == "portal_ids").unwrap().1;
        assert!(portals.starts_with("p0,p1,"));
        assert!(portals.ends_with("(25 in all)"));
    }

    #[test]
    fn rpc_names_drop_the_package() {
        assert_eq!(
            rpc_name("/portal_access.v1.AdminService/GetUser"),
            "AdminService/GetUser"
        );
    }

    #[test]
    fn garbage_yields_no_ids() {
        assert!(
            named_ids(
                "/portal_access.v1.AdminService/GetUser",
                &[0, 0, 0, 0, 3, 0xff, 0xff, 0xff]
            )
            .is_empty()
        );
        assert!(named_ids("/unknown/Rpc", &[0]).is_empty());
    }
}

//! Issue #6, SPEC §7 limits: 4 MiB messages, prost's recursion limit, load
//! shedding with RESOURCE_EXHAUSTED (health exempt), the caller's deadline
//! honoured down to the database.

use bytes::{Buf, BufMut};
use portal_access::proto::v1 as pb;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::faults::{WriteLock, create_user_call, until_overloaded};
use crate::helpers::*;
use crate::people::*;

async fn still_serving(app: &TestApp, world: &World) {
    let health = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("health answers")
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);
    assert!(
        allowed(
            app,
            &world.realm.admin_token,
            &world.sub_a,
            &world.realm.admin_id,
            pb::Permission::ManageUsers,
        )
        .await
    );
}

#[tokio::test]
async fn oversized_message_is_refused_and_the_server_carries_on() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let world = world(&app).await;
    let huge = "x".repeat(5 * 1024 * 1024);
    let status = app
        .admins()
        .create_user(with_token(
            learner_request(&world.sub_a, "huge@acme.example", &huge),
            &world.realm.admin_token,
        ))
        .await
        .expect_err("a 5 MiB message is over the limit");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    still_serving(&app, &world).await;
    assert_eq!(app.count("accounts").await, 1, "nothing was created");
    app.stop().await;
}

/// Sends bytes as they are, to say what no generated client would.
#[derive(Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Self::Error> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// A CheckPermission request whose unknown field 99 nests `depth` groups.
fn nested_groups(depth: usize) -> Vec<u8> {
    let mut message = Vec::new();
    for _ in 0..depth {
        message.push(0x9b); // field 99, wire type 3 (start group), varint
        message.push(0x06);
    }
    for _ in 0..depth {
        message.push(0x9c); // field 99, wire type 4 (end group)
        message.push(0x06);
    }
    message
}

crate::both_databases! {
    /// SPEC §5: a message that does not decode is the caller's fault.
    /// Fails before the fix: INTERNAL "failed to decode Protobuf message",
    /// no ErrorInfo.
async fn undecodable_request_is_invalid_argument_not_internal(app) {
    let world = world(app).await;
    let grpc = tonic::client::Grpc::new(app.channel.clone());
    let call = |body: Vec<u8>, path: &'static str| {
        let mut grpc = grpc.clone();
        let request = with_token(body, &world.realm.admin_token);
        async move {
            grpc.ready().await.unwrap();
            grpc.unary(request, http::uri::PathAndQuery::from_static(path), RawCodec)
                .await
        }
    };
    let cases: [(&str, Vec<u8>, &'static str); 3] = [
        // portal_id (field 1, a string) holding invalid UTF-8.
        (
            "invalid UTF-8",
            vec![0x0a, 0x02, 0xff, 0xfe],
            "/portal_access.v1.AdminService/CheckPermission",
        ),
        // display_name (field 4) announcing 100 bytes and carrying 3.
        (
            "truncated field",
            vec![0x22, 0x64, b'a', b'b', b'c'],
            "/portal_access.v1.AdminService/CreateUser",
        ),
        // A varint that never ends.
        (
            "endless varint",
            vec![0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            "/portal_access.v1.SupportAccessService/ListAccessRequests",
        ),
    ];
    for (what, body, path) in cases {
        let status = call(body, path).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert_eq!(reason(&status), "MALFORMED_REQUEST", "{what}");
    }
    still_serving(app, &world).await;
    assert_eq!(app.count("accounts").await, 1, "nothing was created");
}
}

#[tokio::test]
async fn deeply_nested_message_is_refused_and_the_server_carries_on() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let world = world(&app).await;
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    let call = |depth: usize| {
        let mut grpc = grpc.clone();
        let request = with_token(nested_groups(depth), &world.realm.admin_token);
        async move {
            grpc.ready().await.unwrap();
            grpc.unary(
                request,
                http::uri::PathAndQuery::from_static(
                    "/portal_access.v1.AdminService/CheckPermission",
                ),
                RawCodec,
            )
            .await
        }
    };
    // Shallow nesting is skipped like any unknown field: the request is
    // then merely missing its fields.
    let shallow = call(10).await.expect_err("an empty request is invalid");
    assert_eq!(shallow.code(), Code::InvalidArgument, "{shallow:?}");
    let deep = call(10_000).await.expect_err("too deep to decode");
    assert_eq!(deep.code(), Code::InvalidArgument, "{deep:?}");
    assert_eq!(reason(&deep), "MALFORMED_REQUEST");
    assert!(
        deep.message().contains("recursion limit"),
        "refused by prost's recursion limit: {deep:?}"
    );
    grpc.ready().await.unwrap();
    still_serving(&app, &world).await;
    app.stop().await;
}

/// Over the concurrency limit a call is refused at once with OVERLOADED;
/// health keeps answering; once the load is gone, calls are served again.
async fn over_the_limit_calls_are_shed(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| c.max_concurrent_requests = 1).await else {
        return;
    };
    let world = world(&app).await;
    let lock = WriteLock::hold(&app.database_url).await;
    let busy = create_user_call(&app, &world, "busy@acme.example");
    until_overloaded(&app, &world).await;
    let health = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("health is never shed")
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);

    lock.release().await;
    busy.await.unwrap().expect("the admitted call completes");
    still_serving(&app, &world).await;
    app.stop().await;
}

#[tokio::test]
async fn over_the_limit_calls_are_shed_sqlite() {
    over_the_limit_calls_are_shed(Backend::Sqlite).await;
}

#[tokio::test]
async fn over_the_limit_calls_are_shed_postgres() {
    over_the_limit_calls_are_shed(Backend::Postgres).await;
}

/// The server stops working on a call when the caller's `grpc-timeout`
/// passes, even while it waits on the database: the write is dropped, not
/// committed later.
async fn deadline_ends_the_work(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let world = world(&app).await;
    let accounts = app.count("accounts").await;
    let lock = WriteLock::hold(&app.database_url).await;
    let mut request = with_token(
        learner_request(&world.sub_a, "late@acme.example", "Late"),
        &world.realm.admin_token,
    );
    // Only the server enforces it: the answer is the server's.
    request
        .metadata_mut()
        .insert("grpc-timeout", "300m".parse().unwrap());
    let status = app
        .admins()
        .create_user(request)
        .await
        .expect_err("the deadline passes while the database is locked");
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
    lock.release().await;
    // A later write goes through; the abandoned one never committed.
    create_user(
        &app,
        &world.realm.admin_token,
        &world.sub_a,
        "after@acme.example",
        pb::UserType::Learner,
        None,
    )
    .await
    .expect("the next write");
    assert_eq!(app.count("accounts").await, accounts + 1);
    app.stop().await;
}

#[tokio::test]
async fn deadline_ends_the_work_sqlite() {
    deadline_ends_the_work(Backend::Sqlite).await;
}

#[tokio::test]
async fn deadline_ends_the_work_postgres() {
    deadline_ends_the_work(Backend::Postgres).await;
}

#[tokio::test]
async fn a_zero_database_check_interval_is_refused_at_start() {
    let mut config = test_config("sqlite::memory:");
    config.db_check_interval = std::time::Duration::ZERO;
    let refused = portal_access::app::App::build(
        config,
        std::sync::Arc::new(portal_access::domain::SystemClock),
    )
    .await
    .err()
    .expect("a zero interval would ping the database in a busy loop");
    assert!(
        refused.0.contains("PORTAL_ACCESS_DB_CHECK_INTERVAL"),
        "{refused}"
    );
}

//! Health, reflection and shutdown, as Kubernetes and grpcurl see them.

use std::collections::BTreeSet;

use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::helpers::*;

const SERVICES: [&str; 3] = [
    "portal_access.v1.PortalService",
    "portal_access.v1.AdminService",
    "portal_access.v1.SupportAccessService",
];

fn status_of(response: HealthCheckResponse) -> ServingStatus {
    ServingStatus::try_from(response.status).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_serving_overall_and_per_service_without_a_token() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let mut health = HealthClient::new(app.channel.clone());
    for service in std::iter::once("").chain(SERVICES) {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status_of(response), ServingStatus::Serving, "{service:?}");
    }
    app.stop().await;
}

async fn reflected_services_v1(app: &TestApp) -> BTreeSet<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    match response.message_response.unwrap() {
        MessageResponse::ListServicesResponse(list) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected {other:?}"),
    }
}

async fn reflected_services_v1alpha(app: &TestApp) -> BTreeSet<String> {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    match response.message_response.unwrap() {
        MessageResponse::ListServicesResponse(list) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_serves_the_error_detail_types_for_grpcurl() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let mut client = ServerReflectionClient::new(app.channel.clone());
    for symbol in [
        "google.rpc.ErrorInfo",
        "google.rpc.BadRequest",
        "portal_access.v1.AdminService",
    ] {
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let response = responses.next().await.unwrap().unwrap();
        assert!(
            matches!(
                response.message_response,
                Some(MessageResponse::FileDescriptorResponse(_))
            ),
            "{symbol}: {response:?}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1_and_v1alpha_list_the_three_services_and_health() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    for listed in [
        reflected_services_v1(&app).await,
        reflected_services_v1alpha(&app).await,
    ] {
        for service in SERVICES.iter().chain(&["grpc.health.v1.Health"]) {
            assert!(
                listed.contains(*service),
                "{service} missing from {listed:?}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_turns_health_not_serving_then_exits() {
    let mut app = spawn_app(Backend::Sqlite).await.unwrap();
    let mut health = HealthClient::new(app.channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: SERVICES[0].into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(status_of(first), ServingStatus::Serving);

    let shutting_down = tokio::spawn(async move {
        app.shut_down().await;
        app
    });
    let next = watch
        .next()
        .await
        .expect("a status before the stream ends")
        .unwrap();
    assert_eq!(status_of(next), ServingStatus::NotServing);
    // The server exits (within its grace period) even with this stream open.
    let app = shutting_down.await.unwrap();
    app.stop().await;
}

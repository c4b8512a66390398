//! Issue #6, SPEC §7: optional TLS and mTLS (rustls), with a plaintext
//! health-only port for Kubernetes probes when TLS is on.

use std::path::PathBuf;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::*;
use portal_access::proto::v1::portal_service_client::PortalServiceClient;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

async fn tls_channel(app: &TestApp, client_identity: bool) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .domain_name("localhost");
    if client_identity {
        tls = tls.identity(Identity::from_pem(
            read("client.pem"),
            read("client-key.pem"),
        ));
    }
    Channel::from_shared(format!("https://127.0.0.1:{}", app.addr.port()))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

async fn serving(channel: Channel) -> Result<ServingStatus, tonic::Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|r| r.into_inner().status())
}

async fn tls_app(mutual: bool) -> TestApp {
    spawn_app_with(Backend::Sqlite, |c| {
        c.tls_cert = Some(fixture("server.pem"));
        c.tls_key = Some(fixture("server-key.pem"));
        c.tls_client_ca = mutual.then(|| fixture("ca.pem"));
        c.health_listen = "127.0.0.1:0".parse().unwrap();
    })
    .await
    .unwrap()
}

async fn plaintext(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("plaintext connect")
}

#[tokio::test]
async fn tls_serves_the_api_and_a_plaintext_health_port() {
    let app = tls_app(false).await;
    let channel = tls_channel(&app, false).await.expect("TLS handshake");
    assert_eq!(
        serving(channel.clone()).await.unwrap(),
        ServingStatus::Serving
    );
    let realm = PortalServiceClient::new(channel)
        .create_realm(with_token(
            portal_access::proto::v1::CreateRealmRequest {
                request_id: String::new(),
                name: "Over TLS".into(),
                plan: portal_access::proto::v1::Plan::Professional as i32,
                top_level_portal_name: "tls academy".into(),
                subdomain: "tls".into(),
                first_admin: Some(portal_access::proto::v1::FirstAdmin {
                    email: "admin@tls.example".into(),
                    display_name: "Admin".into(),
                }),
            },
            &app.operator(),
        ))
        .await
        .expect("an API call over TLS");
    assert!(realm.into_inner().realm.is_some());

    // The TLS port does not speak plaintext.
    let plain = serving(app.channel.clone()).await;
    assert!(plain.is_err(), "plaintext on the TLS port: {plain:?}");

    // The health port answers in plaintext, and serves nothing else.
    let health_addr = app.health_addr.expect("a health port when TLS is on");
    let health = plaintext(health_addr).await;
    assert_eq!(
        serving(health.clone()).await.unwrap(),
        ServingStatus::Serving
    );
    let api = PortalServiceClient::new(health)
        .get_portal(with_token(
            portal_access::proto::v1::GetPortalRequest {
                portal_id: uuid::Uuid::new_v4().to_string(),
            },
            &app.operator(),
        ))
        .await
        .expect_err("the API is not on the health port");
    assert_eq!(api.code(), tonic::Code::Unimplemented);
    app.stop().await;
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_from_the_configured_ca() {
    let app = tls_app(true).await;
    let with_cert = tls_channel(&app, true).await.expect("mTLS handshake");
    assert_eq!(serving(with_cert).await.unwrap(), ServingStatus::Serving);

    // Without a client certificate the handshake or the first call fails.
    let refused = match tls_channel(&app, false).await {
        Err(_) => true,
        Ok(channel) => serving(channel).await.is_err(),
    };
    assert!(refused, "a client without a certificate is refused");

    // Probes still get health in plaintext.
    let health = plaintext(app.health_addr.unwrap()).await;
    assert_eq!(serving(health).await.unwrap(), ServingStatus::Serving);
    app.stop().await;
}

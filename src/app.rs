//! Builds and runs the server: database and migrations, token keys, the
//! listener (port 0 works), health, reflection, the gRPC services and a
//! graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::config::Config;
use crate::domain::Clock;
use crate::grpc::admin::AdminApi;
use crate::grpc::auth::Authenticator;
use crate::grpc::portal::PortalApi;
use crate::grpc::session_log::SessionLogged;
use crate::grpc::support_access::SupportAccessApi;
use crate::proto::v1::admin_service_server::AdminServiceServer;
use crate::proto::v1::portal_service_server::PortalServiceServer;
use crate::proto::v1::support_access_service_server::SupportAccessServiceServer;
use crate::service::{Services, Settings};
use crate::store::Store;
use crate::token::TokenKeys;

/// Largest request or response message (SPEC §7).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The services health reports on, besides the overall "" entry.
pub const SERVICE_NAMES: [&str; 3] = [
    "portal_access.v1.PortalService",
    "portal_access.v1.AdminService",
    "portal_access.v1.SupportAccessService",
];

/// A failure to start: configuration, database or listener.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// A built server, bound and migrated, not yet serving.
pub struct App {
    config: Config,
    listener: TcpListener,
    services: Services,
    keys: Arc<TokenKeys>,
}

impl App {
    /// Connects and migrates the database, loads the token keys and binds
    /// the listener.
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        let keys = Arc::new(load_token_keys(&config)?);
        let store = Store::connect(&config.database_url, config.db_max_connections)
            .await
            .map_err(|e| StartError(format!("database: {}", e.message)))?;
        store
            .migrate()
            .await
            .map_err(|e| StartError(format!("migrations: {}", e.message)))?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartError(format!("cannot listen on {}: {e}", config.listen)))?;
        Ok(Self {
            services: Services::new(
                store,
                clock,
                Settings {
                    access_request_ttl: chrono::Duration::from_std(config.access_request_ttl)
                        .map_err(|_| StartError("access request TTL is too long".into()))?,
                    stream_buffer: config.stream_buffer,
                    stream_stall_timeout: config.stream_stall_timeout,
                },
            ),
            config,
            listener,
            keys,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Serves until `shutdown` completes, then shuts down gracefully:
    /// health turns NOT_SERVING first, in-flight calls get up to the
    /// configured grace period, then the process may exit.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let (reporter, health_service) = tonic_health::server::health_reporter();
        set_all(&reporter, ServingStatus::Serving).await;

        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| StartError(format!("reflection: {e}")))?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| StartError(format!("reflection: {e}")))?;

        let auth = Authenticator::new(self.keys.clone());
        let services = self.services.clone();
        let portal = InterceptedService::new(
            SessionLogged::new(
                PortalServiceServer::new(PortalApi::new(services.clone()))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
                services.clone(),
            ),
            auth.clone(),
        );
        let admin = InterceptedService::new(
            SessionLogged::new(
                AdminServiceServer::new(AdminApi::new(services.clone()))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
                services.clone(),
            ),
            auth.clone(),
        );
        let support = InterceptedService::new(
            SessionLogged::new(
                SupportAccessServiceServer::new(SupportAccessApi::new(services.clone()))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
                services.clone(),
            ),
            auth,
        );

        let addr = self.local_addr();
        tracing::info!(%addr, "serving gRPC");

        let (stop_tx, mut stop_rx) = watch::channel(false);
        let database_watch = tokio::spawn(watch_database(
            services.store().clone(),
            reporter.clone(),
            stop_rx.clone(),
        ));
        let listener = services.store().follow_other_replicas(stop_rx.clone());
        let sweeper = tokio::spawn(sweep_periodically(
            services.clone(),
            self.config.sweep_interval,
            stop_rx.clone(),
        ));
        let server = Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(60)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .concurrency_limit_per_connection(256)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(portal)
            .add_service(admin)
            .add_service(support)
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.listener), async move {
                let _ = stop_rx.wait_for(|stopped| *stopped).await;
            });
        let server = tokio::spawn(server);

        shutdown.await;
        tracing::info!("shutdown: health NOT_SERVING, draining calls");
        let _ = stop_tx.send(true);
        set_all(&reporter, ServingStatus::NotServing).await;
        services.begin_shutdown();
        let _ = database_watch.await;
        if let Some(listener) = listener {
            let _ = listener.await;
        }
        let _ = sweeper.await;
        match tokio::time::timeout(self.config.shutdown_grace, server).await {
            Ok(Ok(Ok(()))) => tracing::info!("shutdown: all calls finished"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
            Err(_) => tracing::warn!(
                grace = ?self.config.shutdown_grace,
                "shutdown: grace period over, closing remaining connections"
            ),
        }
        services.store().close().await;
        Ok(())
    }
}

async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        reporter.set_service_status(name, status).await;
    }
}

/// S2, S8: ends lapsed grants and requests every `interval` (0: never),
/// until shutdown. Access already ends at expiry without it; the sweeper
/// removes the temporary admins and records the events.
async fn sweep_periodically(
    services: Services,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    if interval.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match services.sweep_once().await {
            Ok(report) if report != Default::default() => tracing::info!(
                grants_expired = report.grants_expired,
                requests_expired = report.requests_expired,
                "sweeper ended lapsed support access"
            ),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "sweep failed; retrying next interval"),
        }
    }
}

/// Health follows the database: NOT_SERVING while it is unreachable,
/// checked periodically rather than per probe.
async fn watch_database(store: Store, reporter: HealthReporter, mut stop: watch::Receiver<bool>) {
    let mut healthy = true;
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        let up = store.ping().await;
        if *stop.borrow() {
            return;
        }
        if up != healthy {
            healthy = up;
            if up {
                tracing::info!("database reachable again: SERVING");
                set_all(&reporter, ServingStatus::Serving).await;
            } else {
                tracing::warn!("database unreachable: NOT_SERVING");
                set_all(&reporter, ServingStatus::NotServing).await;
            }
        }
    }
}

/// The token keys: the configured secret and public keys, or on the
/// embedded SQLite default a secret generated once beside the database.
pub fn load_token_keys(config: &Config) -> Result<TokenKeys, StartError> {
    let mut pems = Vec::new();
    for path in &config.jwt_public_keys {
        pems.push(
            std::fs::read(path).map_err(|e| {
                StartError(format!("cannot read public key {}: {e}", path.display()))
            })?,
        );
    }
    let secret = match (&config.jwt_secret, config.generated_secret_path()) {
        (Some(secret), _) => Some(secret.clone()),
        (None, Some(path)) if pems.is_empty() => Some(generated_secret(&path)?),
        (None, _) if !pems.is_empty() => None,
        (None, _) => {
            return Err(StartError(
                "no token key: set PORTAL_ACCESS_JWT_SECRET or PORTAL_ACCESS_JWT_PUBLIC_KEYS"
                    .into(),
            ));
        }
    };
    TokenKeys::new(
        secret.as_deref().map(str::as_bytes),
        &pems,
        &config.jwt_issuer,
        &config.jwt_audience,
    )
    .map_err(StartError)
}

/// Reads the generated secret, or makes one (mode 0600) on first run.
fn generated_secret(path: &Path) -> Result<String, StartError> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(existing.trim().to_owned());
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    write_private(path, &secret)
        .map_err(|e| StartError(format!("cannot write {}: {e}", path.display())))?;
    tracing::info!(
        path = %path.display(),
        "generated a token secret; mint a token with: cargo run --release -- token --kind operator"
    );
    Ok(secret)
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

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
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::config::{AuditNumbering, Config};
use crate::domain::Clock;
use crate::domain::signed_note::{NoteSigner, VerifierKey};
use crate::grpc::admin::AdminApi;
use crate::grpc::admission::AdmissionLayer;
use crate::grpc::auth::Authenticator;
use crate::grpc::observe::ObserveLayer;
use crate::grpc::portal::PortalApi;
use crate::grpc::position_keys::PositionKeys;
use crate::grpc::session_log::SessionLogged;
use crate::grpc::support_access::SupportAccessApi;
use crate::metrics::Metrics;
use crate::proto::v1::admin_service_server::AdminServiceServer;
use crate::proto::v1::portal_service_server::PortalServiceServer;
use crate::proto::v1::support_access_service_server::SupportAccessServiceServer;
use crate::service::{LogSigner, Services, Settings};
use crate::store::{Numbering, Store};
use crate::token::TokenKeys;

/// Largest request or response message (SPEC §7).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Largest response of SupportAccessService: an evidence bundle carries an
/// inclusion proof per event (E5), about 1.2 KB each, so a session of ten
/// thousand events is about 12 MB. Requests stay within 4 MiB.
pub const MAX_EVIDENCE_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

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
    /// The plaintext health-only listener, bound when TLS is on.
    health_listener: Option<TcpListener>,
    services: Services,
    keys: Arc<TokenKeys>,
    position_keys: Arc<PositionKeys>,
}

impl App {
    /// Connects and migrates the database, loads the token keys and binds
    /// the listeners.
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        if config.db_check_interval.is_zero() {
            return Err(StartError(
                "PORTAL_ACCESS_DB_CHECK_INTERVAL must be more than 0".into(),
            ));
        }
        if config.stream_progress_interval.is_zero() {
            return Err(StartError(
                "PORTAL_ACCESS_STREAM_PROGRESS_INTERVAL must be more than 0".into(),
            ));
        }
        let keys = Arc::new(load_token_keys(&config)?);
        let position_keys = Arc::new(load_position_keys(&config)?);
        let log_signer = Arc::new(load_log_signer(&config)?);
        let store = Store::connect(&config.database_url, config.db_max_connections)
            .await
            .map_err(|e| StartError(format!("database: {}", e.message)))?
            .with_evidence_tree(config.evidence_tree)
            .with_numbering(match config.audit_numbering {
                AuditNumbering::AfterCommit => Numbering::AfterCommit,
                AuditNumbering::AtCommit => Numbering::AtCommit,
            });
        store
            .migrate()
            .await
            .map_err(|e| StartError(format!("migrations: {}", e.message)))?;
        let listener = bind(config.listen).await?;
        let health_listener = if config.tls_enabled() {
            Some(bind(config.health_listen).await?)
        } else {
            None
        };
        Ok(Self {
            services: Services::new(
                store,
                clock,
                Settings {
                    access_request_ttl: chrono::Duration::from_std(config.access_request_ttl)
                        .map_err(|_| StartError("access request TTL is too long".into()))?,
                    stream_buffer: config.stream_buffer,
                    stream_stall_timeout: config.stream_stall_timeout,
                    stream_progress_interval: config.stream_progress_interval,
                },
                log_signer,
            ),
            config,
            listener,
            health_listener,
            keys,
            position_keys,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The plaintext health port, when TLS is on.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Serves until `shutdown` completes, then shuts down gracefully
    /// (SPEC §7): health turns NOT_SERVING for every service at once, new
    /// calls are refused, audit streams end with their cursor and health
    /// watches end, in-flight calls finish, the background tasks stop; all
    /// of it within the configured grace period, after which the process
    /// may exit whatever a client is doing.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let (reporter, health_service) = tonic_health::server::health_reporter();
        set_all(&reporter, ServingStatus::Serving).await;
        let tls = tls_config(&self.config)?;

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
                PortalServiceServer::new(PortalApi::new(
                    services.clone(),
                    self.position_keys.clone(),
                ))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
                services.clone(),
            ),
            auth.clone(),
        );
        let admin = InterceptedService::new(
            SessionLogged::new(
                AdminServiceServer::new(AdminApi::new(
                    services.clone(),
                    self.position_keys.clone(),
                ))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
                services.clone(),
            ),
            auth.clone(),
        );
        let support = InterceptedService::new(
            SessionLogged::new(
                SupportAccessServiceServer::new(SupportAccessApi::new(
                    services.clone(),
                    self.position_keys.clone(),
                ))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_EVIDENCE_RESPONSE_BYTES),
                services.clone(),
            ),
            auth,
        );

        let addr = self.local_addr();
        let health_addr = self.health_addr();
        tracing::info!(%addr, tls = tls.is_some(), "serving gRPC");

        let (stop_tx, stop_rx) = watch::channel(false);
        let database_watch = tokio::spawn(watch_database(
            services.store().clone(),
            reporter.clone(),
            self.config.db_check_interval,
            stop_rx.clone(),
        ));
        let listener = services.store().follow_other_replicas(stop_rx.clone());
        let sweeper = tokio::spawn(sweep_periodically(
            services.clone(),
            self.config.sweep_interval,
            stop_rx.clone(),
        ));

        let mut builder = Server::builder();
        if let Some(tls) = tls {
            builder = builder
                .tls_config(tls)
                .map_err(|e| StartError(format!("TLS: {e}")))?;
        }
        let main_stopped = stopped(stop_rx.clone());
        let server = transport_settings(builder)
            // The first layer is the outermost: shed calls are observed too.
            .layer(ObserveLayer)
            .layer(AdmissionLayer::new(
                self.config.max_concurrent_requests,
                services.store().reachability().clone(),
            ))
            .add_service(health_service.clone())
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(portal)
            .add_service(admin)
            .add_service(support)
            .serve_with_incoming_shutdown(incoming(self.listener), main_stopped);
        let mut servers = vec![tokio::spawn(server)];
        if let Some(health_listener) = self.health_listener {
            tracing::info!(addr = ?health_addr, "serving plaintext health for probes");
            // Reflection of the health service alone, so grpcurl works here too.
            let health_reflection = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .build_v1alpha()
                .map_err(|e| StartError(format!("reflection: {e}")))?;
            let health_only = transport_settings(Server::builder())
                .add_service(health_service)
                .add_service(health_reflection)
                .serve_with_incoming_shutdown(incoming(health_listener), stopped(stop_rx));
            servers.push(tokio::spawn(health_only));
        }

        shutdown.await;
        tracing::info!("shutdown: health NOT_SERVING, refusing new calls, draining");
        set_all(&reporter, ServingStatus::NotServing).await;
        services.begin_shutdown();
        let _ = stop_tx.send(true);
        // Watch streams have seen NOT_SERVING; dropping their senders ends them.
        clear_all(reporter.clone()).await;
        let grace = self.config.shutdown_grace;
        let drained = tokio::time::timeout(grace, async {
            for server in servers {
                match server.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "server ended with an error"),
                    Err(e) => tracing::warn!(error = %e, "server task failed"),
                }
            }
            let _ = database_watch.await;
            if let Some(listener) = listener {
                let _ = listener.await;
            }
            let _ = sweeper.await;
            services.store().close().await;
        })
        .await;
        match drained {
            Ok(()) => tracing::info!("shutdown: all calls finished"),
            Err(_) => tracing::warn!(
                ?grace,
                "shutdown: grace period over; exiting with calls still open"
            ),
        }
        Ok(())
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| StartError(format!("cannot listen on {addr}: {e}")))
}

/// Accepted connections send small frames at once (no Nagle delay).
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)))
}

/// HTTP/2 settings shared by both listeners. Keepalive pings from the
/// server every 60 s keep idle connections through proxies; the server
/// never polices client pings, so grpc-go clients with keepalive on are
/// not sent `too_many_pings`.
fn transport_settings(builder: Server) -> Server {
    builder
        .http2_keepalive_interval(Some(Duration::from_secs(60)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
}

/// Streams one connection may have open at once (HTTP/2 SETTINGS).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 1024;

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// The TLS settings, when a certificate is configured; with a client CA,
/// clients must present a certificate it signed (mTLS).
fn tls_config(config: &Config) -> Result<Option<ServerTlsConfig>, StartError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| StartError(format!("cannot read {}: {e}", path.display())))
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    if let Some(ca) = &config.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(Some(tls))
}

async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        reporter.set_service_status(name, status).await;
    }
}

async fn clear_all(mut reporter: HealthReporter) {
    reporter.clear_service_status("").await;
    for name in SERVICE_NAMES {
        reporter.clear_service_status(name).await;
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
    let metrics = Metrics::get();
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let swept = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            swept = services.sweep_once() => swept,
        };
        match swept {
            Ok(report) => {
                if let Some(lapse) = report.oldest_lapse {
                    metrics
                        .sweeper_lag
                        .record(lapse.num_milliseconds() as f64 / 1000.0, &[]);
                }
                if report != Default::default() {
                    tracing::info!(
                        grants_expired = report.grants_expired,
                        requests_expired = report.requests_expired,
                        "sweeper ended lapsed support access"
                    );
                }
            }
            Err(err) => tracing::warn!(error = %err, "sweep failed; retrying next interval"),
        }
        if let Ok(count) = services.active_grant_count().await {
            metrics.active_grants.record(count, &[]);
        }
    }
}

/// Health follows the database: NOT_SERVING while it is unreachable,
/// checked every `interval` rather than per probe.
async fn watch_database(
    store: Store,
    reporter: HealthReporter,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut healthy = true;
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let up = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            up = tokio::time::timeout(interval.max(Duration::from_secs(1)), store.ping()) => up.unwrap_or(false),
        };
        if up != healthy {
            healthy = up;
            store.reachability().set(up);
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
    let pems = public_key_pems(config)?;
    let secret = token_secret(config, !pems.is_empty())?;
    TokenKeys::new(
        secret.as_deref().map(str::as_bytes),
        &pems,
        &config.jwt_issuer,
        &config.jwt_audience,
    )
    .map_err(StartError)
}

fn public_key_pems(config: &Config) -> Result<Vec<Vec<u8>>, StartError> {
    config
        .jwt_public_keys
        .iter()
        .map(|path| {
            std::fs::read(path)
                .map_err(|e| StartError(format!("cannot read public key {}: {e}", path.display())))
        })
        .collect()
}

/// The HS256 secret: configured, or generated beside a SQLite database
/// when no public key is configured either.
fn token_secret(config: &Config, has_public_keys: bool) -> Result<Option<String>, StartError> {
    match (&config.jwt_secret, config.generated_secret_path()) {
        (Some(secret), _) => Ok(Some(secret.clone())),
        (None, Some(path)) if !has_public_keys => Ok(Some(generated_secret(&path)?)),
        (None, _) if has_public_keys => Ok(None),
        (None, _) => Err(StartError(
            "no token key: set PORTAL_ACCESS_JWT_SECRET or PORTAL_ACCESS_JWT_PUBLIC_KEYS".into(),
        )),
    }
}

/// The key page tokens and cursors are sealed with (SPEC §5): from
/// PORTAL_ACCESS_PAGE_TOKEN_SECRET, else from the HS256 token secret, so
/// every replica of a deployment derives the same one.
pub fn load_position_keys(config: &Config) -> Result<PositionKeys, StartError> {
    let material = match &config.page_token_secret {
        Some(secret) => secret.clone(),
        None => token_secret(config, !config.jwt_public_keys.is_empty())?.ok_or_else(|| {
            StartError(
                "no page-token secret: set PORTAL_ACCESS_PAGE_TOKEN_SECRET (tokens are verified with public keys only, so there is no HS256 secret to derive it from)"
                    .into(),
            )
        })?,
    };
    if material.len() < 32 {
        return Err(StartError(
            "PORTAL_ACCESS_PAGE_TOKEN_SECRET must be at least 32 bytes".into(),
        ));
    }
    Ok(PositionKeys::new(
        material.as_bytes(),
        config
            .page_token_secret_previous
            .as_deref()
            .map(str::as_bytes),
    ))
}

/// The audit log's signing key (E2): the configured file, or on the
/// embedded SQLite default a key generated once beside the database. With
/// neither, the server still serves, and checkpoints are refused.
pub fn load_log_signer(config: &Config) -> Result<LogSigner, StartError> {
    let signer = match (&config.log_signing_key, config.generated_log_key_path()) {
        (Some(path), _) => Some(read_log_key(path)?),
        (None, Some(path)) if path.exists() => Some(read_log_key(&path)?),
        (None, Some(path)) => {
            let signer = NoteSigner::from_seed(&config.log_origin, rand::random())
                .map_err(|e| StartError(format!("PORTAL_ACCESS_LOG_ORIGIN: {e}")))?;
            write_private(&path, &signer.private_key_text())
                .map_err(|e| StartError(format!("cannot write {}: {e}", path.display())))?;
            tracing::info!(path = %path.display(), "generated the audit log's signing key");
            Some(signer)
        }
        (None, None) => {
            tracing::warn!(
                "no PORTAL_ACCESS_LOG_SIGNING_KEY: the audit log's checkpoints cannot be signed"
            );
            None
        }
    };
    let extra = config
        .log_verifier_keys
        .iter()
        .filter(|k| !k.trim().is_empty())
        .map(|k| {
            VerifierKey::parse(k.trim())
                .map_err(|e| StartError(format!("PORTAL_ACCESS_LOG_VERIFIER_KEYS: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(LogSigner::new(signer, extra, &config.log_origin))
}

fn read_log_key(path: &Path) -> Result<NoteSigner, StartError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StartError(format!("cannot read {}: {e}", path.display())))?;
    // The message names the file, never its contents.
    NoteSigner::parse_private_key(text.trim())
        .map_err(|e| StartError(format!("{} is not a log signing key: {e}", path.display())))
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

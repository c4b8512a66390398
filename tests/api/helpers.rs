#![allow(dead_code)] // helpers serve every feature module; not all use each one

//! The test harness: a real server on a random port, on SQLite or on
//! PostgreSQL, called through the generated tonic clients with real signed
//! tokens.
//!
//! PostgreSQL tests run when `PORTAL_ACCESS_TEST_POSTGRES` names a server
//! (e.g. `postgres://postgres@127.0.0.1:5432/test`); each test gets a fresh
//! database there. Without it they are skipped, so a fresh laptop passes,
//! and each skip says so (`postgres_url`), so a green run without
//! PostgreSQL never reads as a run on both databases.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use portal_access::app::App;
use portal_access::config::Config;
use portal_access::domain::ManualClock;
use portal_access::proto::v1 as pb;
use portal_access::proto::v1::admin_service_client::AdminServiceClient;
use portal_access::proto::v1::portal_service_client::PortalServiceClient;
use portal_access::proto::v1::support_access_service_client::SupportAccessServiceClient;
use portal_access::service::Services;
use portal_access::token::{Claims, TokenKeys};
use sea_orm::{ConnectionTrait, Database};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Request, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

pub const TEST_SECRET: &str = "test-secret-0123456789abcdef0123456789";
pub const POSTGRES_ENV: &str = "PORTAL_ACCESS_TEST_POSTGRES";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where a test's data lives; removed when the test stops.
pub enum TestDb {
    Sqlite { dir: std::path::PathBuf },
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A fresh database and its URL; `None` when PostgreSQL is asked for
    /// but not configured.
    pub async fn create(backend: Backend) -> Option<(Self, String)> {
        match backend {
            Backend::Sqlite => {
                let dir =
                    std::env::temp_dir().join(format!("portal-access-test-{}", Uuid::new_v4()));
                std::fs::create_dir_all(&dir).expect("temp dir");
                let url = format!("sqlite://{}/test.db?mode=rwc", dir.display());
                Some((TestDb::Sqlite { dir }, url))
            }
            Backend::Postgres => {
                let admin_url = postgres_url()?;
                let name = format!("pa_test_{}", Uuid::new_v4().simple());
                let admin = Database::connect(&admin_url)
                    .await
                    .expect("connect to PostgreSQL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                let url = replace_database(&admin_url, &name);
                Some((TestDb::Postgres { admin_url, name }, url))
            }
        }
    }

    pub async fn remove(self) {
        match self {
            TestDb::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            TestDb::Postgres { admin_url, name } => {
                if let Ok(admin) = Database::connect(&admin_url).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    admin.close().await.ok();
                }
            }
        }
    }
}

/// The PostgreSQL server of the tests; `None` when it is not configured,
/// after printing that the test is skipped. Every PostgreSQL test gets its
/// database through here (`TestDb::create`, `spawn_app`), so every skip is
/// visible and worded the same.
pub fn postgres_url() -> Option<String> {
    let url = std::env::var(POSTGRES_ENV).ok().filter(|v| !v.is_empty());
    if url.is_none() {
        eprintln!("skipped: {POSTGRES_ENV} is not set");
    }
    url
}

/// `postgres://u@h:5432/test?x` → `postgres://u@h:5432/NAME?x`.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let (prefix, _) = base.rsplit_once('/').expect("a database URL has a path");
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

/// A running server and what tests need to talk to it.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The plaintext health port, when TLS is on.
    pub health_addr: Option<SocketAddr>,
    pub backend: Backend,
    pub channel: Channel,
    pub keys: TokenKeys,
    pub clock: Arc<ManualClock>,
    pub database_url: String,
    /// The server's use cases, for what only time triggers (the sweeper);
    /// `None` for a server running as its own process.
    pub in_process: Option<Services>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    db: Option<TestDb>,
}

/// A test configuration: random port, the test secret, no sweeper.
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database_url = database_url.to_owned();
    config.db_max_connections = 8;
    config.jwt_secret = Some(TEST_SECRET.to_owned());
    config.sweep_interval = Duration::ZERO;
    config.shutdown_grace = Duration::from_secs(5);
    // L9: idle streams tell where they stand often enough to be tested.
    config.stream_progress_interval = Duration::from_millis(200);
    config.log_signing_key = Some(test_log_key_file().to_owned());
    config
}

/// The audit log's signing key every test server shares (E2), so that
/// replicas of one test sign alike.
pub fn test_log_key_file() -> &'static std::path::Path {
    static FILE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let signer =
            portal_access::domain::signed_note::NoteSigner::from_seed("portal-access", [7; 32])
                .expect("a valid key name");
        let path =
            std::env::temp_dir().join(format!("portal-access-test-log-key-{}", std::process::id()));
        std::fs::write(&path, signer.private_key_text()).expect("write the test log key");
        path
    })
}

/// Starts a server on a fresh database; `None` when PostgreSQL is asked
/// for but not configured.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Option<TestApp> {
    init_test_log();
    let (db, url) = TestDb::create(backend).await?;
    let mut config = test_config(&url);
    adjust(&mut config);
    let mut app = start_server(config, backend).await;
    app.db = Some(db);
    Some(app)
}

/// Starts one more server on an existing database (a second replica).
pub async fn start_server(config: Config, backend: Backend) -> TestApp {
    let clock = Arc::new(ManualClock::starting_at(Utc::now()));
    let keys = TokenKeys::new(
        config.jwt_secret.as_deref().map(str::as_bytes),
        &config
            .jwt_public_keys
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect::<Vec<_>>(),
        &config.jwt_issuer,
        &config.jwt_audience,
    )
    .expect("test keys");
    let database_url = config.database_url.clone();
    let app = App::build(config, clock.clone())
        .await
        .expect("server builds");
    let addr = app.local_addr();
    let health_addr = app.health_addr();
    let services = app.services().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run_until(async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    let endpoint = Channel::from_shared(format!("http://{addr}")).unwrap();
    // Over TLS, tests make their own channels; this plaintext one is for
    // showing that it is refused.
    let channel = if health_addr.is_some() {
        endpoint.connect_lazy()
    } else {
        endpoint.connect().await.expect("connect to test server")
    };
    TestApp {
        addr,
        health_addr,
        backend,
        channel,
        keys,
        clock,
        database_url,
        in_process: Some(services),
        shutdown: Some(tx),
        server: Some(server),
        db: None,
    }
}

fn init_test_log() {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = portal_access::telemetry::init(portal_access::config::LogFormat::Text);
    }
}

impl TestApp {
    /// A client's view of a server running at `addr` as its own process.
    pub async fn client_of(addr: SocketAddr, backend: Backend, database_url: &str) -> TestApp {
        let keys = TokenKeys::new(
            Some(TEST_SECRET.as_bytes()),
            &[],
            "portal-access",
            "portal-access",
        )
        .expect("test keys");
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("connect to server process");
        TestApp {
            addr,
            health_addr: None,
            backend,
            channel,
            keys,
            clock: Arc::new(ManualClock::starting_at(Utc::now())),
            database_url: database_url.to_owned(),
            in_process: None,
            shutdown: None,
            server: None,
            db: None,
        }
    }

    /// The in-process server's use cases.
    pub fn services(&self) -> &Services {
        self.in_process
            .as_ref()
            .expect("only an in-process server exposes its use cases")
    }

    pub fn portals(&self) -> PortalServiceClient<Channel> {
        PortalServiceClient::new(self.channel.clone())
    }

    pub fn admins(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel.clone())
    }

    pub fn support(&self) -> SupportAccessServiceClient<Channel> {
        SupportAccessServiceClient::new(self.channel.clone())
    }

    pub fn claims(&self, kind: &str, sub: Uuid) -> Claims {
        Claims::new(&self.keys, kind, sub, Duration::from_secs(3600))
    }

    pub fn sign(&self, claims: &Claims) -> String {
        self.keys.mint(claims).expect("mint")
    }

    pub fn operator(&self) -> String {
        self.sign(&self.claims("operator", Uuid::new_v4()))
    }

    /// An `interactive` account token.
    pub fn account(&self, realm_id: &str, account_id: &str) -> String {
        self.account_on(realm_id, account_id, "interactive")
    }

    pub fn account_on(&self, realm_id: &str, account_id: &str, channel: &str) -> String {
        let mut claims = self.claims("account", account_id.parse().unwrap());
        claims.realm = Some(realm_id.to_owned());
        claims.channel = Some(channel.to_owned());
        self.sign(&claims)
    }

    pub fn support_agent(&self, agent_id: Uuid, name: &str) -> String {
        let mut claims = self.claims("support_agent", agent_id);
        claims.name = Some(name.to_owned());
        self.sign(&claims)
    }

    pub fn service(&self, scopes: &[&str]) -> String {
        let mut claims = self.claims("service", Uuid::new_v4());
        claims.scopes = Some(scopes.iter().map(|s| s.to_string()).collect());
        self.sign(&claims)
    }

    /// A realm with a top-level portal and its first full admin.
    pub async fn create_realm(&self, subdomain: &str) -> RealmFixture {
        self.create_realm_on(subdomain, pb::Plan::Professional)
            .await
    }

    pub async fn create_realm_on(&self, subdomain: &str, plan: pb::Plan) -> RealmFixture {
        let created = self
            .portals()
            .create_realm(with_token(
                pb::CreateRealmRequest {
                    request_id: String::new(),
                    name: format!("Realm {subdomain}"),
                    plan: plan as i32,
                    top_level_portal_name: format!("{subdomain} academy"),
                    subdomain: subdomain.to_owned(),
                    first_admin: Some(pb::FirstAdmin {
                        email: format!("admin@{subdomain}.example"),
                        display_name: "First Admin".into(),
                    }),
                },
                &self.operator(),
            ))
            .await
            .expect("create realm")
            .into_inner();
        let realm = created.realm.unwrap();
        let admin = created.first_admin.unwrap();
        RealmFixture {
            admin_token: self.account(&realm.realm_id, &admin.user_id),
            realm_id: realm.realm_id,
            top_portal_id: created.top_level_portal.unwrap().portal_id,
            admin_id: admin.user_id,
        }
    }

    /// Creates a sub-portal as the realm's first admin.
    pub async fn create_sub_portal(&self, realm: &RealmFixture, subdomain: &str) -> pb::Portal {
        self.portals()
            .create_sub_portal(with_token(
                pb::CreateSubPortalRequest {
                    request_id: String::new(),
                    realm_id: realm.realm_id.clone(),
                    name: format!("{subdomain} portal"),
                    subdomain: subdomain.to_owned(),
                },
                &realm.admin_token,
            ))
            .await
            .expect("create sub-portal")
            .into_inner()
            .portal
            .unwrap()
    }

    /// A direct connection to the test database, for checks and tampering.
    pub async fn database(&self) -> sea_orm::DatabaseConnection {
        Database::connect(&self.database_url)
            .await
            .expect("connect to test database")
    }

    /// How many rows a table holds.
    pub async fn count(&self, table: &str) -> i64 {
        count_rows(&self.database_url, table).await
    }

    /// Shuts the server down and waits for it to finish.
    pub async fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }

    /// Shuts down and removes the test database.
    pub async fn stop(mut self) {
        self.shut_down().await;
        if let Some(db) = self.db.take() {
            db.remove().await;
        }
    }
}

/// What `create_realm` made.
#[derive(Debug, Clone)]
pub struct RealmFixture {
    pub realm_id: String,
    pub top_portal_id: String,
    pub admin_id: String,
    pub admin_token: String,
}

/// A request carrying `authorization: Bearer <token>`.
pub fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// The `ErrorInfo.reason` of a failed call (and checks its domain).
pub fn reason(status: &Status) -> String {
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "portal-access");
    info.reason
}

/// The fields named by `BadRequest` violations.
pub fn bad_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Asserts a call failed with `code` and `reason`.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: tonic::Code,
    expected: &str,
) -> Status {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(&status), expected, "{status:?}");
    status
}

/// Runs one test body on SQLite and on PostgreSQL, as two tests named
/// `<name>::sqlite` and `<name>::postgres`.
#[macro_export]
macro_rules! both_databases {
    ($(#[$meta:meta])* async fn $name:ident($app:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($app: &$crate::helpers::TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite)
                    .await
                    .expect("SQLite always runs");
                body(&app).await;
                app.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                // Prints the skip when PostgreSQL is not configured.
                let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await else {
                    return;
                };
                body(&app).await;
                app.stop().await;
            }
        }
    };
}

/// How many rows a table of the database at `url` holds.
pub async fn count_rows(url: &str, table: &str) -> i64 {
    let db = Database::connect(url).await.expect("connect");
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    let n: i64 = row.try_get_by_index(0).unwrap();
    db.close().await.ok();
    n
}

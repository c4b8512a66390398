//! The release server as a child process, and the database it runs on.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use portal_access::token::{Claims, TokenKeys};
use sea_orm::{ConnectionTrait, Database};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use uuid::Uuid;

pub const SECRET: &str = "bench-secret-0123456789abcdef0123456789abcdef";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// A fresh database: a file in a temporary directory, or a new PostgreSQL
/// database on the configured server.
pub struct BenchDb {
    pub url: String,
    pub dir: Option<std::path::PathBuf>,
    admin: Option<(String, String)>,
}

impl BenchDb {
    pub async fn create(backend: Backend, postgres: Option<&str>) -> BenchDb {
        match backend {
            Backend::Sqlite => {
                let dir =
                    std::env::temp_dir().join(format!("portal-access-bench-{}", Uuid::new_v4()));
                std::fs::create_dir_all(&dir).unwrap();
                BenchDb {
                    url: format!("sqlite://{}/bench.db?mode=rwc", dir.display()),
                    dir: Some(dir),
                    admin: None,
                }
            }
            Backend::Postgres => {
                let admin_url = postgres.expect("a PostgreSQL URL").to_owned();
                let name = format!("pa_bench_{}", Uuid::new_v4().simple());
                let admin = Database::connect(&admin_url)
                    .await
                    .expect("connect PostgreSQL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
                admin.close().await.ok();
                let (prefix, _) = admin_url
                    .split('?')
                    .next()
                    .unwrap()
                    .rsplit_once('/')
                    .unwrap();
                BenchDb {
                    url: format!("{prefix}/{name}"),
                    dir: None,
                    admin: Some((admin_url, name)),
                }
            }
        }
    }

    pub async fn remove(self) {
        if let Some(dir) = self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((admin_url, name)) = self.admin
            && let Ok(admin) = Database::connect(&admin_url).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
            admin.close().await.ok();
        }
    }
}

/// The audit log's signing key every bench server shares (E2).
fn log_key_file() -> &'static std::path::Path {
    static FILE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let signer =
            portal_access::domain::signed_note::NoteSigner::from_seed("portal-access", [3; 32])
                .unwrap();
        let path = std::env::temp_dir().join(format!(
            "portal-access-bench-log-key-{}",
            std::process::id()
        ));
        std::fs::write(&path, signer.private_key_text()).unwrap();
        path
    })
}

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub keys: TokenKeys,
}

impl Server {
    pub async fn start(database_url: &str, env: &[(&str, &str)]) -> Server {
        Self::start_binary(
            std::path::Path::new(env!("CARGO_BIN_EXE_portal-access")),
            database_url,
            env,
        )
        .await
    }

    /// Another build of the server (a baseline to compare with) on the
    /// same database.
    pub async fn start_binary(
        binary: &std::path::Path,
        database_url: &str,
        env: &[(&str, &str)],
    ) -> Server {
        let mut command = Command::new(binary);
        command
            .env("PORTAL_ACCESS_LISTEN", "127.0.0.1:0")
            .env("DATABASE_URL", database_url)
            .env("PORTAL_ACCESS_JWT_SECRET", SECRET)
            .env("PORTAL_ACCESS_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn,portal_access::app=info")
            .env("PORTAL_ACCESS_SWEEP_INTERVAL", "0")
            .env("PORTAL_ACCESS_LOG_SIGNING_KEY", log_key_file())
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start the release server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
                .await
                .expect("server starts")
                .unwrap()
                .expect("server printed its address");
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if value["message"] == "serving gRPC" {
                break value["addr"].as_str().unwrap().parse().unwrap();
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let keys = TokenKeys::new(
            Some(SECRET.as_bytes()),
            &[],
            "portal-access",
            "portal-access",
        )
        .unwrap();
        Server { child, addr, keys }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub fn token(&self, kind: &str, sub: Uuid, adjust: impl FnOnce(&mut Claims)) -> String {
        let mut claims = Claims::new(&self.keys, kind, sub, Duration::from_secs(6 * 3600));
        adjust(&mut claims);
        self.keys.mint(&claims).unwrap()
    }

    /// Resident memory now and at its peak, in KiB (from /proc).
    pub fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub async fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}

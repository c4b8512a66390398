//! The real `portal-access` binary as a child process, for what only a
//! process shows: signals, `kill -9`, exit codes.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::helpers::{Backend, TEST_SECRET, TestApp};

pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    /// The JSON log lines printed up to "serving gRPC", that one included.
    pub startup: Vec<serde_json::Value>,
    /// The JSON log lines printed after start-up.
    pub logs: mpsc::UnboundedReceiver<serde_json::Value>,
}

impl ServerProcess {
    /// Starts the binary on `database_url` with JSON logs and a random port,
    /// and waits for it to say where it listens.
    pub async fn start(database_url: &str, env: &[(&str, &str)]) -> ServerProcess {
        let mut command = Self::command(env!("CARGO_BIN_EXE_portal-access"), database_url);
        for (name, value) in env {
            command.env(name, value);
        }
        Self::spawn(command).await
    }

    /// How [`ServerProcess::start`] runs `binary` (this build or another
    /// release's), for a caller to adjust before [`ServerProcess::spawn`].
    pub fn command(binary: impl AsRef<std::ffi::OsStr>, database_url: &str) -> Command {
        let mut command = Command::new(binary);
        command
            .env("PORTAL_ACCESS_LISTEN", "127.0.0.1:0")
            .env("DATABASE_URL", database_url)
            .env("PORTAL_ACCESS_JWT_SECRET", TEST_SECRET)
            .env("PORTAL_ACCESS_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        command
    }

    /// Starts `command` and waits for the server to say where it listens.
    pub async fn spawn(mut command: Command) -> ServerProcess {
        let mut child = command.spawn().expect("start portal-access");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, mut logs) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(value);
                }
            }
        });
        let mut startup = Vec::new();
        let addr = loop {
            let line = tokio::time::timeout(Duration::from_secs(60), logs.recv())
                .await
                .expect("the server starts within 60 s")
                .expect("the server printed where it listens before exiting");
            let serving = line["message"] == "serving gRPC";
            startup.push(line);
            if serving {
                break startup[startup.len() - 1]["addr"]
                    .as_str()
                    .expect("addr field")
                    .parse()
                    .expect("an address");
            }
        };
        ServerProcess {
            child,
            addr,
            startup,
            logs,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// A client of this process.
    pub async fn client(&self, backend: Backend, database_url: &str) -> TestApp {
        TestApp::client_of(self.addr, backend, database_url).await
    }

    /// SIGTERM, as Kubernetes sends it.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// SIGKILL: no chance to clean up.
    pub async fn kill_hard(&mut self) {
        self.child.kill().await.expect("kill -9");
    }

    /// Waits for the process to exit, at most `bound`; `None` if it is
    /// still running then (it is killed when dropped, so no test leaves one
    /// behind).
    pub async fn exit_within(&mut self, bound: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(bound, self.child.wait())
            .await
            .ok()
            .map(|status| status.expect("wait for the process"))
    }

    /// The next log line whose message is `message`.
    pub async fn log_line(&mut self, message: &str) -> serde_json::Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), self.logs.recv())
                .await
                .unwrap_or_else(|_| panic!("log line {message:?} within 30 s"))
                .unwrap_or_else(|| panic!("log line {message:?} before exit"));
            if line["message"] == message {
                return line;
            }
        }
    }
}

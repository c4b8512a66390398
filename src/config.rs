//! Settings from flags and `PORTAL_ACCESS_*` environment variables (SPEC §7).
//! Secrets are masked whenever the configuration is printed.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "portal-access",
    version,
    about = "Access-control backend of a multi-portal e-learning platform"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Run database migrations, then exit.
    Migrate,
    /// Print a token signed with the configured HS256 secret.
    Token(Box<TokenArgs>),
    /// Copy the live SQLite database, and the key files generated beside
    /// it, while the service serves (PostgreSQL: see docs/operations.md).
    Backup(BackupArgs),
    /// Print the audit log's verifier keys (signed-note format, E2).
    LogKey,
    /// Check an evidence bundle offline: signature, proofs, back-links (E6).
    VerifyEvidence(VerifyEvidenceArgs),
}

#[derive(Debug, Args)]
pub struct VerifyEvidenceArgs {
    /// The bundle (JSON) ExportAccessEvidence returned.
    pub file: PathBuf,
    /// A verifier key (`portal-access log-key`, `GetLogVerifierKeys`); repeat for several.
    #[arg(long = "verifier-key", required = true)]
    pub verifier_keys: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The copy to write; it must not exist. Generated key files are
    /// copied beside it under the same suffixes.
    #[arg(long)]
    pub to: PathBuf,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// account, api_client, support_agent, operator or service.
    #[arg(long)]
    pub kind: String,
    /// The subject (UUID); a random one if omitted.
    #[arg(long)]
    pub sub: Option<uuid::Uuid>,
    #[arg(long)]
    pub realm: Option<uuid::Uuid>,
    #[arg(long)]
    pub portal: Option<uuid::Uuid>,
    #[arg(long = "key-id")]
    pub key_id: Option<String>,
    /// interactive or bulk_import (account tokens).
    #[arg(long)]
    pub channel: Option<String>,
    /// The support agent's UUID, for a temporary support admin's token.
    #[arg(long)]
    pub agent: Option<uuid::Uuid>,
    #[arg(long)]
    pub name: Option<String>,
    /// Comma-separated service scopes.
    #[arg(long, value_delimiter = ',')]
    pub scopes: Vec<String>,
    /// Lifetime, e.g. 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
}

/// Everything `serve` and `migrate` need.
#[derive(Clone, Args)]
pub struct Config {
    /// gRPC listen address; port 0 picks a free port.
    #[arg(
        long,
        env = "PORTAL_ACCESS_LISTEN",
        default_value = "127.0.0.1:50051",
        global = true
    )]
    pub listen: SocketAddr,
    /// SQLite file or postgres://… URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://portal-access.db?mode=rwc",
        global = true
    )]
    pub database_url: String,
    /// Maximum database connections of this replica.
    #[arg(
        long,
        env = "PORTAL_ACCESS_DB_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub db_max_connections: u32,
    /// HS256 secret for tokens; generated beside a SQLite database if unset.
    #[arg(
        long,
        env = "PORTAL_ACCESS_JWT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub jwt_secret: Option<String>,
    /// Ed25519/RS256 public keys (PEM files, comma-separated).
    #[arg(
        long,
        env = "PORTAL_ACCESS_JWT_PUBLIC_KEYS",
        value_delimiter = ',',
        global = true
    )]
    pub jwt_public_keys: Vec<PathBuf>,
    /// Required `iss` claim.
    #[arg(
        long,
        env = "PORTAL_ACCESS_JWT_ISSUER",
        default_value = "portal-access",
        global = true
    )]
    pub jwt_issuer: String,
    /// Required `aud` claim.
    #[arg(
        long,
        env = "PORTAL_ACCESS_JWT_AUDIENCE",
        default_value = "portal-access",
        global = true
    )]
    pub jwt_audience: String,
    /// text or json.
    #[arg(
        long,
        env = "PORTAL_ACCESS_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// How often expired support grants and requests are swept (S8); 0 turns the sweeper off.
    #[arg(long, env = "PORTAL_ACCESS_SWEEP_INTERVAL", default_value = "5s", value_parser = parse_duration, global = true)]
    pub sweep_interval: Duration,
    /// How long a support access request waits for an answer (S2).
    #[arg(long, env = "PORTAL_ACCESS_ACCESS_REQUEST_TTL", default_value = "7d", value_parser = parse_duration, global = true)]
    pub access_request_ttl: Duration,
    /// Events an audit stream buffers for a slow client (L4).
    #[arg(
        long,
        env = "PORTAL_ACCESS_STREAM_BUFFER",
        default_value_t = 256,
        global = true
    )]
    pub stream_buffer: usize,
    /// How long an audit stream waits on a client that takes nothing before ending it (L4).
    #[arg(long, env = "PORTAL_ACCESS_STREAM_STALL_TIMEOUT", default_value = "30s", value_parser = parse_duration, global = true)]
    pub stream_stall_timeout: Duration,
    /// How often an idle audit stream sends a progress message with its cursor (L9; at most 10 s).
    #[arg(long, env = "PORTAL_ACCESS_STREAM_PROGRESS_INTERVAL", default_value = "10s", value_parser = parse_duration, global = true)]
    pub stream_progress_interval: Duration,
    /// Secret the page tokens and stream cursors are sealed with (SPEC §5); by default the HS256 token secret.
    #[arg(
        long,
        env = "PORTAL_ACCESS_PAGE_TOKEN_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub page_token_secret: Option<String>,
    /// The previous page-token secret, still accepted while clients hold positions sealed with it.
    #[arg(
        long,
        env = "PORTAL_ACCESS_PAGE_TOKEN_SECRET_PREVIOUS",
        hide_env_values = true,
        global = true
    )]
    pub page_token_secret_previous: Option<String>,
    /// The audit log's signing key (a signed-note private key file, E2); generated beside a SQLite database if unset.
    #[arg(long, env = "PORTAL_ACCESS_LOG_SIGNING_KEY", global = true)]
    pub log_signing_key: Option<PathBuf>,
    /// More verifier keys to publish beside the signing key's (rotation; comma-separated signed-note verifier keys).
    #[arg(
        long,
        env = "PORTAL_ACCESS_LOG_VERIFIER_KEYS",
        value_delimiter = ',',
        global = true
    )]
    pub log_verifier_keys: Vec<String>,
    /// Checkpoint origins are `<this>/<realm id>`; also the signing key's name (E2).
    #[arg(
        long,
        env = "PORTAL_ACCESS_LOG_ORIGIN",
        default_value = "portal-access",
        global = true
    )]
    pub log_origin: String,
    /// Benchmark A/B only: `false` writes events as a release without the evidence tree would (they join the tree at the next append with it on).
    #[arg(long, env = "PORTAL_ACCESS_EVIDENCE_TREE", default_value_t = true, action = clap::ArgAction::Set, hide = true, global = true)]
    pub evidence_tree: bool,
    /// PostgreSQL only (W1): `after-commit` numbers audit events after they commit, with no row every audited write takes; `at-commit` numbers them under one row held to commit, as v0.2.0 does: use it while v0.2.0 replicas still serve during the rolling update from it, then switch back.
    #[arg(
        long,
        env = "PORTAL_ACCESS_AUDIT_NUMBERING",
        value_enum,
        default_value = "after-commit",
        global = true
    )]
    pub audit_numbering: AuditNumbering,
    /// How long shutdown waits for in-flight calls before exiting anyway.
    #[arg(long, env = "PORTAL_ACCESS_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration, global = true)]
    pub shutdown_grace: Duration,
    /// Requests handled at once before new ones are shed with RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "PORTAL_ACCESS_MAX_CONCURRENT_REQUESTS",
        default_value_t = 1024,
        global = true
    )]
    pub max_concurrent_requests: usize,
    /// How often the database is checked for health (not per probe).
    #[arg(long, env = "PORTAL_ACCESS_DB_CHECK_INTERVAL", default_value = "2s", value_parser = parse_duration, global = true)]
    pub db_check_interval: Duration,
    /// TLS certificate chain (PEM); with `--tls-key`, gRPC is served over TLS only.
    #[arg(
        long,
        env = "PORTAL_ACCESS_TLS_CERT",
        global = true,
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(
        long,
        env = "PORTAL_ACCESS_TLS_KEY",
        global = true,
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM) for client certificates; set, it makes TLS mutual (mTLS).
    #[arg(
        long,
        env = "PORTAL_ACCESS_TLS_CLIENT_CA",
        global = true,
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,
    /// Plaintext health-only listener, served when TLS is on (Kubernetes
    /// gRPC probes cannot present client certificates).
    #[arg(
        long,
        env = "PORTAL_ACCESS_HEALTH_LISTEN",
        default_value = "127.0.0.1:50052",
        global = true
    )]
    pub health_listen: SocketAddr,
}

/// When audit events get their platform-wide sequence (W1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditNumbering {
    AfterCommit,
    AtCommit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Defaults for an embedded server, as `cargo run` would get them.
    pub fn defaults() -> Self {
        Cli::parse_from(["portal-access"]).config
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// The file a generated secret is kept in: beside the SQLite database.
    /// `None` for in-memory SQLite and for PostgreSQL.
    pub fn generated_secret_path(&self) -> Option<PathBuf> {
        self.sqlite_path()
            .map(|path| sibling(&path, GENERATED_KEY_FILES[0].suffix))
    }

    /// The file a generated log signing key is kept in (E2).
    pub fn generated_log_key_path(&self) -> Option<PathBuf> {
        self.sqlite_path()
            .map(|path| sibling(&path, GENERATED_KEY_FILES[1].suffix))
    }

    /// The SQLite database file; `None` for in-memory SQLite and for
    /// PostgreSQL.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self.database_url.strip_prefix("sqlite:")?;
        let path = rest.trim_start_matches("//").split('?').next()?;
        if path.is_empty() || path == ":memory:" || path.contains("mode=memory") {
            return None;
        }
        Some(PathBuf::from(path))
    }
}

/// A key file the server generates beside the SQLite database on first
/// start. A backup is only usable with these files beside it: the data
/// without its token secret locks every client out.
pub struct GeneratedKeyFile {
    /// Appended to the database file's name.
    pub suffix: &'static str,
    pub what: &'static str,
}

/// Every generated key file (the audit log's signing key joins this list
/// when it is generated beside the database, SPEC E2).
pub const GENERATED_KEY_FILES: &[GeneratedKeyFile] = &[
    GeneratedKeyFile {
        suffix: ".jwt-secret",
        what: "token secret (HS256)",
    },
    GeneratedKeyFile {
        suffix: ".log-signing-key",
        what: "audit log signing key (Ed25519, E2)",
    },
];

/// `dir/portal-access.db` + `.jwt-secret` → `dir/portal-access.db.jwt-secret`.
pub fn sibling(database: &std::path::Path, suffix: &str) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The printed form hides secrets and database passwords.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database_url", &mask_url_password(&self.database_url))
            .field("db_max_connections", &self.db_max_connections)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "****"))
            .field("jwt_public_keys", &self.jwt_public_keys)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("log_format", &self.log_format)
            .field("sweep_interval", &self.sweep_interval)
            .field("access_request_ttl", &self.access_request_ttl)
            .field("stream_buffer", &self.stream_buffer)
            .field("stream_stall_timeout", &self.stream_stall_timeout)
            .field("stream_progress_interval", &self.stream_progress_interval)
            .field("log_signing_key", &self.log_signing_key)
            .field("log_verifier_keys", &self.log_verifier_keys)
            .field("log_origin", &self.log_origin)
            .field("evidence_tree", &self.evidence_tree)
            .field("audit_numbering", &self.audit_numbering)
            .field(
                "page_token_secret",
                &self.page_token_secret.as_ref().map(|_| "****"),
            )
            .field(
                "page_token_secret_previous",
                &self.page_token_secret_previous.as_ref().map(|_| "****"),
            )
            .field("shutdown_grace", &self.shutdown_grace)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("db_check_interval", &self.db_check_interval)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key.as_ref().map(|_| "****"))
            .field("tls_client_ca", &self.tls_client_ca)
            .field("health_listen", &self.health_listen)
            .finish()
    }
}

/// The configuration reference of docs/operations.md, rendered from the
/// flags themselves so the two cannot drift: one Markdown table row per
/// setting that has an environment variable.
pub fn configuration_reference() -> String {
    use clap::CommandFactory;
    let command = Cli::command();
    let mut table = String::from("| variable | flag | default | meaning |\n|---|---|---|---|\n");
    for arg in command.get_arguments() {
        let Some(env) = arg.get_env() else { continue };
        let flag = arg
            .get_long()
            .map(|long| format!("`--{long}`"))
            .unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| format!("`{}`", v.to_string_lossy()))
            .collect();
        let default = if defaults.is_empty() {
            "none".to_owned()
        } else {
            defaults.join(", ")
        };
        let meaning = arg
            .get_help()
            .map(|help| help.to_string().replace('\n', " "))
            .unwrap_or_default();
        table.push_str(&format!(
            "| `{}` | {flag} | {default} | {meaning} |\n",
            env.to_string_lossy()
        ));
    }
    table
}

/// `postgres://user:secret@host/db` → `postgres://user:****@host/db`.
pub fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:****@{host}"),
        None => url.to_owned(),
    }
}

/// `90s`, `15m`, `4h`, `7d`, or plain seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration like 30s, 15m, 4h or 7d"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => return Ok(Duration::from_millis(value)),
        "m" => value * 60,
        "h" => value * 3600,
        "d" => value * 86_400,
        _ => return Err(format!("{raw:?} has an unknown unit (ms, s, m, h, d)")),
    };
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn printed_config_masks_secrets() {
        let mut config = Config::defaults();
        config.jwt_secret = Some("super-secret-value".into());
        config.database_url = "postgres://app:hunter2@db:5432/pa".into();
        let printed = format!("{config:?}");
        assert!(!printed.contains("super-secret-value"));
        assert!(!printed.contains("hunter2"));
        assert!(printed.contains("postgres://app:****@db:5432/pa"));
    }

    /// docs/operations.md holds [`configuration_reference`] between its
    /// markers; `UPDATE_DOCS=1 cargo test --lib config` rewrites it.
    #[test]
    fn operations_guide_lists_every_setting_as_the_flags_define_it() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md");
        let guide = std::fs::read_to_string(path).expect("docs/operations.md");
        let (begin, end) = (
            "<!-- configuration:begin -->\n",
            "<!-- configuration:end -->",
        );
        let start = guide.find(begin).expect("begin marker") + begin.len();
        let stop = guide.find(end).expect("end marker");
        let expected = configuration_reference();
        if guide[start..stop] == expected {
            return;
        }
        if std::env::var_os("UPDATE_DOCS").is_some() {
            let updated = format!("{}{expected}{}", &guide[..start], &guide[stop..]);
            std::fs::write(path, updated).expect("rewrite docs/operations.md");
            return;
        }
        panic!(
            "docs/operations.md's configuration table differs from the flags; \
             run UPDATE_DOCS=1 cargo test --lib config to regenerate it:\n{expected}"
        );
    }

    #[test]
    fn generated_secret_lives_beside_the_sqlite_file() {
        let mut config = Config::defaults();
        assert_eq!(
            config.generated_secret_path(),
            Some(PathBuf::from("portal-access.db.jwt-secret"))
        );
        config.database_url = "sqlite::memory:".into();
        assert_eq!(config.generated_secret_path(), None);
        config.database_url = "postgres://localhost/x".into();
        assert_eq!(config.generated_secret_path(), None);
    }
}

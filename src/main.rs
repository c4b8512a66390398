//! `portal-access`: flags → config → telemetry → serve, migrate, token or
//! backup.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use portal_access::app::{App, load_log_signer, load_token_keys};
use portal_access::config::{BackupArgs, Cli, Command, TokenArgs, VerifyEvidenceArgs};
use portal_access::domain::SystemClock;
use portal_access::store::Store;
use portal_access::telemetry;
use portal_access::token::Claims;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Flushes exported spans and metrics when main returns.
    let _telemetry = telemetry::init(cli.config.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Migrate => migrate(cli.config).await,
        Command::Token(args) => token(cli.config, *args),
        Command::Backup(args) => backup(cli.config, args).await,
        Command::LogKey => log_key(cli.config),
        Command::VerifyEvidence(args) => return verify_evidence(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: portal_access::config::Config) -> Result<(), String> {
    tracing::info!(
        ?config,
        version = env!("CARGO_PKG_VERSION"),
        "starting portal-access {}",
        env!("CARGO_PKG_VERSION")
    );
    let app = App::build(config, Arc::new(SystemClock))
        .await
        .map_err(|e| e.to_string())?;
    app.run_until(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

/// Prints the verifier keys of the audit log (E2), one per line.
fn log_key(config: portal_access::config::Config) -> Result<(), String> {
    let signer = load_log_signer(&config).map_err(|e| e.to_string())?;
    let keys = signer.verifier_keys();
    if keys.is_empty() {
        return Err("no log signing key: set PORTAL_ACCESS_LOG_SIGNING_KEY".into());
    }
    for key in keys {
        println!("{key}");
    }
    Ok(())
}

/// E6: no server, no database; exit 0 only when everything verifies.
fn verify_evidence(args: VerifyEvidenceArgs) -> ExitCode {
    match portal_access::evidence::verify_evidence_file(&args.file, &args.verifier_keys) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: portal_access::config::Config) -> Result<(), String> {
    let store = Store::connect(&config.database_url, 2)
        .await
        .map_err(|e| e.message)?;
    store.migrate().await.map_err(|e| e.message)?;
    tracing::info!("migrations applied");
    Ok(())
}

fn token(config: portal_access::config::Config, args: TokenArgs) -> Result<(), String> {
    let keys = load_token_keys(&config).map_err(|e| e.to_string())?;
    let sub = args.sub.unwrap_or_else(uuid::Uuid::new_v4);
    let mut claims = Claims::new(&keys, &args.kind, sub, args.ttl);
    claims.realm = args.realm.map(|r| r.to_string());
    claims.portal = args.portal.map(|p| p.to_string());
    claims.key_id = args.key_id;
    claims.channel = args
        .channel
        .or_else(|| (args.kind == "account").then(|| "interactive".to_owned()));
    claims.agent = args.agent.map(|a| a.to_string());
    claims.name = args.name;
    claims.scopes = (!args.scopes.is_empty()).then_some(args.scopes);
    let token = keys.mint(&claims)?;
    // The token is the command's output, for `$(portal-access token …)`.
    println!("{token}");
    Ok(())
}

async fn backup(config: portal_access::config::Config, args: BackupArgs) -> Result<(), String> {
    let report = portal_access::backup::run(&config, &args.to).await?;
    // The report is the command's output: what to keep with the backup.
    print!("{report}");
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (Kubernetes).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}

//! `portal-access backup --to FILE`: a consistent copy of the live SQLite
//! database, taken while the service serves, with the key files generated
//! beside the database copied beside the backup (docs/operations.md,
//! "Backup and restore").

use std::path::{Path, PathBuf};

use crate::config::{Config, GENERATED_KEY_FILES, sibling};
use crate::store::Store;

/// What a backup wrote, for the operator.
#[derive(Debug)]
pub struct BackupReport {
    pub database: PathBuf,
    /// (copy, what it is): restore each beside the restored database.
    pub key_files: Vec<(PathBuf, &'static str)>,
    /// Keys that come from configuration rather than files; the backup is
    /// unusable without them, so the operator must keep them too.
    pub configured_keys: Vec<&'static str>,
}

impl std::fmt::Display for BackupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "backup written: {}", self.database.display())?;
        if !self.key_files.is_empty() {
            writeln!(
                f,
                "key files copied beside it (keep them with the backup; a restore puts them beside the database):"
            )?;
            for (path, what) in &self.key_files {
                writeln!(f, "  {}  {what}", path.display())?;
            }
        }
        for key in &self.configured_keys {
            writeln!(f, "keep with the backup: {key}")?;
        }
        Ok(())
    }
}

/// Copies the database named by `config` to `to`, then its generated key
/// files beside `to` under the same suffixes.
pub async fn run(config: &Config, to: &Path) -> Result<BackupReport, String> {
    if !config.is_sqlite() {
        return Err(
            "backup copies the embedded SQLite database only; for PostgreSQL use pg_dump or a \
             base backup with WAL archiving, as docs/operations.md (\"Backup and restore\") shows"
                .into(),
        );
    }
    let database = config
        .sqlite_path()
        .ok_or("an in-memory database has nothing to back up")?;
    if !database.exists() {
        return Err(format!("no database at {}", database.display()));
    }
    let key_sources: Vec<(PathBuf, PathBuf, &'static str)> = GENERATED_KEY_FILES
        .iter()
        .map(|key| {
            (
                sibling(&database, key.suffix),
                sibling(to, key.suffix),
                key.what,
            )
        })
        .filter(|(source, _, _)| source.exists())
        .collect();
    if let Some((_, taken, _)) = key_sources.iter().find(|(_, copy, _)| copy.exists()) {
        return Err(format!(
            "{} already exists; a backup never overwrites a file",
            taken.display()
        ));
    }

    let store = Store::connect(&config.database_url, 1)
        .await
        .map_err(|e| e.message)?;
    let copied = store.backup_to(to).await;
    store.close().await;
    copied?;

    let mut key_files = Vec::new();
    for (source, copy, what) in key_sources {
        // std::fs::copy keeps the source's mode (0600).
        std::fs::copy(&source, &copy).map_err(|e| {
            format!(
                "the database was copied, but {} could not be copied to {}: {e}",
                source.display(),
                copy.display()
            )
        })?;
        key_files.push((copy, what));
    }
    let mut configured_keys = Vec::new();
    if config.jwt_secret.is_some() {
        configured_keys.push("the token secret of PORTAL_ACCESS_JWT_SECRET");
    }
    if !config.jwt_public_keys.is_empty() {
        configured_keys.push("the public key files of PORTAL_ACCESS_JWT_PUBLIC_KEYS");
    }
    Ok(BackupReport {
        database: to.to_owned(),
        key_files,
        configured_keys,
    })
}

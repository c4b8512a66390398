//! Online backup of the embedded SQLite database (`portal-access backup`).
//!
//! `VACUUM INTO` copies the database as one read transaction sees it: in WAL
//! mode writers go on committing while it runs, and the copy holds exactly
//! the transactions committed before it began (every one of them whole, with
//! its audit events, L1). PostgreSQL has its own tools (pg_dump, base
//! backups with WAL archiving); docs/operations.md gives the commands.

use std::path::Path;

use sea_orm::{ConnectionTrait, Value};

use super::{Backend, Store, raw};

impl Store {
    /// Writes a consistent copy of the live SQLite database to `to`, which
    /// must not exist yet. The error is for the operator who ran the
    /// command, so it carries the database's own message.
    pub async fn backup_to(&self, to: &Path) -> Result<(), String> {
        if self.backend != Backend::Sqlite {
            return Err(
                "backup copies the embedded SQLite database only; for PostgreSQL use pg_dump \
                 or a base backup with WAL archiving (docs/operations.md, \"Backup and restore\")"
                    .into(),
            );
        }
        if to.exists() {
            return Err(format!(
                "{} already exists; a backup never overwrites a file",
                to.display()
            ));
        }
        let target = to.to_str().ok_or("the backup path must be valid UTF-8")?;
        self.db
            .execute_raw(raw::statement(
                self.backend,
                "VACUUM INTO ?",
                vec![Value::from(target)],
            ))
            .await
            .map_err(|e| format!("VACUUM INTO {target}: {e}"))?;
        Ok(())
    }
}

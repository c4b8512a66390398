//! W1, expand only: each event records which bytes its chain hash covers
//! (old rows and the previous release's writes: the first form, with the
//! sequence), and on PostgreSQL a sequence hands out the placeholders that
//! committed events hold until the numbering leader numbers them. Nothing
//! the previous release reads or writes changes.

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000003_numbering"
    }
}

const SCHEMA: &str = r#"
ALTER TABLE audit_events ADD COLUMN chain_form SMALLINT NOT NULL DEFAULT 1
"#;

/// Placeholders are `-nextval(…)`: negative, so no reader of `sequence >
/// cursor` ever sees them, unique, and descending in write order (the
/// primary key's index is the leader's queue).
const POSTGRES: &str = r#"
CREATE SEQUENCE audit_events_pending
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        super::run_schema(db, SCHEMA).await?;
        if db.get_database_backend() == DbBackend::Postgres {
            super::run_schema(db, POSTGRES).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared("DROP SEQUENCE audit_events_pending")
                .await?;
        }
        db.execute_unprepared("ALTER TABLE audit_events DROP COLUMN chain_form")
            .await?;
        Ok(())
    }
}

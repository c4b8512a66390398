//! Schema migrations, run at start-up and by `portal-access migrate`.
//!
//! Migrations expand first and contract only in a later release
//! (docs/operations.md, "Upgrades"): during a rolling update the previous
//! release serves on the schema the new release's migrate job has already
//! expanded. `.ci/check-migrations` refuses a drop or rename outside a
//! migration marked as a contract step.

use std::collections::BTreeSet;

use sea_orm::{ConnectionTrait, DbErr, Statement};
use sea_orm_migration::prelude::*;

mod m20261123_000001_initial;
mod m20261123_000002_support_lookups;
mod m20261201_000001_evidence_tree;
mod m20261201_000002_governance;
mod m20261201_000003_numbering;
mod m20261201_000004_numbering_round;
mod m20261201_000005_numbering_watermark;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_initial::Migration),
            Box::new(m20261123_000002_support_lookups::Migration),
            Box::new(m20261201_000001_evidence_tree::Migration),
            Box::new(m20261201_000002_governance::Migration),
            Box::new(m20261201_000003_numbering::Migration),
            Box::new(m20261201_000004_numbering_round::Migration),
            Box::new(m20261201_000005_numbering_watermark::Migration),
        ]
    }
}

/// Runs a migration's SQL: statements separated by `;`, `{uuid}` the
/// backend's UUID type, comment-only pieces skipped.
pub(super) async fn run_schema(db: &SchemaManagerConnection<'_>, sql: &str) -> Result<(), DbErr> {
    let uuid = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => "UUID",
        _ => "BLOB",
    };
    for statement in sql.replace("{uuid}", uuid).split(';') {
        let is_only_comments = statement
            .lines()
            .all(|l| l.trim().is_empty() || l.trim().starts_with("--"));
        if !is_only_comments {
            db.execute_unprepared(statement.trim()).await?;
        }
    }
    Ok(())
}

/// Applies this release's pending migrations.
///
/// A database may already hold migrations this release does not know: a
/// newer release migrated it and this replica (re)starts in the middle of
/// the rollout, or a rollback is under way. `Migrator::up` refuses to start
/// then; because a newer release only expands what this one uses, this
/// release serves on that schema instead, provided its own migrations are
/// all applied.
pub async fn apply<C>(db: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait,
    for<'c> &'c C: IntoSchemaManagerConnection<'c>,
{
    let known: BTreeSet<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let applied = applied_versions(db).await?;
    let newer: Vec<&String> = applied.difference(&known).collect();
    if newer.is_empty() {
        return Migrator::up(db, None).await;
    }
    let missing: Vec<&String> = known.difference(&applied).collect();
    if !missing.is_empty() {
        return Err(DbErr::Custom(format!(
            "the database holds migrations of another release ({newer:?}) but lacks this \
             release's {missing:?}; it was not migrated by a later release of this line"
        )));
    }
    tracing::warn!(
        ?newer,
        "the schema is ahead of this release (a newer release migrated it); serving on it"
    );
    Ok(())
}

/// The versions recorded in sea-orm-migration's table; none before the
/// first migration.
async fn applied_versions<C>(db: &C) -> Result<BTreeSet<String>, DbErr>
where
    C: ConnectionTrait,
    for<'c> &'c C: IntoSchemaManagerConnection<'c>,
{
    if !SchemaManager::new(db).has_table("seaql_migrations").await? {
        return Ok(BTreeSet::new());
    }
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT version FROM seaql_migrations",
        ))
        .await?;
    rows.iter()
        .map(|row| row.try_get_by_index::<String>(0))
        .collect()
}

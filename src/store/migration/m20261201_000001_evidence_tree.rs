//! E1, E3, E5: each realm's events become the leaves of a Merkle tree.
//! Events gain their leaf index and the support session they belong to
//! (with the leaf of the session's previous event); realms keep their tree's
//! size and right border; complete-subtree hashes are stored for proofs.
//! Expand only: an older release keeps writing events without leaves, and
//! the next append of a newer one adds them (`store/tree.rs`). Existing
//! events join their realm's tree here.

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000001_evidence_tree"
    }
}

const SCHEMA: &str = r#"
ALTER TABLE audit_events ADD COLUMN leaf_index BIGINT;
ALTER TABLE audit_events ADD COLUMN access_request_id {uuid};
ALTER TABLE audit_events ADD COLUMN previous_request_leaf BIGINT;
CREATE UNIQUE INDEX audit_events_leaf ON audit_events (realm_id, leaf_index);
CREATE INDEX audit_events_session ON audit_events (access_request_id, leaf_index);
ALTER TABLE realms ADD COLUMN tree_size BIGINT NOT NULL DEFAULT 0;
ALTER TABLE realms ADD COLUMN tree_border TEXT NOT NULL DEFAULT '';
ALTER TABLE realms ADD COLUMN tree_chain_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE access_requests ADD COLUMN last_leaf BIGINT;
CREATE TABLE audit_tree_nodes (
    realm_id {uuid} NOT NULL,
    node BIGINT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (realm_id, node)
)
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        super::run_schema(db, SCHEMA).await?;
        let backend = match db.get_database_backend() {
            DbBackend::Postgres => crate::store::Backend::Postgres,
            _ => crate::store::Backend::Sqlite,
        };
        crate::store::tree::catch_up_every_realm(db, backend)
            .await
            .map_err(|e| DbErr::Custom(e.message))
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in [
            "DROP TABLE audit_tree_nodes",
            "DROP INDEX audit_events_session",
            "DROP INDEX audit_events_leaf",
        ] {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}

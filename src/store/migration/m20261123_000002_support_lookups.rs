//! Lookups support access needs beyond the initial schema: a temporary
//! admin's grant by account (the session log names the grant of whoever
//! calls, even after the account is gone), and the support team's view of
//! requests across realms by state, and an event by id (an idempotent
//! RecordSupportAction returns the event it recorded first).

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000002_support_lookups"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX support_grants_temporary_account ON support_grants (temporary_account_id)",
        )
        .await?;
        db.execute_unprepared("CREATE INDEX access_requests_state ON access_requests (state, id)")
            .await?;
        db.execute_unprepared("CREATE UNIQUE INDEX audit_events_id ON audit_events (id)")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX support_grants_temporary_account")
            .await?;
        db.execute_unprepared("DROP INDEX access_requests_state")
            .await?;
        db.execute_unprepared("DROP INDEX audit_events_id").await?;
        Ok(())
    }
}

//! Consent governance (G1-G7), expand only: the realm's support-access
//! policy (no row = the defaults, which are today's behaviour), the level of
//! requests and grants (default `admin`, the seed's temporary admin), when
//! a grant's window opens (default: at once, as before), and the proposals
//! and approvals of N-of-M consent.

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000002_governance"
    }
}

const SCHEMA: &str = r#"
CREATE TABLE support_policies (
    realm_id {uuid} PRIMARY KEY REFERENCES realms (id),
    enabled BOOLEAN NOT NULL,
    max_duration_seconds BIGINT NOT NULL,
    required_approvals SMALLINT NOT NULL CHECK (required_approvals BETWEEN 1 AND 3),
    allowed_levels TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

ALTER TABLE access_requests ADD COLUMN level TEXT NOT NULL DEFAULT 'admin';

ALTER TABLE support_grants ADD COLUMN level TEXT NOT NULL DEFAULT 'admin';
-- NULL with activation 'immediate' (rows of earlier releases): created_at.
ALTER TABLE support_grants ADD COLUMN starts_at BIGINT;
ALTER TABLE support_grants ADD COLUMN activation TEXT NOT NULL DEFAULT 'immediate';
ALTER TABLE support_grants ADD COLUMN duration_seconds BIGINT;
ALTER TABLE support_grants ADD COLUMN claim_deadline BIGINT;

CREATE TABLE support_proposals (
    id {uuid} PRIMARY KEY,
    realm_id {uuid} NOT NULL REFERENCES realms (id),
    access_request_id {uuid} NOT NULL REFERENCES access_requests (id),
    portal_ids TEXT NOT NULL,
    duration_seconds BIGINT NOT NULL,
    level TEXT NOT NULL,
    activation TEXT NOT NULL,
    start_at BIGINT,
    claim_window_seconds BIGINT,
    state TEXT NOT NULL CHECK (state IN ('open', 'started', 'cancelled')),
    proposed_by {uuid} NOT NULL,
    created_at BIGINT NOT NULL,
    closed_at BIGINT
);
-- G5: at most one open proposal per request.
CREATE UNIQUE INDEX support_proposals_one_open ON support_proposals (access_request_id) WHERE state = 'open';
CREATE INDEX support_proposals_realm_open ON support_proposals (realm_id) WHERE state = 'open';

-- G5: an admin approves a proposal at most once.
CREATE TABLE support_approvals (
    proposal_id {uuid} NOT NULL REFERENCES support_proposals (id),
    admin_id {uuid} NOT NULL,
    approved_at BIGINT NOT NULL,
    PRIMARY KEY (proposal_id, admin_id)
);

-- G7: the ticketing system ends every session of a ticket.
CREATE INDEX access_requests_ticket ON access_requests (realm_id, ticket_reference);
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        super::run_schema(db, SCHEMA).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in [
            "DROP INDEX access_requests_ticket",
            "DROP TABLE support_approvals",
            "DROP TABLE support_proposals",
            "ALTER TABLE support_grants DROP COLUMN claim_deadline",
            "ALTER TABLE support_grants DROP COLUMN duration_seconds",
            "ALTER TABLE support_grants DROP COLUMN activation",
            "ALTER TABLE support_grants DROP COLUMN starts_at",
            "ALTER TABLE support_grants DROP COLUMN level",
            "ALTER TABLE access_requests DROP COLUMN level",
            "DROP TABLE support_policies",
        ] {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}

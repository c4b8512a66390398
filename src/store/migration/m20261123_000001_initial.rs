//! The whole data model of SPEC.md.
//!
//! Written as SQL because the invariants live in it: partial unique indexes
//! (one top-level portal per realm, one active key set per portal, one
//! active grant per portal) read the same on SQLite and PostgreSQL. Instants
//! are BIGINT microseconds since the Unix epoch (UTC) so both databases
//! compare them identically; ids are UUIDs (`uuid` on PostgreSQL, 16-byte
//! BLOBs on SQLite).

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000001_initial"
    }
}

const SCHEMA: &str = r#"
CREATE TABLE realms (
    id {uuid} PRIMARY KEY,
    name TEXT NOT NULL,
    plan TEXT NOT NULL,
    top_level_admins_enrollable BOOLEAN NOT NULL,
    top_level_portal_id {uuid} NOT NULL,
    audit_head_hash TEXT NOT NULL,
    revision BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE portals (
    id {uuid} PRIMARY KEY,
    realm_id {uuid} NOT NULL REFERENCES realms (id),
    parent_id {uuid} REFERENCES portals (id),
    depth SMALLINT NOT NULL CHECK (depth IN (0, 1)),
    name TEXT NOT NULL,
    subdomain TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CHECK ((depth = 0 AND parent_id IS NULL) OR (depth = 1 AND parent_id IS NOT NULL))
);
-- P4: a subdomain is unique across all realms.
CREATE UNIQUE INDEX portals_subdomain ON portals (subdomain);
-- P1: exactly one top-level portal per realm.
CREATE UNIQUE INDEX portals_one_top_level ON portals (realm_id) WHERE parent_id IS NULL;
-- ListPortals: top-level first, then sub-portals in creation (UUIDv7) order.
CREATE INDEX portals_realm_order ON portals (realm_id, depth, id);

CREATE TABLE accounts (
    id {uuid} PRIMARY KEY,
    realm_id {uuid} NOT NULL REFERENCES realms (id),
    email TEXT NOT NULL,
    email_normalized TEXT NOT NULL,
    display_name TEXT NOT NULL,
    can_access_portal_settings BOOLEAN NOT NULL,
    invited BOOLEAN NOT NULL,
    support_grant_id {uuid},
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX accounts_realm_email ON accounts (realm_id, email_normalized);

CREATE TABLE memberships (
    account_id {uuid} NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    portal_id {uuid} NOT NULL REFERENCES portals (id),
    realm_id {uuid} NOT NULL REFERENCES realms (id),
    user_type TEXT NOT NULL CHECK (user_type IN ('learner', 'instructor', 'manager', 'admin')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, portal_id)
);
-- ListUsers pages through a portal's members by account id.
CREATE INDEX memberships_portal_account ON memberships (portal_id, account_id);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    portal_id {uuid} NOT NULL REFERENCES portals (id),
    realm_id {uuid} NOT NULL REFERENCES realms (id),
    secret_hash TEXT NOT NULL,
    secret_prefix TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE UNIQUE INDEX api_keys_secret_hash ON api_keys (secret_hash);
-- K2: at most one active key set per portal.
CREATE UNIQUE INDEX api_keys_one_active ON api_keys (portal_id) WHERE revoked_at IS NULL;

CREATE TABLE access_requests (
    id {uuid} PRIMARY KEY,
    realm_id {uuid} NOT NULL REFERENCES realms (id),
    agent_id {uuid} NOT NULL,
    agent_name TEXT NOT NULL,
    reason TEXT NOT NULL,
    ticket_reference TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'declined', 'withdrawn', 'expired')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_at BIGINT,
    decided_by TEXT
);
CREATE INDEX access_requests_realm ON access_requests (realm_id, state, id);
CREATE INDEX access_requests_pending_expiry ON access_requests (expires_at) WHERE state = 'pending';

CREATE TABLE support_grants (
    id {uuid} PRIMARY KEY,
    realm_id {uuid} NOT NULL REFERENCES realms (id),
    portal_id {uuid} NOT NULL REFERENCES portals (id),
    access_request_id {uuid} NOT NULL REFERENCES access_requests (id),
    temporary_account_id {uuid} NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT,
    end_reason TEXT
);
-- S5: one active grant per portal.
CREATE UNIQUE INDEX support_grants_one_active ON support_grants (portal_id) WHERE ended_at IS NULL;
CREATE INDEX support_grants_active_expiry ON support_grants (expires_at) WHERE ended_at IS NULL;
CREATE INDEX support_grants_request ON support_grants (access_request_id);

CREATE TABLE audit_events (
    sequence BIGINT PRIMARY KEY,
    id {uuid} NOT NULL,
    realm_id {uuid} NOT NULL,
    portal_id {uuid},
    category TEXT NOT NULL,
    action TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    agent_id {uuid},
    agent_name TEXT,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    details TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_events_realm ON audit_events (realm_id, sequence);
CREATE INDEX audit_events_portal ON audit_events (portal_id, category, sequence);

-- L2: the one row every audited transaction locks last, just before it
-- commits. Sequences are therefore handed out in commit order, and a reader
-- that has seen sequence N has seen every committed event below N.
CREATE TABLE audit_head (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    last_sequence BIGINT NOT NULL
);
INSERT INTO audit_head (id, last_sequence) VALUES (1, 0);

CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    request_id {uuid} NOT NULL,
    fingerprint TEXT NOT NULL,
    result_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, request_id)
);
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        super::run_schema(db, SCHEMA).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in [
            "idempotency_keys",
            "audit_head",
            "audit_events",
            "support_grants",
            "access_requests",
            "api_keys",
            "memberships",
            "accounts",
            "portals",
            "realms",
        ] {
            db.execute_unprepared(&format!("DROP TABLE {table}"))
                .await?;
        }
        Ok(())
    }
}

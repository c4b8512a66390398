//! W1, expand only (PostgreSQL): the numbering round as one function, so a
//! round is one round trip instead of five (begin, fence, list, number,
//! commit). Under load every round trip waits for a turn on a busy CPU, and
//! a writer answers only once its events are numbered: the round's trips
//! were half of an audited write's latency. Nothing the previous release
//! reads or writes changes.

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000004_numbering_round"
    }
}

/// Takes the fence row, then (each statement of a volatile function gets a
/// fresh snapshot under READ COMMITTED: it sees every commit made before
/// the lock was granted) numbers up to `round_limit` committed placeholders
/// in write order, moves the head past them and `extra` more numbers (an
/// at-commit writer's own events), and with a `channel` notifies the
/// replicas. Returns the head before, the head after and the numbered
/// placeholders, in write order, comma-separated.
pub(super) const FUNCTION: &str = r#"
CREATE FUNCTION audit_number_round(round_limit BIGINT, extra BIGINT, channel TEXT)
RETURNS TABLE (head_before BIGINT, head_after BIGINT, numbered TEXT)
LANGUAGE plpgsql VOLATILE AS $round$
DECLARE
    listed BIGINT[];
    updated BIGINT;
BEGIN
    SELECT h.last_sequence INTO head_before FROM audit_head h WHERE h.id = 1 FOR UPDATE;
    IF head_before IS NULL THEN
        RAISE EXCEPTION 'audit_head row missing';
    END IF;
    SELECT coalesce(array_agg(p.sequence ORDER BY p.sequence DESC), '{}') INTO listed
      FROM (SELECT e.sequence FROM audit_events e WHERE e.sequence < 0
             ORDER BY e.sequence DESC LIMIT round_limit) p;
    UPDATE audit_events e SET sequence = head_before + v.n
      FROM unnest(listed) WITH ORDINALITY AS v(placeholder, n)
     WHERE e.sequence = v.placeholder;
    GET DIAGNOSTICS updated = ROW_COUNT;
    IF updated <> cardinality(listed) THEN
        -- Under the fence nobody else numbers: rolling back keeps the
        -- numbers contiguous.
        RAISE EXCEPTION 'numbered % of % placeholders', updated, cardinality(listed);
    END IF;
    head_after := head_before + updated + extra;
    IF head_after <> head_before THEN
        UPDATE audit_head SET last_sequence = head_after WHERE id = 1;
    END IF;
    IF channel IS NOT NULL AND updated > 0 THEN
        PERFORM pg_notify(channel, head_after::TEXT || ':');
    END IF;
    numbered := array_to_string(listed, ',');
    RETURN NEXT;
END
$round$
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            // One statement: the body's semicolons are its own.
            db.execute_unprepared(FUNCTION.trim()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared("DROP FUNCTION audit_number_round(BIGINT, BIGINT, TEXT)")
                .await?;
        }
        Ok(())
    }
}

//! W1, expand only (PostgreSQL): a numbering round starts its scan for
//! placeholders below a settled watermark instead of at 0.
//!
//! Numbering rewrites each event's `sequence` from its placeholder to its
//! number, which leaves the placeholder's entry in the primary key's index
//! until a vacuum. A round listed `sequence < 0` from the top, so it walked
//! every such entry first: during the benchmark's stream after a bulk
//! import of ~140,000 users a round read ~430 index pages (3–11 ms) before
//! the first live placeholder; with 100,000 numbered events and 10 pending,
//! the listing took 9.3 ms (100,010 heap fetches) from 0 and 0.03 ms from
//! the watermark.
//!
//! The watermark: `audit_head.settled_placeholder` (≤ 0) says that no
//! placeholder at or above it can still commit unnumbered. A round on its
//! own proposes a candidate: the pending sequence's last value, read before
//! its transaction has an id, and then that id (`candidate_xmax`). A
//! writer holds its realm's row lock, and so a transaction id, before it
//! takes a placeholder, so every placeholder the candidate covers belongs
//! to a transaction older than the proposing round. Once the oldest running
//! transaction is no older than that round, each of them has committed (and
//! a later statement sees it) or never will, and the first round that
//! numbers everything it saw moves the watermark to the candidate. (A
//! snapshot's `xmax` would not do as the bound: it is the last *completed*
//! id plus one, and a transaction with a later id that is still running is
//! in no snapshot's list; the first version used it and a test caught a
//! write left unnumbered.) A long transaction holds the watermark back,
//! never past its own placeholders: late commits are still
//! numbered (L2). The previous release calls the same function.

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000005_numbering_watermark"
    }
}

const COLUMNS: &str = "ALTER TABLE audit_head \
    ADD COLUMN settled_placeholder BIGINT NOT NULL DEFAULT 0, \
    ADD COLUMN candidate_placeholder BIGINT NOT NULL DEFAULT 0, \
    ADD COLUMN candidate_xmax xid8";

/// As `m20261201_000004_numbering_round`, with the watermark. Each statement
/// of a volatile function takes a fresh snapshot under READ COMMITTED; the
/// order of the statements below is what makes the watermark safe.
///
/// The planner settings: a round reaches the rows it lists and names
/// through the primary key, whatever the table's statistics say; they lag
/// the table while it grows fast. The update of 1,000 placeholders during
/// a bulk import was planned as a hash join over a sequential scan of all
/// of `audit_events`, a cost that grows with the table (`auto_explain`:
/// 27 ms a round at ~40,000 events; as a nested loop over the key, 24 ms,
/// nearly all of it the rows' second write), and under `CreateUser` load
/// the listing of the few placeholders below the watermark took 0.78 ms a
/// round (`pg_stat_statements`), the time of a sequential scan of the
/// table. No JIT: without `jit = off`, `enable_seqscan`'s penalty pushes
/// the one-row read of the pending sequence past `jit_above_cost`, 15–100
/// ms of compiling in a round.
const FUNCTION: &str = r#"
CREATE OR REPLACE FUNCTION audit_number_round(round_limit BIGINT, extra BIGINT, channel TEXT)
RETURNS TABLE (head_before BIGINT, head_after BIGINT, numbered TEXT)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off
AS $round$
DECLARE
    listed BIGINT[];
    updated BIGINT;
    settled BIGINT;
    candidate BIGINT;
    ripe_at xid8;
    ripe BOOLEAN;
    seen BIGINT;
BEGIN
    -- Read before this transaction has an id (a round on its own): every
    -- writer that took a placeholder up to `seen` had its id before ours.
    -- Inside a writer's transaction (at commit) no candidate is proposed.
    IF pg_current_xact_id_if_assigned() IS NULL THEN
        SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END INTO seen
          FROM audit_events_pending s;
    END IF;
    SELECT h.last_sequence, h.settled_placeholder, h.candidate_placeholder, h.candidate_xmax
      INTO head_before, settled, candidate, ripe_at
      FROM audit_head h WHERE h.id = 1 FOR UPDATE;
    IF head_before IS NULL THEN
        RAISE EXCEPTION 'audit_head row missing';
    END IF;
    -- Every transaction older than the proposing round's has ended (that
    -- round has ended too, so the snapshot tracks all of them); the
    -- listing below, a later snapshot, sees everything they committed.
    ripe := ripe_at IS NOT NULL
        AND pg_snapshot_xmin(pg_current_snapshot()) >= ripe_at;
    -- EXECUTE: planned for this round's table, never a plan PL/pgSQL
    -- cached when the table was small (one such plan, a hash join over a
    -- sequential scan of audit_events, cost 15 ms a round after an import).
    EXECUTE 'SELECT coalesce(array_agg(p.sequence ORDER BY p.sequence DESC), ''{}'')
               FROM (SELECT e.sequence FROM audit_events e WHERE e.sequence < $1
                      ORDER BY e.sequence DESC LIMIT $2) p'
       INTO listed USING settled, round_limit;
    EXECUTE 'UPDATE audit_events e SET sequence = $1 + v.n
               FROM unnest($2::bigint[]) WITH ORDINALITY AS v(placeholder, n)
              WHERE e.sequence = v.placeholder'
       USING head_before, listed;
    GET DIAGNOSTICS updated = ROW_COUNT;
    IF updated <> cardinality(listed) THEN
        -- Under the fence nobody else numbers: rolling back keeps the
        -- numbers contiguous.
        RAISE EXCEPTION 'numbered % of % placeholders', updated, cardinality(listed);
    END IF;
    head_after := head_before + updated + extra;
    -- Only a round that numbered everything it saw may settle.
    IF ripe AND cardinality(listed) < round_limit THEN
        settled := least(settled, candidate);
        ripe_at := NULL;
    END IF;
    IF ripe_at IS NULL AND seen IS NOT NULL THEN
        candidate := -seen;
        ripe_at := pg_current_xact_id();
    END IF;
    UPDATE audit_head
       SET last_sequence = head_after,
           settled_placeholder = settled,
           candidate_placeholder = candidate,
           candidate_xmax = ripe_at
     WHERE id = 1;
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
            db.execute_unprepared(COLUMNS).await?;
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
            db.execute_unprepared(super::m20261201_000004_numbering_round::FUNCTION.trim())
                .await?;
            db.execute_unprepared(
                "ALTER TABLE audit_head DROP COLUMN settled_placeholder, \
                 DROP COLUMN candidate_placeholder, DROP COLUMN candidate_xmax",
            )
            .await?;
        }
        Ok(())
    }
}

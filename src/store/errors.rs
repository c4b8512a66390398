//! Database errors → the service's error, in one place. SQL and driver
//! messages go to the log, never to the caller.

use sea_orm::{DbErr, RuntimeErr, SqlErr};

use crate::error::{Error, Reason};

/// Maps a database error that no query expected.
pub(crate) fn db_error(err: DbErr) -> Error {
    if is_connection_error(&err) {
        tracing::warn!(error = %err, "database unreachable");
        return Error::new(
            Reason::DatabaseUnavailable,
            "the database is unavailable; retry later",
        );
    }
    if is_retryable_conflict(&err) {
        return Error::new(
            Reason::ConcurrentModification,
            "a concurrent change conflicted with this one; retry",
        );
    }
    Error::internal(err)
}

/// The unique index a violation came from, when it was one.
pub(crate) fn unique_violation(err: &DbErr) -> Option<String> {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(detail)) => Some(detail),
        _ => None,
    }
}

fn is_connection_error(err: &DbErr) -> bool {
    match err {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            matches!(
                e.as_ref(),
                sea_orm::sqlx::Error::Io(_)
                    | sea_orm::sqlx::Error::PoolTimedOut
                    | sea_orm::sqlx::Error::PoolClosed
                    | sea_orm::sqlx::Error::Tls(_)
            )
        }
        _ => false,
    }
}

/// PostgreSQL deadlock (40P01) or serialization failure (40001): the caller
/// may retry the whole call.
fn is_retryable_conflict(err: &DbErr) -> bool {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match e.as_ref() {
                sea_orm::sqlx::Error::Database(db) => {
                    matches!(db.code().as_deref(), Some("40001") | Some("40P01"))
                }
                _ => false,
            }
        }
        _ => false,
    }
}

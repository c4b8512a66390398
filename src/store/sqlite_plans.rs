//! SQLite keeps each prepared statement's plan.
//!
//! SQLite re-prepares a statement before running it whenever a bound
//! parameter that could change its plan was bound again, even to the same
//! value: a `LIMIT ?` (every SeaORM `one()`), a `LIKE ?`, a comparison a
//! partial index's condition could match. A `perf` profile of `CreateUser`
//! on SQLite put 13 % of all samples under `sqlite3Reprepare`, on the single
//! writer's path, and a probe on it counted ~7 re-prepares per call (the
//! realm, account, portal and audit-event reads). The query planner
//! stability guarantee (QPSG) keeps the plan made at the first prepare; the
//! plans we rely on do not depend on those values (lookups by key, and
//! partial indexes matched by their literal conditions).

use std::ffi::c_int;

use sea_orm::sqlx::SqliteConnection;

/// Turns on the guarantee for one new connection.
pub(super) async fn keep_plans(conn: &mut SqliteConnection) -> Result<(), sea_orm::sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let (rc, _) = plan_stability(handle.as_raw_handle().as_ptr(), 1);
    if rc != libsqlite3_sys::SQLITE_OK {
        return Err(sea_orm::sqlx::Error::Configuration(
            format!("SQLite refused the query planner stability guarantee (code {rc})").into(),
        ));
    }
    Ok(())
}

/// Sets the guarantee (`set` 1 or 0) or only reads it (-1): SQLite's
/// result code and the setting now.
fn plan_stability(db: *mut libsqlite3_sys::sqlite3, set: c_int) -> (c_int, c_int) {
    let mut now: c_int = -1;
    // SAFETY: `db` is an open connection locked out of sqlx's worker
    // thread by the caller's handle; the call reads or sets one flag.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            set,
            &mut now as *mut c_int,
        )
    };
    (rc, now)
}

#[cfg(test)]
mod tests {
    use super::super::Store;

    #[tokio::test]
    async fn every_sqlite_connection_keeps_its_plans() {
        let store = Store::connect("sqlite::memory:", 2).await.unwrap();
        let mut conn = store
            .db
            .get_sqlite_connection_pool()
            .acquire()
            .await
            .unwrap();
        let mut handle = conn.lock_handle().await.unwrap();
        let (rc, on) = super::plan_stability(handle.as_raw_handle().as_ptr(), -1);
        assert_eq!(rc, libsqlite3_sys::SQLITE_OK);
        assert_eq!(on, 1, "the query planner stability guarantee is off");
    }
}

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

use std::ptr;

use sea_orm::sqlx::SqliteConnection;

/// Turns on the guarantee for one new connection.
pub(super) async fn keep_plans(conn: &mut SqliteConnection) -> Result<(), sea_orm::sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle();
    // SAFETY: the handle is locked out of sqlx's worker thread while we
    // hold it, and the call only sets a flag on the open connection.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db.as_ptr(),
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1,
            ptr::null_mut::<std::ffi::c_int>(),
        )
    };
    if rc != libsqlite3_sys::SQLITE_OK {
        return Err(sea_orm::sqlx::Error::Configuration(
            format!("SQLite refused the query planner stability guarantee (code {rc})").into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ffi::c_int;

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
        let mut on: c_int = -1;
        // SAFETY: as in `keep_plans`; -1 reads the setting without changing it.
        let rc = unsafe {
            libsqlite3_sys::sqlite3_db_config(
                handle.as_raw_handle().as_ptr(),
                libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
                -1 as c_int,
                &mut on as *mut c_int,
            )
        };
        assert_eq!(rc, libsqlite3_sys::SQLITE_OK);
        assert_eq!(on, 1, "the query planner stability guarantee is off");
    }
}

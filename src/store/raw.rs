//! Hand-written statements for what the query builder cannot say the same
//! way on both databases (row locks, UPDATE … RETURNING).

use sea_orm::{DbBackend, Statement, Value};

use super::Backend;

/// Builds a statement from SQL written with `?` placeholders, numbering them
/// `$1, $2, …` for PostgreSQL.
pub(crate) fn statement(backend: Backend, sql: &str, values: Vec<Value>) -> Statement {
    match backend {
        Backend::Sqlite => Statement::from_sql_and_values(DbBackend::Sqlite, sql, values),
        Backend::Postgres => {
            let mut numbered = String::with_capacity(sql.len() + 8);
            let mut n = 0;
            for c in sql.chars() {
                if c == '?' {
                    n += 1;
                    numbered.push('$');
                    numbered.push_str(&n.to_string());
                } else {
                    numbered.push(c);
                }
            }
            Statement::from_sql_and_values(DbBackend::Postgres, numbered, values)
        }
    }
}

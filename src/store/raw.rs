//! Hand-written statements for what the query builder cannot say the same
//! way on both databases (row locks, UPDATE … RETURNING).

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{DbBackend, EntityTrait, Statement, Value};

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

/// `column = 'state'` with the state written into the SQL, not bound: a
/// partial index whose condition names that state (`WHERE state = 'open'`)
/// can then serve the query. SQLite's planner never looks at bound values
/// here (connections keep their plans, `sqlite_plans.rs`) and PostgreSQL's
/// generic plans do not either, so a bound state left such a query a scan
/// of the whole table. `state` is one of our own constant names.
pub(crate) fn state_is<E: EntityTrait>(column: E::Column, state: &'static str) -> Expr {
    assert!(
        state.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "a state name is a plain word"
    );
    ExprTrait::eq(
        Expr::col((E::default(), column)),
        Expr::cust(format!("'{state}'")),
    )
}

#[cfg(test)]
mod tests {
    use sea_orm::{
        ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryTrait, Statement,
    };
    use uuid::Uuid;

    use super::super::Store;
    use super::super::entity::support_proposal;
    use super::state_is;

    /// SQLite's plan for a query, one line per step.
    async fn plan_of(store: &Store, query: Statement) -> Vec<String> {
        let explain = Statement {
            sql: format!("EXPLAIN QUERY PLAN {}", query.sql),
            ..query
        };
        let rows = store.db.query_all_raw(explain).await.unwrap();
        rows.iter()
            .map(|r| r.try_get_by::<String, _>("detail").unwrap())
            .collect()
    }

    #[tokio::test]
    async fn g5_open_proposals_are_found_through_their_partial_index() {
        // One connection: each in-memory SQLite connection is its own database.
        let store = Store::connect("sqlite::memory:", 1).await.unwrap();
        store.migrate().await.unwrap();
        let query = support_proposal::Entity::find()
            .filter(support_proposal::Column::RealmId.eq(Uuid::now_v7()))
            .filter(state_is::<support_proposal::Entity>(
                support_proposal::Column::State,
                "open",
            ))
            .build(DbBackend::Sqlite);
        let plan = plan_of(&store, query).await;
        assert!(
            plan.iter()
                .any(|step| step.contains("support_proposals_realm_open")),
            "{plan:?}"
        );
    }
}

//! Many rows as one bound parameter on PostgreSQL: a JSON array of objects,
//! expanded by `json_to_recordset`.
//!
//! A multi-row `INSERT … VALUES (…), (…)` binds one parameter per cell (some
//! 20,000 for the audit events of a 1,000-user import), and its text changes
//! with the row count, so PostgreSQL parses and plans it again for almost
//! every call. Measured on imports of 1,000 users: the events statement
//! spent 6 ms in parse and 9 ms in bind out of 28 ms, and building its
//! 20,000 values was a good part of the server's own time under the realm
//! lock. With the rows as one JSON text the statement's text is fixed (the
//! connection prepares it once) and binding is one string. SQLite keeps
//! `VALUES`: it has no such parse cost to save.

use std::fmt::Write as _;

use sea_orm::sea_query::ColumnType;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbBackend, EntityTrait, IdenStatic, Iterable, Statement, Value,
};

use crate::error::{Error, Result};

/// Rows of fixed columns, written as one JSON array.
pub(super) struct JsonRows {
    /// Name and PostgreSQL type of each column, in row order.
    columns: Vec<(String, &'static str)>,
    json: String,
    rows: usize,
}

impl JsonRows {
    /// Rows of these columns (name, PostgreSQL type).
    pub(super) fn with_columns(columns: &[(&str, &'static str)]) -> Self {
        Self {
            columns: columns
                .iter()
                .map(|(name, pg_type)| ((*name).to_owned(), *pg_type))
                .collect(),
            json: String::from("["),
            rows: 0,
        }
    }

    /// Rows of every column of `E`'s table.
    pub(super) fn of_entity<E: EntityTrait>() -> Result<Self> {
        let mut columns = Vec::new();
        for column in E::Column::iter() {
            let pg_type = postgres_type(column.def().get_column_type()).ok_or_else(|| {
                Error::internal(format!("no JSON row type for column {}", column.as_str()))
            })?;
            columns.push((column.as_str().to_owned(), pg_type));
        }
        Ok(Self {
            columns,
            json: String::from("["),
            rows: 0,
        })
    }

    /// Appends one row, its values in column order.
    pub(super) fn push(&mut self, values: impl IntoIterator<Item = Value>) -> Result<()> {
        self.json.push_str(if self.rows == 0 { "{" } else { ",{" });
        let mut values = values.into_iter();
        for (index, (name, _)) in self.columns.iter().enumerate() {
            let value = values
                .next()
                .ok_or_else(|| Error::internal(format!("row without a value for {name}")))?;
            if index > 0 {
                self.json.push(',');
            }
            write_string(&mut self.json, name);
            self.json.push(':');
            write_value(&mut self.json, value)?;
        }
        if values.next().is_some() {
            return Err(Error::internal("row with more values than columns"));
        }
        self.json.push('}');
        self.rows += 1;
        Ok(())
    }

    /// Appends an active model of the entity the rows were made for
    /// ([`JsonRows::of_entity`]), every column set.
    pub(super) fn push_model<A: ActiveModelTrait>(&mut self, model: &A) -> Result<()> {
        let values = <A::Entity as EntityTrait>::Column::iter()
            .map(|column| {
                model.get(column).into_value().ok_or_else(|| {
                    Error::internal(format!("row without a value for {}", column.as_str()))
                })
            })
            .collect::<Result<Vec<Value>>>()?;
        self.push(values)
    }

    /// `c1, c2, …`: the column list of an `INSERT` or `SELECT`.
    pub(super) fn names(&self) -> String {
        self.columns
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `json_to_recordset(<param>::json) AS <alias>(c1 type, …)`: the rows
    /// as a table, read from the bound parameter `param` (e.g. `$1`).
    pub(super) fn source(&self, param: &str, alias: &str) -> String {
        let definitions: Vec<String> = self
            .columns
            .iter()
            .map(|(name, pg_type)| format!("{name} {pg_type}"))
            .collect();
        format!(
            "json_to_recordset({param}::json) AS {alias}({})",
            definitions.join(", ")
        )
    }

    /// `INSERT INTO <table> (c1, …) SELECT c1, … FROM json_to_recordset($1…)`:
    /// the rows as one statement, when the columns are the table's.
    pub(super) fn insert_into(self, table: &str) -> Statement {
        let sql = format!(
            "INSERT INTO {table} ({names}) SELECT {names} FROM {source}",
            names = self.names(),
            source = self.source("$1", "r"),
        );
        Statement::from_sql_and_values(DbBackend::Postgres, sql, [self.into_value()])
    }

    /// The JSON text to bind.
    pub(super) fn into_value(mut self) -> Value {
        self.json.push(']');
        Value::from(self.json)
    }
}

fn postgres_type(column_type: &ColumnType) -> Option<&'static str> {
    Some(match column_type {
        ColumnType::Uuid => "uuid",
        ColumnType::BigInteger => "bigint",
        ColumnType::Integer => "integer",
        ColumnType::SmallInteger => "smallint",
        ColumnType::Boolean => "boolean",
        ColumnType::String(_) | ColumnType::Text => "text",
        _ => return None,
    })
}

fn write_value(json: &mut String, value: Value) -> Result<()> {
    match value {
        Value::Bool(Some(b)) => json.push_str(if b { "true" } else { "false" }),
        Value::SmallInt(Some(n)) => write_number(json, i64::from(n)),
        Value::Int(Some(n)) => write_number(json, i64::from(n)),
        Value::BigInt(Some(n)) => write_number(json, n),
        Value::String(Some(s)) => write_string(json, &s),
        Value::Uuid(Some(id)) => {
            json.push('"');
            json.push_str(
                id.hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            );
            json.push('"');
        }
        Value::Bool(None)
        | Value::SmallInt(None)
        | Value::Int(None)
        | Value::BigInt(None)
        | Value::String(None)
        | Value::Uuid(None) => json.push_str("null"),
        other => {
            return Err(Error::internal(format!(
                "no JSON row form for the value {other:?}"
            )));
        }
    }
    Ok(())
}

fn write_number(json: &mut String, n: i64) {
    // Writing to a String cannot fail.
    let _ = write!(json, "{n}");
}

fn write_string(json: &mut String, s: &str) {
    // serde_json's escaping: the text PostgreSQL's JSON parser reads back.
    json.push_str(&serde_json::to_string(s).expect("a str always serializes"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_a_json_array_of_objects_in_column_order() {
        let mut rows = JsonRows::with_columns(&[("id", "uuid"), ("n", "bigint"), ("s", "text")]);
        let id = uuid::Uuid::nil();
        rows.push([
            Value::from(id),
            Value::from(7_i64),
            Value::from("a \"quoted\" \\ line\nbreak"),
        ])
        .unwrap();
        rows.push([Value::Uuid(None), Value::BigInt(None), Value::String(None)])
            .unwrap();
        assert_eq!(rows.names(), "id, n, s");
        assert_eq!(
            rows.source("$1", "t"),
            "json_to_recordset($1::json) AS t(id uuid, n bigint, s text)"
        );
        let Value::String(Some(text)) = rows.into_value() else {
            panic!("rows are bound as text");
        };
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!([
                {"id": id.to_string(), "n": 7, "s": "a \"quoted\" \\ line\nbreak"},
                {"id": null, "n": null, "s": null},
            ])
        );
    }

    #[test]
    fn a_row_must_give_exactly_one_value_per_column() {
        let mut rows = JsonRows::with_columns(&[("a", "bigint"), ("b", "bigint")]);
        assert!(rows.push([Value::from(1_i64)]).is_err());
        assert!(
            rows.push([Value::from(1_i64), Value::from(2_i64), Value::from(3_i64)])
                .is_err()
        );
    }

    #[test]
    fn an_insert_reads_every_column_from_the_one_parameter() {
        let mut rows = JsonRows::with_columns(&[("a", "bigint"), ("b", "text")]);
        rows.push([Value::from(1_i64), Value::from("x")]).unwrap();
        let statement = rows.insert_into("t");
        assert_eq!(
            statement.sql,
            "INSERT INTO t (a, b) SELECT a, b FROM json_to_recordset($1::json) AS r(a bigint, b text)"
        );
        assert_eq!(
            statement.values.unwrap().0,
            vec![Value::from(r#"[{"a":1,"b":"x"}]"#)]
        );
    }

    #[test]
    fn no_rows_is_an_empty_array() {
        let rows = JsonRows::with_columns(&[("a", "bigint")]);
        assert_eq!(rows.into_value(), Value::from("[]"));
    }
}

//! Schema migrations, run at start-up and by `portal-access migrate`.

use sea_orm_migration::prelude::*;

mod m20261123_000001_initial;
mod m20261123_000002_support_lookups;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_initial::Migration),
            Box::new(m20261123_000002_support_lookups::Migration),
        ]
    }
}

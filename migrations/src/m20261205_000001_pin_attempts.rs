//! Wrong-PIN counters shared by every process: one row per student (within its school) and one
//! per guesser (a phone, or an API credential), each counting the attempts of its current
//! window (see `src/school/pin_limits.rs`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("pin_attempts")
                .col(string("key").primary_key())
                // The student's school; none for a guesser's counter.
                .col(big_integer_null("tenant_id"))
                // Unix seconds at which the window began.
                .col(big_integer("window_start"))
                .col(big_integer("attempts"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_pin_attempts_tenant")
                        .from("pin_attempts", "tenant_id")
                        .to("tenants", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("pin_attempts").if_exists().to_owned())
            .await
    }
}

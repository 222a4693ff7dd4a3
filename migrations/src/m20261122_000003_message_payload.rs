//! Outbound messages keep their structured reply, so replies that were never sent (a crash
//! between the engine's turn and queueing the send) can be queued again from the log.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("message_log")
                .add_column(json_null("payload"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("message_log")
                .drop_column("payload")
                .to_owned(),
        )
        .await
    }
}

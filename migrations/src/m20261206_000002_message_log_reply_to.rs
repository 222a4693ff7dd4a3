//! A reply is found by the inbound message it answers (`reply_to`) each time it is sent or
//! marked, and a rerun looks for a message's unsent replies the same way. Without an index
//! each of those read the school's whole message log, so the pipeline slowed down as the log
//! grew (`cargo bench --bench pipeline`: end to end on SQLite fell from 190 to 58 messages a
//! second after 4,200 messages).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const NAME: &str = "ix_message_log_reply_to";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name(NAME)
                .table("message_log")
                .col("tenant_id")
                .col("reply_to")
                .if_not_exists()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name(NAME).table("message_log").to_owned())
            .await
    }
}

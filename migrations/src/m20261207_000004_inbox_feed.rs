//! Indexes for a staff inbox that refreshes itself (`conversations/events/`): a school's
//! messages by when they last changed (new, or a delivery status), and its staff actions by
//! when they happened.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("ix_message_log_tenant_updated")
                .table("message_log")
                .col("tenant_id")
                .col("updated_at")
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_conversation_actions_tenant_created")
                .table("conversation_actions")
                .col("tenant_id")
                .col("created_at")
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in [
            (
                "ix_conversation_actions_tenant_created",
                "conversation_actions",
            ),
            ("ix_message_log_tenant_updated", "message_log"),
        ] {
            m.drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

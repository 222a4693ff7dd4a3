//! Conversations a person answers: a conversation (`chat_sessions`, one per school, channel
//! and parent) is answered by the bot (`bot`), waits for staff (`waiting`: the parent asked
//! for a person, or the bot could not answer twice in a row), or is answered by a member of
//! staff (`staff`, `assignee` says who). `conversation_actions` records who did what, when.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a table one column at a time.
        for column in [
            string_len("handoff", 16).default("bot").to_owned(),
            string_len_null("assignee", 120),
            timestamp_with_time_zone_null("handoff_at"),
        ] {
            m.alter_table(
                Table::alter()
                    .table("chat_sessions")
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        }
        m.create_index(
            Index::create()
                .name("ix_chat_sessions_handoff")
                .table("chat_sessions")
                .col("tenant_id")
                .col("handoff")
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("conversation_actions")
                .col(big_pk_auto("id"))
                .col(big_integer("tenant_id"))
                .col(string_len("channel", 32))
                .col(string_len("user_id", 64))
                // `escalated`, `takeover`, `reply`, `release`.
                .col(string_len("action", 16))
                // `parent`, `bot`, or the credential that acted (`key:<name>`, `jwt:<sub>`).
                .col(string_len("actor", 160))
                .col(text_null("detail"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_conversation_actions_tenant")
                        .from("conversation_actions", "tenant_id")
                        .to("tenants", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_conversation_actions_user")
                .table("conversation_actions")
                .col("tenant_id")
                .col("channel")
                .col("user_id")
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table("conversation_actions")
                .if_exists()
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("ix_chat_sessions_handoff")
                .table("chat_sessions")
                .to_owned(),
        )
        .await?;
        for column in ["handoff_at", "assignee", "handoff"] {
            m.alter_table(
                Table::alter()
                    .table("chat_sessions")
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

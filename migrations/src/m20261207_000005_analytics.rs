//! Per-school analytics: each parent's message records who answered it (`answered_by`:
//! `rules`, `model`, `refused`, `nobody`, `staff`) and where the conversation went (`topic`:
//! the state reached, e.g. `viewing_results`); `analytics_days` keeps each settled day's
//! figures (counts only, no message), so they outlive the transcripts they were counted from
//! and a year reads back in one query.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a table one column at a time.
        for column in [
            string_len_null("answered_by", 16),
            string_len_null("topic", 48),
        ] {
            m.alter_table(
                Table::alter()
                    .table("message_log")
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        }
        m.create_index(
            Index::create()
                .name("ix_message_log_tenant_created")
                .table("message_log")
                .col("tenant_id")
                .col("created_at")
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("analytics_days")
                .col(big_integer("tenant_id"))
                .col(date("day"))
                .col(json("stats"))
                .col(timestamp_with_time_zone("computed_at"))
                .primary_key(Index::create().col("tenant_id").col("day"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_analytics_days_tenant")
                        .from("analytics_days", "tenant_id")
                        .to("tenants", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("analytics_days").if_exists().to_owned())
            .await?;
        m.drop_index(
            Index::drop()
                .name("ix_message_log_tenant_created")
                .table("message_log")
                .to_owned(),
        )
        .await?;
        for column in ["topic", "answered_by"] {
            m.alter_table(
                Table::alter()
                    .table("message_log")
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

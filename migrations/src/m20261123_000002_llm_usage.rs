//! Tokens each school's parents used through the LLM fallback, per day: what the daily cap is
//! checked against, and what a school's usage report reads. A school may have its own cap
//! (`tenants.llm_daily_tokens`; unset: the service's).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("tenants")
                .add_column(big_integer_null("llm_daily_tokens"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("llm_usage")
                .col(big_pk_auto("id"))
                .col(big_integer("tenant_id"))
                .col(date("day"))
                .col(big_integer("requests").default(0))
                .col(big_integer("failures").default(0))
                .col(big_integer("prompt_tokens").default(0))
                .col(big_integer("completion_tokens").default(0))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_llm_usage_tenant")
                        .from("llm_usage", "tenant_id")
                        .to("tenants", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_llm_usage_tenant_day")
                .table("llm_usage")
                .col("tenant_id")
                .col("day")
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("llm_usage").if_exists().to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table("tenants")
                .drop_column("llm_daily_tokens")
                .to_owned(),
        )
        .await
    }
}

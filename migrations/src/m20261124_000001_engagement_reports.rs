//! The report catalogue of the website engagement flow (`/ws/chat/{report_id}`): per school,
//! the report slugs a visitor can buy, each with its titles and dialogue per language (one JSON
//! document, see `prompts/engagement/`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("engagement_reports")
                .col(big_pk_auto("id"))
                .col(big_integer("tenant_id"))
                .col(string_len("slug", 64))
                .col(text("script"))
                .col(boolean("active").default(true))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_engagement_reports_tenant")
                        .from("engagement_reports", "tenant_id")
                        .to("tenants", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_engagement_reports_tenant_slug")
                .table("engagement_reports")
                .col("tenant_id")
                .col("slug")
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table("engagement_reports")
                .if_exists()
                .to_owned(),
        )
        .await
    }
}

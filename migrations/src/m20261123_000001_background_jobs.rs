//! Work the API accepts and finishes later (report batches, report deletion, notice
//! broadcasts): one row per request, so its status and progress can be read by its school.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("background_jobs")
                .col(big_pk_auto("id"))
                .col(big_integer("tenant_id"))
                .col(string_len("kind", 32))
                .col(string_len("status", 16))
                .col(json("params"))
                .col(json_null("result"))
                .col(text_null("error"))
                .col(big_integer("total").default(0))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .col(timestamp_with_time_zone_null("finished_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_background_jobs_tenant")
                        .from("background_jobs", "tenant_id")
                        .to("tenants", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_background_jobs_tenant_created")
                .table("background_jobs")
                .col("tenant_id")
                .col("created_at")
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table("background_jobs")
                .if_exists()
                .to_owned(),
        )
        .await
    }
}

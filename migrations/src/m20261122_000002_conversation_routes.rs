//! Which school a phone linked to several schools is talking to, per channel.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("conversation_routes")
                .col(big_pk_auto("id"))
                .col(string_len("channel", 16))
                .col(string_len("user_id", 128))
                .col(big_integer("tenant_id"))
                .col(timestamp_with_time_zone("expires_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_conversation_routes_tenant")
                        .from("conversation_routes", "tenant_id")
                        .to("tenants", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_conversation_routes_channel_user")
                .table("conversation_routes")
                .col("channel")
                .col("user_id")
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table("conversation_routes")
                .if_exists()
                .to_owned(),
        )
        .await
    }
}

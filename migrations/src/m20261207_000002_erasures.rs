//! `erasures`: that a school erased everything it held about a phone (`DELETE contacts/{phone}/`),
//! who asked and when, and how many rows of each kind went: the record a school shows to
//! prove it did, without the phone or anything else it erased.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("erasures")
                .col(big_pk_auto("id"))
                .col(big_integer("tenant_id"))
                // The credential that asked (`key:<name>`, `jwt:<sub>`).
                .col(string_len("actor", 160))
                // `{"messages": 12, "conversations": 1, ...}`.
                .col(json("removed"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_erasures_tenant")
                        .from("erasures", "tenant_id")
                        .to("tenants", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_erasures_tenant")
                .table("erasures")
                .col("tenant_id")
                .col("created_at")
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("erasures").if_exists().to_owned())
            .await
    }
}

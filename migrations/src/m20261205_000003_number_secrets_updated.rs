//! A school registers and rotates its own WhatsApp numbers through the API and the CLI:
//! `whatsapp_numbers.secrets_updated_at` tells staff when a number's provider secrets were last
//! set (the secrets themselves are never shown).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("whatsapp_numbers")
                .add_column(timestamp_with_time_zone_null("secrets_updated_at"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("whatsapp_numbers")
                .drop_column("secrets_updated_at")
                .to_owned(),
        )
        .await
    }
}

//! A shared (platform) WhatsApp number serves several schools: the sender's phone decides the
//! school, and a parent linked to several chooses. Ordinary numbers belong to one school.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("whatsapp_numbers")
                .add_column(boolean("shared").default(false))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("whatsapp_numbers")
                .drop_column("shared")
                .to_owned(),
        )
        .await
    }
}

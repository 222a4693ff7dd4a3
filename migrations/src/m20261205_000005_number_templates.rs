//! A broadcast mostly reaches parents outside WhatsApp's 24-hour window, where only an approved
//! template may go: each business number carries its own (`whatsapp_numbers.broadcast_template`,
//! JSON: a Meta template's name, language and which notice fields fill its body parameters, or
//! a Twilio Content SID and its variables).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("whatsapp_numbers")
                .add_column(json_null("broadcast_template"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("whatsapp_numbers")
                .drop_column("broadcast_template")
                .to_owned(),
        )
        .await
    }
}

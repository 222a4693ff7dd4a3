//! A parent opts out of a school's broadcasts with STOP and back in with START (WhatsApp's
//! opt-out policy), and staff can change it for them: `whatsapp_contacts` keeps when the
//! opt-in state last changed and how (`chat`, `api`, `import`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a table one column at a time.
        m.alter_table(
            Table::alter()
                .table("whatsapp_contacts")
                .add_column(timestamp_with_time_zone_null("opt_changed_at"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("whatsapp_contacts")
                .add_column(string_len_null("opt_changed_by", 120))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in ["opt_changed_by", "opt_changed_at"] {
            m.alter_table(
                Table::alter()
                    .table("whatsapp_contacts")
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

//! Two settings of a school for conversations staff answer: `office_hours` (free text, e.g.
//! "Monday to Friday, 8am to 4pm", told to a parent whose conversation goes to staff) and
//! `menu_during_handoff` (whether a parent's `menu` is still answered while the conversation
//! waits for or is with staff, handing it back to the bot; on by default).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a table one column at a time.
        for column in [
            string_len_null("office_hours", 200),
            boolean("menu_during_handoff").default(true).to_owned(),
        ] {
            m.alter_table(
                Table::alter()
                    .table("tenants")
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in ["menu_during_handoff", "office_hours"] {
            m.alter_table(
                Table::alter()
                    .table("tenants")
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

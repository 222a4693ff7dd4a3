//! A school may import any phone as a contact, but only a parent who has written to that school
//! (on its own number, or by naming it on a shared number) is offered it on a shared number or
//! sent its broadcasts from one. `whatsapp_contacts.last_seen_at` records that; contacts that
//! already wrote before this version are marked from their first message in the log.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared(
                "UPDATE whatsapp_contacts SET last_seen_at = (\
                   SELECT MAX(l.created_at) FROM message_log l \
                   WHERE l.tenant_id = whatsapp_contacts.tenant_id \
                     AND l.user_id = whatsapp_contacts.phone \
                     AND l.direction = 'in' AND l.channel = 'whatsapp') \
                 WHERE last_seen_at IS NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        // Marking who wrote is not undone: the column existed before.
        Ok(())
    }
}

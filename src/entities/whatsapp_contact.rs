//! `whatsapp_contacts` table.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "whatsapp_contacts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: i64,
    pub phone: String,
    pub name: Option<String>,
    pub wa_user_id: Option<String>,
    pub opted_in: bool,
    pub created_at: DateTimeUtc,
    /// When the parent last wrote to this school (on its own number, or naming it on a shared
    /// one), to within an hour; `None` while the school has only imported the phone, which on
    /// a shared number proves nothing: the school is then neither offered to the phone nor
    /// broadcasts to it from there.
    pub last_seen_at: Option<DateTimeUtc>,
    /// When `opted_in` last changed.
    pub opt_changed_at: Option<DateTimeUtc>,
    /// How it last changed: `chat` (the parent sent STOP or START), `api:<credential>`,
    /// `import`.
    pub opt_changed_by: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

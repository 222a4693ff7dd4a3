//! `chat_sessions` table.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "chat_sessions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: i64,
    pub channel: String,
    pub user_id: String,
    pub state: String,
    pub data: Json,
    pub language: Option<String>,
    pub expires_at: DateTimeUtc,
    /// `bot`, `waiting` (for staff) or `staff` (answered by `assignee`).
    pub handoff: String,
    pub assignee: Option<String>,
    pub handoff_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

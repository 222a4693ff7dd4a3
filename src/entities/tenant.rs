//! `tenants` table.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "tenants")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub schema_name: String,
    pub name: String,
    pub time_zone: String,
    pub default_language: String,
    pub publish_position: bool,
    pub address: Option<String>,
    pub contact_phone: Option<String>,
    pub contact_email: Option<String>,
    pub motto: Option<String>,
    /// LLM tokens the school may use per day; `None`: the service's `CHATBOT_LLM_DAILY_TOKENS`.
    pub llm_daily_tokens: Option<i64>,
    /// When staff answer (free text), told to a parent whose conversation goes to staff.
    pub office_hours: Option<String>,
    /// Whether a parent's `menu` is answered while staff are awaited or answering (handing
    /// the conversation back to the bot).
    pub menu_during_handoff: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

//! `conversation_actions` table: who moved a conversation between the bot and staff, or
//! answered it, and when.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "conversation_actions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: i64,
    pub channel: String,
    pub user_id: String,
    /// `escalated`, `takeover`, `reply`, `release`.
    pub action: String,
    /// `parent`, `bot`, or the credential that acted.
    pub actor: String,
    pub detail: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

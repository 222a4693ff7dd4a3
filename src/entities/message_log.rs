//! `message_log` table.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "message_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: i64,
    pub chat_session_id: Option<i64>,
    pub channel: String,
    pub direction: String,
    pub user_id: String,
    pub provider_message_id: Option<String>,
    pub reply_to: Option<String>,
    pub kind: String,
    pub body: String,
    pub status: String,
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub payload: Option<Json>,
    /// For a parent's message: `rules`, `model`, `refused`, `nobody` or `staff` answered it.
    pub answered_by: Option<String>,
    /// For a parent's message: the state the conversation reached (`viewing_results`...).
    pub topic: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

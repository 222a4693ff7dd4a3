//! `llm_usage` table: one row per school and day.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "llm_usage")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: i64,
    /// The day (UTC).
    pub day: Date,
    /// Calls made to the model.
    pub requests: i64,
    /// Calls that brought no usable answer.
    pub failures: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

//! `analytics_days` table: a school's figures for one settled day (counts only; see
//! `conversation::analytics`).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "analytics_days")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: i64,
    /// The day (UTC).
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: Date,
    /// `conversation::analytics::Day`, as JSON.
    pub stats: Json,
    pub computed_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

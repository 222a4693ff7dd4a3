//! `engagement_reports` table: the reports a website visitor can buy, per school.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "engagement_reports")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: i64,
    /// The `report_id` of `/ws/chat/{report_id}`.
    pub slug: String,
    /// The [`crate::channels::engagement::script::Script`] as JSON.
    #[sea_orm(column_type = "Text")]
    pub script: String,
    /// Inactive reports answer `Invalid Url` like unknown ones.
    pub active: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

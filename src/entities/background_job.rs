//! `background_jobs` table: work accepted by the API and finished by a job worker.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "background_jobs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: i64,
    /// `generate_reports`, `batch_reports`, `delete_reports`, `broadcast`.
    pub kind: String,
    /// `queued`, `running`, `done` or `failed`.
    pub status: String,
    /// What was asked for.
    pub params: Json,
    /// What came of it.
    pub result: Option<Json>,
    /// Why it failed.
    pub error: Option<String>,
    /// Items to go through (recipients of a broadcast).
    pub total: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

//! `school_data_versions` table: one counter per school, bumped by database triggers on every
//! write to the data a conversation reads (see `school::snapshot`). Written only by triggers.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "school_data_versions")]
pub struct Model {
    /// The school.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: i64,
    /// Writes seen (per transaction on PostgreSQL, per row on SQLite).
    pub version: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

//! `pin_attempts` table: wrong-PIN counters (see `school::pin_limits`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pin_attempts")]
pub struct Model {
    /// `student:<tenant id>:<student ID>` or `guesser:<who>`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// The student's school (rows of a school go with it); `None` for a guesser.
    pub tenant_id: Option<i64>,
    /// Unix seconds at which the current window began.
    pub window_start: i64,
    /// Attempts reserved in the window and not given back: wrong PINs, and checks under way.
    pub attempts: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

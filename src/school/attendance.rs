//! Attendance summaries for a term.

use sea_orm::{ColumnTrait, ConnectionTrait, QueryFilter, QuerySelect};
use serde::Serialize;

use crate::entities::attendance;
use crate::error::Result;
use crate::tenancy::TenantCtx;

/// Days present, absent and late in a term, and the attendance percentage.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AttendanceSummary {
    /// Days marked present.
    pub present: u32,
    /// Days marked absent.
    pub absent: u32,
    /// Days marked late (counted as attended).
    pub late: u32,
    /// Days recorded.
    pub days: u32,
    /// (present + late) / days, in percent, one decimal; `None` when nothing is recorded.
    pub percentage: Option<f64>,
}

/// Summarise one student's attendance for one term.
pub async fn summary(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    student_pk: i64,
    term_id: i64,
) -> Result<AttendanceSummary> {
    let statuses: Vec<String> = ctx
        .find::<attendance::Entity>()
        .select_only()
        .column(attendance::Column::Status)
        .filter(attendance::Column::StudentId.eq(student_pk))
        .filter(attendance::Column::TermId.eq(term_id))
        .into_tuple()
        .all(db)
        .await?;
    let count = |s: &str| statuses.iter().filter(|x| x.as_str() == s).count() as u32;
    let (present, absent, late) = (count("present"), count("absent"), count("late"));
    let days = statuses.len() as u32;
    let percentage =
        (days > 0).then(|| ((present + late) as f64 * 1000.0 / days as f64).round() / 10.0);
    Ok(AttendanceSummary {
        present,
        absent,
        late,
        days,
        percentage,
    })
}

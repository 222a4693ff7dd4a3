//! Reading one school's snapshot from the database, through its tenant context only.

use sea_orm::{ColumnTrait, ConnectionTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{Rows, SchoolSnapshot};
use crate::entities::{
    attendance, class, mark, notice, school_data_version, student, student_mapping, subject,
};
use crate::error::Result;
use crate::school::{calendar, welcome};
use crate::tenancy::TenantCtx;

/// The school's data version: bumped (by database triggers) by every write to the tables a
/// snapshot is made of. `0` before the first write.
pub async fn version(db: &impl ConnectionTrait, ctx: &TenantCtx) -> Result<i64> {
    use sea_orm::EntityTrait;
    Ok(school_data_version::Entity::find_by_id(ctx.id())
        .one(db)
        .await?
        .map_or(0, |v| v.version))
}

/// Read the school of `ctx`, labelled with `version` (read before the rows: a write landing
/// while they are read moves the version again, and the next message reloads).
pub async fn load(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    version: i64,
) -> Result<SchoolSnapshot> {
    let profile = ctx.profile(db).await?;
    let welcome = welcome::get(db, ctx).await?.map(|w| w.body);
    let students = ctx.find::<student::Entity>().all(db).await?;
    let links: Vec<(String, i64)> = ctx
        .find::<student_mapping::Entity>()
        .select_only()
        .column(student_mapping::Column::Phone)
        .column(student_mapping::Column::StudentId)
        .into_tuple()
        .all(db)
        .await?;
    let classes = ctx.find::<class::Entity>().all(db).await?;
    let subjects: Vec<(i64, String, String)> = ctx
        .find::<subject::Entity>()
        .select_only()
        .column(subject::Column::Id)
        .column(subject::Column::Code)
        .column(subject::Column::Name)
        .into_tuple()
        .all(db)
        .await?;
    let mut exams = calendar::released_exam_sessions(db, ctx).await?;
    exams.truncate(super::MAX_ROWS);
    let exam_ids: Vec<i64> = exams.iter().map(|e| e.id).collect();
    let marks = if exam_ids.is_empty() {
        Vec::new()
    } else {
        ctx.find::<mark::Entity>()
            .select_only()
            .column(mark::Column::ExamSessionId)
            .column(mark::Column::StudentId)
            .column(mark::Column::SubjectId)
            .column(mark::Column::CaScore)
            .column(mark::Column::ExamScore)
            .column(mark::Column::Total)
            .column(mark::Column::Grade)
            .column(mark::Column::Remark)
            .filter(mark::Column::ExamSessionId.is_in(exam_ids))
            .into_tuple()
            .all(db)
            .await?
    };
    let terms = calendar::terms(db, ctx).await?;
    let attendance: Vec<(i64, i64, String, i64)> = ctx
        .find::<attendance::Entity>()
        .select_only()
        .column(attendance::Column::StudentId)
        .column(attendance::Column::TermId)
        .column(attendance::Column::Status)
        .column_as(attendance::Column::Id.count(), "days")
        .group_by(attendance::Column::StudentId)
        .group_by(attendance::Column::TermId)
        .group_by(attendance::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    let notices = ctx
        .find::<notice::Entity>()
        .order_by_desc(notice::Column::PublishAt)
        .all(db)
        .await?;
    Ok(SchoolSnapshot::new(
        version,
        profile,
        Rows {
            welcome,
            students,
            links,
            classes,
            subjects,
            exams,
            marks,
            terms,
            attendance,
            notices,
        },
    ))
}

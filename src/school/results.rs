//! A student's results for an exam session, as parents see them: released sessions only.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, ConnectionTrait, QueryFilter, QueryOrder};
use serde::Serialize;

use crate::entities::{exam_session, mark, student, subject};
use crate::error::Result;
use crate::tenancy::TenantCtx;

/// One subject's line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SubjectResult {
    /// Subject code.
    pub code: String,
    /// Subject name.
    pub subject: String,
    /// Continuous assessment score.
    pub ca: Option<f64>,
    /// Exam score.
    pub exam: Option<f64>,
    /// Total score.
    pub total: Option<f64>,
    /// Letter grade.
    pub grade: Option<String>,
    /// Teacher's remark.
    pub remark: Option<String>,
}

/// A student's results for one exam session.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StudentResults {
    /// The exam session.
    pub exam_session_id: i64,
    /// Its name.
    pub exam_session: String,
    /// One line per subject, by subject name.
    pub subjects: Vec<SubjectResult>,
    /// Sum of totals.
    pub total: f64,
    /// Average of totals over subjects with a total.
    pub average: Option<f64>,
    /// Position in class (1 = best) and class size, when the school publishes positions.
    pub position: Option<(u32, u32)>,
}

/// Results of `student` for `exam_session_id`; `None` when the session is unknown to this
/// tenant or not released.
pub async fn for_student(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    student: &student::Model,
    exam_session_id: i64,
    publish_position: bool,
) -> Result<Option<StudentResults>> {
    let Some(session) = ctx
        .find::<exam_session::Entity>()
        .filter(exam_session::Column::Id.eq(exam_session_id))
        .filter(exam_session::Column::Released.eq(true))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    in_session(db, ctx, student, &session, publish_position).await
}

/// Results of `student` for `session`, released or not (staff see what they entered); `None`
/// when either belongs to another tenant.
pub async fn in_session(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    student: &student::Model,
    session: &exam_session::Model,
    publish_position: bool,
) -> Result<Option<StudentResults>> {
    if student.tenant_id != ctx.id() || session.tenant_id != ctx.id() {
        return Ok(None);
    }
    let marks = ctx
        .find::<mark::Entity>()
        .filter(mark::Column::ExamSessionId.eq(session.id))
        .filter(mark::Column::StudentId.eq(student.id))
        .all(db)
        .await?;
    let subjects = subjects_by_id(db, ctx).await?;
    let position = match (publish_position, student.class_id) {
        (true, Some(class_id)) => class_position(db, ctx, session.id, class_id, student.id).await?,
        _ => None,
    };
    Ok(Some(summarise(session, &marks, &subjects, position)))
}

/// Results of every active student of a class for `session` (released or not: staff see what
/// they entered), by name. Positions come from one pass over the class' marks.
pub async fn for_class(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    session: &exam_session::Model,
    class_id: i64,
    publish_position: bool,
) -> Result<Vec<(student::Model, StudentResults)>> {
    // Positions rank the whole class, as `for_student` does; only enrolled students are listed.
    let students = ctx
        .find::<student::Entity>()
        .filter(student::Column::ClassId.eq(class_id))
        .order_by_asc(student::Column::LastName)
        .order_by_asc(student::Column::FirstName)
        .order_by_asc(student::Column::Id)
        .all(db)
        .await?;
    let ids: Vec<i64> = students.iter().map(|s| s.id).collect();
    let marks = ctx
        .find::<mark::Entity>()
        .filter(mark::Column::ExamSessionId.eq(session.id))
        .filter(mark::Column::StudentId.is_in(ids))
        .all(db)
        .await?;
    let subjects = subjects_by_id(db, ctx).await?;
    let mut by_student: HashMap<i64, Vec<mark::Model>> = HashMap::new();
    for m in marks {
        by_student.entry(m.student_id).or_default().push(m);
    }
    let totals: Vec<f64> = by_student
        .values()
        .map(|ms| ms.iter().map(|m| m.total.unwrap_or(0.0)).sum())
        .collect();
    Ok(students
        .into_iter()
        .filter(|s| s.active)
        .map(|student| {
            let marks = by_student.remove(&student.id).unwrap_or_default();
            let position = (publish_position && !marks.is_empty()).then(|| {
                let mine: f64 = marks.iter().map(|m| m.total.unwrap_or(0.0)).sum();
                let better = totals.iter().filter(|t| **t > mine).count() as u32;
                (better + 1, totals.len() as u32)
            });
            let results = summarise(session, &marks, &subjects, position);
            (student, results)
        })
        .collect())
}

async fn subjects_by_id(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
) -> Result<HashMap<i64, subject::Model>> {
    Ok(ctx
        .find::<subject::Entity>()
        .all(db)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect())
}

/// One student's lines (by subject name), total and average.
fn summarise(
    session: &exam_session::Model,
    marks: &[mark::Model],
    subjects: &HashMap<i64, subject::Model>,
    position: Option<(u32, u32)>,
) -> StudentResults {
    let mut lines: Vec<SubjectResult> = marks
        .iter()
        .filter_map(|m| {
            let s = subjects.get(&m.subject_id)?;
            Some(SubjectResult {
                code: s.code.clone(),
                subject: s.name.clone(),
                ca: m.ca_score,
                exam: m.exam_score,
                total: m.total,
                grade: m.grade.clone(),
                remark: m.remark.clone(),
            })
        })
        .collect();
    lines.sort_by(|a, b| a.subject.cmp(&b.subject));
    let totals: Vec<f64> = lines.iter().filter_map(|l| l.total).collect();
    // Not `sum()`: an empty float sum is -0.0, which would show as "-0".
    let total: f64 = totals.iter().fold(0.0, |a, b| a + b);
    let average = (!totals.is_empty()).then(|| round2(total / totals.len() as f64));
    StudentResults {
        exam_session_id: session.id,
        exam_session: session.name.clone(),
        subjects: lines,
        total: round2(total),
        average,
        position,
    }
}

/// Highest score of a part (CA, exam), and of their total.
pub const MAX_SCORE: f64 = 100.0;

/// A score cell of an upload: empty is `None`; otherwise a number from 0 to [`MAX_SCORE`].
pub fn parse_score(cell: &str) -> std::result::Result<Option<f64>, String> {
    let cell = cell.trim();
    if cell.is_empty() {
        return Ok(None);
    }
    let value: f64 = cell
        .parse()
        .map_err(|_| format!("`{cell}` is not a number"))?;
    if !value.is_finite() || !(0.0..=MAX_SCORE).contains(&value) {
        return Err(format!("{cell} is outside 0-{MAX_SCORE}"));
    }
    Ok(Some(value))
}

/// Grade and remark for a total out of 100 (WAEC-style bands), for marks entered without one.
pub fn grade(total: f64) -> (&'static str, &'static str) {
    match total {
        t if t >= 70.0 => ("A", "Excellent"),
        t if t >= 60.0 => ("B", "Very good"),
        t if t >= 50.0 => ("C", "Good"),
        t if t >= 45.0 => ("D", "Fair"),
        t if t >= 40.0 => ("E", "Pass"),
        _ => ("F", "Fail"),
    }
}

/// Rank by total score within the class (ties share a rank), and the number of ranked students.
async fn class_position(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    exam_session_id: i64,
    class_id: i64,
    student_pk: i64,
) -> Result<Option<(u32, u32)>> {
    let classmates: Vec<i64> = ctx
        .find::<student::Entity>()
        .filter(student::Column::ClassId.eq(class_id))
        .all(db)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    let marks = ctx
        .find::<mark::Entity>()
        .filter(mark::Column::ExamSessionId.eq(exam_session_id))
        .filter(mark::Column::StudentId.is_in(classmates))
        .all(db)
        .await?;
    let mut totals: HashMap<i64, f64> = HashMap::new();
    for m in &marks {
        *totals.entry(m.student_id).or_default() += m.total.unwrap_or(0.0);
    }
    let Some(mine) = totals.get(&student_pk).copied() else {
        return Ok(None);
    };
    let better = totals.values().filter(|t| **t > mine).count() as u32;
    Ok(Some((better + 1, totals.len() as u32)))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One mark to write: CA and exam parts, the total and grade derived from them.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkRow {
    /// Exam session.
    pub exam_session_id: i64,
    /// Student (primary key).
    pub student_id: i64,
    /// Subject (primary key).
    pub subject_id: i64,
    /// Continuous assessment.
    pub ca: Option<f64>,
    /// Exam.
    pub exam: Option<f64>,
}

/// Create or replace marks of `ctx`'s school (keyed by exam session, student and subject),
/// totalled and graded (WAEC bands). The caller has checked that the ids are the school's.
pub async fn write_marks(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    rows: &[MarkRow],
) -> Result<()> {
    use sea_orm::sea_query::OnConflict;
    use sea_orm::{EntityTrait, Set};
    let now = chrono::Utc::now();
    for chunk in rows.chunks(200) {
        let models = chunk.iter().map(|m| {
            let total = round2(m.ca.unwrap_or(0.0) + m.exam.unwrap_or(0.0));
            let (grade, remark) = grade(total);
            mark::ActiveModel {
                tenant_id: Set(ctx.id()),
                exam_session_id: Set(m.exam_session_id),
                student_id: Set(m.student_id),
                subject_id: Set(m.subject_id),
                ca_score: Set(m.ca),
                exam_score: Set(m.exam),
                total: Set(Some(total)),
                grade: Set(Some(grade.to_string())),
                remark: Set(Some(remark.to_string())),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            }
        });
        mark::Entity::insert_many(models)
            .on_conflict(
                OnConflict::columns([
                    mark::Column::TenantId,
                    mark::Column::ExamSessionId,
                    mark::Column::StudentId,
                    mark::Column::SubjectId,
                ])
                .update_columns([
                    mark::Column::CaScore,
                    mark::Column::ExamScore,
                    mark::Column::Total,
                    mark::Column::Grade,
                    mark::Column::Remark,
                    mark::Column::UpdatedAt,
                ])
                .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

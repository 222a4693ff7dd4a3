//! What a school enters itself to go live: its calendar (academic sessions, terms, exam
//! sessions and their release), its classes and its subjects. Every write checks its input
//! against the school's own rows (another school's ids are not found), and a delete that
//! students, marks or attendance hang on is refused with what depends on it: nothing of a
//! child's record goes by accident.

use crate::error::ErrorCode;
use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionSession, TransactionTrait,
};

use crate::entities::{
    TenantOwned, academic_session, attendance, class, exam_session, mark, notice, student, subject,
    term,
};
use crate::error::{Error, Result};
use crate::tenancy::TenantCtx;

/// A name of 1 to `max` characters, trimmed.
fn name(field: &str, value: &str, max: usize) -> Result<String> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(Error::invalid(
            ErrorCode::InvalidName,
            format!("{field} must be 1 to {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(
            ErrorCode::InvalidName,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(value.to_string())
}

fn dates(starts_on: NaiveDate, ends_on: NaiveDate) -> Result<()> {
    if ends_on < starts_on {
        return Err(Error::invalid(
            ErrorCode::InvalidDates,
            "ends_on must not be before starts_on",
        ));
    }
    Ok(())
}

/// A unique index said no: the 409 `what` explains; any other error as it is.
fn unique(e: DbErr, what: impl FnOnce() -> String) -> Error {
    if crate::error::is_unique_violation(&e) {
        Error::Conflict(what())
    } else {
        e.into()
    }
}

/// How many of the school's `E` rows have `column = id`.
async fn count<E: TenantOwned>(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    column: E::Column,
    id: i64,
) -> Result<u64>
where
    E::Model: Sync,
{
    Ok(ctx.find::<E>().filter(column.eq(id)).count(db).await?)
}

/// Refuse to delete `what` while any of `dependents` (count, description) is non-zero.
fn refuse_if_used(what: &str, dependents: &[(u64, &str)]) -> Result<()> {
    let used: Vec<String> = dependents
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, d)| format!("{n} {d}"))
        .collect();
    if used.is_empty() {
        return Ok(());
    }
    Err(Error::Conflict(format!(
        "{what} cannot be deleted: {} depend on it; delete or move them first",
        used.join(", ")
    )))
}

async fn delete_row<E: TenantOwned>(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    column: E::Column,
    id: i64,
) -> Result<()> {
    ctx.delete_many::<E>()
        .filter(column.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

// ---- academic sessions ----

/// An academic session as entered.
pub struct SessionFields {
    pub name: String,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub is_current: bool,
}

/// The school's academic session `id`, or a 404.
pub async fn session(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id: i64,
) -> Result<academic_session::Model> {
    ctx.find::<academic_session::Entity>()
        .filter(academic_session::Column::Id.eq(id))
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no academic session {id} in this school")))
}

/// Create (`id` = `None`) or replace an academic session; marking it current unmarks the
/// school's other sessions. Replacing keeps every term of it inside its dates.
pub async fn save_session(
    db: &(impl ConnectionTrait + TransactionTrait),
    ctx: &TenantCtx,
    id: Option<i64>,
    f: SessionFields,
    now: DateTime<Utc>,
) -> Result<academic_session::Model> {
    let session_name = name("name", &f.name, 64)?;
    dates(f.starts_on, f.ends_on)?;
    let txn = crate::db::begin_write(db).await?;
    let mut row = match id {
        Some(id) => {
            let existing = session(&txn, ctx, id).await?;
            let outside = ctx
                .find::<term::Entity>()
                .filter(term::Column::AcademicSessionId.eq(id))
                .all(&txn)
                .await?
                .into_iter()
                .find(|t| t.starts_on < f.starts_on || t.ends_on > f.ends_on);
            if let Some(t) = outside {
                return Err(Error::invalid(
                    ErrorCode::InvalidDates,
                    format!(
                        "term {} ({} to {}) would fall outside the session; change it first",
                        t.name, t.starts_on, t.ends_on
                    ),
                ));
            }
            academic_session::ActiveModel::from(existing)
        }
        None => academic_session::ActiveModel {
            tenant_id: Set(ctx.id()),
            created_at: Set(now),
            ..Default::default()
        },
    };
    if f.is_current {
        ctx.update_many::<academic_session::Entity>()
            .col_expr(academic_session::Column::IsCurrent, false.into())
            .exec(&txn)
            .await?;
    }
    row.name = Set(session_name.clone());
    row.starts_on = Set(f.starts_on);
    row.ends_on = Set(f.ends_on);
    row.is_current = Set(f.is_current);
    let saved = match id {
        Some(_) => row.update(&txn).await,
        None => row.insert(&txn).await,
    }
    .map_err(|e| {
        unique(e, || {
            format!("this school already has an academic session named `{session_name}`")
        })
    })?;
    txn.commit().await?;
    Ok(saved)
}

/// Delete an academic session that has no terms.
pub async fn delete_session(db: &impl ConnectionTrait, ctx: &TenantCtx, id: i64) -> Result<()> {
    let s = session(db, ctx, id).await?;
    let terms = count::<term::Entity>(db, ctx, term::Column::AcademicSessionId, id).await?;
    refuse_if_used(
        &format!("academic session {}", s.name),
        &[(terms, "term(s)")],
    )?;
    delete_row::<academic_session::Entity>(db, ctx, academic_session::Column::Id, id).await
}

// ---- terms ----

/// A term as entered.
pub struct TermFields {
    pub academic_session_id: i64,
    pub name: String,
    /// 1 for the first term of the session; the next free one when `None`.
    pub ordinal: Option<i16>,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
}

/// The school's term `id`, or a 404.
pub async fn term(db: &impl ConnectionTrait, ctx: &TenantCtx, id: i64) -> Result<term::Model> {
    crate::school::calendar::term(db, ctx, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no term {id} in this school")))
}

/// Create (`id` = `None`) or replace a term: inside its session's dates, overlapping none of
/// the session's other terms.
pub async fn save_term(
    db: &(impl ConnectionTrait + TransactionTrait),
    ctx: &TenantCtx,
    id: Option<i64>,
    f: TermFields,
    now: DateTime<Utc>,
) -> Result<term::Model> {
    let term_name = name("name", &f.name, 64)?;
    dates(f.starts_on, f.ends_on)?;
    if let Some(o) = f.ordinal
        && !(1..=12).contains(&o)
    {
        return Err(Error::invalid(
            ErrorCode::InvalidOrdinal,
            "ordinal is 1 to 12",
        ));
    }
    let txn = crate::db::begin_write(db).await?;
    let existing = match id {
        Some(id) => Some(term(&txn, ctx, id).await?),
        None => None,
    };
    let s = session(&txn, ctx, f.academic_session_id).await?;
    if f.starts_on < s.starts_on || f.ends_on > s.ends_on {
        return Err(Error::invalid(
            ErrorCode::InvalidDates,
            format!(
                "a term of {} must fall inside it ({} to {})",
                s.name, s.starts_on, s.ends_on
            ),
        ));
    }
    let siblings: Vec<term::Model> = ctx
        .find::<term::Entity>()
        .filter(term::Column::AcademicSessionId.eq(s.id))
        .all(&txn)
        .await?
        .into_iter()
        .filter(|t| Some(t.id) != id)
        .collect();
    if let Some(t) = siblings
        .iter()
        .find(|t| t.starts_on <= f.ends_on && f.starts_on <= t.ends_on)
    {
        return Err(Error::Conflict(format!(
            "the dates overlap term {} ({} to {})",
            t.name, t.starts_on, t.ends_on
        )));
    }
    let ordinal = match (f.ordinal, &existing) {
        (Some(o), _) => o,
        (None, Some(t)) if t.academic_session_id == s.id => t.ordinal,
        _ => siblings.iter().map(|t| t.ordinal).max().unwrap_or(0) + 1,
    };
    let mut row = match existing {
        Some(t) => term::ActiveModel::from(t),
        None => term::ActiveModel {
            tenant_id: Set(ctx.id()),
            created_at: Set(now),
            ..Default::default()
        },
    };
    row.academic_session_id = Set(s.id);
    row.name = Set(term_name);
    row.ordinal = Set(ordinal);
    row.starts_on = Set(f.starts_on);
    row.ends_on = Set(f.ends_on);
    let saved = match id {
        Some(_) => row.update(&txn).await,
        None => row.insert(&txn).await,
    }
    .map_err(|e| {
        unique(e, || {
            format!("{} already has a term with ordinal {ordinal}", s.name)
        })
    })?;
    txn.commit().await?;
    Ok(saved)
}

/// Delete a term that has no exam sessions and no attendance.
pub async fn delete_term(db: &impl ConnectionTrait, ctx: &TenantCtx, id: i64) -> Result<()> {
    let t = term(db, ctx, id).await?;
    let exams = count::<exam_session::Entity>(db, ctx, exam_session::Column::TermId, id).await?;
    let days = count::<attendance::Entity>(db, ctx, attendance::Column::TermId, id).await?;
    refuse_if_used(
        &format!("term {}", t.name),
        &[(exams, "exam session(s)"), (days, "attendance record(s)")],
    )?;
    delete_row::<term::Entity>(db, ctx, term::Column::Id, id).await
}

// ---- exam sessions ----

/// An exam session as entered.
pub struct ExamFields {
    pub term_id: i64,
    pub name: String,
    pub released: bool,
}

/// The school's exam session `id`, or a 404.
pub async fn exam(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id: i64,
) -> Result<exam_session::Model> {
    crate::school::calendar::exam_session(db, ctx, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no exam session {id} in this school")))
}

/// Create (`id` = `None`) or replace an exam session; `released` shows its results to parents.
pub async fn save_exam(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id: Option<i64>,
    f: ExamFields,
    now: DateTime<Utc>,
) -> Result<exam_session::Model> {
    let exam_name = name("name", &f.name, 128)?;
    let t = term(db, ctx, f.term_id).await?;
    let mut row = match id {
        Some(id) => exam_session::ActiveModel::from(exam(db, ctx, id).await?),
        None => exam_session::ActiveModel {
            tenant_id: Set(ctx.id()),
            created_at: Set(now),
            ..Default::default()
        },
    };
    let was_released = matches!(row.released, sea_orm::ActiveValue::Unchanged(true));
    row.term_id = Set(t.id);
    row.name = Set(exam_name.clone());
    row.released = Set(f.released);
    if f.released != was_released || id.is_none() {
        row.released_at = Set(f.released.then_some(now));
    }
    match id {
        Some(_) => row.update(db).await,
        None => row.insert(db).await,
    }
    .map_err(|e| {
        unique(e, || {
            format!("{} already has an exam session `{exam_name}`", t.name)
        })
    })
}

/// Release an exam session's results to parents (`released`), or withdraw them.
pub async fn set_released(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id: i64,
    released: bool,
    now: DateTime<Utc>,
) -> Result<exam_session::Model> {
    let e = exam(db, ctx, id).await?;
    if e.released == released {
        return Ok(e);
    }
    let mut row = exam_session::ActiveModel::from(e);
    row.released = Set(released);
    row.released_at = Set(released.then_some(now));
    let saved = row.update(db).await?;
    tracing::info!(
        school = ctx.schema_name(),
        exam_session = saved.id,
        released,
        "exam session results {}",
        if released { "released" } else { "withdrawn" }
    );
    Ok(saved)
}

/// Delete an exam session that has no marks (its stored report cards go with it).
pub async fn delete_exam(db: &impl ConnectionTrait, ctx: &TenantCtx, id: i64) -> Result<()> {
    let e = exam(db, ctx, id).await?;
    let marks = count::<mark::Entity>(db, ctx, mark::Column::ExamSessionId, id).await?;
    refuse_if_used(&format!("exam session {}", e.name), &[(marks, "mark(s)")])?;
    delete_row::<exam_session::Entity>(db, ctx, exam_session::Column::Id, id).await
}

// ---- classes ----

/// A class as entered.
pub struct ClassFields {
    pub name: String,
    pub form: String,
    /// Order of forms (JSS 1 = 1 ...); from the form's number when `None`.
    pub level: Option<i16>,
}

/// The school's class `id`, or a 404.
pub async fn class(db: &impl ConnectionTrait, ctx: &TenantCtx, id: i64) -> Result<class::Model> {
    crate::school::students::class(db, ctx, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no class {id} in this school")))
}

/// The number in a form's name (`JSS 2` -> 2, `Primary 5` -> 5), 0 without one.
pub fn level_of(form: &str) -> i16 {
    let digits: String = form
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse::<i16>().map_or(0, |n| n.min(99))
}

/// Create (`id` = `None`) or replace a class.
pub async fn save_class(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id: Option<i64>,
    f: ClassFields,
    now: DateTime<Utc>,
) -> Result<class::Model> {
    let class_name = name("name", &f.name, 64)?;
    let form = name("form", &f.form, 64)?;
    let level = match f.level {
        Some(l) if !(0..=99).contains(&l) => {
            return Err(Error::invalid(ErrorCode::InvalidLevel, "level is 0 to 99"));
        }
        Some(l) => l,
        None => level_of(&form),
    };
    let mut row = match id {
        Some(id) => class::ActiveModel::from(class(db, ctx, id).await?),
        None => class::ActiveModel {
            tenant_id: Set(ctx.id()),
            created_at: Set(now),
            ..Default::default()
        },
    };
    row.name = Set(class_name.clone());
    row.form = Set(form);
    row.level = Set(level);
    match id {
        Some(_) => row.update(db).await,
        None => row.insert(db).await,
    }
    .map_err(|e| {
        unique(e, || {
            format!("this school already has a class named `{class_name}`")
        })
    })
}

/// Active students per class of the school.
pub async fn student_counts(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
) -> Result<std::collections::HashMap<i64, u64>> {
    let rows: Vec<(Option<i64>, i64)> = ctx
        .find::<student::Entity>()
        .filter(student::Column::Active.eq(true))
        .select_only()
        .column(student::Column::ClassId)
        .column_as(student::Column::Id.count(), "n")
        .group_by(student::Column::ClassId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(class, n)| Some((class?, n.max(0) as u64)))
        .collect())
}

/// Delete a class that has no students and no notices addressed to it (its stored report
/// cards go with it).
pub async fn delete_class(db: &impl ConnectionTrait, ctx: &TenantCtx, id: i64) -> Result<()> {
    let c = class(db, ctx, id).await?;
    let students = count::<student::Entity>(db, ctx, student::Column::ClassId, id).await?;
    let notices = count::<notice::Entity>(db, ctx, notice::Column::AudienceClassId, id).await?;
    refuse_if_used(
        &format!("class {}", c.name),
        &[
            (students, "student(s)"),
            (notices, "notice(s) addressed to it"),
        ],
    )?;
    delete_row::<class::Entity>(db, ctx, class::Column::Id, id).await
}

// ---- subjects ----

/// A subject as entered.
pub struct SubjectFields {
    /// What mark imports name it by, e.g. `MTH`; stored in capitals.
    pub code: String,
    pub name: String,
}

/// The school's subject `id`, or a 404.
pub async fn subject(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id: i64,
) -> Result<subject::Model> {
    ctx.find::<subject::Entity>()
        .filter(subject::Column::Id.eq(id))
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no subject {id} in this school")))
}

/// A subject code: 1 to 16 letters, digits, `-` or `_`, in capitals.
pub fn subject_code(code: &str) -> Result<String> {
    let code = code.trim();
    let ok = (1..=16).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(Error::invalid(
            ErrorCode::InvalidCode,
            "code is 1 to 16 letters, digits, - or _ (e.g. MTH)",
        ));
    }
    Ok(code.to_ascii_uppercase())
}

/// Create (`id` = `None`) or replace a subject; codes are unique in the school.
pub async fn save_subject(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id: Option<i64>,
    f: SubjectFields,
    now: DateTime<Utc>,
) -> Result<subject::Model> {
    let code = subject_code(&f.code)?;
    let subject_name = name("name", &f.name, 128)?;
    let mut row = match id {
        Some(id) => subject::ActiveModel::from(subject(db, ctx, id).await?),
        None => subject::ActiveModel {
            tenant_id: Set(ctx.id()),
            created_at: Set(now),
            ..Default::default()
        },
    };
    row.code = Set(code.clone());
    row.name = Set(subject_name);
    match id {
        Some(_) => row.update(db).await,
        None => row.insert(db).await,
    }
    .map_err(|e| {
        unique(e, || {
            format!("this school already has a subject with code `{code}`")
        })
    })
}

/// Delete a subject that has no marks.
pub async fn delete_subject(db: &impl ConnectionTrait, ctx: &TenantCtx, id: i64) -> Result<()> {
    let s = subject(db, ctx, id).await?;
    let marks = count::<mark::Entity>(db, ctx, mark::Column::SubjectId, id).await?;
    refuse_if_used(&format!("subject {}", s.code), &[(marks, "mark(s)")])?;
    delete_row::<subject::Entity>(db, ctx, subject::Column::Id, id).await
}

/// The school's subjects by code.
pub async fn subjects(db: &impl ConnectionTrait, ctx: &TenantCtx) -> Result<Vec<subject::Model>> {
    Ok(ctx
        .find::<subject::Entity>()
        .order_by_asc(subject::Column::Code)
        .all(db)
        .await?)
}

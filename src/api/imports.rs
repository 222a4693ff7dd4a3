//! `imports/{kind}/`: a school loads its own data, CSV or JSON, without touching the database.
//! Rows are upserted by natural keys (a class by name, a student by student ID, a contact by
//! phone, a link by phone + student ID). Every row is checked first; any problem and nothing
//! is written, and the 400 lists each one by row and column.

use crate::error::ErrorCode;
use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{NaiveDate, Utc};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiRequest, Enum, Object, OpenApi};
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseTransaction, QueryFilter, Set};

use super::ApiTags;
use super::auth::Caller;
use super::respond::ApiResult;
use crate::domain::{PhoneNumber, Pin, StudentId};
use crate::entities::{
    attendance, class, exam_session, student, student_mapping, subject, term, whatsapp_contact,
};
use crate::error::{Error, RowError};
use crate::school::contacts::OptSource;
use crate::school::curriculum;
use crate::state::AppState;
use crate::tenancy::TenantCtx;

/// Most rows in one import.
const MAX_ROWS: usize = 5_000;
/// Most problems listed (the message says how many there were).
const MAX_ERRORS: usize = 200;

/// What an import loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum ImportKind {
    /// `name`, `form`, `level` (key: `name`).
    Classes,
    /// `code`, `name` (key: `code`; codes are stored in capitals).
    Subjects,
    /// `academic_session` (its name), `name`, `starts_on`, `ends_on` (YYYY-MM-DD, inside the
    /// session, overlapping none of its other terms), `ordinal` (optional) (key: session and
    /// name).
    Terms,
    /// `academic_session`, `term` (their names), `name`, `released` (optional, default false)
    /// (key: term and name).
    #[oai(rename = "exam-sessions")]
    ExamSessions,
    /// `student_id`, `first_name`, `last_name`, `other_names`, `class` (a class name),
    /// `pin` (4-8 digits, stored hashed; required for a new student), `active`, `gender`,
    /// `date_of_birth` (YYYY-MM-DD) (key: `student_id`).
    Students,
    /// `phone`, `name`, `opted_in` (key: `phone`; without `opted_in` a new contact is opted
    /// in and an existing one keeps its state; a parent's own STOP is never undone by an
    /// import).
    Contacts,
    /// `phone`, `student_id`, `relationship`: which parent phone may see which student
    /// (key: both). The phone becomes a registered contact if it is not one.
    Mappings,
    /// `student_id`, `exam_session_id`, `subject` (a subject code), `ca`, `exam` (0-100
    /// each, CA + exam at most 100; totalled and graded) (key: the first three).
    Marks,
    /// `student_id`, `date` (YYYY-MM-DD, within one of the school's terms), `status`
    /// (`present`, `absent` or `late`) (key: student and date).
    Attendance,
}

/// The rows, as CSV (a header line, then one line per row) or a JSON array of objects.
#[derive(ApiRequest)]
enum ImportBody {
    /// CSV with a header line.
    #[oai(content_type = "text/csv")]
    Csv(PlainText<String>),
    /// An array of objects with the same fields.
    Json(Json<Vec<BTreeMap<String, serde_json::Value>>>),
}

/// What an import changed.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ImportOut {
    /// Rows read.
    pub rows: u64,
    /// Rows that made new records.
    pub created: u64,
    /// Rows that changed existing records.
    pub updated: u64,
}

type Row = BTreeMap<String, String>;

fn rows_of(body: ImportBody) -> Result<Vec<(u64, Row)>, Error> {
    let mut rows = Vec::new();
    match body {
        ImportBody::Csv(PlainText(text)) => {
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
            let header: Vec<String> = reader
                .headers()
                .map_err(|e| {
                    Error::invalid(ErrorCode::InvalidCsv, format!("unreadable header: {e}"))
                })?
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect();
            for (i, record) in reader.records().enumerate() {
                let record = record.map_err(|e| {
                    Error::invalid(ErrorCode::InvalidCsv, format!("line {}: {e}", i + 2))
                })?;
                if record.iter().all(str::is_empty) {
                    continue;
                }
                let row = header
                    .iter()
                    .cloned()
                    .zip(record.iter().map(str::to_string))
                    .filter(|(_, v)| !v.is_empty())
                    .collect();
                rows.push((i as u64 + 2, row));
            }
        }
        ImportBody::Json(Json(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                let row = item
                    .into_iter()
                    .filter_map(|(k, v)| {
                        let v = match v {
                            serde_json::Value::Null => return None,
                            serde_json::Value::String(s) => s.trim().to_string(),
                            other => other.to_string(),
                        };
                        (!v.is_empty()).then(|| (k.to_ascii_lowercase(), v))
                    })
                    .collect();
                rows.push((i as u64 + 1, row));
            }
        }
    }
    if rows.is_empty() {
        return Err(Error::invalid(
            ErrorCode::InvalidCsv,
            "nothing to import: a header line and at least one row (CSV), or an array of at \
             least one object (JSON)",
        ));
    }
    if rows.len() > MAX_ROWS {
        return Err(Error::invalid(
            ErrorCode::TooManyRows,
            format!("at most {MAX_ROWS} rows per import; split the file"),
        ));
    }
    Ok(rows)
}

/// Collects a row's problems as it is read.
struct Checker {
    errors: Vec<RowError>,
}

impl Checker {
    fn fail(&mut self, row: u64, column: &str, message: impl Into<String>) {
        self.errors.push(RowError {
            row,
            column: Some(column.to_string()),
            message: message.into(),
        });
    }

    /// A required text field of 1 to `max` characters.
    fn text(&mut self, line: u64, row: &Row, column: &str, max: usize) -> Option<String> {
        match row.get(column) {
            None => {
                self.fail(line, column, "required");
                None
            }
            Some(v) if v.chars().count() > max => {
                self.fail(line, column, format!("at most {max} characters"));
                None
            }
            Some(v) => Some(v.clone()),
        }
    }

    fn optional(&mut self, line: u64, row: &Row, column: &str, max: usize) -> Option<String> {
        row.contains_key(column)
            .then(|| self.text(line, row, column, max))
            .flatten()
    }

    fn boolean(&mut self, line: u64, row: &Row, column: &str) -> Option<bool> {
        let v = row.get(column)?;
        match v.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "y" => Some(true),
            "false" | "no" | "0" | "n" => Some(false),
            _ => {
                self.fail(line, column, format!("`{v}` is not true/false"));
                None
            }
        }
    }

    fn parsed<T>(
        &mut self,
        line: u64,
        row: &Row,
        column: &str,
        parse: impl FnOnce(&str) -> Result<T, Error>,
    ) -> Option<T> {
        let Some(v) = row.get(column) else {
            self.fail(line, column, "required");
            return None;
        };
        match parse(v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.fail(line, column, e.to_string());
                None
            }
        }
    }

    /// Report a key seen twice in the file.
    fn unique(&mut self, seen: &mut HashSet<String>, line: u64, column: &str, key: &str) -> bool {
        if seen.insert(key.to_string()) {
            true
        } else {
            self.fail(
                line,
                column,
                format!("`{key}` appears twice in this import"),
            );
            false
        }
    }
}

/// Counts of an import's writes.
#[derive(Default)]
struct Written {
    created: u64,
    updated: u64,
}

impl Written {
    /// Count a curriculum write of row `line` (an update when the row `existed`), or make
    /// what the curriculum refused the row's problem in `column`.
    fn record<T>(
        &mut self,
        check: &mut Checker,
        line: u64,
        column: &str,
        existed: bool,
        result: Result<T, Error>,
    ) -> Result<(), Error> {
        match result {
            Ok(_) if existed => self.updated += 1,
            Ok(_) => self.created += 1,
            Err(e) => row_problem(check, line, column, e)?,
        }
        Ok(())
    }
}

async fn import_classes(
    txn: &DatabaseTransaction,
    ctx: &TenantCtx,
    rows: &[(u64, Row)],
    check: &mut Checker,
) -> Result<Written, Error> {
    let existing: HashMap<String, class::Model> = ctx
        .find::<class::Entity>()
        .all(txn)
        .await?
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect();
    let mut seen = HashSet::new();
    let mut plan = Vec::new();
    for (line, row) in rows {
        let name = check.text(*line, row, "name", 64);
        let form = check.text(*line, row, "form", 64);
        let level = check.parsed(*line, row, "level", |v| {
            v.parse::<i16>()
                .ok()
                .filter(|l| (0..=100).contains(l))
                .ok_or_else(|| Error::invalid(ErrorCode::InvalidLevel, "a whole number 0-100"))
        });
        if let (Some(name), Some(form), Some(level)) = (name, form, level)
            && check.unique(&mut seen, *line, "name", &name)
        {
            plan.push((name, form, level));
        }
    }
    let mut written = Written::default();
    if !check.errors.is_empty() {
        return Ok(written);
    }
    let now = Utc::now();
    for (name, form, level) in plan {
        match existing.get(&name) {
            Some(c) if c.form == form && c.level == level => {}
            Some(c) => {
                let mut active: class::ActiveModel = c.clone().into();
                active.form = Set(form);
                active.level = Set(level);
                active.update(txn).await?;
                written.updated += 1;
            }
            None => {
                class::ActiveModel {
                    tenant_id: Set(ctx.id()),
                    name: Set(name),
                    form: Set(form),
                    level: Set(level),
                    created_at: Set(now),
                    ..Default::default()
                }
                .insert(txn)
                .await?;
                written.created += 1;
            }
        }
    }
    Ok(written)
}

/// A write the curriculum refused for this row (bad dates, a conflict, an unknown session):
/// the row's problem; anything else (the database) is the import's.
fn row_problem(check: &mut Checker, line: u64, column: &str, e: Error) -> Result<(), Error> {
    match e {
        Error::Invalid { .. } | Error::Conflict(_) | Error::NotFound(_) => {
            check.fail(line, column, e.to_string());
            Ok(())
        }
        other => Err(other),
    }
}

fn date_of(v: &str) -> Result<chrono::NaiveDate, Error> {
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| {
        Error::invalid(
            ErrorCode::InvalidDate,
            format!("`{v}` is not a date (YYYY-MM-DD)"),
        )
    })
}

async fn import_subjects(
    txn: &DatabaseTransaction,
    ctx: &TenantCtx,
    rows: &[(u64, Row)],
    check: &mut Checker,
) -> Result<Written, Error> {
    let existing: HashMap<String, i64> = curriculum::subjects(txn, ctx)
        .await?
        .into_iter()
        .map(|s| (s.code, s.id))
        .collect();
    let mut seen = HashSet::new();
    let mut written = Written::default();
    let now = Utc::now();
    for (line, row) in rows {
        let code = check.parsed(*line, row, "code", curriculum::subject_code);
        let name = check.text(*line, row, "name", 128);
        let (Some(code), Some(name)) = (code, name) else {
            continue;
        };
        if !check.unique(&mut seen, *line, "code", &code) {
            continue;
        }
        let id = existing.get(&code).copied();
        let fields = curriculum::SubjectFields { code, name };
        let result = curriculum::save_subject(txn, ctx, id, fields, now).await;
        written.record(check, *line, "code", id.is_some(), result)?;
    }
    Ok(written)
}

/// The school's academic sessions by name.
async fn sessions_by_name(
    txn: &DatabaseTransaction,
    ctx: &TenantCtx,
) -> Result<HashMap<String, i64>, Error> {
    Ok(crate::school::calendar::academic_sessions(txn, ctx)
        .await?
        .into_iter()
        .map(|s| (s.name, s.id))
        .collect())
}

/// The row's `academic_session`, by name, among the school's.
fn session_column(
    check: &mut Checker,
    line: u64,
    row: &Row,
    sessions: &HashMap<String, i64>,
) -> Option<i64> {
    check.parsed(line, row, "academic_session", |v| {
        sessions.get(v).copied().ok_or_else(|| {
            Error::invalid(
                ErrorCode::InvalidSession,
                format!("no academic session `{v}` in this school"),
            )
        })
    })
}

async fn import_terms(
    txn: &DatabaseTransaction,
    ctx: &TenantCtx,
    rows: &[(u64, Row)],
    check: &mut Checker,
) -> Result<Written, Error> {
    let sessions = sessions_by_name(txn, ctx).await?;
    let mut seen = HashSet::new();
    let mut written = Written::default();
    let now = Utc::now();
    for (line, row) in rows {
        let session = session_column(check, *line, row, &sessions);
        let name = check.text(*line, row, "name", 64);
        let starts_on = check.parsed(*line, row, "starts_on", date_of);
        let ends_on = check.parsed(*line, row, "ends_on", date_of);
        let ordinal = match row.get("ordinal") {
            Some(_) => check.parsed(*line, row, "ordinal", |v| {
                v.parse::<i16>()
                    .ok()
                    .filter(|o| (1..=12).contains(o))
                    .map(Some)
                    .ok_or_else(|| Error::invalid(ErrorCode::InvalidOrdinal, "a whole number 1-12"))
            }),
            None => Some(None),
        };
        let (Some(session), Some(name), Some(starts_on), Some(ends_on), Some(ordinal)) =
            (session, name, starts_on, ends_on, ordinal)
        else {
            continue;
        };
        if !check.unique(&mut seen, *line, "name", &format!("{session}/{name}")) {
            continue;
        }
        let id = ctx
            .find::<term::Entity>()
            .filter(term::Column::AcademicSessionId.eq(session))
            .filter(term::Column::Name.eq(name.as_str()))
            .one(txn)
            .await?
            .map(|t| t.id);
        let fields = curriculum::TermFields {
            academic_session_id: session,
            name,
            ordinal,
            starts_on,
            ends_on,
        };
        let result = curriculum::save_term(txn, ctx, id, fields, now).await;
        written.record(check, *line, "starts_on", id.is_some(), result)?;
    }
    Ok(written)
}

async fn import_exams(
    txn: &DatabaseTransaction,
    ctx: &TenantCtx,
    rows: &[(u64, Row)],
    check: &mut Checker,
) -> Result<Written, Error> {
    let sessions = sessions_by_name(txn, ctx).await?;
    let terms = crate::school::calendar::terms(txn, ctx).await?;
    let mut seen = HashSet::new();
    let mut written = Written::default();
    let now = Utc::now();
    for (line, row) in rows {
        let session = session_column(check, *line, row, &sessions);
        let term_name = check.text(*line, row, "term", 64);
        let name = check.text(*line, row, "name", 128);
        let released = check.boolean(*line, row, "released").unwrap_or(false);
        let (Some(session), Some(term_name), Some(name)) = (session, term_name, name) else {
            continue;
        };
        let Some(term) = terms
            .iter()
            .find(|t| t.academic_session_id == session && t.name == term_name)
        else {
            check.fail(
                *line,
                "term",
                format!("no term `{term_name}` in that academic session"),
            );
            continue;
        };
        if !check.unique(&mut seen, *line, "name", &format!("{}/{name}", term.id)) {
            continue;
        }
        let id = ctx
            .find::<exam_session::Entity>()
            .filter(exam_session::Column::TermId.eq(term.id))
            .filter(exam_session::Column::Name.eq(name.as_str()))
            .one(txn)
            .await?
            .map(|e| e.id);
        let fields = curriculum::ExamFields {
            term_id: term.id,
            name,
            released,
        };
        let result = curriculum::save_exam(txn, ctx, id, fields, now).await;
        written.record(check, *line, "name", id.is_some(), result)?;
    }
    Ok(written)
}

async fn import_students(
    state: &AppState,
    txn: &DatabaseTransaction,
    ctx: &TenantCtx,
    rows: &[(u64, Row)],
    check: &mut Checker,
) -> Result<Written, Error> {
    let classes: HashMap<String, i64> = ctx
        .find::<class::Entity>()
        .all(txn)
        .await?
        .into_iter()
        .map(|c| (c.name, c.id))
        .collect();
    let existing: HashMap<String, student::Model> = ctx
        .find::<student::Entity>()
        .all(txn)
        .await?
        .into_iter()
        .map(|s| (s.student_id.clone(), s))
        .collect();
    let mut seen = HashSet::new();
    let mut plan = Vec::new();
    for (line, row) in rows {
        let line = *line;
        let id = check.parsed(line, row, "student_id", StudentId::parse);
        let first = check.text(line, row, "first_name", 100);
        let last = check.text(line, row, "last_name", 100);
        let other = check.optional(line, row, "other_names", 100);
        let gender = check.optional(line, row, "gender", 16);
        let active = check.boolean(line, row, "active");
        let class_id = match row.get("class") {
            None => None,
            Some(name) => match classes.get(name) {
                Some(id) => Some(*id),
                None => {
                    check.fail(line, "class", format!("no class `{name}` in this school"));
                    None
                }
            },
        };
        let birth = row.get("date_of_birth").and_then(|v| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map_err(|_| check.fail(line, "date_of_birth", "a date YYYY-MM-DD"))
                .ok()
        });
        let pin = if row.contains_key("pin") {
            check.parsed(line, row, "pin", Pin::parse)
        } else {
            None
        };
        let Some(id) = id else { continue };
        if !check.unique(&mut seen, line, "student_id", id.as_str()) {
            continue;
        }
        if pin.is_none() && !row.contains_key("pin") && !existing.contains_key(id.as_str()) {
            check.fail(line, "pin", "required for a new student");
            continue;
        }
        if let (Some(first), Some(last)) = (first, last) {
            plan.push((id, first, last, other, gender, active, class_id, birth, pin));
        }
    }
    let mut written = Written::default();
    if !check.errors.is_empty() {
        return Ok(written);
    }
    let now = Utc::now();
    for (id, first, last, other, gender, active, class_id, birth, pin) in plan {
        let pin_hash = pin.map(|p| state.secret.hash_pin(p.as_str()));
        match existing.get(id.as_str()) {
            Some(s) => {
                let mut m: student::ActiveModel = s.clone().into();
                m.first_name = Set(first);
                m.last_name = Set(last);
                m.other_names = Set(other);
                m.gender = Set(gender);
                m.date_of_birth = Set(birth);
                m.class_id = Set(class_id);
                if let Some(active) = active {
                    m.active = Set(active);
                }
                if let Some(hash) = pin_hash {
                    m.pin_hash = Set(hash);
                }
                m.updated_at = Set(now);
                m.update(txn).await?;
                written.updated += 1;
            }
            None => {
                student::ActiveModel {
                    tenant_id: Set(ctx.id()),
                    student_id: Set(id.as_str().to_string()),
                    pin_hash: Set(pin_hash.unwrap_or_default()),
                    first_name: Set(first),
                    last_name: Set(last),
                    other_names: Set(other),
                    gender: Set(gender),
                    date_of_birth: Set(birth),
                    class_id: Set(class_id),
                    active: Set(active.unwrap_or(true)),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..Default::default()
                }
                .insert(txn)
                .await?;
                written.created += 1;
            }
        }
    }
    Ok(written)
}

/// Add or update contacts; `(phone, name, opted_in)`, `None` leaving a value as it is (a new
/// contact is opted in unless the row says otherwise).
async fn upsert_contacts(
    txn: &DatabaseTransaction,
    ctx: &TenantCtx,
    contacts: Vec<(PhoneNumber, Option<String>, Option<bool>)>,
    written: &mut Written,
) -> Result<(), Error> {
    let existing: HashMap<String, whatsapp_contact::Model> = ctx
        .find::<whatsapp_contact::Entity>()
        .all(txn)
        .await?
        .into_iter()
        .map(|c| (c.phone.clone(), c))
        .collect();
    let now = Utc::now();
    for (phone, name, opted_in) in contacts {
        match existing.get(phone.as_str()) {
            Some(c) => {
                if name.is_none() && opted_in.is_none() {
                    continue;
                }
                let mut m: whatsapp_contact::ActiveModel = c.clone().into();
                if let Some(name) = name {
                    m.name = Set(Some(name));
                }
                // A parent's own STOP stands until the parent sends START: an import never
                // opts them back in.
                let parents_stop = !c.opted_in && c.opt_changed_by.as_deref() == Some("chat");
                if let Some(opted_in) = opted_in
                    && opted_in != c.opted_in
                    && !(opted_in && parents_stop)
                {
                    m.opted_in = Set(opted_in);
                    m.opt_changed_at = Set(Some(now));
                    m.opt_changed_by = Set(Some(OptSource::Import.as_stored()));
                }
                m.update(txn).await?;
                written.updated += 1;
            }
            None => {
                whatsapp_contact::ActiveModel {
                    tenant_id: Set(ctx.id()),
                    phone: Set(phone.as_str().to_string()),
                    name: Set(name),
                    opted_in: Set(opted_in.unwrap_or(true)),
                    opt_changed_at: Set(opted_in.map(|_| now)),
                    opt_changed_by: Set(opted_in.map(|_| OptSource::Import.as_stored())),
                    created_at: Set(now),
                    ..Default::default()
                }
                .insert(txn)
                .await?;
                written.created += 1;
            }
        }
    }
    Ok(())
}

async fn import_contacts(
    txn: &DatabaseTransaction,
    ctx: &TenantCtx,
    rows: &[(u64, Row)],
    check: &mut Checker,
) -> Result<Written, Error> {
    let mut seen = HashSet::new();
    let mut plan = Vec::new();
    for (line, row) in rows {
        let phone = check.parsed(*line, row, "phone", PhoneNumber::parse);
        let name = check.optional(*line, row, "name", 100);
        let opted_in = check.boolean(*line, row, "opted_in");
        if let Some(phone) = phone
            && check.unique(&mut seen, *line, "phone", phone.as_str())
        {
            plan.push((phone, name, opted_in));
        }
    }
    let mut written = Written::default();
    if check.errors.is_empty() {
        upsert_contacts(txn, ctx, plan, &mut written).await?;
    }
    Ok(written)
}

async fn import_mappings(
    txn: &DatabaseTransaction,
    ctx: &TenantCtx,
    rows: &[(u64, Row)],
    check: &mut Checker,
) -> Result<Written, Error> {
    let students = student_keys(txn, ctx).await?;
    let existing: HashMap<(String, i64), student_mapping::Model> = ctx
        .find::<student_mapping::Entity>()
        .all(txn)
        .await?
        .into_iter()
        .map(|m| ((m.phone.clone(), m.student_id), m))
        .collect();
    let mut seen = HashSet::new();
    let mut plan = Vec::new();
    for (line, row) in rows {
        let line = *line;
        let phone = check.parsed(line, row, "phone", PhoneNumber::parse);
        let pk = known_student(check, &students, line, row);
        let relationship = check.optional(line, row, "relationship", 32);
        if let (Some(phone), Some(pk)) = (phone, pk)
            && check.unique(
                &mut seen,
                line,
                "student_id",
                &format!("{} {pk}", phone.as_str()),
            )
        {
            plan.push((phone, pk, relationship));
        }
    }
    let mut written = Written::default();
    if !check.errors.is_empty() {
        return Ok(written);
    }
    // Each linked phone is a registered contact of the school.
    let phones: Vec<_> = plan
        .iter()
        .map(|(p, _, _)| p.as_str().to_string())
        .collect::<HashSet<_>>()
        .into_iter()
        .filter_map(|p| PhoneNumber::parse(&p).ok())
        .map(|p| (p, None, None))
        .collect();
    let mut contacts = Written::default();
    upsert_contacts(txn, ctx, phones, &mut contacts).await?;
    let now = Utc::now();
    for (phone, pk, relationship) in plan {
        match existing.get(&(phone.as_str().to_string(), pk)) {
            Some(m) if m.relationship == relationship || relationship.is_none() => {}
            Some(m) => {
                let mut active: student_mapping::ActiveModel = m.clone().into();
                active.relationship = Set(relationship);
                active.update(txn).await?;
                written.updated += 1;
            }
            None => {
                student_mapping::ActiveModel {
                    tenant_id: Set(ctx.id()),
                    phone: Set(phone.as_str().to_string()),
                    student_id: Set(pk),
                    relationship: Set(relationship),
                    created_at: Set(now),
                    ..Default::default()
                }
                .insert(txn)
                .await?;
                written.created += 1;
            }
        }
    }
    Ok(written)
}

/// Student ids of the school by the school's student ID.
async fn student_keys(
    txn: &DatabaseTransaction,
    ctx: &TenantCtx,
) -> Result<HashMap<String, i64>, Error> {
    Ok(ctx
        .find::<student::Entity>()
        .all(txn)
        .await?
        .into_iter()
        .map(|s| (s.student_id, s.id))
        .collect())
}

/// The student a row names, or a problem at `student_id`.
fn known_student(
    check: &mut Checker,
    students: &HashMap<String, i64>,
    line: u64,
    row: &Row,
) -> Option<i64> {
    let id = check.parsed(line, row, "student_id", StudentId::parse)?;
    let found = students.get(id.as_str()).copied();
    if found.is_none() {
        check.fail(
            line,
            "student_id",
            format!("no student `{id}` in this school"),
        );
    }
    found
}

fn score(check: &mut Checker, line: u64, row: &Row, column: &str) -> Option<Option<f64>> {
    let Some(v) = row.get(column) else {
        return Some(None);
    };
    crate::school::results::parse_score(v)
        .map_err(|message| check.fail(line, column, message))
        .ok()
}

async fn import_marks(
    txn: &DatabaseTransaction,
    ctx: &TenantCtx,
    rows: &[(u64, Row)],
    check: &mut Checker,
) -> Result<Written, Error> {
    let students = student_keys(txn, ctx).await?;
    let sessions: HashSet<i64> = ctx
        .find::<exam_session::Entity>()
        .all(txn)
        .await?
        .into_iter()
        .map(|e| e.id)
        .collect();
    let subjects: HashMap<String, i64> = ctx
        .find::<subject::Entity>()
        .all(txn)
        .await?
        .into_iter()
        .map(|s| (s.code, s.id))
        .collect();
    let mut seen = HashSet::new();
    let mut plan = Vec::new();
    for (line, row) in rows {
        let line = *line;
        let student = known_student(check, &students, line, row);
        let session = check.parsed(line, row, "exam_session_id", |v| {
            v.parse::<i64>()
                .ok()
                .filter(|id| sessions.contains(id))
                .ok_or_else(|| {
                    Error::invalid(
                        ErrorCode::InvalidSession,
                        format!("no exam session `{v}` in this school"),
                    )
                })
        });
        let subject = check.parsed(line, row, "subject", |v| {
            subjects.get(v).copied().ok_or_else(|| {
                Error::invalid(
                    ErrorCode::InvalidSubject,
                    format!("no subject with code `{v}` in this school"),
                )
            })
        });
        let (ca, exam) = (
            score(check, line, row, "ca"),
            score(check, line, row, "exam"),
        );
        let (Some(student), Some(session), Some(subject), Some(ca), Some(exam)) =
            (student, session, subject, ca, exam)
        else {
            continue;
        };
        if ca.is_none() && exam.is_none() {
            check.fail(line, "ca", "give ca, exam or both");
            continue;
        }
        let max = crate::school::results::MAX_SCORE;
        if ca.unwrap_or(0.0) + exam.unwrap_or(0.0) > max {
            check.fail(line, "exam", format!("CA + exam is over {max}"));
            continue;
        }
        if check.unique(
            &mut seen,
            line,
            "subject",
            &format!("{student} {session} {subject}"),
        ) {
            plan.push(crate::school::results::MarkRow {
                exam_session_id: session,
                student_id: student,
                subject_id: subject,
                ca,
                exam,
            });
        }
    }
    let mut written = Written::default();
    if check.errors.is_empty() {
        crate::school::results::write_marks(txn, ctx, &plan).await?;
        // An upsert does not say which rows were new; every row counts as written.
        written.updated = plan.len() as u64;
    }
    Ok(written)
}

async fn import_attendance(
    txn: &DatabaseTransaction,
    ctx: &TenantCtx,
    rows: &[(u64, Row)],
    check: &mut Checker,
) -> Result<Written, Error> {
    let students = student_keys(txn, ctx).await?;
    let terms = ctx.find::<term::Entity>().all(txn).await?;
    let existing: HashMap<(i64, NaiveDate), attendance::Model> = ctx
        .find::<attendance::Entity>()
        .all(txn)
        .await?
        .into_iter()
        .map(|a| ((a.student_id, a.date), a))
        .collect();
    let mut seen = HashSet::new();
    let mut plan = Vec::new();
    for (line, row) in rows {
        let line = *line;
        let student = known_student(check, &students, line, row);
        let date = check.parsed(line, row, "date", |v| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map_err(|_| Error::invalid(ErrorCode::InvalidDate, "a date YYYY-MM-DD"))
        });
        let term = date.and_then(|d| {
            let found = terms
                .iter()
                .find(|t| t.starts_on <= d && d <= t.ends_on)
                .map(|t| t.id);
            if found.is_none() {
                check.fail(
                    line,
                    "date",
                    format!("{d} is in none of this school's terms"),
                );
            }
            found
        });
        let status = check.parsed(line, row, "status", |v| {
            let v = v.to_ascii_lowercase();
            ["present", "absent", "late"]
                .contains(&v.as_str())
                .then_some(v)
                .ok_or_else(|| Error::invalid(ErrorCode::InvalidStatus, "present, absent or late"))
        });
        if let (Some(student), Some(date), Some(term), Some(status)) = (student, date, term, status)
            && check.unique(&mut seen, line, "date", &format!("{student} {date}"))
        {
            plan.push((student, date, term, status));
        }
    }
    let mut written = Written::default();
    if !check.errors.is_empty() {
        return Ok(written);
    }
    let now = Utc::now();
    for (student, date, term, status) in plan {
        match existing.get(&(student, date)) {
            Some(a) if a.status == status => {}
            Some(a) => {
                let mut m: attendance::ActiveModel = a.clone().into();
                m.status = Set(status);
                m.term_id = Set(term);
                m.update(txn).await?;
                written.updated += 1;
            }
            None => {
                attendance::ActiveModel {
                    tenant_id: Set(ctx.id()),
                    student_id: Set(student),
                    term_id: Set(term),
                    date: Set(date),
                    status: Set(status),
                    created_at: Set(now),
                    ..Default::default()
                }
                .insert(txn)
                .await?;
                written.created += 1;
            }
        }
    }
    Ok(written)
}

/// Imports.
pub struct ImportsApi;

#[OpenApi(tag = "ApiTags::School")]
impl ImportsApi {
    /// Load classes, subjects, terms, exam sessions, students, WhatsApp contacts,
    /// parent-student links, marks or attendance, as CSV (header
    /// line first) or a JSON array of objects, upserting by natural key. All or nothing: any
    /// invalid row and nothing is written; the 400 lists every problem by row (CSV line, or
    /// array index from 1) and column. Unknown columns are ignored.
    #[oai(
        path = "/imports/:kind/",
        method = "post",
        operation_id = "import_rows"
    )]
    async fn import(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        /// What the rows are.
        kind: Path<ImportKind>,
        body: ImportBody,
    ) -> ApiResult<Json<ImportOut>> {
        let ctx = caller.require("admin")?;
        let rows = rows_of(body)?;
        let mut check = Checker { errors: Vec::new() };
        let txn = crate::db::begin_write(&state.db).await?;
        let written = match kind.0 {
            ImportKind::Classes => import_classes(&txn, ctx, &rows, &mut check).await?,
            ImportKind::Subjects => import_subjects(&txn, ctx, &rows, &mut check).await?,
            ImportKind::Terms => import_terms(&txn, ctx, &rows, &mut check).await?,
            ImportKind::ExamSessions => import_exams(&txn, ctx, &rows, &mut check).await?,
            ImportKind::Students => import_students(&state, &txn, ctx, &rows, &mut check).await?,
            ImportKind::Contacts => import_contacts(&txn, ctx, &rows, &mut check).await?,
            ImportKind::Mappings => import_mappings(&txn, ctx, &rows, &mut check).await?,
            ImportKind::Marks => import_marks(&txn, ctx, &rows, &mut check).await?,
            ImportKind::Attendance => import_attendance(&txn, ctx, &rows, &mut check).await?,
        };
        if !check.errors.is_empty() {
            txn.rollback().await?;
            let n = check.errors.len();
            let mut errors = check.errors;
            errors.truncate(MAX_ERRORS);
            return Err(Error::InvalidRows {
                code: ErrorCode::InvalidRows,
                message: format!("{n} problem(s) in the import; nothing was written"),
                errors,
            }
            .into());
        }
        txn.commit().await?;
        tracing::info!(
            school = ctx.schema_name(),
            kind = ?kind.0,
            rows = rows.len(),
            created = written.created,
            updated = written.updated,
            "import"
        );
        Ok(Json(ImportOut {
            rows: rows.len() as u64,
            created: written.created,
            updated: written.updated,
        }))
    }
}

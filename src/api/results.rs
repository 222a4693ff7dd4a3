//! `get-chatbot/` (a student's released results, as the chatbot shows them to a parent),
//! `results/` (a class' or a student's results, for staff) and `results/manual-template/`
//! (a CSV of a class and exam session to fill in by hand, and its upload).

use crate::error::ErrorCode;
use std::collections::{HashMap, HashSet};

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiRequest, ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::auth::{Caller, Credential};
use super::respond::{ApiError, ApiResult, Page};
use super::school::{StudentOut, class_of, exam_session_of, student_rows};
use crate::domain::{PhoneNumber, Pin, StudentId};
use crate::entities::{student, subject};
use crate::error::{Error, RowError};
use crate::school::pin_limits::{Guesser, PinCheck};
use crate::school::results::{self, StudentResults};
use crate::school::{calendar, students};
use crate::state::AppState;
use crate::tenancy::TenantCtx;

/// Most students in one uploaded template.
const MAX_ROWS: usize = 2_000;
/// Most problems listed for one upload (the count says how many there were).
const MAX_ERRORS: usize = 200;

/// One subject's line.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SubjectResultOut {
    /// Subject code.
    pub code: String,
    /// Subject name.
    pub subject: String,
    /// Continuous assessment.
    pub ca: Option<f64>,
    /// Exam.
    pub exam: Option<f64>,
    /// Total.
    pub total: Option<f64>,
    /// Grade.
    pub grade: Option<String>,
    /// Teacher's remark.
    pub remark: Option<String>,
}

/// A student's results for one exam session.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ResultsOut {
    /// The student.
    pub student: StudentOut,
    /// Exam session id.
    pub exam_session_id: i64,
    /// Exam session name.
    pub exam_session: String,
    /// One line per subject, by subject name.
    pub subjects: Vec<SubjectResultOut>,
    /// Sum of totals.
    pub total: f64,
    /// Average over subjects with a total.
    pub average: Option<f64>,
    /// Position in class (1 = best), when the school publishes positions.
    pub position: Option<u32>,
    /// Students ranked, with `position`.
    pub class_size: Option<u32>,
}

fn results_out(student: StudentOut, r: StudentResults) -> ResultsOut {
    ResultsOut {
        student,
        exam_session_id: r.exam_session_id,
        exam_session: r.exam_session,
        subjects: r
            .subjects
            .into_iter()
            .map(|l| SubjectResultOut {
                code: l.code,
                subject: l.subject,
                ca: l.ca,
                exam: l.exam,
                total: l.total,
                grade: l.grade,
                remark: l.remark,
            })
            .collect(),
        total: r.total,
        average: r.average,
        position: r.position.map(|p| p.0),
        class_size: r.position.map(|p| p.1),
    }
}

/// Who asks for a student's results, and how they prove the right to see them.
#[derive(Debug, Object)]
pub struct ChatbotResultsRequest {
    /// The school's student ID.
    #[oai(validator(pattern = r"^[A-Za-z0-9/._-]{1,64}$"))]
    pub student_id: String,
    /// The student's PIN (4-8 digits). Wrong PINs are limited per student as in the chat.
    /// Send exactly one of `pin` and `phone`.
    #[oai(validator(pattern = "^[0-9]{4,8}$"))]
    pub pin: Option<String>,
    /// Or a parent's phone linked to the student, in international form.
    #[oai(validator(pattern = r"^\+?[1-9][0-9]{7,14}$"))]
    pub phone: Option<String>,
    /// A released exam session (default: the latest released one).
    #[oai(nullable)]
    pub exam_session_id: Option<i64>,
}

/// The filled-in template, as `text/csv`.
#[derive(ApiRequest)]
enum CsvUpload {
    /// The CSV, as downloaded from `GET results/manual-template/` and filled in.
    #[oai(content_type = "text/csv")]
    Csv(PlainText<String>),
}

#[derive(ApiResponse)]
enum CsvTemplate {
    /// The template: `student_id`, `student_name`, then `<CODE>_ca` and `<CODE>_exam` for
    /// every subject, one row per enrolled student, with the marks already entered.
    #[oai(status = 200, content_type = "text/csv; charset=utf-8")]
    Csv(
        PlainText<String>,
        /// `attachment; filename=...`
        #[oai(header = "Content-Disposition")]
        String,
    ),
}

/// What an upload wrote.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct UploadOut {
    /// Students in the file.
    pub students: u64,
    /// Marks created or replaced.
    pub marks_written: u64,
}

/// Who a caller guesses PINs as: its API key, or its token's subject within its school.
pub(crate) fn guesser(caller: &Caller) -> Guesser {
    match &caller.credential {
        Credential::ApiKey(id) => Guesser::credential(&format!("key:{id}")),
        Credential::Jwt(sub) => Guesser::credential(&format!("token:{}:{sub}", caller.tenant.id())),
    }
}

/// The student whose results a request may see, after its proof is checked within the PIN
/// limits (`school::pin_limits`), counted against the student and the caller's credential: a
/// wrong PIN or an unlinked phone alike is one wrong attempt, reserved before it is checked.
async fn proven_student(
    state: &AppState,
    caller: &Caller,
    req: &ChatbotResultsRequest,
) -> Result<student::Model, Error> {
    let ctx = &caller.tenant;
    let id = StudentId::parse(&req.student_id)?;
    let limits = crate::conversation::EngineConfig::from(&state.settings.conversation).pin_limits();
    let now = chrono::Utc::now();
    let guesser = guesser(caller);
    let check = match (&req.pin, &req.phone) {
        (Some(pin), None) => {
            let pin = Pin::parse(pin)?;
            let proof =
                async || students::verify_pin(&state.db, ctx, &state.secret, &id, &pin).await;
            limits
                .check(&state.db, ctx, &guesser, &id, proof, now)
                .await?
        }
        (None, Some(phone)) => {
            let phone = PhoneNumber::parse(phone)?;
            let linked = async || {
                let linked = students::linked_to_phone(&state.db, ctx, &phone).await?;
                Ok(linked.into_iter().find(|s| s.student_id == id.as_str()))
            };
            limits
                .check(&state.db, ctx, &guesser, &id, linked, now)
                .await?
        }
        _ => {
            return Err(Error::invalid(
                ErrorCode::InvalidProof,
                "send either `pin` or `phone` (a phone linked to the student)",
            ));
        }
    };
    match check {
        PinCheck::Verified(student) => Ok(student),
        PinCheck::Wrong { .. } => Err(Error::NotFound(
            "no student matches that student ID and proof".into(),
        )),
        PinCheck::Locked { until } => Err(Error::RateLimited {
            retry_after_secs: u64::try_from((until - now).num_seconds())
                .unwrap_or(0)
                .max(1),
        }),
    }
}

/// Subjects by code, and the template's score columns in order.
async fn subject_columns(
    state: &AppState,
    ctx: &TenantCtx,
) -> Result<(Vec<subject::Model>, Vec<String>), Error> {
    use sea_orm::QueryOrder;
    let subjects = ctx
        .find::<subject::Entity>()
        .order_by_asc(subject::Column::Code)
        .all(&state.db)
        .await?;
    let columns = subjects
        .iter()
        .flat_map(|s| [format!("{}_ca", s.code), format!("{}_exam", s.code)])
        .collect();
    Ok((subjects, columns))
}

/// One mark of an upload: student, subject, CA, exam.
type UploadedMark = (i64, i64, Option<f64>, Option<f64>);

/// A cell a spreadsheet will not run as a formula (OWASP's CSV injection advice): text that
/// starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`.
fn spreadsheet_safe(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_string(),
    }
}

/// A checked upload: how many students and the marks to write, or every problem found.
fn parse_upload(
    text: &str,
    subjects: &[subject::Model],
    roster: &HashMap<String, student::Model>,
) -> Result<(usize, Vec<UploadedMark>), Vec<RowError>> {
    let mut errors = Vec::new();
    let mut push = |row: u64, column: Option<&str>, message: String| {
        errors.push(RowError {
            row,
            column: column.map(str::to_string),
            message,
        })
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(str::to_string).collect(),
        Err(e) => {
            push(1, None, format!("unreadable header: {e}"));
            return Err(errors);
        }
    };
    if header.first().map(String::as_str) != Some("student_id") {
        push(
            1,
            header.first().map(String::as_str),
            "the first column must be `student_id`".into(),
        );
        return Err(errors);
    }
    let by_code: HashMap<&str, &subject::Model> =
        subjects.iter().map(|s| (s.code.as_str(), s)).collect();
    // Per column: (subject id, is_exam), or None for student_id / student_name.
    let mut columns: Vec<Option<(i64, bool)>> = Vec::with_capacity(header.len());
    let mut seen = HashSet::new();
    for name in &header {
        if !seen.insert(name.clone()) {
            push(1, Some(name), "column appears twice".into());
        }
        let parsed = match name.as_str() {
            "student_id" | "student_name" => None,
            other => {
                let found = other.rsplit_once('_').and_then(|(code, part)| {
                    let exam = match part {
                        "ca" => false,
                        "exam" => true,
                        _ => return None,
                    };
                    by_code.get(code).map(|s| (s.id, exam))
                });
                if found.is_none() {
                    push(
                        1,
                        Some(other),
                        "unknown column: expected <SUBJECT CODE>_ca or <SUBJECT CODE>_exam".into(),
                    );
                }
                found
            }
        };
        columns.push(parsed);
    }
    let mut marks = Vec::new();
    let mut students_seen = HashSet::new();
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 2;
        if i >= MAX_ROWS {
            push(
                line,
                None,
                format!("at most {MAX_ROWS} students per upload"),
            );
            break;
        }
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                push(line, None, format!("unreadable row: {e}"));
                continue;
            }
        };
        if record.iter().all(str::is_empty) {
            continue;
        }
        if record.len() != header.len() {
            push(
                line,
                None,
                format!("{} cells, the header has {}", record.len(), header.len()),
            );
            continue;
        }
        let sid = record.get(0).unwrap_or_default();
        let Some(student) = roster.get(sid) else {
            push(
                line,
                Some("student_id"),
                format!("`{sid}` is not a student of this class"),
            );
            continue;
        };
        if !students_seen.insert(student.id) {
            push(line, Some("student_id"), format!("`{sid}` appears twice"));
            continue;
        }
        let mut parts: HashMap<i64, (Option<f64>, Option<f64>)> = HashMap::new();
        for (cell, (name, column)) in record.iter().zip(header.iter().zip(&columns)) {
            let Some((subject_id, exam)) = column else {
                continue;
            };
            match results::parse_score(cell) {
                Ok(value) => {
                    let entry = parts.entry(*subject_id).or_default();
                    if *exam {
                        entry.1 = value;
                    } else {
                        entry.0 = value;
                    }
                }
                Err(message) => push(line, Some(name), message),
            }
        }
        for (subject_id, (ca, exam)) in parts {
            if ca.is_none() && exam.is_none() {
                continue;
            }
            if ca.unwrap_or(0.0) + exam.unwrap_or(0.0) > results::MAX_SCORE {
                let code = subjects
                    .iter()
                    .find(|s| s.id == subject_id)
                    .map(|s| format!("{}_exam", s.code));
                push(
                    line,
                    code.as_deref(),
                    format!("CA + exam is over {}", results::MAX_SCORE),
                );
                continue;
            }
            marks.push((student.id, subject_id, ca, exam));
        }
    }
    if errors.is_empty() {
        Ok((students_seen.len(), marks))
    } else {
        Err(errors)
    }
}

/// Results endpoints.
pub struct ResultsApi;

#[OpenApi(tag = "ApiTags::School")]
impl ResultsApi {
    /// A student's released results as the chatbot shows them to a parent, for the student ID
    /// with its PIN or with a phone linked to the student. A wrong ID, PIN or phone is the same
    /// 404; wrong guesses are paced per student (429 with `Retry-After`).
    #[oai(
        path = "/get-chatbot/",
        method = "post",
        operation_id = "get_chatbot_results"
    )]
    async fn get_chatbot(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        body: Json<ChatbotResultsRequest>,
    ) -> ApiResult<Json<ResultsOut>> {
        let ctx = caller.require_any(&["messages", "staff"])?;
        let student = proven_student(&state, &caller, &body).await?;
        let session_id = match body.exam_session_id {
            Some(id) => id,
            None => calendar::released_exam_sessions(&state.db, ctx)
                .await?
                .first()
                .map(|s| s.id)
                .ok_or_else(|| Error::NotFound("this school has released no results yet".into()))?,
        };
        let publish = ctx.profile(&state.db).await?.publish_position;
        let results = results::for_student(&state.db, ctx, &student, session_id, publish)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no released exam session {session_id} in this school"
                ))
            })?;
        let out = student_rows(&state, ctx, vec![student]).await?;
        let student = out
            .into_iter()
            .next()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("a student row went missing")))?;
        Ok(Json(results_out(student, results)))
    }

    /// Results of a class (one entry per enrolled student, by name) or of one student for an
    /// exam session, released or not.
    #[oai(path = "/results/", method = "get", operation_id = "list_results")]
    #[allow(clippy::too_many_arguments)]
    async fn results(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        /// The exam session.
        exam_session_id: Query<i64>,
        /// A class of the school.
        class_id: Query<Option<i64>>,
        /// Or one student, by the school's student ID.
        #[oai(validator(pattern = r"^[A-Za-z0-9/._-]{1,64}$"))]
        student_id: Query<Option<String>>,
        /// Page number, from 1.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u64>>,
        /// Items per page, 1 to 100 (default 25).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        page_size: Query<Option<u64>>,
    ) -> ApiResult<Json<Page<ResultsOut>>> {
        let ctx = caller.require("staff")?;
        let session = exam_session_of(&state, ctx, exam_session_id.0).await?;
        let publish = ctx.profile(&state.db).await?.publish_position;
        let rows: Vec<(student::Model, StudentResults)> =
            match (class_id.0, student_id.0.as_deref()) {
                (Some(class_id), None) => {
                    class_of(&state, ctx, class_id).await?;
                    results::for_class(&state.db, ctx, &session, class_id, publish).await?
                }
                (None, Some(sid)) => {
                    let id = StudentId::parse(sid)?;
                    let student = students::by_student_id(&state.db, ctx, &id)
                        .await?
                        .ok_or_else(|| {
                            Error::NotFound(format!("no student `{id}` in this school"))
                        })?;
                    let r = results::in_session(&state.db, ctx, &student, &session, publish)
                        .await?
                        .ok_or_else(|| Error::NotFound("no such student or session".into()))?;
                    vec![(student, r)]
                }
                _ => {
                    return Err(Error::invalid(
                        ErrorCode::InvalidFilter,
                        "give exactly one of class_id and student_id",
                    )
                    .into());
                }
            };
        let slice = super::respond::slice_of(rows, page.0, page_size.0)?;
        let (students_page, results_page): (Vec<_>, Vec<_>) = slice.rows.iter().cloned().unzip();
        let outs = student_rows(&state, ctx, students_page).await?;
        let results = outs
            .into_iter()
            .zip(results_page)
            .map(|(s, r)| results_out(s, r))
            .collect();
        Ok(Json(slice.page(results)))
    }

    /// A CSV template of a class for an exam session, to fill in by hand and upload with
    /// `POST results/manual-template/`. A name a spreadsheet would take for a formula (it
    /// starts with `=`, `+`, `-`, `@`, a tab or a carriage return) is written with a leading `'`;
    /// the upload reads students by `student_id`, never by name.
    #[oai(
        path = "/results/manual-template/",
        method = "get",
        operation_id = "download_results_template"
    )]
    async fn template(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        /// The class.
        class_id: Query<i64>,
        /// The exam session.
        exam_session_id: Query<i64>,
    ) -> ApiResult<CsvTemplate> {
        let ctx = caller.require("staff")?;
        let session = exam_session_of(&state, ctx, exam_session_id.0).await?;
        let class = class_of(&state, ctx, class_id.0).await?;
        let (subjects, columns) = subject_columns(&state, ctx).await?;
        let roster = students::in_class(&state.db, ctx, class.id).await?;
        let entered = results::for_class(&state.db, ctx, &session, class.id, false).await?;
        let by_student: HashMap<i64, &StudentResults> =
            entered.iter().map(|(s, r)| (s.id, r)).collect();
        let mut out = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["student_id".to_string(), "student_name".to_string()];
        header.extend(columns);
        let fail = |e: csv::Error| Error::Internal(anyhow::anyhow!("csv: {e}"));
        out.write_record(&header).map_err(fail)?;
        for s in &roster {
            let mut row = vec![
                s.student_id.clone(),
                spreadsheet_safe(&students::full_name(s)),
            ];
            let lines = by_student
                .get(&s.id)
                .map(|r| r.subjects.as_slice())
                .unwrap_or_default();
            for subject in &subjects {
                let line = lines.iter().find(|l| l.code == subject.code);
                let cell = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
                row.push(cell(line.and_then(|l| l.ca)));
                row.push(cell(line.and_then(|l| l.exam)));
            }
            out.write_record(&row).map_err(fail)?;
        }
        let bytes = out
            .into_inner()
            .map_err(|e| Error::Internal(anyhow::anyhow!("csv: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|e| Error::Internal(e.into()))?;
        let file = format!(
            "attachment; filename=\"results-class{}-session{}.csv\"",
            class.id, session.id
        );
        Ok(CsvTemplate::Csv(PlainText(text), file))
    }

    /// Upload a filled-in template. Every row is checked first (students of the class, known
    /// subject columns, scores 0-100 with CA + exam at most 100); any problem and nothing is
    /// written, and the 400 lists every problem by row and column. Otherwise each non-empty
    /// subject of each row creates or replaces that mark, graded on the total.
    #[oai(
        path = "/results/manual-template/",
        method = "post",
        operation_id = "upload_results_template"
    )]
    async fn upload(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        /// The class.
        class_id: Query<i64>,
        /// The exam session.
        exam_session_id: Query<i64>,
        body: CsvUpload,
    ) -> ApiResult<Json<UploadOut>> {
        let ctx = caller.require("staff")?;
        let CsvUpload::Csv(PlainText(text)) = body;
        let session = exam_session_of(&state, ctx, exam_session_id.0).await?;
        let class = class_of(&state, ctx, class_id.0).await?;
        let (subjects, _) = subject_columns(&state, ctx).await?;
        let roster: HashMap<String, student::Model> = students::in_class(&state.db, ctx, class.id)
            .await?
            .into_iter()
            .map(|s| (s.student_id.clone(), s))
            .collect();
        let (students, marks) = match parse_upload(&text, &subjects, &roster) {
            Ok(parsed) => parsed,
            Err(mut errors) => {
                let n = errors.len();
                errors.truncate(MAX_ERRORS);
                return Err(Error::InvalidRows {
                    code: ErrorCode::InvalidRows,
                    message: format!("{n} problem(s) in the upload; nothing was written"),
                    errors,
                }
                .into());
            }
        };
        let written = marks.len() as u64;
        let txn = crate::db::begin_write(&state.db)
            .await
            .map_err(ApiError::from)?;
        let rows = marks
            .iter()
            .map(|(student_id, subject_id, ca, exam)| results::MarkRow {
                exam_session_id: session.id,
                student_id: *student_id,
                subject_id: *subject_id,
                ca: *ca,
                exam: *exam,
            })
            .collect::<Vec<_>>();
        results::write_marks(&txn, ctx, &rows).await?;
        txn.commit().await?;
        tracing::info!(
            school = ctx.schema_name(),
            class = class.id,
            exam_session = session.id,
            students,
            marks = written,
            "results template uploaded"
        );
        Ok(Json(UploadOut {
            students: students as u64,
            marks_written: written,
        }))
    }
}

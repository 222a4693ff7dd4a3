//! Report cards: the content of one card read from one school's data ([`card_for`]), its PDF
//! ([`card::render`]), storage and signed download links ([`store`], [`download`]), and the
//! card a parent asks for in the chat ([`document_reply`]).

pub mod card;
pub mod store;

use crate::error::ErrorCode;
use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{Response, handler};
use sea_orm::{ColumnTrait, ConnectionTrait, QueryFilter, QueryOrder, Set};
use serde::Deserialize;

use crate::conversation::Reply;
use crate::conversation::engine::score;
use crate::entities::{exam_session, report, student};
use crate::error::{Result, json_error};
use crate::school::{attendance, calendar, results, students};
use crate::tenancy::TenantCtx;
use card::{AttendanceLine, Card, SubjectLine};
pub use store::Reports;

/// The grading key printed on every card (the bands `school::results::grade` applies).
pub fn grading_key() -> Vec<String> {
    [(70, 100), (60, 69), (50, 59), (45, 49), (40, 44), (0, 39)]
        .iter()
        .map(|(lo, hi)| {
            let (grade, remark) = results::grade(f64::from(*lo));
            format!("{grade} {lo}-{hi} {remark}")
        })
        .collect()
}

/// The card of `student` for `exam`, both of the school `ctx`; `None` when either belongs to
/// another school.
pub async fn card_for(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    student: &student::Model,
    exam: &exam_session::Model,
) -> Result<Option<Card>> {
    let profile = ctx.profile(db).await?;
    let Some(r) = results::in_session(db, ctx, student, exam, profile.publish_position).await?
    else {
        return Ok(None);
    };
    let class = match student.class_id {
        Some(id) => students::class(db, ctx, id).await?.map(|c| c.name),
        None => None,
    };
    let term = calendar::term(db, ctx, exam.term_id).await?;
    let session = match &term {
        Some(t) => calendar::academic_sessions(db, ctx)
            .await?
            .into_iter()
            .find(|s| s.id == t.academic_session_id)
            .map(|s| s.name),
        None => None,
    };
    let attendance = match &term {
        Some(t) => {
            let a = attendance::summary(db, ctx, student.id, t.id).await?;
            (a.days > 0).then(|| AttendanceLine {
                present: a.present,
                late: a.late,
                absent: a.absent,
                days: a.days,
                percentage: a
                    .percentage
                    .map_or_else(|| "-".into(), |p| format!("{}%", score(p))),
            })
        }
        None => None,
    };
    let dash = || "-".to_string();
    let contact: Vec<&str> = [&profile.contact_phone, &profile.contact_email]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    Ok(Some(Card {
        school: profile.name.clone(),
        motto: profile.motto.clone(),
        address: profile.address.clone(),
        contact: (!contact.is_empty()).then(|| contact.join(" · ")),
        student_name: students::full_name(student),
        student_id: student.student_id.clone(),
        class,
        exam: r.exam_session.clone(),
        term: term.as_ref().map_or_else(dash, |t| {
            format!("{} ({} to {})", t.name, t.starts_on, t.ends_on)
        }),
        session: session.unwrap_or_else(dash),
        subjects: r
            .subjects
            .iter()
            .map(|s| SubjectLine {
                subject: s.subject.clone(),
                ca: s.ca.map_or_else(dash, score),
                exam: s.exam.map_or_else(dash, score),
                total: s.total.map_or_else(dash, score),
                grade: s.grade.clone().unwrap_or_else(dash),
                remark: s.remark.clone().unwrap_or_default(),
            })
            .collect(),
        total: score(r.total),
        average: r.average.map(score),
        position: r.position,
        attendance,
        remark: r.average.map(|a| {
            let (grade, remark) = results::grade(a);
            format!("Overall: {remark} (average {}, grade {grade}).", score(a))
        }),
        grading_key: grading_key(),
        generated_on: Utc::now().format("%Y-%m-%d").to_string(),
    }))
}

/// Render cards off the async threads (a few milliseconds of CPU each).
pub async fn render_blocking(cards: Vec<Card>, title: String) -> Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || match cards.as_slice() {
        [one] => card::render(one),
        many => card::render_many(many, &title),
    })
    .await
    .map_err(|e| crate::error::Error::Internal(anyhow::anyhow!("rendering stopped: {e}")))
}

/// Render and store `student`'s card for `exam`; `None` when there is nothing to print (no
/// such student or session in this school).
pub async fn generate(
    state: &Reports,
    ctx: &TenantCtx,
    student: &student::Model,
    exam: &exam_session::Model,
) -> Result<Option<report::Model>> {
    let Some(card) = card_for(&state.db, ctx, student, exam).await? else {
        return Ok(None);
    };
    Ok(Some(store_card(state, ctx, student, exam, card).await?))
}

/// Render `card` (of `student` for `exam`) and store it as a student report.
async fn store_card(
    state: &Reports,
    ctx: &TenantCtx,
    student: &student::Model,
    exam: &exam_session::Model,
    card: Card,
) -> Result<report::Model> {
    let pdf = render_blocking(vec![card], String::new()).await?;
    store::save(
        &state.db,
        ctx,
        &state.settings.reports_dir(),
        report::ActiveModel {
            kind: Set(store::kind::STUDENT.into()),
            student_id: Set(Some(student.id)),
            class_id: Set(student.class_id),
            exam_session_id: Set(Some(exam.id)),
            ..Default::default()
        },
        &pdf,
    )
    .await
}

/// The students a batch covers: a class, or every class of a form.
#[derive(Debug, Clone)]
pub struct Group {
    /// The class, or the form's classes.
    pub classes: Vec<crate::entities::class::Model>,
    /// Their active students, class by class, by name.
    pub pupils: Vec<student::Model>,
    /// "JSS 1A", or the form "JSS 1".
    pub name: String,
    /// The class, when the group is one.
    pub class_id: Option<i64>,
}

impl Group {
    /// One student of school `ctx` (primary key); `None` when there is no such student.
    pub async fn student(
        db: &impl ConnectionTrait,
        ctx: &TenantCtx,
        pk: i64,
    ) -> Result<Option<Self>> {
        Ok(students::by_pk(db, ctx, pk).await?.map(|s| Self {
            classes: Vec::new(),
            name: students::full_name(&s),
            class_id: None,
            pupils: vec![s],
        }))
    }

    /// A class (`class_id`) or a form of school `ctx`; `None` when it has no such class.
    pub async fn find(
        db: &impl ConnectionTrait,
        ctx: &TenantCtx,
        class_id: Option<i64>,
        form: Option<&str>,
    ) -> Result<Option<Self>> {
        let (classes, name): (Vec<_>, String) = match (class_id, form) {
            (Some(id), _) => {
                let c: Vec<_> = students::class(db, ctx, id).await?.into_iter().collect();
                let name = c.first().map(|c| c.name.clone()).unwrap_or_default();
                (c, name)
            }
            (None, Some(form)) => (
                students::classes(db, ctx)
                    .await?
                    .into_iter()
                    .filter(|c| c.form == form)
                    .collect(),
                form.to_string(),
            ),
            (None, None) => (Vec::new(), String::new()),
        };
        if classes.is_empty() {
            return Ok(None);
        }
        let mut pupils = Vec::new();
        for c in &classes {
            pupils.extend(students::in_class(db, ctx, c.id).await?);
        }
        Ok(Some(Self {
            classes,
            pupils,
            name,
            class_id,
        }))
    }
}

/// What a batch made: each student's stored card, and the combined file if asked for.
#[derive(Debug, Default)]
pub struct Made {
    /// (student, stored card), in the group's order; students with no results are skipped.
    pub cards: Vec<(student::Model, report::Model)>,
    /// The combined PDF.
    pub combined: Option<report::Model>,
}

/// Render and store a card for every student of `group` (reusing cards of `exam` stored since
/// `reuse_since`, e.g. by an earlier run of the same job) and, when `combined`, one PDF of all
/// of them. `progress(done, total)` is called after each student; with `job`, its result
/// shows `{"rendered": done}` as the batch goes (every ten students).
#[allow(clippy::too_many_arguments)]
pub async fn batch(
    state: &Reports,
    ctx: &TenantCtx,
    exam: &exam_session::Model,
    group: &Group,
    combined: bool,
    reuse_since: Option<DateTime<Utc>>,
    job: Option<&crate::entities::background_job::Model>,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<Made> {
    use sea_orm::{ColumnTrait, QueryFilter};
    let mut reusable: std::collections::HashMap<i64, report::Model> = Default::default();
    if let Some(since) = reuse_since {
        reusable = ctx
            .find::<report::Entity>()
            .filter(report::Column::Kind.eq(store::kind::STUDENT))
            .filter(report::Column::Status.eq("ready"))
            .filter(report::Column::ExamSessionId.eq(exam.id))
            .filter(report::Column::CreatedAt.gte(since))
            .filter(report::Column::StudentId.is_in(group.pupils.iter().map(|p| p.id)))
            .all(&state.db)
            .await?
            .into_iter()
            .filter_map(|r| r.student_id.map(|s| (s, r)))
            .collect();
    }
    let total = group.pupils.len();
    let mut made = Made::default();
    let mut cards = Vec::new();
    for (i, pupil) in group.pupils.iter().enumerate() {
        if let Some(card) = card_for(&state.db, ctx, pupil, exam).await? {
            let stored = match reusable.remove(&pupil.id) {
                Some(r) => r,
                None => store_card(state, ctx, pupil, exam, card.clone()).await?,
            };
            made.cards.push((pupil.clone(), stored));
            if combined {
                cards.push(card);
            }
        }
        progress(i + 1, total);
        if let Some(job) = job
            && (i + 1).is_multiple_of(10)
        {
            use sea_orm::ActiveModelTrait;
            let mut active: crate::entities::background_job::ActiveModel = job.clone().into();
            active.result = Set(Some(serde_json::json!({"rendered": i + 1})));
            active.updated_at = Set(Utc::now());
            active.update(&state.db).await?;
        }
    }
    if combined && !cards.is_empty() {
        let title = format!("Report cards: {}, {}", group.name, exam.name);
        let pdf = render_blocking(cards, title).await?;
        made.combined = Some(
            store::save(
                &state.db,
                ctx,
                &state.settings.reports_dir(),
                report::ActiveModel {
                    kind: Set(store::kind::COMBINED.into()),
                    class_id: Set(group.class_id),
                    exam_session_id: Set(Some(exam.id)),
                    ..Default::default()
                },
                &pdf,
            )
            .await?,
        );
    }
    tracing::info!(
        tenant = ctx.schema_name(),
        exam = exam.id,
        group = %group.name,
        cards = made.cards.len(),
        combined = made.combined.is_some(),
        "report cards rendered"
    );
    Ok(made)
}

/// A file name for a student's card: `report-GFA-2026-0001.pdf`.
pub fn file_name(student_id: &str) -> String {
    let safe: String = student_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("report-{safe}.pdf")
}

/// Fresh report cards a phone may have rendered per hour; a card already rendered for the same
/// student and exam session within a link's lifetime is sent again without counting.
pub const RENDERS_PER_PHONE_PER_HOUR: i64 = 10;

/// The counter of the report cards a phone had rendered by school `ctx` this hour.
pub fn renders_key(ctx: &TenantCtx, phone: &crate::domain::PhoneNumber) -> String {
    format!("reports:{}:{}", ctx.id(), phone.as_str())
}

/// The report card of a student for a released exam session, as a document to send a parent
/// at `phone`: the card rendered for them within the link's lifetime when there is one,
/// otherwise a new one (at most [`RENDERS_PER_PHONE_PER_HOUR`], else a text in `language`
/// saying when to ask again). `None` when the student or the released session is gone.
pub async fn document_reply(
    state: &Reports,
    ctx: &TenantCtx,
    student_pk: i64,
    exam_session_id: i64,
    phone: &crate::domain::PhoneNumber,
    language: &str,
    now: DateTime<Utc>,
) -> Result<Option<Reply>> {
    let Some(student) = students::by_pk(&state.db, ctx, student_pk).await? else {
        return Ok(None);
    };
    let Some(exam) = calendar::exam_session(&state.db, ctx, exam_session_id)
        .await?
        .filter(|e| e.released)
    else {
        return Ok(None);
    };
    let lifetime = chrono::Duration::minutes(state.settings.reports.link_ttl_minutes.into());
    let recent = ctx
        .find::<report::Entity>()
        .filter(report::Column::Kind.eq(store::kind::STUDENT))
        .filter(report::Column::StudentId.eq(student.id))
        .filter(report::Column::ExamSessionId.eq(exam.id))
        .filter(report::Column::Status.eq("ready"))
        .filter(report::Column::CreatedAt.gt(now - lifetime))
        .order_by_desc(report::Column::Id)
        .one(&state.db)
        .await?;
    let row = match recent {
        Some(row) => row,
        None => {
            let renders = crate::school::pin_limits::count_in_window(
                &state.db,
                renders_key(ctx, phone),
                Some(ctx.id()),
                chrono::Duration::hours(1),
                now.timestamp(),
            )
            .await?;
            if renders > RENDERS_PER_PHONE_PER_HOUR {
                tracing::warn!(
                    tenant = ctx.schema_name(),
                    renders,
                    "report card refused: too many asked from one phone this hour"
                );
                let text = crate::conversation::texts().render(
                    language,
                    "reports_paused",
                    minijinja::context! {},
                )?;
                return Ok(Some(Reply::text(text)));
            }
            let Some(row) = generate(state, ctx, &student, &exam).await? else {
                return Ok(None);
            };
            tracing::info!(
                tenant = ctx.schema_name(),
                report = row.id,
                bytes = row.size_bytes.unwrap_or_default(),
                "report card rendered for a parent"
            );
            row
        }
    };
    Ok(Some(Reply::Document {
        url: store::link(state, ctx.id(), row.id, now),
        filename: file_name(&student.student_id),
        caption: format!("{}: {}", students::full_name(&student), exam.name),
    }))
}

/// The query of a download link.
#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    /// School id.
    t: i64,
    /// Expiry, Unix seconds.
    expires: i64,
    /// Signature.
    sig: String,
}

/// `GET /files/reports/{id}?t=..&expires=..&sig=..`: the PDF, for a link we signed that has
/// not expired; 403 otherwise, 404 for a report that is gone.
#[handler]
pub async fn download(
    state: Data<&Reports>,
    Path(id): Path<i64>,
    Query(q): Query<LinkQuery>,
) -> Response {
    let tenant = match store::verify(&state.secret, id, q.t, q.expires, &q.sig, Utc::now()) {
        Ok(t) => t,
        Err(store::Refusal::Expired) => {
            return json_error(
                StatusCode::FORBIDDEN,
                ErrorCode::LinkExpired,
                "this download link has expired; ask the bot for the report again",
            );
        }
        Err(store::Refusal::BadSignature) => {
            tracing::warn!(report = id, "report download with a bad signature refused");
            return json_error(
                StatusCode::FORBIDDEN,
                ErrorCode::InvalidLink,
                "this download link is not valid",
            );
        }
    };
    let not_found = || json_error(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such report");
    let ctx = match crate::tenancy::by_id(&state.db, tenant).await {
        Ok(ctx) => ctx,
        Err(crate::error::Error::NotFound(_)) => return not_found(),
        Err(e) => return poem::error::ResponseError::as_response(&e),
    };
    let (row, path) = match store::file_of(&state.db, &ctx, &state.settings.reports_dir(), id).await
    {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(e) => return poem::error::ResponseError::as_response(&e),
    };
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return not_found(),
        Err(e) => {
            tracing::error!(report = id, error = %e, "report file unreadable");
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::InternalError,
                "the report cannot be read",
            );
        }
    };
    let name = match row.student_id {
        Some(pk) => match students::by_pk(&state.db, &ctx, pk).await {
            Ok(Some(s)) => file_name(&s.student_id),
            _ => format!("report-{id}.pdf"),
        },
        None => format!("reports-{id}.pdf"),
    };
    Response::builder()
        .content_type("application/pdf")
        .header(
            "Content-Disposition",
            format!("attachment; filename=\"{name}\""),
        )
        .header("Cache-Control", "private, no-store")
        .header("X-Content-Type-Options", "nosniff")
        .body(bytes)
}

/// The report-card settings, checked when the configuration is loaded.
impl crate::config::Check for crate::config::Reports {
    fn check(&mut self) -> std::result::Result<(), crate::config::Problem> {
        use crate::config::keys::reports as key;
        key::link_ttl_minutes.require_within(
            self.link_ttl_minutes,
            1..=60 * 24 * 30,
            "minutes (30 days)",
        )?;
        key::retention_days.require_within(self.retention_days, 1..=3650, "days")
    }
}

//! Work the REST API accepts and a worker finishes: report batches and deletions, notice
//! broadcasts. The request is a `background_jobs` row of its school (status and progress are
//! read there); the queued job only names it, so a retry finds what was already done.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, QueryFilter, QuerySelect, Set};
use serde::{Deserialize, Serialize};

use super::deliver::SendJob;
use super::job::{Job, JobFuture};
use super::shared::Pipeline;
use crate::conversation::{Reply, transcript};
use crate::domain::{PhoneNumber, SchemaName};
use crate::entities::{
    background_job, class, message_log, notice, report, student, student_mapping, whatsapp_contact,
};
use crate::error::Result;
use crate::school::notices::audience;
use crate::tenancy::{self, Provider, TenantCtx};

/// Kinds of work, as stored in `background_jobs.kind`.
pub mod kind {
    /// One PDF per student of a class.
    pub const GENERATE_REPORTS: &str = "generate_reports";
    /// A class or form into one combined PDF and per-student files.
    pub const BATCH_REPORTS: &str = "batch_reports";
    /// Delete generated reports.
    pub const DELETE_REPORTS: &str = "delete_reports";
    /// Send a notice to the school's registered numbers.
    pub const BROADCAST: &str = "broadcast";
}

/// Statuses of a `background_jobs` row.
pub mod status {
    /// Accepted, not started.
    pub const QUEUED: &str = "queued";
    /// A worker is on it.
    pub const RUNNING: &str = "running";
    /// Finished.
    pub const DONE: &str = "done";
    /// Finished without doing what was asked; `error` says why.
    pub const FAILED: &str = "failed";
}

/// The `reply_to` of every message of broadcast `job_id`, followed by the recipient.
pub fn broadcast_key_prefix(job_id: i64) -> String {
    format!("broadcast:{job_id}:")
}

/// Run the `background_jobs` row `job_id` of school `tenant`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkJob {
    /// The school's schema name.
    pub tenant: String,
    /// Its `background_jobs` row.
    pub job_id: i64,
}

impl Job for WorkJob {
    const QUEUE: &'static str = "work";
}

/// Worker entry point.
pub fn handle(job: WorkJob, pipe: Pipeline) -> JobFuture {
    let span = tracing::info_span!("work", tenant = %job.tenant, job_id = job.job_id);
    super::shared::measured(
        pipe.clone(),
        WorkJob::QUEUE,
        tracing::Instrument::instrument(async move { run(&pipe, &job).await }, span),
    )
}

/// A job's end that is not worth retrying: the reason it could not be done.
type Outcome = std::result::Result<serde_json::Value, String>;

async fn run(pipe: &Pipeline, job: &WorkJob) -> Result<()> {
    let ctx = match SchemaName::parse(&job.tenant) {
        Ok(name) => tenancy::by_schema_name(&pipe.db, &name).await?,
        Err(e) => {
            tracing::warn!(error = %e, "work for an unusable school name dropped");
            return Ok(());
        }
    };
    let Some(row) = ctx
        .find::<background_job::Entity>()
        .filter(background_job::Column::Id.eq(job.job_id))
        .one(&pipe.db)
        .await?
    else {
        tracing::warn!("work whose row is gone (school deleted?); dropped");
        return Ok(());
    };
    if row.status == status::DONE || row.status == status::FAILED {
        return Ok(());
    }
    let mut active: background_job::ActiveModel = row.clone().into();
    active.status = Set(status::RUNNING.into());
    active.updated_at = Set(Utc::now());
    let row = active.update(&pipe.db).await?;
    // Database or queue failures propagate: the job is retried and carries on.
    let outcome = match row.kind.as_str() {
        kind::GENERATE_REPORTS => render_reports(pipe, &ctx, &row, false).await?,
        kind::BATCH_REPORTS => render_reports(pipe, &ctx, &row, true).await?,
        kind::DELETE_REPORTS => delete_reports(pipe, &ctx, &row).await?,
        kind::BROADCAST => broadcast(pipe, &ctx, &row).await?,
        other => Err(format!("unknown kind of work `{other}`")),
    };
    let now = Utc::now();
    let mut active: background_job::ActiveModel = row.into();
    match outcome {
        Ok(result) => {
            active.status = Set(status::DONE.into());
            active.result = Set(Some(result));
        }
        Err(reason) => {
            tracing::warn!(%reason, "work failed");
            active.status = Set(status::FAILED.into());
            active.error = Set(Some(reason));
        }
    }
    active.updated_at = Set(now);
    active.finished_at = Set(Some(now));
    active.update(&pipe.db).await?;
    Ok(())
}

/// What `generate-reports/` and `batch-reports/` ask for: an exam session, and a class or a
/// form.
#[derive(Debug, Clone, Deserialize)]
struct ReportParams {
    exam_session_id: i64,
    class_id: Option<i64>,
    form: Option<String>,
    /// One student (primary key).
    student: Option<i64>,
}

/// One card per student of the class or form (stored, with a signed link each) and, for a
/// batch, all of them in one combined PDF too. A retry reuses the cards this job already
/// stored; the result shows `rendered` as it goes.
async fn render_reports(
    pipe: &Pipeline,
    ctx: &TenantCtx,
    row: &background_job::Model,
    combined: bool,
) -> Result<Outcome> {
    use crate::reports::{self, store};
    use crate::school::calendar;
    let Ok(params) = serde_json::from_value::<ReportParams>(row.params.clone()) else {
        return Ok(Err("unreadable parameters".into()));
    };
    let Some(exam) = calendar::exam_session(&pipe.db, ctx, params.exam_session_id).await? else {
        return Ok(Err(format!(
            "exam session {} no longer exists",
            params.exam_session_id
        )));
    };
    let group = match params.student {
        Some(pk) => reports::Group::student(&pipe.db, ctx, pk).await?,
        None => {
            reports::Group::find(&pipe.db, ctx, params.class_id, params.form.as_deref()).await?
        }
    };
    let Some(group) = group else {
        return Ok(Err("the class, form or student no longer exists".into()));
    };
    let mut active: background_job::ActiveModel = row.clone().into();
    active.total = Set(group.pupils.len() as i64);
    active.updated_at = Set(Utc::now());
    let row = active.update(&pipe.db).await?;
    let made = reports::batch(
        &pipe.reports,
        ctx,
        &exam,
        &group,
        combined,
        Some(row.created_at),
        Some(&row),
        &mut |_, _| {},
    )
    .await?;
    let now = Utc::now();
    let cards: Vec<serde_json::Value> = made
        .cards
        .iter()
        .map(|(pupil, stored)| {
            serde_json::json!({
                "student_id": pupil.student_id,
                "report_id": stored.id,
                "bytes": stored.size_bytes,
                "url": store::link(&pipe.reports, ctx.id(), stored.id, now),
            })
        })
        .collect();
    let mut result = serde_json::json!({
        "exam_session_id": exam.id,
        "rendered": cards.len(),
        "count": cards.len(),
        "reports": cards,
    });
    if let Some(stored) = &made.combined {
        result["combined"] = serde_json::json!({
            "report_id": stored.id,
            "bytes": stored.size_bytes,
            "pages": made.cards.len(),
            "url": store::link(&pipe.reports, ctx.id(), stored.id, now),
        });
    }
    Ok(Ok(result))
}

/// What `delete-reports/` may name: report ids, a class, or an age.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeleteReports {
    /// These reports.
    pub ids: Option<Vec<i64>>,
    /// The reports of this class' students (and the class' batch files).
    pub class_id: Option<i64>,
    /// Reports created more than this many days ago.
    pub older_than_days: Option<u32>,
}

async fn delete_reports(
    pipe: &Pipeline,
    ctx: &TenantCtx,
    row: &background_job::Model,
) -> Result<Outcome> {
    let Ok(params) = serde_json::from_value::<DeleteReports>(row.params.clone()) else {
        return Ok(Err("unreadable parameters".into()));
    };
    let mut query = ctx.find::<report::Entity>();
    if let Some(ids) = &params.ids {
        query = query.filter(report::Column::Id.is_in(ids.clone()));
    }
    if let Some(class_id) = params.class_id {
        let pupils = ctx
            .find::<student::Entity>()
            .select_only()
            .column(student::Column::Id)
            .filter(student::Column::ClassId.eq(class_id))
            .into_tuple::<i64>()
            .all(&pipe.db)
            .await?;
        query = query.filter(
            sea_orm::Condition::any()
                .add(report::Column::ClassId.eq(class_id))
                .add(report::Column::StudentId.is_in(pupils)),
        );
    }
    if let Some(days) = params.older_than_days {
        query = query
            .filter(report::Column::CreatedAt.lt(Utc::now() - chrono::Duration::days(days.into())));
    }
    let doomed = query.all(&pipe.db).await?;
    let deleted =
        crate::reports::store::delete(&pipe.db, ctx, &pipe.settings.reports_dir(), doomed).await?;
    Ok(Ok(serde_json::json!({"deleted": deleted})))
}

/// Whom a notice is for: the registered numbers it reaches, and those it would reach but
/// whose parent opted out (STOP). For the whole school every WhatsApp contact; for a form or a
/// class the contacts linked to its enrolled students. From a `shared` (platform) number, only
/// contacts who have written to the school: any school can import any phone, and the
/// platform's number must not carry one school's messages to another's parents.
pub struct Recipients {
    /// Opted in: the notice goes to these.
    pub send: Vec<String>,
    /// Opted out: skipped, and counted.
    pub opted_out: Vec<String>,
}

pub async fn recipients(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    notice: &notice::Model,
    shared: bool,
) -> Result<Recipients> {
    let mut contacts = ctx
        .find::<whatsapp_contact::Entity>()
        .select_only()
        .column(whatsapp_contact::Column::Phone)
        .column(whatsapp_contact::Column::OptedIn);
    if shared {
        contacts = contacts.filter(whatsapp_contact::Column::LastSeenAt.is_not_null());
    }
    let contacts: BTreeMap<String, bool> = contacts
        .into_tuple::<(String, bool)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    let split = |phones: &mut dyn Iterator<Item = (&String, &bool)>| {
        let (send, opted_out): (Vec<_>, Vec<_>) = phones.partition(|(_, opted_in)| **opted_in);
        Recipients {
            send: send.into_iter().map(|(p, _)| p.clone()).collect(),
            opted_out: opted_out.into_iter().map(|(p, _)| p.clone()).collect(),
        }
    };
    let classes: Vec<i64> = match notice.audience.as_str() {
        audience::FORM => {
            ctx.find::<class::Entity>()
                .select_only()
                .column(class::Column::Id)
                .filter(class::Column::Form.eq(notice.audience_form.clone().unwrap_or_default()))
                .into_tuple()
                .all(db)
                .await?
        }
        audience::CLASS => notice.audience_class_id.into_iter().collect(),
        _ => return Ok(split(&mut contacts.iter())),
    };
    let pupils: Vec<i64> = ctx
        .find::<student::Entity>()
        .select_only()
        .column(student::Column::Id)
        .filter(student::Column::ClassId.is_in(classes))
        .filter(student::Column::Active.eq(true))
        .into_tuple()
        .all(db)
        .await?;
    let linked: BTreeSet<String> = ctx
        .find::<student_mapping::Entity>()
        .select_only()
        .column(student_mapping::Column::Phone)
        .filter(student_mapping::Column::StudentId.is_in(pupils))
        .into_tuple::<String>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    Ok(split(
        &mut contacts
            .iter()
            .filter(|(phone, _)| linked.contains(phone.as_str())),
    ))
}

/// Why a broadcast recipient was skipped: the parent sent STOP.
pub const SKIPPED_OPTED_OUT: &str = "opted_out";

async fn broadcast(
    pipe: &Pipeline,
    ctx: &TenantCtx,
    row: &background_job::Model,
) -> Result<Outcome> {
    let Some(notice_id) = row.params.get("notice_id").and_then(|v| v.as_i64()) else {
        return Ok(Err("unreadable parameters".into()));
    };
    let Some(notice) = ctx
        .find::<notice::Entity>()
        .filter(notice::Column::Id.eq(notice_id))
        .one(&pipe.db)
        .await?
    else {
        return Ok(Err(format!(
            "notice {notice_id} was deleted before it was sent"
        )));
    };
    let Some((provider, number)) = tenancy::sending_number(&pipe.db, ctx).await? else {
        return Ok(Err(
            "this school has no WhatsApp number with sending credentials".into(),
        ));
    };
    let business = match provider {
        Provider::Meta => number.phone_number_id.clone().unwrap_or_default(),
        Provider::Twilio => number.phone_number.clone(),
    };
    let Recipients {
        send: phones,
        opted_out,
    } = recipients(&pipe.db, ctx, &notice, number.shared).await?;
    let mut active: background_job::ActiveModel = row.clone().into();
    active.total = Set(phones.len() as i64);
    active.updated_at = Set(Utc::now());
    active.update(&pipe.db).await?;

    // A retry finds the recipients already queued (their log rows) and queues the rest; the
    // sender's per-message claims keep a recipient queued twice from getting it twice.
    let prefix = broadcast_key_prefix(row.id);
    let queued: BTreeSet<String> = ctx
        .find::<message_log::Entity>()
        .select_only()
        .column(message_log::Column::UserId)
        .filter(message_log::Column::ReplyTo.starts_with(&prefix))
        .into_tuple::<String>()
        .all(&pipe.db)
        .await?
        .into_iter()
        .collect();
    let reply = Reply::Text {
        text: format!("*{}*\n\n{}", notice.title, notice.body),
    };
    let now = Utc::now();
    let fields = tenancy::numbers::NoticeFields {
        school_name: ctx.profile(&pipe.db).await?.name,
        notice_title: notice.title.clone(),
        notice_body: notice.body.clone(),
    };
    // Parents who sent STOP: listed among the recipients as skipped, never sent to.
    for phone in &opted_out {
        if queued.contains(phone.as_str()) {
            continue;
        }
        let mut row = transcript::outbound(
            ctx,
            "whatsapp",
            phone,
            Some(format!("{prefix}{phone}")),
            &reply,
            now,
        );
        row.status = Set("skipped".into());
        row.error = Set(Some(SKIPPED_OPTED_OUT.into()));
        row.payload = Set(None);
        row.insert(&pipe.db).await?;
    }
    for phone in &phones {
        let Ok(parsed) = PhoneNumber::parse(phone) else {
            tracing::warn!(%phone, "unusable contact number skipped");
            continue;
        };
        let key = format!("{prefix}{}", parsed.as_str());
        if !queued.contains(parsed.as_str()) {
            transcript::outbound(
                ctx,
                "whatsapp",
                parsed.as_str(),
                Some(key.clone()),
                &reply,
                now,
            )
            .insert(&pipe.db)
            .await?;
        }
        pipe.queue
            .push(SendJob {
                provider: provider.as_str().to_string(),
                business: business.clone(),
                to: parsed.digits().to_string(),
                replies: vec![reply.clone()],
                reply_to: key,
                conversation: None,
                seq: 0,
                tenant: Some(ctx.schema_name().to_string()),
                inbound_at: None,
                notice: Some(fields.clone()),
                done: Vec::new(),
            })
            .await?;
    }
    tracing::info!(
        notice = notice.id,
        recipients = phones.len(),
        opted_out = opted_out.len(),
        "broadcast queued"
    );
    Ok(Ok(serde_json::json!({
        "notice_id": notice.id,
        "recipients": phones.len(),
        "skipped": {SKIPPED_OPTED_OUT: opted_out.len()},
        "provider": provider.as_str(),
    })))
}

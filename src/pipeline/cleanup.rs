//! Periodic housekeeping, school by school: delete chat sessions that have expired (not those
//! waiting for or answered by staff), report cards older than `CHATBOT_REPORT_RETENTION_DAYS`
//! (files and rows), and parents' transcripts and the record of staff actions on them older
//! than `CHATBOT_TRANSCRIPT_RETENTION_DAYS` (once each settled day's analytics are kept, so
//! the figures outlive them); and the queue's jobs that finished more than a
//! day ago ([`FINISHED_JOBS_KEPT`]). Workers queue it every
//! `CHATBOT_CLEANUP_INTERVAL_MINUTES`.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, QueryFilter};
use serde::{Deserialize, Serialize};

use super::deliver::SendJob;
use super::job::{Job, JobFuture};
use super::shared::Pipeline;
use super::turn::IngestJob;
use super::work::WorkJob;
use crate::entities::{chat_session, conversation_action, message_log};
use crate::error::Result;
use crate::tenancy::{self, TenantCtx};

/// Delete expired chat sessions and old report cards in every tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CleanupJob {
    /// Sessions that expired before this instant are removed; `None` means "now" when the job runs.
    pub expired_before: Option<DateTime<Utc>>,
}

impl Job for CleanupJob {
    const QUEUE: &'static str = "cleanup";
}

/// Worker entry point.
pub fn handle(job: CleanupJob, pipe: Pipeline) -> JobFuture {
    super::shared::measured(pipe.clone(), CleanupJob::QUEUE, async move {
        let cutoff = job.expired_before.unwrap_or_else(Utc::now);
        let reports_cutoff =
            Utc::now() - chrono::Duration::days(pipe.settings.reports.retention_days.into());
        let transcript_cutoff = Utc::now()
            - chrono::Duration::days(pipe.settings.storage.transcript_retention_days.into());
        let (mut removed, mut reports, mut messages) = (0, 0, 0);
        for ctx in tenancy::all(&pipe.db).await? {
            removed += delete_expired_sessions(&pipe.db, &ctx, cutoff).await?;
            // The days' figures are kept before the messages they are counted from go.
            crate::conversation::analytics::settle(&pipe.db, &ctx, Utc::now()).await?;
            messages += delete_old_transcripts(&pipe.db, &ctx, transcript_cutoff).await?;
            reports += crate::reports::store::delete_older_than(
                &pipe.db,
                &ctx,
                &pipe.settings.reports_dir(),
                reports_cutoff,
            )
            .await?;
        }
        let jobs = forget_finished_jobs(&pipe).await?;
        tracing::info!(removed, reports, messages, jobs, %cutoff, "cleanup: expired chat sessions, old report cards, old transcripts and finished jobs removed");
        Ok(())
    })
}

/// How long the queue keeps a finished job (which holds the message or reply it carried):
/// long enough to look into one that failed, and longer than any retry waits (apalis-redis
/// counts a job waiting for its retry as finished).
pub const FINISHED_JOBS_KEPT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Delete every queue's jobs that finished more than [`FINISHED_JOBS_KEPT`] ago.
async fn forget_finished_jobs(pipe: &Pipeline) -> Result<u64> {
    let q = &pipe.queue;
    Ok(q.forget_finished::<IngestJob>(FINISHED_JOBS_KEPT).await?
        + q.forget_finished::<SendJob>(FINISHED_JOBS_KEPT).await?
        + q.forget_finished::<WorkJob>(FINISHED_JOBS_KEPT).await?
        + q.forget_finished::<CleanupJob>(FINISHED_JOBS_KEPT).await?)
}

/// Delete one tenant's sessions that expired before `cutoff`; returns how many.
pub async fn delete_expired_sessions(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    cutoff: DateTime<Utc>,
) -> Result<u64> {
    Ok(ctx
        .delete_many::<chat_session::Entity>()
        .filter(chat_session::Column::ExpiresAt.lt(cutoff))
        // A parent waiting for staff, or talking with them, is not forgotten.
        .filter(chat_session::Column::Handoff.eq(crate::conversation::handoff::BOT))
        .exec(db)
        .await?
        .rows_affected)
}

/// Delete one tenant's transcript rows (and records of staff actions) written before
/// `cutoff`; returns how many messages went.
pub async fn delete_old_transcripts(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    cutoff: DateTime<Utc>,
) -> Result<u64> {
    ctx.delete_many::<conversation_action::Entity>()
        .filter(conversation_action::Column::CreatedAt.lt(cutoff))
        .exec(db)
        .await?;
    Ok(ctx
        .delete_many::<message_log::Entity>()
        .filter(message_log::Column::CreatedAt.lt(cutoff))
        .exec(db)
        .await?
        .rows_affected)
}

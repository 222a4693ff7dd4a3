//! What the pipeline's steps share: one value, built once in `app.rs`, handed to each worker.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use super::converse::Turns;
use super::handle::JobQueue;
use super::job::{JobError, JobFuture};
use crate::channels::graph::GraphClient;
use crate::channels::twilio::TwilioClient;
use crate::config::Settings;
use crate::crypto::SecretKey;
use crate::metrics::Metrics;
use crate::reports::Reports;

/// What the pipeline's workers need. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// Data database.
    pub db: DatabaseConnection,
    /// The job queue and the coordination store beside it.
    pub queue: JobQueue,
    /// Server secret (unseals the schools' provider secrets).
    pub secret: SecretKey,
    /// Settings in force.
    pub settings: Arc<Settings>,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// Graph API client (one connection pool for every send).
    pub graph: GraphClient,
    /// Twilio Messages API client.
    pub twilio: TwilioClient,
    /// What running a conversation's turn needs.
    pub turns: Turns,
    /// Report cards (batches, links).
    pub reports: Reports,
}

/// Run a job's work, counting its outcome and timing it in the metrics.
pub(crate) fn measured(
    pipe: Pipeline,
    queue: &'static str,
    work: impl Future<Output = crate::error::Result<()>> + Send + 'static,
) -> JobFuture {
    Box::pin(async move {
        let started = std::time::Instant::now();
        let result = work.await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        pipe.metrics.inc(
            "chatbot_jobs_total",
            &[("queue", queue), ("outcome", outcome)],
        );
        pipe.metrics.observe(
            "chatbot_job_duration_seconds",
            &[("queue", queue)],
            started.elapsed(),
        );
        result.map_err(|e| Box::new(e) as JobError)
    })
}

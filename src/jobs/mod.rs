//! Background jobs on apalis: Redis when `REDIS_URL` is set, an embedded SQLite queue otherwise.
//!
//! Every job type implements [`Job`] with an explicit, stable queue name (apalis would otherwise
//! name queues after the Rust type path, and renaming a struct would orphan queued jobs).

pub mod cleanup;
mod direct;
pub mod ingest;
pub mod intake;
mod queue;
pub mod send;
pub mod work;

pub use queue::{JobFuture, JobId, JobQueue, Lease, QueueBackendKind, Ready};

use serde::{Serialize, de::DeserializeOwned};

/// A job payload that can be queued.
pub trait Job: Serialize + DeserializeOwned + Clone + Send + Sync + Unpin + 'static {
    /// Stable queue name, e.g. `"cleanup"`; never change it once jobs exist.
    const QUEUE: &'static str;
}

/// A job numbered within its conversation when it is accepted (see `ingest::wait_for_turn`).
pub trait Sequenced: Job {
    /// The conversation the job belongs to.
    fn conversation(&self) -> String;
    /// Its arrival number within that conversation.
    fn set_seq(&mut self, seq: u64);
}

/// The error a job handler returns; the job is retried a few times, then recorded as failed.
pub type JobError = apalis::prelude::BoxDynError;

/// Run a job's work, counting its outcome and timing it in the metrics.
pub(crate) fn measured(
    state: crate::state::AppState,
    queue: &'static str,
    work: impl Future<Output = crate::error::Result<()>> + Send + 'static,
) -> JobFuture {
    Box::pin(async move {
        let started = std::time::Instant::now();
        let result = work.await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        state.metrics.inc(
            "chatbot_jobs_total",
            &[("queue", queue), ("outcome", outcome)],
        );
        state.metrics.observe(
            "chatbot_job_duration_seconds",
            &[("queue", queue)],
            started.elapsed(),
        );
        result.map_err(|e| Box::new(e) as JobError)
    })
}

/// Register every worker of the service on `monitor`.
pub fn register_all(
    monitor: apalis::prelude::Monitor,
    state: &crate::state::AppState,
    generation: u32,
) -> apalis::prelude::Monitor {
    // Each conversation is handled one message at a time and in order whatever the
    // concurrency (see `ingest::wait_for_turn`); different parents are handled side by side.
    let concurrency = state.settings.ingest_concurrency;
    // Woken by other processes' jobs and turns too (Redis), not only at the next poll.
    state.queue.listen();
    let monitor = state.queue.register::<cleanup::CleanupJob>(
        monitor,
        state.clone(),
        cleanup::handle,
        1,
        generation,
    );
    let monitor = state.queue.register::<ingest::IngestJob>(
        monitor,
        state.clone(),
        ingest::handle,
        concurrency,
        generation,
    );
    let monitor = state.queue.register::<send::SendJob>(
        monitor,
        state.clone(),
        send::handle,
        concurrency,
        generation,
    );
    state
        .queue
        .register::<work::WorkJob>(monitor, state.clone(), work::handle, 2, generation)
}

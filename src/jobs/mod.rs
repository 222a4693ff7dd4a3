//! Background jobs on apalis: Redis when `REDIS_URL` is set, an embedded SQLite queue otherwise.
//!
//! Every job type implements [`Job`] with an explicit, stable queue name (apalis would otherwise
//! name queues after the Rust type path, and renaming a struct would orphan queued jobs).
//! `queue` holds the two engines behind one trait, `coord` the coordination beside them
//! (arrival numbers, claims, turn counters, send slots, wake-ups between processes) behind
//! another; `handle` is what the rest of the service uses.

pub mod cleanup;
mod coord;
mod handle;
pub mod ingest;
pub mod intake;
mod job;
mod queue;
pub mod send;
mod wake;
pub mod work;

pub use handle::JobQueue;
pub use job::{Job, JobError, JobFuture, JobId, Sequenced};

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
    let queue = &state.queue;
    let s = state.clone();
    let monitor = queue.register(
        monitor,
        move |job| cleanup::handle(job, s.clone()),
        1,
        generation,
    );
    let s = state.clone();
    let monitor = queue.register(
        monitor,
        move |job| ingest::handle(job, s.clone()),
        concurrency,
        generation,
    );
    let s = state.clone();
    let monitor = queue.register(
        monitor,
        move |job| send::handle(job, s.clone()),
        concurrency,
        generation,
    );
    let s = state.clone();
    queue.register(
        monitor,
        move |job| work::handle(job, s.clone()),
        2,
        generation,
    )
}

//! The life of a message, and the background jobs it runs on (apalis: Redis when `REDIS_URL`
//! is set, an embedded SQLite queue otherwise).
//!
//! 1. **Accept** (`accept`): a webhook hands over a verified, provider-neutral message
//!    (`channels::inbound`). Deliveries arriving together are numbered within their
//!    conversation (provider, business number, sender) in one step, a provider id seen before
//!    keeping its number, then stored as `ingest` jobs in one step, the provider id being the
//!    job's idempotency key; only then does the webhook answer 200 (503 when they could not
//!    be stored: the provider's retry keeps its number and is stored once).
//! 2. **Turn** (`turn`): a worker takes the job; if the conversation's earlier messages are not
//!    through, the job is set aside (not holding a worker) until the turn before it completes
//!    and stores it again. Otherwise it finds the school, runs the conversation engine, logs
//!    the turn (a message already logged is not run again).
//! 3. **Deliver** (`deliver`): the turn's replies go out from the same job, each claimed once,
//!    paced per business number; what cannot go out now becomes a `send` job that retries it.
//!    The turn is then complete, and the parent's next message may go.
//!
//! Beside it: `work` (imports, broadcasts, report cards), `cleanup` (expired sessions, old
//! report cards). Every job type implements [`Job`] with an explicit, stable queue name (apalis
//! would otherwise name queues after the Rust type path, and renaming a struct would orphan
//! queued jobs). `queue` holds the two engines behind one trait, `coord` what the pipeline
//! keeps beside them (arrival numbers, claims, turn counters, send slots, wake-ups between
//! processes) behind another; `handle` is what the rest of the service uses.

pub mod accept;
pub mod cleanup;
mod coord;
pub mod deliver;
mod handle;
mod job;
mod queue;
pub mod turn;
mod wake;
pub mod work;

pub use handle::{Claim, JobQueue};
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
    // concurrency (see `turn::handle`); different parents are handled side by side.
    let concurrency = state.settings.ingest_concurrency;
    // Woken by other processes' jobs too (Redis), not only at the next poll.
    state.queue.listen();
    state
        .queue
        .watch_parked::<turn::IngestJob>(turn::order_patience(state.settings.orphan_timeout_secs));
    let monitor = add(monitor, state, cleanup::handle, 1, generation);
    let monitor = add(monitor, state, turn::handle, concurrency, generation);
    let monitor = add(monitor, state, deliver::handle, concurrency, generation);
    add(monitor, state, work::handle, 2, generation)
}

/// Add the worker of `J`'s queue, running `handle` on each job, `concurrency` at once.
fn add<J: Job>(
    monitor: apalis::prelude::Monitor,
    state: &crate::state::AppState,
    handle: fn(J, crate::state::AppState) -> JobFuture,
    concurrency: usize,
    generation: u32,
) -> apalis::prelude::Monitor {
    let s = state.clone();
    state.queue.register(
        monitor,
        move |job| handle(job, s.clone()),
        concurrency,
        generation,
    )
}

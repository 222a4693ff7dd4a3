//! Background jobs on apalis: Redis when `REDIS_URL` is set, an embedded SQLite queue otherwise.
//!
//! Every job type implements [`Job`] with an explicit, stable queue name (apalis would otherwise
//! name queues after the Rust type path, and renaming a struct would orphan queued jobs).

pub mod cleanup;
pub mod ingest;
mod queue;
pub mod send;

pub use queue::{JobFuture, JobId, JobQueue, QueueBackendKind};

use serde::{Serialize, de::DeserializeOwned};

/// A job payload that can be queued.
pub trait Job: Serialize + DeserializeOwned + Clone + Send + Sync + Unpin + 'static {
    /// Stable queue name, e.g. `"cleanup"`; never change it once jobs exist.
    const QUEUE: &'static str;
}

/// The error a job handler returns; the job is retried a few times, then recorded as failed.
pub type JobError = apalis::prelude::BoxDynError;

/// Register every worker of the service on `monitor`.
pub fn register_all(
    monitor: apalis::prelude::Monitor,
    state: &crate::state::AppState,
) -> apalis::prelude::Monitor {
    // One at a time keeps each parent's messages and replies in order; per-conversation
    // ordering with more concurrency comes with the channel work.
    let monitor =
        state
            .queue
            .register::<cleanup::CleanupJob>(monitor, state.clone(), cleanup::handle, 1);
    let monitor =
        state
            .queue
            .register::<ingest::IngestJob>(monitor, state.clone(), ingest::handle, 1);
    state
        .queue
        .register::<send::SendJob>(monitor, state.clone(), send::handle, 1)
}

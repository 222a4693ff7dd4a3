//! What a job is: a payload with a stable queue name, and what its handler returns.

use serde::{Serialize, de::DeserializeOwned};

/// A job payload that can be queued.
pub trait Job: Serialize + DeserializeOwned + Clone + Send + Sync + Unpin + 'static {
    /// Stable queue name, e.g. `"cleanup"`; never change it once jobs exist.
    const QUEUE: &'static str;
}

/// A job numbered within its conversation when it is accepted (see `turn::handle`).
pub trait Sequenced: Job {
    /// The conversation the job belongs to.
    fn conversation(&self) -> String;
    /// Its arrival number within that conversation (0: unordered).
    fn seq(&self) -> u64;
    /// Its arrival number within that conversation.
    fn set_seq(&mut self, seq: u64);
}

/// The error a job handler returns; the job is retried a few times, then recorded as failed.
pub type JobError = apalis::prelude::BoxDynError;

/// What a job handler returns.
pub type JobFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;

/// The id of a queued job, returned to callers who want to follow it.
pub type JobId = String;

/// What a queue engine or coordination store answers, later; errors in its own words.
pub type Answer<'a, T> = futures::future::BoxFuture<'a, Result<T, String>>;

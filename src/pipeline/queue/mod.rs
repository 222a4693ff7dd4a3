//! The job queue: apalis, on the embedded SQLite file (`sqlite`) or on Redis (`redis`), through
//! apalis' public API only. An engine stores jobs and runs workers; what the jobs say is the
//! pipeline's business, handed to it as JSON.

pub mod redis;
pub mod sqlite;

use std::time::Duration;

pub use super::job::Answer;
use super::job::JobFuture;
use super::wake::WakeStream;

/// How often an idle worker looks for jobs it was not woken for (other processes' on SQLite,
/// a wake-up lost on Redis): the safety net, not the path a reply takes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// A worker that misses this many heartbeats is dead and its in-flight jobs are re-enqueued by
/// the others; the heartbeat is a third of `CHATBOT_ORPHAN_TIMEOUT_SECS` (apalis' Redis default
/// would wait 5 minutes).
pub const MISSED_HEARTBEATS: usize = 3;
/// Retries per job before it is recorded as failed.
pub const RETRIES: usize = 5;

/// A job to store: its id, its JSON, and the key that stores it at most once (apalis'
/// idempotency key: a second job with the same key in the same queue is not stored).
#[derive(Debug)]
pub struct Stored {
    /// Increasing in push order within a process (see [`next_job_id`]).
    pub id: ulid::Ulid,
    /// The job.
    pub json: serde_json::Value,
    /// At most one job per key and queue.
    pub once: Option<String>,
}

/// Runs one job, given as JSON.
pub type Runner = std::sync::Arc<dyn Fn(serde_json::Value) -> JobFuture + Send + Sync>;

/// A worker to add: the queue it takes jobs from, its name, how many jobs it runs at once,
/// what it runs and what wakes it before its poll.
pub struct WorkerSpec {
    /// Namespaced queue name.
    pub queue: String,
    /// Unique per process and generation of workers.
    pub name: String,
    /// Jobs at once.
    pub concurrency: usize,
    /// The job's work.
    pub run: Runner,
    /// Yields when a job of this queue was stored by this process (or heard of).
    pub wake: WakeStream,
}

/// One engine behind the job queue.
pub trait Engine: Send + Sync + 'static {
    /// `"sqlite"` or `"redis"`.
    fn name(&self) -> &'static str;
    /// Whether it answers.
    fn ping(&self) -> Answer<'_, ()>;
    /// Store jobs of `queue` in one step (all or none), in order. `durable`: on disk before
    /// this returns, so a power cut cannot lose them (what a webhook's 200 or an API's 202
    /// stands on); otherwise they may be synced a moment later (a job's follow-up, run again
    /// with the job if both are lost).
    fn push<'a>(&'a self, queue: &'a str, jobs: Vec<Stored>, durable: bool) -> Answer<'a, ()>;
    /// Jobs of `queue` waiting, and running.
    fn depth<'a>(&'a self, queue: &'a str) -> Answer<'a, (u64, u64)>;
    /// Delete `queue`'s finished jobs (done, or failed for good) that finished more than
    /// `older_than` ago, through apalis' `Vacuum`; returns how many went. A finished job still
    /// holds what it carried (a parent's message, a reply), so they are not kept.
    fn forget_finished<'a>(&'a self, queue: &'a str, older_than: Duration) -> Answer<'a, u64>;
    /// Add a worker to `monitor`.
    fn register(
        &self,
        monitor: apalis::prelude::Monitor,
        worker: WorkerSpec,
    ) -> apalis::prelude::Monitor;
    /// The value of one of the embedded queue's connection settings (`None` on Redis).
    fn setting<'a>(&'a self, _name: &'a str) -> Answer<'a, Option<String>> {
        Box::pin(async { Ok(None) })
    }
}

/// Store `jobs` through an apalis storage's sink (one transaction, or one script, for all).
pub async fn push_through<S, K>(mut storage: S, jobs: Vec<Stored>) -> Result<(), String>
where
    S: apalis::prelude::TaskSink<serde_json::Value, K> + Send,
    apalis::prelude::TaskSinkError<S::Error>: std::fmt::Display,
{
    storage
        .push_all(futures::stream::iter(jobs.into_iter().map(task)))
        .await
        .map_err(|e| e.to_string())
}

/// Add `$worker` (a [`WorkerSpec`]) to `$monitor` on `$storage`, an apalis storage of JSON jobs,
/// woken by the worker's wake-ups and polled otherwise; failed jobs are retried with
/// [`backoff`]. A macro: the bounds apalis puts on a worker's backend are many.
macro_rules! add_worker {
    ($monitor:expr, $storage:expr, $worker:expr) => {{
        use apalis::prelude::*;
        let WorkerSpec {
            name,
            concurrency,
            run,
            wake,
            ..
        } = $worker;
        let storage = $storage.poll_with_strategy($crate::pipeline::queue::poll_strategy(wake));
        $monitor.register(move |_| {
            let run = run.clone();
            WorkerBuilder::new(name.clone())
                .backend(storage.clone())
                .concurrency(concurrency)
                .retry(
                    RetryPolicy::retries($crate::pipeline::queue::RETRIES)
                        .with_backoff($crate::pipeline::queue::backoff()),
                )
                .enable_tracing()
                .build(move |job: serde_json::Value| run(job))
        })
    }};
}
pub(crate) use add_worker;

/// When a worker looks for jobs: at once when woken, and every [`POLL_INTERVAL`] otherwise.
pub fn poll_strategy(wake: WakeStream) -> apalis::prelude::Strategy {
    apalis::prelude::Strategy::new()
        .stream(wake)
        .interval(POLL_INTERVAL)
}

/// Exponential backoff with jitter between retries: 0.2 s, 0.4 s, 0.8 s... at most 30 s.
pub fn backoff() -> tower::retry::backoff::ExponentialBackoff {
    use tower::retry::backoff::{ExponentialBackoffMaker, MakeBackoff};
    ExponentialBackoffMaker::new(
        Duration::from_millis(200),
        Duration::from_secs(30),
        0.5,
        tower::util::rng::HasherRng::default(),
    )
    .expect("valid backoff bounds")
    .make_backoff()
}

/// Job ids increase in push order within this process: the SQLite queue fetches by
/// `run_at` (whole seconds), then id, so a random ULID would shuffle jobs pushed in the same
/// second (a parent's burst of messages).
pub fn next_job_id() -> ulid::Ulid {
    static GENERATOR: std::sync::Mutex<ulid::Generator> =
        std::sync::Mutex::new(ulid::Generator::new());
    let mut generator = GENERATOR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Overflow needs 2^80 ids in one millisecond; fall back to a fresh random id.
    generator
        .generate()
        .unwrap_or_else(|_| ulid::Ulid::generate())
}

/// An apalis task of `job`, as both engines store it.
pub fn task(job: Stored) -> apalis::prelude::Task<serde_json::Value> {
    let builder = apalis::prelude::TaskBuilder::new(job.json)
        .task_id(apalis::prelude::TaskId::from_ulid(job.id))
        .max_attempts(RETRIES);
    match job.once {
        Some(key) => builder.idempotency_key(key).build(),
        None => builder.build(),
    }
}

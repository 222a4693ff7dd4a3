//! The pipeline's handle on its queue and coordination store: typed jobs in, JSON to the
//! engine; keys namespaced; errors in the service's words. The engines are chosen once, in
//! [`JobQueue::connect`].

use crate::error::ErrorCode;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::Monitor;

pub use super::coord::Claim;
use super::coord::redis::RedisCoord;
use super::coord::sqlite::SqliteCoord;
use super::coord::{Coord, Overdue, Parked};
use super::job::{Job, JobFuture, JobId, Sequenced};
use super::queue::redis::RedisQueue;
use super::queue::sqlite::SqliteQueue;
use super::queue::{Engine, Runner, Stored, WorkerSpec, next_job_id};
use super::wake::Wakeups;
use crate::config::Settings;
use crate::error::{Error, Result};

/// Remember a provider's message id this long: longer than Meta's retries (up to 7 days).
pub const DEDUPE_TTL: Duration = Duration::from_secs(8 * 24 * 3600);

/// A job set aside whose turn came is stored again by the turn that finished; if that did not
/// happen within this long (its process died in between), any process with workers does it.
const PARKED_GRACE: Duration = Duration::from_secs(5);
/// A patience that never runs out (ten years; `Duration::MAX` does not fit the stores' seconds).
const NEVER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How often a process with workers looks for such jobs.
const PARKED_LOOK: Duration = Duration::from_secs(1);

/// A handle on the job queue; cheap to clone.
#[derive(Clone)]
pub struct JobQueue {
    engine: Arc<dyn Engine>,
    coord: Arc<dyn Coord>,
    namespace: String,
    /// Distinguishes this process' workers from every other's (two processes sharing a worker
    /// name would keep each other's orphaned jobs alive).
    instance: String,
    /// Wakes this process' workers when this process stores a job.
    wakeups: Arc<Wakeups>,
    /// Whether this process looks for overdue jobs set aside already.
    watching: Arc<std::sync::atomic::AtomicBool>,
}

/// A [`JobQueue`] that does not keep it alive (for the tasks it spawns).
struct WeakQueue {
    engine: std::sync::Weak<dyn Engine>,
    coord: std::sync::Weak<dyn Coord>,
    namespace: String,
    instance: String,
    wakeups: std::sync::Weak<Wakeups>,
    watching: Arc<std::sync::atomic::AtomicBool>,
}

impl WeakQueue {
    fn upgrade(&self) -> Option<JobQueue> {
        Some(JobQueue {
            engine: self.engine.upgrade()?,
            coord: self.coord.upgrade()?,
            namespace: self.namespace.clone(),
            instance: self.instance.clone(),
            wakeups: self.wakeups.upgrade()?,
            watching: self.watching.clone(),
        })
    }
}

impl std::fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobQueue")
            .field("backend", &self.engine.name())
            .field("namespace", &self.namespace)
            .finish()
    }
}

fn unavailable(what: &'static str) -> impl Fn(String) -> Error {
    move |e| Error::Unavailable(format!("{what}: {e}"))
}

impl JobQueue {
    /// Connect to Redis (`REDIS_URL`) or open the embedded queue in the data directory: the
    /// one place the engine is chosen.
    pub async fn connect(settings: &Settings) -> Result<Self> {
        let heartbeat = Duration::from_secs(
            (settings.queue.orphan_timeout_secs / super::queue::MISSED_HEARTBEATS as u64).max(1),
        );
        let instance = format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let (engine, coord): (Arc<dyn Engine>, Arc<dyn Coord>) = match &settings.queue.redis_url {
            Some(url) => {
                let unreachable = |e: redis::RedisError| {
                    Error::Unavailable(format!("cannot connect to Redis at {url}: {e}"))
                };
                let client = redis::Client::open(url.expose()).map_err(unreachable)?;
                let conn = super::queue::redis::connect(url.expose())
                    .await
                    .map_err(unreachable)?;
                (
                    Arc::new(RedisQueue::new(conn.clone(), heartbeat, DEDUPE_TTL)),
                    Arc::new(RedisCoord::new(
                        conn,
                        client,
                        &settings.queue.namespace,
                        &instance,
                    )),
                )
            }
            None => {
                let queue = SqliteQueue::open(&settings.queue_sqlite_path(), heartbeat)
                    .await
                    .map_err(Error::Unavailable)?;
                let coord = SqliteCoord::open(queue.pool().clone())
                    .await
                    .map_err(Error::Unavailable)?;
                (Arc::new(queue), Arc::new(coord))
            }
        };
        Ok(Self {
            engine,
            coord,
            namespace: settings.queue.namespace.clone(),
            instance,
            wakeups: Default::default(),
            watching: Default::default(),
        })
    }

    /// `"sqlite"` or `"redis"`.
    pub fn backend_name(&self) -> &'static str {
        self.engine.name()
    }

    /// The namespaced queue name of a job type, e.g. `chatbot:cleanup`.
    pub fn queue_name<J: Job>(&self) -> String {
        self.named(J::QUEUE)
    }

    /// The namespaced name of queue `queue`.
    fn named(&self, queue: &str) -> String {
        format!("{}:{queue}", self.namespace)
    }

    /// The store key of a claim.
    fn once_key(&self, key: &str) -> String {
        format!("{}:once:{key}", self.namespace)
    }

    /// The store key (prefix, on Redis) of a conversation's counters.
    fn conversation_key(&self, conversation: &str) -> String {
        format!("{}:conv:{conversation}", self.namespace)
    }

    /// Check that the queue can be reached.
    pub async fn ping(&self) -> Result<()> {
        match tokio::time::timeout(Duration::from_secs(2), self.engine.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Unavailable(format!("job queue: {e}"))),
            Err(_) => Err(Error::Unavailable("job queue: timed out".to_string())),
        }
    }

    /// The value of one of the embedded queue's settings on its own connection, as text
    /// (`synchronous`, `cache_size`, `journal_mode`, `journal_size_limit`, `temp_store`,
    /// `wal_autocheckpoint`); `None` on Redis. How its durability and memory can be checked.
    pub async fn sqlite_pragma(&self, name: &str) -> Result<Option<String>> {
        self.engine.setting(name).await.map_err(|e| Error::Invalid {
            code: ErrorCode::UnknownSetting,
            message: e,
        })
    }

    /// Accept a batch of deliveries at once (a group commit): each provider key is numbered
    /// within its job's conversation the first time it is seen, and its job is stored once
    /// (the key is the job's idempotency key). A repeat keeps the number it got first and is
    /// stored again only if it never was (the step before failed or the process died), so a
    /// provider's retry of a delivery answered 503 is not lost.
    /// Returns `Some(seq)` per new delivery and `None` per repeat (within `ttl`, or earlier in
    /// the batch). An error means the batch's jobs may not be stored: every caller must answer
    /// that it failed.
    pub async fn accept_many<J: Sequenced>(
        &self,
        deliveries: Vec<(String, J)>,
        ttl: Duration,
    ) -> Result<Vec<Option<u64>>> {
        let keys: Vec<(String, String)> = deliveries
            .iter()
            .map(|(key, job)| {
                (
                    self.once_key(key),
                    self.conversation_key(&job.conversation()),
                )
            })
            .collect();
        let failed = unavailable("cannot accept deliveries");
        let arrivals = self.coord.arrive(&keys, ttl).await.map_err(&failed)?;
        if arrivals.len() != deliveries.len() {
            return Err(failed(format!(
                "{} numbers for {} deliveries",
                arrivals.len(),
                deliveries.len()
            )));
        }
        let mut stored = Vec::with_capacity(deliveries.len());
        let mut in_batch = std::collections::HashSet::new();
        for (((_, mut job), (once, _)), arrival) in deliveries.into_iter().zip(keys).zip(&arrivals)
        {
            // A key twice in one batch is stored once.
            if !in_batch.insert(once.clone()) {
                continue;
            }
            job.set_seq(arrival.seq);
            stored.push(Stored {
                id: next_job_id(),
                json: serde_json::to_value(&job).map_err(|e| failed(e.to_string()))?,
                once: Some(once),
            });
        }
        self.store::<J>(stored, true).await.map_err(&failed)?;
        Ok(arrivals.iter().map(|a| a.new.then_some(a.seq)).collect())
    }

    /// Store `jobs` of `J`'s queue (on disk before this returns when `durable`) and wake the
    /// workers.
    async fn store<J: Job>(
        &self,
        jobs: Vec<Stored>,
        durable: bool,
    ) -> std::result::Result<(), String> {
        self.store_on(J::QUEUE, jobs, durable).await
    }

    /// [`Self::store`] on the queue named `queue` (not namespaced).
    async fn store_on(
        &self,
        queue: &str,
        jobs: Vec<Stored>,
        durable: bool,
    ) -> std::result::Result<(), String> {
        if jobs.is_empty() {
            return Ok(());
        }
        self.engine.push(&self.named(queue), jobs, durable).await?;
        self.wakeups.job_stored(queue);
        self.coord.announce(queue).await;
        Ok(())
    }

    /// Persist a job, on disk before this returns, and return its id. An error means the job
    /// was *not* stored: callers that acknowledged something to a provider must not answer 200.
    pub async fn push<J: Job>(&self, job: J) -> Result<JobId> {
        self.push_as(job, true).await
    }

    /// [`Self::push`] for a job's follow-up: stored when this returns, on disk a moment later
    /// (on the embedded queue: at the next sync, within 50 ms). A power cut in between can lose
    /// it only with the job that pushed it, whose end is not on disk either, so that job runs
    /// again.
    pub async fn push_follow_up<J: Job>(&self, job: J) -> Result<JobId> {
        self.push_as(job, false).await
    }

    async fn push_as<J: Job>(&self, job: J, durable: bool) -> Result<JobId> {
        let id = next_job_id();
        let failed =
            |e: String| Error::Unavailable(format!("cannot enqueue a `{}` job: {e}", J::QUEUE));
        let json = serde_json::to_value(&job).map_err(|e| failed(e.to_string()))?;
        self.store::<J>(
            vec![Stored {
                id,
                json,
                once: None,
            }],
            durable,
        )
        .await
        .map_err(failed)?;
        tracing::debug!(job_id = %id, queue = J::QUEUE, "job enqueued");
        Ok(id.to_string())
    }

    /// Claim `key` for `ttl`: [`Claim::Taken`] the first time, or once an earlier claim
    /// expired; [`Claim::Held`] (and for how much longer) while one lasts. Atomic on both
    /// engines, so of two racing each other one takes it.
    pub async fn claim(&self, key: &str, ttl: Duration) -> Result<Claim> {
        self.coord
            .claim(self.once_key(key), ttl)
            .await
            .map_err(unavailable("dedupe store"))
    }

    /// Undo [`claim`](Self::claim), when the work it guarded could not be done (so
    /// a retry is not mistaken for a duplicate).
    pub async fn release(&self, key: &str) -> Result<()> {
        self.coord
            .release(self.once_key(key))
            .await
            .map_err(unavailable("dedupe store"))
    }

    /// The highest arrival number of `conversation` whose turn is complete (replies sent).
    pub async fn conversation_done(&self, conversation: &str) -> Result<u64> {
        self.coord
            .done(self.conversation_key(conversation))
            .await
            .map_err(unavailable("conversation counter"))
    }

    /// Set `job` aside until its conversation's earlier turns are complete, unless they are:
    /// `true` when it was set aside (the turn before it stores it again when it completes),
    /// `false` when its turn has come. A job waits this way without holding a worker.
    pub async fn park<J: Sequenced>(&self, job: &J) -> Result<bool> {
        if job.seq() <= 1 {
            return Ok(false);
        }
        let failed = unavailable("conversation order");
        let json = serde_json::to_string(job).map_err(|e| failed(e.to_string()))?;
        self.coord
            .park(Parked {
                conversation: self.conversation_key(&job.conversation()),
                seq: job.seq(),
                queue: J::QUEUE.to_string(),
                json,
            })
            .await
            .map_err(failed)
    }

    /// Record that turn `seq` of `conversation` is complete (never moves backwards), and store
    /// again the job set aside for the next turn, if any.
    pub async fn conversation_finished(&self, conversation: &str, seq: u64) -> Result<()> {
        if seq == 0 {
            return Ok(());
        }
        let next = self
            .coord
            .finish(self.conversation_key(conversation), seq)
            .await
            .map_err(unavailable("conversation counter"))?;
        if let Some(next) = next {
            self.restore(next).await?;
        }
        Ok(())
    }

    /// Store a job set aside again (for a moment it may be both stored and set aside: a job
    /// run twice is answered once), then forget it.
    async fn restore(&self, parked: Parked) -> Result<()> {
        let failed = unavailable("conversation order");
        let json = serde_json::from_str(&parked.json).map_err(|e| failed(e.to_string()))?;
        let job = Stored {
            id: next_job_id(),
            json,
            once: None,
        };
        // Its first storing was durable, and the setting aside is undone only after this one.
        self.store_on(&parked.queue, vec![job], false)
            .await
            .map_err(&failed)?;
        tracing::debug!(seq = parked.seq, queue = %parked.queue, "job set aside stored again");
        self.coord
            .unpark(parked.conversation, parked.seq)
            .await
            .map_err(failed)
    }

    /// Store again, now and every second, the jobs set aside that are overdue: their turn came
    /// and the process that should have stored them died, or they waited `patience` for a
    /// turn that never completes (a job lost or failed for good; the turns before them are
    /// given up on, with a warning). Not while jobs of `J` wait on the queue: a predecessor
    /// behind a backlog is late, not lost. Once per process with workers; ends with the queue.
    pub fn watch_parked<J: Job>(&self, patience: Duration) {
        if self
            .watching
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let queue = self.downgrade();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PARKED_LOOK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(queue) = queue.upgrade() else {
                    return;
                };
                // A backlog (or a depth that cannot be read) gives up on nobody.
                let backlog = !matches!(queue.depth::<J>().await, Ok((0, _)));
                let look = Overdue {
                    grace: PARKED_GRACE,
                    patience: if backlog { NEVER } else { patience },
                    limit: 100,
                };
                let overdue = match queue.coord.overdue(look).await {
                    Ok(overdue) => overdue,
                    Err(e) => {
                        tracing::warn!(error = %e, "jobs set aside not looked at; next time");
                        continue;
                    }
                };
                for parked in overdue {
                    tracing::warn!(seq = parked.seq, queue = %parked.queue, "a job set aside was overdue; stored again");
                    if let Err(e) = queue.restore(parked).await {
                        tracing::warn!(error = %e, "a job set aside not stored again; next time");
                    }
                }
            }
        });
    }

    /// A handle that does not keep the queue alive.
    fn downgrade(&self) -> WeakQueue {
        WeakQueue {
            engine: Arc::downgrade(&self.engine),
            coord: Arc::downgrade(&self.coord),
            namespace: self.namespace.clone(),
            instance: self.instance.clone(),
            wakeups: Arc::downgrade(&self.wakeups),
            watching: self.watching.clone(),
        }
    }

    /// Reserve the next sending slot of `key` (a business number) at `per_second` messages per
    /// second, shared by every process on this queue: returns when the caller may send, as
    /// microseconds since the Unix epoch (now, or later when the number is busy). Slots are
    /// spaced evenly (generic cell rate), so no second ever carries more than the limit.
    pub async fn reserve_send_slot(&self, key: &str, per_second: u32) -> Result<i64> {
        let interval = 1_000_000 / i64::from(per_second.max(1));
        let now = chrono::Utc::now().timestamp_micros();
        self.coord
            .reserve(format!("{}:rate:{key}", self.namespace), now, interval)
            .await
            .map_err(unavailable("send rate limiter"))
    }

    /// Jobs of `J` waiting to run, and running now.
    pub async fn depth<J: Job>(&self) -> Result<(u64, u64)> {
        self.engine
            .depth(&self.queue_name::<J>())
            .await
            .map_err(unavailable("job queue"))
    }

    /// Delete `J`'s finished jobs older than `older_than` (see [`Engine::forget_finished`]).
    pub async fn forget_finished<J: Job>(&self, older_than: Duration) -> Result<u64> {
        self.engine
            .forget_finished(&self.queue_name::<J>(), older_than)
            .await
            .map_err(unavailable("job queue"))
    }

    /// Hear other processes' wake-ups (Redis; once per process, for processes that run
    /// workers): a job they stored, a turn they finished.
    pub fn listen(&self) {
        self.coord.listen(Arc::downgrade(&self.wakeups));
    }

    /// Add a worker for `J` to `monitor`, running `run` on each job, `concurrency` at once.
    pub fn register<J: Job>(
        &self,
        monitor: Monitor,
        run: impl Fn(J) -> JobFuture + Send + Sync + 'static,
        concurrency: usize,
        generation: u32,
    ) -> Monitor {
        let queue = self.queue_name::<J>();
        // A new name per generation of workers: a restarted set must not be taken for the old
        // one (Redis refuses a name seen alive within the heartbeat threshold).
        let name = format!("{queue}@{}.{generation}", self.instance);
        let run: Runner = Arc::new(move |json| match serde_json::from_value::<J>(json) {
            Ok(job) => run(job),
            Err(e) => Box::pin(async move {
                Err(format!("a `{}` job that does not read: {e}", J::QUEUE).into())
            }),
        });
        self.engine.register(
            monitor,
            WorkerSpec {
                queue,
                name,
                concurrency,
                run,
                wake: self.wakeups.stream(J::QUEUE),
            },
        )
    }
}

/// The queue's settings, checked when the configuration is loaded.
impl crate::config::Check for crate::config::Queue {
    fn check(&mut self) -> Result<(), crate::config::Problem> {
        use crate::config::keys::queue as key;
        if let Some(url) = &self.redis_url {
            key::redis_url.require_scheme(
                url,
                &["redis://", "rediss://", "redis+unix:"],
                "a redis://",
            )?;
        }
        let ns = &self.namespace;
        key::namespace.require(
            !ns.is_empty()
                && ns.len() <= 64
                && ns
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
            "use 1-64 characters of A-Z, a-z, 0-9, '-', '_', '.'",
        )?;
        key::orphan_timeout_secs.require_within(self.orphan_timeout_secs, 3..=3600, "seconds")?;
        key::ingest_concurrency.require_within(self.ingest_concurrency, 1..=256, "at once")
    }
}

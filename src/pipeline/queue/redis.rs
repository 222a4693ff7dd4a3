//! The queue on Redis (`REDIS_URL`): apalis-redis, for several processes and machines.

use std::sync::LazyLock;
use std::time::Duration;

use apalis::prelude::*;
use apalis_redis::{ConnectionManager, RedisStorage};

use super::{Answer, Engine, Stored, WorkerSpec};

/// Jobs waiting (active list, scheduled set) and running (each registered worker's in-flight
/// set, `{inflight}:{worker name}`), read from the keys apalis' public `Config` names.
static DEPTH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local running = 0 \
         for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], 0, '+inf')) do \
         running = running + redis.call('SCARD', ARGV[1] .. ':' .. name) end \
         return {redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2]), running}",
    )
});

/// Jobs of a queue due to start that no worker has fetched yet, at most. apalis-redis stores
/// every job in its scheduled set (its push gives each a start time, now at the earliest), and
/// a worker's next fetch moves all those due to the active list with one Lua `unpack`, which
/// fails beyond about 8,000 values: past that every fetch fails, so no worker of the queue ever
/// runs a job again (a burst while workers are busy or down, or a broadcast to a large school).
/// A push that would go past this waits for workers to fetch, up to [`ROOM_WAIT`], and is then
/// refused (a webhook answers 503; the provider sends again).
pub const MAX_DUE: u64 = 4_000;
/// How long a push waits for room below [`MAX_DUE`].
const ROOM_WAIT: Duration = Duration::from_secs(2);

/// The queue on Redis.
#[derive(Clone)]
pub struct RedisQueue {
    conn: ConnectionManager,
    heartbeat: Duration,
    /// How long a job's idempotency key keeps a second job with the same key out.
    once_ttl: Duration,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue").finish_non_exhaustive()
    }
}

impl RedisQueue {
    /// The queue on `conn`; jobs stored with an idempotency key keep another with the same key
    /// out for `once_ttl`.
    pub fn new(conn: ConnectionManager, heartbeat: Duration, once_ttl: Duration) -> Self {
        Self {
            conn,
            heartbeat,
            once_ttl,
        }
    }

    fn config(&self, queue: &str) -> apalis_redis::Config {
        apalis_redis::Config::default()
            .queue(queue)
            .heartbeat_interval(self.heartbeat)
            .missed_heartbeats(super::MISSED_HEARTBEATS)
            .idempotency_ttl(Some(self.once_ttl))
            // Workers are woken by the pipeline's own wake-ups (one per batch, not per job).
            .emit_events(false)
    }

    fn storage(&self, queue: &str) -> RedisStorage<serde_json::Value> {
        RedisStorage::new(self.conn.clone()).with_config(self.config(queue))
    }

    /// Wait until `adding` more jobs keep `queue`'s jobs due and not yet fetched within
    /// [`MAX_DUE`] (read from the scheduled set apalis' public `Config` names); an error after
    /// [`ROOM_WAIT`].
    async fn room(&self, queue: &str, adding: usize) -> Result<(), String> {
        let set = self.config(queue).scheduled_jobs_set();
        let deadline = tokio::time::Instant::now() + ROOM_WAIT;
        loop {
            // Scores are Unix seconds; what is due by the next second counts.
            let soon = chrono::Utc::now().timestamp() + 1;
            let due: u64 = redis::cmd("ZCOUNT")
                .arg(&set)
                .arg("-inf")
                .arg(soon)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(|e| e.to_string())?;
            if due + adding as u64 <= MAX_DUE {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the `{queue}` queue is full: {due} jobs wait for a worker to fetch them \
                     (at most {MAX_DUE})"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Engine for RedisQueue {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn ping(&self) -> Answer<'_, ()> {
        Box::pin(async move {
            redis::cmd("PING")
                .query_async::<String>(&mut self.conn.clone())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    /// Durable or not alike: how soon Redis writes is its `appendfsync` setting.
    fn push<'a>(&'a self, queue: &'a str, jobs: Vec<Stored>, _durable: bool) -> Answer<'a, ()> {
        Box::pin(async move {
            self.room(queue, jobs.len()).await?;
            super::push_through(self.storage(queue), jobs).await
        })
    }

    fn depth<'a>(&'a self, queue: &'a str) -> Answer<'a, (u64, u64)> {
        Box::pin(async move {
            let config = self.config(queue);
            DEPTH
                .key(config.active_jobs_list())
                .key(config.scheduled_jobs_set())
                .key(config.workers_set())
                .arg(config.inflight_jobs_set())
                .invoke_async::<(u64, u64)>(&mut self.conn.clone())
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn forget_finished<'a>(&'a self, queue: &'a str, older_than: Duration) -> Answer<'a, u64> {
        Box::pin(async move {
            // apalis-redis' vacuum counts a job waiting for a retry as finished ("Failed"):
            // `older_than` must be longer than any retry's wait (seconds, here).
            let gone =
                apalis_core::backend::Vacuum::vacuum_before(&mut self.storage(queue), older_than)
                    .await
                    .map_err(|e| e.to_string())?;
            Ok(gone as u64)
        })
    }

    fn register(&self, monitor: Monitor, worker: WorkerSpec) -> Monitor {
        let storage = self.storage(&worker.queue);
        super::add_worker!(monitor, storage, worker)
    }
}

/// A Redis connection manager that fails fast when Redis is down (so a webhook answers 503 and
/// the provider retries) but tolerates slow answers: redis-rs' default 500 ms response timeout
/// turns one Redis stall into a stream error that stops apalis' worker pool.
pub async fn connect(url: &str) -> Result<ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    client.get_connection_manager_with_config(config).await
}

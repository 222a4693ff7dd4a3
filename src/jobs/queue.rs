//! The one queue interface over the two apalis backends.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_redis::{ConnectionManager, RedisStorage};
use apalis_sqlite::SqliteStorage;
use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteConnection, SqlitePool, SqlitePoolOptions,
};
use tokio::sync::Notify;

use super::direct::{Arg, Direct};
use super::{Job, JobError, Sequenced};
use crate::config::{SecretUrl, Settings};
use crate::error::{Error, Result};
use crate::state::AppState;

/// How often an idle worker looks for new jobs.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// A worker that misses this many heartbeats is dead and its in-flight jobs are re-enqueued by
/// the others; the heartbeat is a third of `CHATBOT_ORPHAN_TIMEOUT_SECS` (apalis' Redis default
/// would wait 5 minutes).
const MISSED_HEARTBEATS: usize = 3;
/// A claim in the queue's SQLite file: a new row, or nothing for a key already there.
const CLAIM_SQL: &str = "INSERT OR IGNORE INTO chatbot_once (key, expires_at) VALUES (?, ?)";
/// Conversation counters and rate-limit slots outlive any retry of their jobs.
const CONVERSATION_TTL: Duration = Duration::from_secs(8 * 24 * 3600);
/// How often the embedded queue's WAL is copied back into its file (see [`checkpoints`]).
/// Each checkpoint ends with a sync of the database file, and the writer's next commit sync
/// waits behind it; the less each copies, the shorter that wait. On a slow 2-core machine,
/// webhook p99 at 2,000 deliveries/s: every 200 ms 12.6-33.6 ms (three runs), every 50 ms
/// 5.1-13.1 ms, median 6.7 (five runs), with no checkpoints at all 5.4 ms; same saturation rate
/// (measured while SQLite still synced with fsync; see `.cargo/config.toml`).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// WAL pages (4 KB) past which the embedded queue's writer checkpoints at the end of a commit.
const WAL_AUTOCHECKPOINT_PAGES: &str = "4000";
/// How long a connection to the embedded queue waits for another's lock (another process').
const BUSY_TIMEOUT_MS: i32 = 10_000;
/// The embedded queue's page cache, in KiB (negative: SQLite's unit for a size, not pages).
/// Bounded: the page cache is walked whole at the end of any transaction that split a B-tree
/// page (SQLite parks a page at the lock page's number while it sorts the new pages), so its
/// size is paid on every commit.
const CACHE_SIZE: &str = "-16384";
/// The size the embedded queue's WAL is cut back to after a checkpoint, in bytes.
const JOURNAL_SIZE_LIMIT: &str = "67108864";
/// How every connection to the embedded queue's file opens it (see [`sqlite_options`]).
const FILE_PRAGMAS: [(&str, &str); 2] = [("journal_mode", "WAL"), ("synchronous", "FULL")];
/// The further settings of the connections that write to it: the pool's and the intake
/// writer's own ([`direct_setup`]).
const WRITER_PRAGMAS: [(&str, &str); 4] = [
    // Temporary tables (the batch tables) and sorts in memory.
    ("temp_store", "memory"),
    ("cache_size", CACHE_SIZE),
    // The checkpoint task copies the WAL back; past this many pages the writer finishes the
    // copy itself, so the WAL starts over even under steady load.
    ("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES),
    ("journal_size_limit", JOURNAL_SIZE_LIMIT),
];
/// Retries per job before it is recorded as failed.
const RETRIES: usize = 5;
/// The batch tables of [`ACCEPT_SQL`], on the intake writer's own connection ([`Direct`]),
/// which alone runs it: the batch's deliveries, and its values common to all of them.
const BATCH_TABLE_SQL: &str = "CREATE TEMP TABLE IF NOT EXISTS chatbot_batch (\
     pos INTEGER PRIMARY KEY, once_key TEXT NOT NULL, conversation TEXT NOT NULL, \
     fresh INTEGER NOT NULL DEFAULT 0, seq INTEGER);
CREATE TEMP TABLE IF NOT EXISTS chatbot_batch_args (\
     one INTEGER PRIMARY KEY CHECK (one = 1), expires_at INTEGER NOT NULL, now INTEGER NOT NULL, \
     queue TEXT NOT NULL, attempts INTEGER NOT NULL, metadata TEXT NOT NULL)";
/// Accept a batch of deliveries on SQLite, one transaction. Its values are bound in order,
/// statement after statement (`?`, never numbered: sqlx looked each numbered one up by name,
/// which SQLite finds by walking a list): when the claims expire, now, the queue, attempts,
/// apalis' metadata; then `{keys}`, each delivery's once key and conversation key in arrival
/// order; then `{jobs}`, each delivery's job id and job JSON before its number and after it
/// (see [`accept_sql`]). Bound as values, not as one JSON document, which SQLite parsed once
/// per field of each row (an eighth of a whole webhook request's instructions). The jobs' JSON goes straight into `Jobs`, never into the batch
/// table, whose rows are rewritten twice (`CROSS JOIN` keeps the rows in their order and
/// unmaterialized: SQLite would otherwise copy them first).
/// A delivery is fresh when its key is not claimed yet and it is its key's first in the
/// batch; each conversation's counter goes up by its fresh deliveries, which take the numbers
/// just below the new value in arrival order; the job rows are written as apalis-sqlite's own
/// `push_tasks` writes them (queries/task/sink.sql, schema pinned with apalis 1.0; the
/// end-to-end tests run these rows through apalis' workers), which fetches them in order of
/// their ids (see [`next_job_id`]). The one row returned is the JSON array of numbers, null for
/// a repeat.
const ACCEPT_SQL: &str = "BEGIN IMMEDIATE;
DELETE FROM temp.chatbot_batch;
INSERT OR REPLACE INTO temp.chatbot_batch_args (one, expires_at, now, queue, attempts, metadata)
    VALUES (1, ?, ?, ?, ?, ?);
INSERT INTO temp.chatbot_batch (pos, once_key, conversation)
    SELECT column1, column2, column3 FROM (VALUES {keys}) WHERE column2 IS NOT NULL;
UPDATE temp.chatbot_batch SET fresh = 1 WHERE pos IN (
    SELECT min(pos) FROM temp.chatbot_batch AS b
    WHERE NOT EXISTS (SELECT 1 FROM main.chatbot_once AS o WHERE o.key = b.once_key)
    GROUP BY once_key);
INSERT INTO main.chatbot_once (key, expires_at)
    SELECT once_key, a.expires_at FROM temp.chatbot_batch, temp.chatbot_batch_args AS a
    WHERE fresh ORDER BY pos;
INSERT INTO main.chatbot_conversation (key, seq, done, touched_at)
    SELECT conversation, count(*), 0, a.now FROM temp.chatbot_batch, temp.chatbot_batch_args AS a
    WHERE fresh GROUP BY conversation
    ON CONFLICT (key) DO UPDATE SET seq = seq + excluded.seq, touched_at = excluded.touched_at;
UPDATE temp.chatbot_batch SET seq = c.seq - r.later
    FROM (SELECT pos, row_number() OVER (PARTITION BY conversation ORDER BY pos DESC) - 1
              AS later
          FROM temp.chatbot_batch WHERE fresh) AS r,
         main.chatbot_conversation AS c
    WHERE r.pos = chatbot_batch.pos AND c.key = chatbot_batch.conversation;
INSERT INTO main.Jobs (job, id, job_type, status, attempts, max_attempts, run_at, priority,
                       metadata, idempotency_key)
    SELECT CAST(j.column3 || b.seq || j.column4 AS BLOB), j.column2, a.queue, 'Pending', 0,
           a.attempts, a.now, 0, a.metadata, NULL
    FROM (VALUES {jobs}) AS j CROSS JOIN temp.chatbot_batch AS b
         CROSS JOIN temp.chatbot_batch_args AS a
    WHERE b.pos = j.column1 AND b.fresh;
SELECT json_group_array(seq ORDER BY pos) FROM temp.chatbot_batch;
COMMIT;";
/// Most deliveries [`accept_sql`] takes at once: 4,096 rows of three values, within SQLite's
/// 32,766 a statement.
const ACCEPT_MAX_ROWS: usize = 4096;

/// [`ACCEPT_SQL`] with room for `rows` deliveries, rounded up to a power of two so that a
/// handful of scripts, each prepared once and kept by the writer's connection ([`Direct`]),
/// serve every batch size; values left unbound are NULL, and such rows are skipped.
fn accept_sql(rows: usize) -> std::result::Result<&'static str, String> {
    const SIZES: usize = ACCEPT_MAX_ROWS.trailing_zeros() as usize + 1;
    static SCRIPTS: [std::sync::OnceLock<String>; SIZES] =
        [const { std::sync::OnceLock::new() }; SIZES];
    if rows > ACCEPT_MAX_ROWS {
        return Err(format!(
            "{rows} deliveries at once; at most {ACCEPT_MAX_ROWS}"
        ));
    }
    let room = accept_room(rows);
    Ok(SCRIPTS[room.trailing_zeros() as usize].get_or_init(|| {
        let rows = |values: &str| {
            (0..room)
                .map(|pos| format!("({pos}, {values})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        ACCEPT_SQL
            .replace("{keys}", &rows("?, ?"))
            .replace("{jobs}", &rows("?, ?, ?"))
    }))
}

/// Rows of the [`accept_sql`] script that takes `rows` deliveries.
fn accept_room(rows: usize) -> usize {
    rows.max(1).next_power_of_two()
}

/// apalis' metadata of a job pushed with no options, as its `push_tasks` stores it.
static METADATA: LazyLock<String> = LazyLock::new(|| {
    serde_json::to_string(TaskBuilder::new(()).build().metadata()).unwrap_or_default()
});

/// Exponential backoff with jitter between retries: 0.2 s, 0.4 s, 0.8 s... at most 30 s.
fn backoff() -> tower::retry::backoff::ExponentialBackoff {
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

// Lua scripts, hashed once (redis-rs sends their SHA and loads them on first use).
/// Accept a batch of deliveries in one step. For each delivery (a pair of keys, four
/// arguments): claim it (`SET NX EX` on its once key); the first time, count its conversation
/// (`INCR`, kept alive for ARGV[2] s) and store its job as apalis-redis' own push does: its
/// metadata hash (prefix ARGV[3]), its JSON in the data hash KEYS[1] with the number written
/// between its two pieces, its id in the scheduled set KEYS[2] at ARGV[4]; the last two for
/// the whole batch at once. Returns the numbers, 0 for a repeat.
///
/// apalis' own push costs a second round trip after the claims, decodes each job's metadata
/// as JSON in Lua and makes three calls per job where this makes one.
static ACCEPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local out, data, due = {}, {}, {} \
         local a = 5 \
         for i = 3, #KEYS, 2 do \
         if redis.call('SET', KEYS[i], 1, 'NX', 'EX', ARGV[1]) then \
         local n = redis.call('INCR', KEYS[i + 1]) \
         redis.call('EXPIRE', KEYS[i + 1], ARGV[2]) \
         local id = ARGV[a] \
         redis.call('HSET', ARGV[3] .. ':' .. id, 'attempts', 0, 'max_attempts', ARGV[a + 3], \
         'status', 'Pending', 'idempotency_key', '') \
         data[#data + 1] = id \
         data[#data + 1] = ARGV[a + 1] .. string.format('%d', n) .. ARGV[a + 2] \
         due[#due + 1] = ARGV[4] \
         due[#due + 1] = id \
         out[#out + 1] = n \
         else out[#out + 1] = 0 end \
         a = a + 4 \
         end \
         if #data > 0 then \
         redis.call('HSET', KEYS[1], unpack(data)) \
         redis.call('ZADD', KEYS[2], unpack(due)) \
         end \
         return out",
    )
});

/// Raise a conversation's "done" number (KEYS[1]) to ARGV[1], never lower it, and say so on
/// channel ARGV[3] as process ARGV[4] (messages of other processes waiting for it go on).
static FINISH_TURN: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local d = tonumber(redis.call('GET', KEYS[1]) or '0') \
         if tonumber(ARGV[1]) > d then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end \
         redis.call('PUBLISH', ARGV[3], ARGV[4]) \
         return 0",
    )
});

/// Reserve the next evenly spaced sending slot (KEYS[1] holds the next free time).
static RESERVE_SLOT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local tat = tonumber(redis.call('GET', KEYS[1]) or '0') \
         local slot = math.max(tat, tonumber(ARGV[1])) \
         redis.call('SET', KEYS[1], string.format('%d', slot + tonumber(ARGV[2])), 'EX', 3600) \
         return string.format('%d', slot)",
    )
});

/// Jobs waiting (active list, scheduled set) and running (each registered worker's in-flight
/// set, `{inflight}:{worker name}`).
static DEPTH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local running = 0 \
         for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], 0, '+inf')) do \
         running = running + redis.call('SCARD', ARGV[1] .. ':' .. name) end \
         return {redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2]), running}",
    )
});

/// The id of a queued job, returned to callers who want to follow it.
pub type JobId = String;

/// What a job handler returns.
pub type JobFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;

/// Which engine holds the jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueBackendKind {
    /// Embedded SQLite file in the data dir.
    Sqlite,
    /// Redis.
    Redis,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Redis(ConnectionManager),
}

/// A hold on the embedded queue's pool connection across accepted batches (nothing on Redis),
/// and the writer's own connection ([`Direct`]), which writes the batches while the pool's is
/// held. A connection given back to sqlx's pool is returned by a spawned task that first pings
/// the connection's thread; under load that took about a quarter of each batch's time, during
/// which the queue's one writer stood idle. The intake keeps the hold while deliveries keep
/// coming and gives it back when they pause or after a while, so that the queue's other users
/// (the workers, `/readyz`) get their turn.
#[derive(Default)]
pub struct Lease {
    conn: Option<PoolConnection<Sqlite>>,
    since: Option<Instant>,
    /// Kept from one hold to the next; opened on first use, closed after a failed batch.
    direct: Option<Direct>,
}

impl Lease {
    /// How long the lease has held a connection (zero when it holds none).
    pub fn held_for(&self) -> Duration {
        self.since.map(|t| t.elapsed()).unwrap_or_default()
    }

    /// Give the pool's connection back (the writer's own stays open).
    pub fn release(&mut self) {
        self.conn = None;
        self.since = None;
    }

    async fn take(
        &mut self,
        pool: &SqlitePool,
    ) -> std::result::Result<PoolConnection<Sqlite>, sea_orm::sqlx::Error> {
        match self.conn.take() {
            Some(conn) => Ok(conn),
            None => {
                let conn = pool.acquire().await?;
                self.since = Some(Instant::now());
                Ok(conn)
            }
        }
    }

    /// Keep `conn` for the next batch.
    fn keep(&mut self, conn: PoolConnection<Sqlite>) {
        self.conn = Some(conn);
    }

    /// The writer's own connection to the queue's file at `path`, opened if need be.
    fn direct(&mut self, path: &Path) -> std::result::Result<&mut Direct, String> {
        if self.direct.is_none() {
            self.direct = Some(Direct::open(path, BUSY_TIMEOUT_MS, &direct_setup())?);
        }
        Ok(self.direct.as_mut().expect("opened above"))
    }
}

/// A delivery made ready for [`JobQueue::accept_leased`] in its request's own task, so that
/// the batch's one writer only numbers and stores it: its claim key, its conversation's
/// counter key, and its job's JSON in two pieces around the arrival number.
pub struct Ready<J> {
    once_key: String,
    conversation: String,
    head: String,
    tail: String,
    job: std::marker::PhantomData<fn() -> J>,
}

/// A handle on the job queue; cheap to clone.
#[derive(Clone)]
pub struct JobQueue {
    backend: Backend,
    namespace: String,
    /// Distinguishes this process' workers from every other's (two processes sharing a worker
    /// name would keep each other's orphaned jobs alive).
    instance: String,
    heartbeat: Duration,
    /// When expired dedupe claims were last deleted (SQLite), Unix seconds.
    last_purge: std::sync::Arc<AtomicI64>,
    /// Wakes this process' workers when this process enqueues, or finishes a turn.
    wakeups: std::sync::Arc<Wakeups>,
    /// On Redis, where processes tell each other's workers (see [`JobQueue::listen`]).
    redis_client: Option<redis::Client>,
    /// Held by every clone; the embedded queue's checkpoint task stops when the last is gone.
    _alive: std::sync::Arc<()>,
}

/// In-process wake-ups: a worker of this process starts on a job this process enqueued as soon
/// as it is stored, and a message waiting for its conversation's earlier turn goes on as soon
/// as a turn of this process finishes, instead of at their next poll. (Jobs enqueued by other
/// processes are found by the poll, which stays as the safety net.)
#[derive(Default, Debug)]
pub struct Wakeups {
    queues: std::sync::Mutex<std::collections::HashMap<&'static str, std::sync::Arc<Notify>>>,
    turns: Notify,
    /// Whether this process listens to the others' (Redis).
    listening: std::sync::atomic::AtomicBool,
}

impl Wakeups {
    /// The wake-up of queue `name`.
    fn queue(&self, name: &'static str) -> std::sync::Arc<Notify> {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name)
            .or_default()
            .clone()
    }

    /// Tell `name`'s worker in this process that a job is waiting (a wake-up given while it is
    /// busy is kept for when it next looks).
    fn job_stored(&self, name: &'static str) {
        self.queue(name).notify_one();
    }

    /// A wake-up from another process: a job of queue `name` is waiting, or (`None`) a turn
    /// finished. Queues without a worker here are not woken.
    fn heard(&self, name: Option<&str>) {
        match name {
            None => self.turns.notify_waiters(),
            Some(name) => {
                let queue = self
                    .queues
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(name)
                    .cloned();
                if let Some(queue) = queue {
                    queue.notify_one();
                }
            }
        }
    }

    /// A stream that yields once after each wake-up of queue `name` (several wake-ups between
    /// two looks make one).
    fn stream(
        &self,
        name: &'static str,
    ) -> std::pin::Pin<Box<dyn futures::Stream<Item = ()> + Send + Sync>> {
        let notify = self.queue(name);
        Box::pin(futures::stream::unfold(notify, |notify| async move {
            notify.notified().await;
            Some(((), notify))
        }))
    }

    /// Notified (all waiters at once) when a turn of this process finishes: arm a
    /// `notified()` before looking at the counters, then wait on it.
    pub fn turns(&self) -> &Notify {
        &self.turns
    }
}

impl std::fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobQueue")
            .field("backend", &self.kind())
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl JobQueue {
    /// Connect to Redis (`REDIS_URL`) or open the embedded queue, creating its tables.
    pub async fn connect(settings: &Settings) -> Result<Self> {
        let alive = std::sync::Arc::new(());
        let redis_client = match &settings.redis_url {
            Some(url) => Some(redis::Client::open(url.expose()).map_err(|e| {
                Error::Unavailable(format!("cannot connect to Redis at {url}: {e}"))
            })?),
            None => None,
        };
        let backend = match &settings.redis_url {
            Some(url) => Backend::Redis(connect_redis(url).await?),
            None => {
                let path = settings.queue_sqlite_path();
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        Error::Internal(anyhow::anyhow!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                let options = WRITER_PRAGMAS.iter().fold(
                    sqlite_options(&path)
                        .create_if_missing(true)
                        .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS as u64)),
                    |options, &(name, value)| options.pragma(name, value),
                );
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    // A local file: a ping before every use was one more trip to the
                    // connection's thread per accepted batch.
                    .test_before_acquire(false)
                    .connect_with(options)
                    .await
                    .map_err(|e| {
                        Error::Unavailable(format!(
                            "cannot open the job queue {}: {e}",
                            path.display()
                        ))
                    })?;
                // apalis' tables and indexes, without `SqliteStorage::setup`'s pragmas: those
                // turned `synchronous` off on this connection (a power cut could lose
                // acknowledged deliveries, or corrupt the file) and gave it a 250 MB page cache.
                SqliteStorage::migrations().run(&pool).await.map_err(|e| {
                    Error::Unavailable(format!(
                        "cannot set up the job queue {}: {e}",
                        path.display()
                    ))
                })?;
                for ddl in [
                    "CREATE TABLE IF NOT EXISTS chatbot_once (key TEXT PRIMARY KEY NOT NULL, expires_at INTEGER NOT NULL)",
                    "CREATE INDEX IF NOT EXISTS chatbot_once_expires ON chatbot_once (expires_at)",
                    "CREATE TABLE IF NOT EXISTS chatbot_conversation (key TEXT PRIMARY KEY NOT NULL, seq INTEGER NOT NULL, done INTEGER NOT NULL, touched_at INTEGER NOT NULL)",
                    "CREATE TABLE IF NOT EXISTS chatbot_rate (key TEXT PRIMARY KEY NOT NULL, tat INTEGER NOT NULL)",
                    // Every index of apalis' `Jobs` is one more B-tree write per accepted job.
                    // apalis 1.0's own later migrations drop the first three (they repeat the
                    // unique `id` and `idx_jobs_status_run_at`); the fourth is served by
                    // `idx_jobs_status_run_at` (status) and the partial fetch indexes
                    // (`idx_jobs_pending`, `idx_jobs_failed`, by job type).
                    "DROP INDEX IF EXISTS TIdx",
                    "DROP INDEX IF EXISTS JTIdx",
                    "DROP INDEX IF EXISTS SIdx",
                    "DROP INDEX IF EXISTS idx_jobs_job_type_status_run_at",
                ] {
                    sea_orm::sqlx::query(ddl)
                        .execute(&pool)
                        .await
                        .map_err(|e| {
                            Error::Unavailable(format!("cannot set up the queue's tables: {e}"))
                        })?;
                }
                tokio::spawn(checkpoints(path, std::sync::Arc::downgrade(&alive)));
                Backend::Sqlite(pool)
            }
        };
        Ok(Self {
            backend,
            namespace: settings.queue_namespace.clone(),
            instance: format!(
                "{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            last_purge: Default::default(),
            wakeups: Default::default(),
            redis_client,
            _alive: alive,
            heartbeat: Duration::from_secs(
                (settings.orphan_timeout_secs / MISSED_HEARTBEATS as u64).max(1),
            ),
        })
    }

    /// Which engine this queue runs on.
    pub fn kind(&self) -> QueueBackendKind {
        match self.backend {
            Backend::Sqlite(_) => QueueBackendKind::Sqlite,
            Backend::Redis(_) => QueueBackendKind::Redis,
        }
    }

    /// `"sqlite"` or `"redis"`.
    pub fn backend_name(&self) -> &'static str {
        match self.kind() {
            QueueBackendKind::Sqlite => "sqlite",
            QueueBackendKind::Redis => "redis",
        }
    }

    /// The namespaced queue name of a job type, e.g. `chatbot:cleanup`.
    pub fn queue_name<J: Job>(&self) -> String {
        format!("{}:{}", self.namespace, J::QUEUE)
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
        let check = async {
            match &self.backend {
                Backend::Sqlite(pool) => sea_orm::sqlx::query("SELECT 1")
                    .execute(pool)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Backend::Redis(conn) => {
                    let mut conn = conn.clone();
                    redis::cmd("PING")
                        .query_async::<String>(&mut conn)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(2), check).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Unavailable(format!("job queue: {e}"))),
            Err(_) => Err(Error::Unavailable("job queue: timed out".to_string())),
        }
    }

    /// The value of one of the embedded queue's settings on its own connection, as text
    /// (`synchronous`, `cache_size`, `journal_mode`, `journal_size_limit`, `temp_store`,
    /// `wal_autocheckpoint`); `None` on Redis. How its durability and memory can be checked.
    pub async fn sqlite_pragma(&self, name: &str) -> Result<Option<String>> {
        let Backend::Sqlite(pool) = &self.backend else {
            return Ok(None);
        };
        let sql = match name {
            "synchronous" => "PRAGMA synchronous",
            "cache_size" => "PRAGMA cache_size",
            "journal_mode" => "PRAGMA journal_mode",
            "journal_size_limit" => "PRAGMA journal_size_limit",
            "temp_store" => "PRAGMA temp_store",
            "wal_autocheckpoint" => "PRAGMA wal_autocheckpoint",
            _ => {
                return Err(Error::Invalid {
                    code: "unknown_setting",
                    message: format!("not one of the queue's settings: {name:?}"),
                });
            }
        };
        let row = sea_orm::sqlx::query(sql)
            .fetch_optional(pool)
            .await
            .map_err(|e| Error::Unavailable(format!("job queue: {e}")))?;
        use sea_orm::sqlx::Row;
        Ok(row.and_then(|row| {
            row.try_get::<String, _>(0)
                .or_else(|_| row.try_get::<i64, _>(0).map(|n| n.to_string()))
                .ok()
        }))
    }

    /// Accept a batch of deliveries at once (a group commit): claim each key once and, for a
    /// new one, give its job the next arrival number of its conversation and store the job. One
    /// transaction on SQLite; one script on Redis.
    /// Returns `Some(seq)` per new delivery and `None` per repeat (within `ttl`, or earlier in
    /// the batch). An error means no job of the batch was stored and no claim kept, so every
    /// caller must answer that it failed.
    pub async fn accept_many<J: Sequenced>(
        &self,
        deliveries: Vec<(String, J)>,
        ttl: Duration,
    ) -> Result<Vec<Option<u64>>> {
        let ready = deliveries
            .into_iter()
            .map(|(key, job)| self.ready(&key, job))
            .collect::<Result<Vec<_>>>()?;
        self.accept_leased(&mut Lease::default(), ready, ttl).await
    }

    /// Make a delivery (its provider key and job) ready for [`Self::accept_leased`].
    pub fn ready<J: Sequenced>(&self, key: &str, mut job: J) -> Result<Ready<J>> {
        let conversation = self.conversation_key(&job.conversation());
        job.set_seq(0);
        let json = serde_json::to_string(&job)
            .map_err(|e| Error::Internal(anyhow::anyhow!("cannot write a job as JSON: {e}")))?;
        let (head, tail) = split_at_seq(&json).map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
        Ok(Ready {
            once_key: self.once_key(key),
            conversation,
            head: head.to_string(),
            tail: tail.to_string(),
            job: std::marker::PhantomData,
        })
    }

    /// [`Self::accept_many`] on the embedded queue's connection held in `lease` (taken from
    /// the pool first when the lease holds none); the connection stays in the lease afterwards,
    /// for the next batch, unless the batch failed.
    pub async fn accept_leased<J: Sequenced>(
        &self,
        lease: &mut Lease,
        deliveries: Vec<Ready<J>>,
        ttl: Duration,
    ) -> Result<Vec<Option<u64>>> {
        let queue = self.queue_name::<J>();
        let accepted = match &self.backend {
            Backend::Sqlite(pool) => match lease.take(pool).await {
                Ok(mut conn) => {
                    self.purge_expired(&mut *conn).await;
                    // Written on the writer's own connection while the pool's is held.
                    let options = pool.connect_options();
                    let accepted = lease
                        .direct(options.get_filename())
                        .and_then(|direct| accept_sqlite(direct, &queue, deliveries, ttl));
                    if accepted.is_err()
                        && let Some(direct) = &mut lease.direct
                        && direct.in_transaction()
                        && let Err(e) = direct.exec("ROLLBACK")
                    {
                        // Closing it ends the transaction; the next batch opens a new one.
                        tracing::error!(error = %e, "cannot roll back a failed batch; closing the writer's connection");
                        lease.direct = None;
                    }
                    // The pool's connection goes back after a failed batch, for the others.
                    if accepted.is_ok() {
                        lease.keep(conn);
                    } else {
                        lease.release();
                    }
                    accepted
                }
                Err(e) => Err(e.to_string()),
            },
            Backend::Redis(conn) => self.accept_redis(conn, &queue, deliveries, ttl).await,
        };
        let numbers =
            accepted.map_err(|e| Error::Unavailable(format!("cannot accept deliveries: {e}")))?;
        if numbers.iter().any(Option::is_some) {
            self.wakeups.job_stored(J::QUEUE);
            self.publish_job_stored(J::QUEUE).await;
        }
        Ok(numbers)
    }

    /// The Redis side of [`Self::accept_many`]: one script for the whole batch (see
    /// [`ACCEPT`]). Each job's JSON goes in two pieces around its arrival number, which only the
    /// script knows. A failed call stored nothing unless Redis failed inside the script, which
    /// these commands do not do on keys of their own types.
    async fn accept_redis<J>(
        &self,
        conn: &ConnectionManager,
        queue: &str,
        deliveries: Vec<Ready<J>>,
        ttl: Duration,
    ) -> std::result::Result<Vec<Option<u64>>, String> {
        let config = redis_config(queue, self.heartbeat);
        let mut accept = ACCEPT.prepare_invoke();
        accept
            .key(config.job_data_hash())
            .key(config.scheduled_jobs_set())
            .arg(ttl.as_secs().max(1))
            .arg(CONVERSATION_TTL.as_secs())
            .arg(config.job_meta_hash())
            .arg(chrono::Utc::now().timestamp());
        let count = deliveries.len();
        for ready in deliveries {
            accept
                .key(ready.once_key)
                .key(format!("{}:seq", ready.conversation))
                .arg(next_job_id().to_string())
                .arg(ready.head)
                .arg(ready.tail)
                .arg(RETRIES);
        }
        let numbers: Vec<u64> = accept
            .invoke_async(&mut conn.clone())
            .await
            .map_err(|e| e.to_string())?;
        if numbers.len() != count {
            return Err(format!("{} answers for {count} deliveries", numbers.len()));
        }
        Ok(numbers.into_iter().map(|n| (n > 0).then_some(n)).collect())
    }

    /// Delete expired claims and idle conversation counters (SQLite), at most once a minute.
    async fn purge_expired<'c>(&self, conn: impl sea_orm::sqlx::SqliteExecutor<'c>) {
        let now = chrono::Utc::now().timestamp();
        if self.last_purge.load(Ordering::Relaxed) + 60 > now
            || self.last_purge.swap(now, Ordering::Relaxed) + 60 > now
        {
            return;
        }
        let purged = sea_orm::sqlx::query(
            "DELETE FROM chatbot_once WHERE expires_at < ?1; \
             DELETE FROM chatbot_conversation WHERE touched_at < ?2",
        )
        .bind(now)
        .bind(now - CONVERSATION_TTL.as_secs() as i64)
        .execute(conn)
        .await;
        if let Err(e) = purged {
            tracing::warn!(error = %e, "expired dedupe claims not deleted; next time");
        }
    }

    /// Claim `key` once: `true` the first time, `false` for a repeat within `ttl`. Atomic on
    /// both backends (Redis `SET NX EX`; a primary-key row in the queue's SQLite file), so two
    /// deliveries racing each other get one `true`.
    pub async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool> {
        let key = self.once_key(key);
        let claimed = match &self.backend {
            Backend::Sqlite(pool) => {
                let now = chrono::Utc::now().timestamp();
                self.purge_expired(pool).await;
                sea_orm::sqlx::query(CLAIM_SQL)
                    .bind(&key)
                    .bind(now + ttl.as_secs() as i64)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected() == 1)
                    .map_err(|e| e.to_string())
            }
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl.as_secs().max(1))
                    .query_async::<Option<String>>(&mut conn)
                    .await
                    .map(|r| r.is_some())
                    .map_err(|e| e.to_string())
            }
        };
        claimed.map_err(|e| Error::Unavailable(format!("dedupe store: {e}")))
    }

    /// Undo [`claim_once`](Self::claim_once), when the work it guarded could not be queued (so
    /// the provider's retry is not mistaken for a duplicate).
    pub async fn release(&self, key: &str) -> Result<()> {
        let key = self.once_key(key);
        let released = match &self.backend {
            Backend::Sqlite(pool) => sea_orm::sqlx::query("DELETE FROM chatbot_once WHERE key = ?")
                .bind(&key)
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                redis::cmd("DEL")
                    .arg(&key)
                    .query_async::<i64>(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        };
        released.map_err(|e| Error::Unavailable(format!("dedupe store: {e}")))
    }

    /// The highest arrival number of `conversation` whose turn is complete (replies sent).
    pub async fn conversation_done(&self, conversation: &str) -> Result<u64> {
        let key = self.conversation_key(conversation);
        let done = match &self.backend {
            Backend::Sqlite(pool) => sea_orm::sqlx::query_scalar::<_, i64>(
                "SELECT done FROM chatbot_conversation WHERE key = ?",
            )
            .bind(&key)
            .fetch_optional(pool)
            .await
            .map(|n| n.unwrap_or(0) as u64)
            .map_err(|e| e.to_string()),
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                redis::cmd("GET")
                    .arg(format!("{key}:done"))
                    .query_async::<Option<u64>>(&mut conn)
                    .await
                    .map(|n| n.unwrap_or(0))
                    .map_err(|e| e.to_string())
            }
        };
        done.map_err(|e| Error::Unavailable(format!("conversation counter: {e}")))
    }

    /// Record that turn `seq` of `conversation` is complete (never moves backwards).
    pub async fn conversation_finished(&self, conversation: &str, seq: u64) -> Result<()> {
        if seq == 0 {
            return Ok(());
        }
        let key = self.conversation_key(conversation);
        let done = match &self.backend {
            Backend::Sqlite(pool) => sea_orm::sqlx::query(
                "INSERT INTO chatbot_conversation (key, seq, done, touched_at) VALUES (?1, ?2, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET done = max(done, ?2), touched_at = ?3",
            )
            .bind(&key)
            .bind(seq as i64)
            .bind(chrono::Utc::now().timestamp())
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                FINISH_TURN
                .key(format!("{key}:done"))
                .arg(seq)
                .arg(CONVERSATION_TTL.as_secs())
                .arg(self.wake_channel(None))
                .arg(&self.instance)
                .invoke_async::<i64>(&mut conn)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
            }
        };
        done.map_err(|e| Error::Unavailable(format!("conversation counter: {e}")))?;
        self.wakeups.turns.notify_waiters();
        Ok(())
    }

    /// Reserve the next sending slot of `key` (a business number) at `per_second` messages per
    /// second, shared by every process on this queue: returns when the caller may send, as
    /// microseconds since the Unix epoch (now, or later when the number is busy). Slots are
    /// spaced evenly (generic cell rate), so no second ever carries more than the limit.
    pub async fn reserve_send_slot(&self, key: &str, per_second: u32) -> Result<i64> {
        let key = format!("{}:rate:{key}", self.namespace);
        let interval = 1_000_000 / i64::from(per_second.max(1));
        let now = chrono::Utc::now().timestamp_micros();
        let slot = match &self.backend {
            Backend::Sqlite(pool) => sea_orm::sqlx::query_scalar::<_, i64>(
                "INSERT INTO chatbot_rate (key, tat) VALUES (?1, ?2 + ?3) \
                 ON CONFLICT (key) DO UPDATE SET tat = max(tat, ?2) + ?3 RETURNING tat - ?3",
            )
            .bind(&key)
            .bind(now)
            .bind(interval)
            .fetch_one(pool)
            .await
            .map_err(|e| e.to_string()),
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                RESERVE_SLOT
                    .key(&key)
                    .arg(now)
                    .arg(interval)
                    .invoke_async::<String>(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|s| s.parse::<i64>().map_err(|e| e.to_string()))
            }
        };
        slot.map_err(|e| Error::Unavailable(format!("send rate limiter: {e}")))
    }

    /// Jobs of `J` waiting to run, and running now.
    pub async fn depth<J: Job>(&self) -> Result<(u64, u64)> {
        let queue = self.queue_name::<J>();
        let depth = match &self.backend {
            Backend::Sqlite(pool) => sea_orm::sqlx::query_as::<_, (i64, i64)>(
                "SELECT coalesce(sum(status IN ('Pending', 'Queued')), 0), coalesce(sum(status = 'Running'), 0) \
                 FROM Jobs WHERE job_type = ? AND status IN ('Pending', 'Queued', 'Running')",
            )
            .bind(&queue)
            .fetch_one(pool)
            .await
            .map(|(w, r)| (w as u64, r as u64))
            .map_err(|e| e.to_string()),
            Backend::Redis(conn) => {
                let config = redis_config(&queue, self.heartbeat);
                let mut conn = conn.clone();
                // Each registered worker has its in-flight set, `{inflight}:{worker name}`.
                DEPTH
                .key(config.active_jobs_list())
                .key(config.scheduled_jobs_set())
                .key(config.workers_set())
                .arg(config.inflight_jobs_set())
                .invoke_async::<(u64, u64)>(&mut conn)
                .await
                .map_err(|e| e.to_string())
            }
        };
        depth.map_err(|e| Error::Unavailable(format!("job queue: {e}")))
    }

    /// Persist a job and return its id. An error means the job was *not* stored: callers that
    /// acknowledged something to a provider must not answer 200.
    pub async fn push<J: Job>(&self, job: J) -> Result<JobId> {
        let id = next_job_id();
        let task = TaskBuilder::new(job)
            .task_id(TaskId::from_ulid(id))
            .max_attempts(RETRIES)
            .build();
        let queue = self.queue_name::<J>();
        let pushed = match &self.backend {
            Backend::Sqlite(pool) => {
                let mut storage = SqliteStorage::<J>::new(pool)
                    .with_config(sqlite_config(&queue, self.heartbeat));
                storage.push_task(task).await.map_err(|e| e.to_string())
            }
            Backend::Redis(conn) => {
                let mut storage = RedisStorage::<J>::new(conn.clone())
                    .with_config(redis_config(&queue, self.heartbeat));
                storage.push_task(task).await.map_err(|e| e.to_string())
            }
        };
        pushed
            .map_err(|e| Error::Unavailable(format!("cannot enqueue a `{}` job: {e}", J::QUEUE)))?;
        self.wakeups.job_stored(J::QUEUE);
        self.publish_job_stored(J::QUEUE).await;
        tracing::debug!(job_id = %id, queue = %queue, "job enqueued");
        Ok(id.to_string())
    }

    /// The Redis channel on which processes say that jobs of `queue` are waiting; `None`: that
    /// a turn finished.
    fn wake_channel(&self, queue: Option<&str>) -> String {
        match queue {
            Some(queue) => format!("{}:wake:job:{queue}", self.namespace),
            None => format!("{}:wake:turn", self.namespace),
        }
    }

    /// Tell other processes' workers that jobs of `queue` are waiting (Redis; nothing on
    /// SQLite, whose queue one process uses). A lost wake-up costs a poll interval, not a job:
    /// failures are only logged.
    async fn publish_job_stored(&self, queue: &str) {
        if let Backend::Redis(conn) = &self.backend {
            let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(self.wake_channel(Some(queue)))
                .arg(&self.instance)
                .query_async(&mut conn.clone())
                .await;
            if let Err(e) = published {
                tracing::debug!(error = %e, queue, "wake-up not published");
            }
        }
    }

    /// On Redis, listen for other processes' wake-ups (once per process; for processes that run
    /// workers): a job they stored, a turn they finished. Reconnects after a second when the
    /// subscription drops; stops when the queue is gone.
    pub fn listen(&self) {
        let Some(client) = self.redis_client.clone() else {
            return;
        };
        if self.wakeups.listening.swap(true, Ordering::SeqCst) {
            return;
        }
        let wakeups = std::sync::Arc::downgrade(&self.wakeups);
        let (jobs, turns) = (self.wake_channel(Some("")), self.wake_channel(None));
        // Each wake-up names the process that gave it; this process woke its own already.
        let me = self.instance.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            while wakeups.strong_count() > 0 {
                let subscribed = async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.psubscribe(format!("{jobs}*")).await?;
                    pubsub.subscribe(&turns).await?;
                    redis::RedisResult::Ok(pubsub)
                }
                .await;
                let mut pubsub = match subscribed {
                    Ok(pubsub) => pubsub,
                    Err(e) => {
                        tracing::debug!(error = %e, "wake-ups from other processes not heard; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let mut messages = pubsub.on_message();
                loop {
                    // Looked at now and then, so the task ends with its queue.
                    let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
                    let Some(wakeups) = wakeups.upgrade() else {
                        return;
                    };
                    match next {
                        Ok(Some(message)) => {
                            let from = message.get_payload::<String>().unwrap_or_default();
                            if from != me {
                                let channel = message.get_channel_name();
                                wakeups.heard(channel.strip_prefix(jobs.as_str()));
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {}
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// When a worker of `J` looks for jobs: at once when this process stored one, and every
    /// [`POLL_INTERVAL`] for the others'.
    fn poll_strategy<J: Job>(&self) -> Strategy {
        Strategy::new()
            .stream(self.wakeups.stream(J::QUEUE))
            .interval(POLL_INTERVAL)
    }

    /// This process' wake-ups.
    pub fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    /// Add a worker for `J` to `monitor`, running `handler` with the app state.
    pub fn register<J: Job>(
        &self,
        monitor: Monitor,
        state: AppState,
        handler: fn(J, Data<AppState>) -> JobFuture,
        concurrency: usize,
        generation: u32,
    ) -> Monitor {
        let queue = self.queue_name::<J>();
        // A new name per generation of workers: a restarted set must not be taken for the old
        // one (Redis refuses a name seen alive within the heartbeat threshold).
        let name = format!("{queue}@{}.{generation}", self.instance);
        match &self.backend {
            Backend::Sqlite(pool) => {
                let storage = SqliteStorage::<J>::new(pool)
                    .with_config(sqlite_config(&queue, self.heartbeat))
                    .poll_with_strategy(self.poll_strategy::<J>());
                monitor.register(move |_| {
                    WorkerBuilder::new(name.clone())
                        .backend(storage.clone())
                        .concurrency(concurrency)
                        .retry(RetryPolicy::retries(RETRIES).with_backoff(backoff()))
                        .enable_tracing()
                        .data(state.clone())
                        .build(handler)
                })
            }
            Backend::Redis(conn) => {
                let storage = RedisStorage::<J>::new(conn.clone())
                    .with_config(redis_config(&queue, self.heartbeat))
                    .poll_with_strategy(self.poll_strategy::<J>());
                monitor.register(move |_| {
                    WorkerBuilder::new(name.clone())
                        .backend(storage.clone())
                        .concurrency(concurrency)
                        .retry(RetryPolicy::retries(RETRIES).with_backoff(backoff()))
                        .enable_tracing()
                        .data(state.clone())
                        .build(handler)
                })
            }
        }
    }
}

/// The SQLite side of [`JobQueue::accept_many`]: the whole batch in one run of [`ACCEPT_SQL`]
/// (one transaction) on the writer's own connection, on the writer's thread. A failed run
/// leaves its transaction open for the caller to roll back.
fn accept_sqlite<J>(
    direct: &mut Direct,
    queue: &str,
    deliveries: Vec<Ready<J>>,
    ttl: Duration,
) -> std::result::Result<Vec<Option<u64>>, String> {
    let count = deliveries.len();
    let script = accept_sql(count)?;
    let room = accept_room(count);
    let now = chrono::Utc::now().timestamp();
    let ids: Vec<String> = (0..count).map(|_| next_job_id().to_string()).collect();
    let mut args = Vec::with_capacity(5 + 2 * room + 3 * count);
    args.extend([
        Arg::Int(now + ttl.as_secs() as i64),
        Arg::Int(now),
        Arg::Text(queue),
        Arg::Int(RETRIES as i64),
        Arg::Text(METADATA.as_str()),
    ]);
    // The keys' rows the script has room for are bound whole, NULLs past the batch, so that
    // the jobs' values come next; the jobs' rows past the batch are left unbound (NULL).
    for ready in &deliveries {
        args.extend([Arg::Text(&ready.once_key), Arg::Text(&ready.conversation)]);
    }
    args.extend(std::iter::repeat_n(Arg::Null, 2 * (room - count)));
    for (ready, id) in deliveries.iter().zip(&ids) {
        args.extend([
            Arg::Text(id),
            Arg::Text(&ready.head),
            Arg::Text(&ready.tail),
        ]);
    }
    let Some(answer) = direct.run(script, &args)? else {
        return Err("no answer from the batch's statements".into());
    };
    let numbers: Vec<Option<u64>> = serde_json::from_str(&answer).map_err(|e| e.to_string())?;
    if numbers.len() != count {
        return Err(format!("{} answers for {count} deliveries", numbers.len()));
    }
    Ok(numbers)
}

/// A job's JSON with arrival number 0, split around that number: `{..."seq":` and `}`. The
/// number is the struct's last field (`IngestJob`), so it is the JSON's last member.
fn split_at_seq(json: &str) -> std::result::Result<(&str, &str), String> {
    json.strip_suffix("0}")
        .filter(|head| head.ends_with(",\"seq\":"))
        .map(|head| (head, &json[head.len() + 1..]))
        .ok_or_else(|| "a job whose JSON does not end with its arrival number".to_string())
}

/// Job ids increase in push order within this process: the SQLite queue fetches by
/// `run_at` (whole seconds), then id, so a random ULID would shuffle jobs pushed in the same
/// second (a parent's burst of messages).
fn next_job_id() -> ulid::Ulid {
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

/// A Redis connection manager that fails fast when Redis is down (so a webhook answers 503 and
/// the provider retries) but tolerates slow answers: redis-rs' default 500 ms response timeout
/// turns one Redis stall into a stream error that stops apalis' worker pool.
async fn connect_redis(url: &SecretUrl) -> Result<ConnectionManager> {
    let unavailable =
        |e: redis::RedisError| Error::Unavailable(format!("cannot connect to Redis at {url}: {e}"));
    let client = redis::Client::open(url.expose()).map_err(unavailable)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    client
        .get_connection_manager_with_config(config)
        .await
        .map_err(unavailable)
}

/// The embedded queue's file, as every connection to it opens it. `synchronous = FULL`: every
/// commit is synced before it returns, so a delivery acknowledged with a 200 survives a power
/// cut, not only a crash of the process; with group commit that is one sync per batch. It also
/// keeps the syncs small: with `NORMAL` the checkpoint synced a fifth of a second of WAL at
/// once and the writer's next appends waited for it (p99 at 2,000 deliveries/s 3 -> 8-12 ms),
/// where `FULL` measured 3.3 ms and the same saturation rate.
fn sqlite_options(path: &Path) -> SqliteConnectOptions {
    FILE_PRAGMAS.iter().fold(
        SqliteConnectOptions::new().filename(path),
        |options, &(name, value)| options.pragma(name, value),
    )
}

/// What the intake writer's own connection ([`Direct`]) runs when it opens: the pool's
/// settings ([`FILE_PRAGMAS`], `synchronous = FULL` above all: its commits are what a
/// webhook's 200 stands on, and [`WRITER_PRAGMAS`]), and the batch tables.
fn direct_setup() -> String {
    let mut setup = String::new();
    for (name, value) in FILE_PRAGMAS.iter().chain(&WRITER_PRAGMAS) {
        setup.push_str(&format!("PRAGMA {name} = {value}; "));
    }
    setup + BATCH_TABLE_SQL
}

/// Copy the embedded queue's WAL back into its file every [`CHECKPOINT_EVERY`], on a
/// connection of its own, until the queue is dropped. A passive checkpoint takes no lock the
/// writer needs, so the writer keeps committing meanwhile; done by the writer at the end of a
/// commit (SQLite's default), the copy and the database file's sync held up every delivery of
/// that batch.
async fn checkpoints(path: PathBuf, alive: std::sync::Weak<()>) {
    use sea_orm::sqlx::{ConnectOptions, Connection};
    let mut conn: Option<SqliteConnection> = None;
    let mut failing = false;
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if alive.strong_count() == 0 {
            if let Some(conn) = conn.take() {
                let _ = conn.close().await;
            }
            return;
        }
        let outcome = match conn.as_mut() {
            Some(c) => sea_orm::sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(c)
                .await
                .map(|_| ()),
            None => sqlite_options(&path)
                .connect()
                .await
                .map(|c| conn = Some(c)),
        };
        match outcome {
            Ok(()) => failing = false,
            Err(e) => {
                // The writer still checkpoints past WAL_AUTOCHECKPOINT_PAGES: nothing is lost,
                // the WAL only grows longer between copies.
                if !failing {
                    tracing::warn!(error = %e, path = %path.display(), "queue checkpoint failed; retrying on a new connection");
                }
                failing = true;
                conn = None;
            }
        }
    }
}

fn sqlite_config(queue: &str, heartbeat: Duration) -> apalis_sqlite::Config {
    apalis_sqlite::Config::default()
        .queue(queue)
        .heartbeat_interval(heartbeat)
        .missed_heartbeats(MISSED_HEARTBEATS)
}

fn redis_config(queue: &str, heartbeat: Duration) -> apalis_redis::Config {
    apalis_redis::Config::default()
        .queue(queue)
        .heartbeat_interval(heartbeat)
        .missed_heartbeats(MISSED_HEARTBEATS)
}

/// An embedded queue in a directory of its own, for unit tests (keep the directory alive).
#[cfg(test)]
pub(super) async fn temp_queue() -> (tempfile::TempDir, JobQueue) {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let queue = JobQueue::connect(&settings).await.unwrap();
    (dir, queue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::ingest::IngestJob;

    /// Batches of every size up to the largest go in whole, their repeats and conversations
    /// counted across the script's padding; a larger one is refused before anything is written.
    #[tokio::test]
    async fn batches_up_to_the_largest_script_are_accepted_whole() {
        let (_dir, queue) = temp_queue().await;
        let ttl = Duration::from_secs(60);
        let mut seen = [0u64; 3];
        for size in [1, 2, 3, 5, 17, 255, 256, 257, ACCEPT_MAX_ROWS] {
            // Three parents in turn; the last delivery repeats the first of the batch.
            let batch: Vec<_> = (0..size)
                .map(|i| {
                    let id = if i + 1 == size && size > 1 {
                        format!("{size}-0")
                    } else {
                        format!("{size}-{i}")
                    };
                    let job = IngestJob::meta_text("P1", &format!("23480{}", i % 3), &id, "hi");
                    (format!("meta:{id}"), job)
                })
                .collect();
            let numbers = queue.accept_many(batch, ttl).await.unwrap();
            let fresh = if size > 1 { size - 1 } else { 1 };
            let expected: Vec<Option<u64>> = (0..size)
                .map(|i| (i < fresh).then(|| seen[i % 3] + (i / 3) as u64 + 1))
                .collect();
            assert_eq!(numbers, expected, "a batch of {size}");
            for (parent, count) in seen.iter_mut().enumerate() {
                *count += (0..fresh).filter(|i| i % 3 == parent).count() as u64;
            }
        }
        assert_eq!(
            queue.depth::<IngestJob>().await.unwrap().0,
            seen.iter().sum::<u64>()
        );
        let too_many = (0..=ACCEPT_MAX_ROWS)
            .map(|i| {
                (
                    format!("meta:x{i}"),
                    IngestJob::meta_text("P1", "1", &format!("x{i}"), "hi"),
                )
            })
            .collect();
        let err = queue.accept_many(too_many, ttl).await.unwrap_err();
        assert!(err.to_string().contains("at most 4096"), "{err}");
        assert_eq!(
            queue.depth::<IngestJob>().await.unwrap().0,
            seen.iter().sum::<u64>()
        );
    }

    /// The writer's own connection has the pool's durability settings, and a batch that fails
    /// halfway leaves nothing behind: its claims are rolled back, so the provider's retry is
    /// accepted as new, on the same connection.
    #[tokio::test]
    async fn the_writers_connection_syncs_its_commits_and_rolls_back_a_failed_batch() {
        let (_dir, queue) = temp_queue().await;
        let ttl = Duration::from_secs(60);
        let mut lease = Lease::default();
        let ready = |id: &str| {
            let job = IngestJob::meta_text("P1", "2348011", id, "hi");
            vec![queue.ready(&format!("meta:{id}"), job).unwrap()]
        };
        let first = queue.accept_leased(&mut lease, ready("w1"), ttl).await;
        assert_eq!(first.unwrap(), vec![Some(1)]);
        let direct = lease
            .direct
            .as_mut()
            .expect("the writer's connection is open");
        for (pragma, want) in [
            ("PRAGMA synchronous", "2"),
            ("PRAGMA journal_mode", "wal"),
            ("PRAGMA busy_timeout", "10000"),
            ("PRAGMA temp_store", "2"),
        ] {
            assert_eq!(direct.query_text(pragma).unwrap().as_deref(), Some(want));
        }

        let pool = match &queue.backend {
            Backend::Sqlite(pool) => pool.clone(),
            Backend::Redis(_) => unreachable!(),
        };
        // The pool has one connection, which the lease holds after a batch.
        lease.release();
        sea_orm::sqlx::query(
            "CREATE TRIGGER refuse BEFORE INSERT ON Jobs BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .execute(&pool)
        .await
        .unwrap();
        let err = queue
            .accept_leased(&mut lease, ready("w2"), ttl)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
        let direct = lease.direct.as_mut().expect("still open after a rollback");
        assert!(!direct.in_transaction());
        sea_orm::sqlx::query("DROP TRIGGER refuse")
            .execute(&pool)
            .await
            .unwrap();
        lease.release();
        let retried = queue.accept_leased(&mut lease, ready("w2"), ttl).await;
        assert_eq!(retried.unwrap(), vec![Some(2)], "the claim was rolled back");
        lease.release();
        assert_eq!(queue.depth::<IngestJob>().await.unwrap().0, 2);
    }

    #[test]
    fn a_job_splits_around_its_number_whatever_it_says() {
        // Text that looks like the number's member must not be taken for it.
        let job =
            IngestJob::meta_text("1555", "2348000000001", "wamid.1", r#"{"seq":0} ,"seq":0}"#);
        let json = serde_json::to_string(&job).unwrap();
        let (head, tail) = split_at_seq(&json).expect("seq is the last member");
        let spliced = [head, "42", tail].concat();
        let back: IngestJob = serde_json::from_str(&spliced).unwrap();
        assert_eq!(back.seq, 42);
        assert_eq!(back.said, job.said);
        assert!(split_at_seq(r#"{"seq":0,"a":1}"#).is_err());
        assert!(split_at_seq(r#"{"seq":10}"#).is_err());
    }
}

//! The embedded queue: apalis-sqlite on a file in the data directory, for one machine.
//!
//! The file is opened with its durability settings ([`FILE_PRAGMAS`]: every commit synced, so
//! an acknowledged delivery survives a power cut) and a bounded page cache, on a pool of one
//! connection that apalis' workers, the pushes and the coordination tables (`coord::sqlite`)
//! share; its WAL is copied back into the file by a task of its own ([`checkpoints`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use apalis::prelude::*;
use apalis_sqlite::SqliteStorage;
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqlitePool, SqlitePoolOptions,
};

use super::{Answer, Engine, Stored, WorkerSpec};

/// How often the embedded queue's WAL is copied back into its file (see [`checkpoints`]).
/// Each checkpoint ends with a sync of the database file, and the writer's next commit sync
/// waits behind it; the less each copies, the shorter that wait.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// WAL pages (4 KB) past which a writer checkpoints at the end of a commit.
const WAL_AUTOCHECKPOINT_PAGES: &str = "4000";
/// How long a connection to the embedded queue waits for another's lock (another process').
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How every connection to the queue's file opens it: WAL, and `synchronous = NORMAL`: a
/// commit is in the WAL when it returns (a crash of the process loses nothing) and on disk at
/// the next sync: the checkpoint task's, every [`CHECKPOINT_EVERY`], or a durable push's
/// ([`SqliteQueue::push_synced`], at `FULL`: a delivery acknowledged with a 200 survives a
/// power cut; with group commit that is one sync per batch). Syncing every commit (workers'
/// fetches and acknowledgements, claims, counters) halved the pipeline's rate
/// (`cargo bench --bench pipeline`, 2026-12-06: 53 against 104 messages/s end to end).
const FILE_PRAGMAS: [(&str, &str); 2] = [("journal_mode", "WAL"), ("synchronous", RESTING_SYNC)];
/// The pool's `synchronous` between durable pushes.
const RESTING_SYNC: &str = "NORMAL";
/// The further settings of the pool's connection.
const POOL_PRAGMAS: [(&str, &str); 4] = [
    ("temp_store", "memory"),
    // In KiB (negative: SQLite's unit for a size, not pages). Bounded: the page cache is walked
    // whole at the end of any transaction that split a B-tree page, so its size is paid on
    // every commit (apalis' own setup would give it 250 MB).
    ("cache_size", "-16384"),
    // The checkpoint task copies the WAL back; past this many pages the writer finishes the
    // copy itself, so the WAL starts over even under steady load.
    ("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES),
    ("journal_size_limit", "67108864"),
];

/// The embedded queue.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    pool: SqlitePool,
    heartbeat: Duration,
    /// Held by every clone; the checkpoint task stops when the last is gone.
    _alive: std::sync::Arc<()>,
}

impl SqliteQueue {
    /// Open (creating) the queue's file at `path` and apalis' tables in it.
    pub async fn open(path: &Path, heartbeat: Duration) -> Result<Self, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let options = POOL_PRAGMAS.iter().fold(
            file_options(path)
                .create_if_missing(true)
                .busy_timeout(BUSY_TIMEOUT),
            |options, &(name, value)| options.pragma(name, value),
        );
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            // A local file: a ping before every use is one more trip to the connection's
            // thread.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|e| format!("cannot open the job queue {}: {e}", path.display()))?;
        // apalis' tables and indexes, without `SqliteStorage::setup`'s pragmas, which turn
        // `synchronous` off (a power cut could lose acknowledged deliveries) and give the
        // connection a 250 MB page cache.
        SqliteStorage::migrations()
            .run(&pool)
            .await
            .map_err(|e| format!("cannot set up the job queue {}: {e}", path.display()))?;
        let alive = std::sync::Arc::new(());
        tokio::spawn(checkpoints(
            path.to_path_buf(),
            std::sync::Arc::downgrade(&alive),
        ));
        Ok(Self {
            pool,
            heartbeat,
            _alive: alive,
        })
    }

    /// The pool of the queue's file, which the coordination tables share.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Store `jobs` with apalis' own statement (`queries::push_tasks`) in a transaction on the
    /// pool's connection switched to `synchronous = FULL` for it: its commit syncs the WAL,
    /// and with it every earlier commit of the pool's (which, at `NORMAL`, wait for the next
    /// checkpoint), such as the deliveries' numbers written just before.
    async fn push_synced(&self, queue: &str, jobs: Vec<Stored>) -> Result<(), String> {
        use sea_orm::sqlx::Connection;
        let tasks = jobs
            .into_iter()
            .map(|job| super::task(job).try_map_args(|json| serde_json::to_vec(&json)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let mut conn = self.pool.acquire().await.map_err(|e| e.to_string())?;
        sea_orm::sqlx::query(sync_pragma("FULL"))
            .execute(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
        let pushed = async {
            let mut tx = conn.begin().await.map_err(|e| e.to_string())?;
            apalis_sqlite::queries::push_tasks(&mut *tx, queue, &tasks)
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = sea_orm::sqlx::query(sync_pragma(RESTING_SYNC))
            .execute(&mut *conn)
            .await
        {
            // Left at FULL: slower, never less safe.
            tracing::warn!(error = %e, "the queue's connection stays at synchronous = FULL");
        }
        pushed
    }

    fn storage(&self, queue: &str) -> SqliteStorage<serde_json::Value> {
        SqliteStorage::new(&self.pool).with_config(
            apalis_sqlite::Config::default()
                .queue(queue)
                .heartbeat_interval(self.heartbeat)
                .missed_heartbeats(super::MISSED_HEARTBEATS),
        )
    }
}

impl Engine for SqliteQueue {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn ping(&self) -> Answer<'_, ()> {
        Box::pin(async move {
            sea_orm::sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    fn push<'a>(&'a self, queue: &'a str, jobs: Vec<Stored>, durable: bool) -> Answer<'a, ()> {
        if durable {
            Box::pin(self.push_synced(queue, jobs))
        } else {
            Box::pin(super::push_through(self.storage(queue), jobs))
        }
    }

    fn depth<'a>(&'a self, queue: &'a str) -> Answer<'a, (u64, u64)> {
        Box::pin(async move {
            let stats = self
                .storage(queue)
                .fetch_by_queue()
                .await
                .map_err(|e| e.to_string())?;
            let count = |title: &str| {
                stats
                    .iter()
                    .find(|s| s.title == title)
                    .and_then(|s| s.value.parse::<f64>().ok())
                    .unwrap_or(0.0) as u64
            };
            Ok((count("PENDING_JOBS"), count("RUNNING_JOBS")))
        })
    }

    fn forget_finished<'a>(&'a self, queue: &'a str, older_than: Duration) -> Answer<'a, u64> {
        Box::pin(async move {
            // apalis-sqlite's vacuum covers every queue of the file, and ends with `VACUUM`.
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

    fn setting<'a>(&'a self, name: &'a str) -> Answer<'a, Option<String>> {
        Box::pin(async move {
            let sql = match name {
                "synchronous" => "PRAGMA synchronous",
                "cache_size" => "PRAGMA cache_size",
                "journal_mode" => "PRAGMA journal_mode",
                "journal_size_limit" => "PRAGMA journal_size_limit",
                "temp_store" => "PRAGMA temp_store",
                "wal_autocheckpoint" => "PRAGMA wal_autocheckpoint",
                _ => return Err(format!("not one of the queue's settings: {name:?}")),
            };
            let row = sea_orm::sqlx::query(sql)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| e.to_string())?;
            use sea_orm::sqlx::Row;
            Ok(row.and_then(|row| {
                row.try_get::<String, _>(0)
                    .or_else(|_| row.try_get::<i64, _>(0).map(|n| n.to_string()))
                    .ok()
            }))
        })
    }
}

/// `PRAGMA synchronous = <level>` for one of the two levels this queue uses.
fn sync_pragma(level: &str) -> &'static str {
    if level == "FULL" {
        "PRAGMA synchronous = FULL"
    } else {
        "PRAGMA synchronous = NORMAL"
    }
}

/// The queue's file, as every connection to it opens it (see [`FILE_PRAGMAS`]).
fn file_options(path: &Path) -> SqliteConnectOptions {
    FILE_PRAGMAS.iter().fold(
        SqliteConnectOptions::new().filename(path),
        |options, &(name, value)| options.pragma(name, value),
    )
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
            None => file_options(&path).connect().await.map(|c| conn = Some(c)),
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

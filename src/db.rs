//! The data database: connect (SQLite by default, PostgreSQL by URL) and migrate.

use std::ffi::c_int;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend};

use crate::config::SecretUrl;
use crate::error::{Error, Result};

/// Open a pool on `url`. For SQLite: WAL, foreign keys on, and a busy timeout so concurrent
/// writers wait instead of failing.
pub async fn connect(url: &SecretUrl) -> Result<DatabaseConnection> {
    let raw = url.expose();
    if let Some(path) = sqlite_file_path(raw)
        && let Some(parent) = std::path::Path::new(&path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            Error::Internal(anyhow::anyhow!("cannot create {}: {e}", parent.display()))
        })?;
    }
    let mut opts = ConnectOptions::new(raw.to_string());
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .max_connections(if raw.starts_with("sqlite:") { 8 } else { 16 })
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
        })
        .map_sqlx_sqlite_pool_opts(|pool| {
            pool.after_connect(|conn, _| Box::pin(refuse_string_identifiers(conn)))
        });
    Database::connect(opts)
        .await
        .map_err(|e| Error::Unavailable(format!("cannot connect to the database {url}: {e}")))
}

/// Turn off SQLite's "double-quoted string literal" leniency on a new connection: a quoted
/// identifier naming no column is an error, never the string it spells.
///
/// Besides catching typos, this keeps a pool connection that still holds the schema from
/// before a migration (migrations run on whichever connections the pool hands out) from
/// misreading a new column. Preparing `INSERT ... RETURNING "shared"` against the old schema
/// used to succeed with `"shared"` as a string; SQLite prepares it again against the new
/// schema when it runs, but sqlx has already taken the result's column names from the first
/// preparation (`"shared"`, quotes included), so the row had no column `shared`. As an
/// error, the stale preparation makes SQLite reload the schema and prepare again at once.
async fn refuse_string_identifiers(conn: &mut SqliteConnection) -> sea_orm::sqlx::Result<()> {
    use libsqlite3_sys::{
        SQLITE_DBCONFIG_DQS_DDL, SQLITE_DBCONFIG_DQS_DML, SQLITE_OK, sqlite3_db_config,
    };
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    for option in [SQLITE_DBCONFIG_DQS_DML, SQLITE_DBCONFIG_DQS_DDL] {
        // SAFETY: `db` is this connection's open handle, held locked for the call; both
        // options take an int (0: off) and an optional `int *` for the resulting setting.
        let rc =
            unsafe { sqlite3_db_config(db, option, 0 as c_int, std::ptr::null_mut::<c_int>()) };
        if rc != SQLITE_OK {
            return Err(sea_orm::sqlx::Error::Configuration(
                format!("sqlite3_db_config({option}) failed with code {rc}").into(),
            ));
        }
    }
    Ok(())
}

/// Connect and bring the schema up to date.
pub async fn connect_and_migrate(url: &SecretUrl) -> Result<DatabaseConnection> {
    let db = connect(url).await?;
    migrate(&db).await?;
    Ok(db)
}

/// Apply pending migrations.
pub async fn migrate(db: &DatabaseConnection) -> Result<()> {
    Migrator::up(db, None).await?;
    Ok(())
}

/// `"sqlite"` or `"postgres"`, for logs and `/readyz`.
pub fn backend_name(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DbBackend::Sqlite => "sqlite",
        DbBackend::Postgres => "postgres",
        _ => "other",
    }
}

/// The file behind a `sqlite:` URL, if it names one.
fn sqlite_file_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        None
    } else {
        Some(path.to_string())
    }
}

/// Begin a transaction that reads before it writes. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`, waiting within the busy timeout): a deferred transaction that read first
/// fails its first write with "database is locked" when another writer got in between. On
/// PostgreSQL, and for a nested transaction, a plain `BEGIN` / savepoint.
pub async fn begin_write<C: sea_orm::TransactionTrait>(
    db: &C,
) -> std::result::Result<C::Transaction, sea_orm::DbErr> {
    db.begin_with_options(sea_orm::TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// The storage settings, checked when the configuration is loaded.
impl crate::config::Check for crate::config::Storage {
    fn check(&mut self) -> std::result::Result<(), crate::config::Problem> {
        use crate::config::keys::storage as key;
        if let Some(url) = &self.database_url {
            key::database_url.require_scheme(
                url,
                &["sqlite:", "postgres://", "postgresql://"],
                "a sqlite: or postgres://",
            )?;
        }
        key::transcript_retention_days.require_within(
            self.transcript_retention_days,
            1..=3650,
            "days",
        )?;
        key::cleanup_interval_minutes.require_within(
            self.cleanup_interval_minutes,
            1..=60 * 24 * 7,
            "minutes (7 days)",
        )
    }
}

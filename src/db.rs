//! The data database: connect (SQLite by default, PostgreSQL by URL) and migrate.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
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
        });
    Database::connect(opts)
        .await
        .map_err(|e| Error::Unavailable(format!("cannot connect to the database {url}: {e}")))
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

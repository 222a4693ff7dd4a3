//! The same migrations run on SQLite and PostgreSQL, forwards and backwards.

mod common;

use chatbot::db;
use common::{TestEnv, Variant};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

variants!(migrations_go_up_down_and_up_again);

async fn table_count(conn: &sea_orm::DatabaseConnection) -> i64 {
    let sql = match conn.get_database_backend() {
        DbBackend::Sqlite => {
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'seaql_migrations'"
        }
        _ => {
            "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'seaql_migrations'"
        }
    };
    let row = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

async fn migrations_go_up_down_and_up_again(v: Variant) {
    let Some(env) = TestEnv::new(v).await else {
        return;
    };
    let conn = db::connect(&env.settings.database_url()).await.unwrap();
    db::migrate(&conn).await.unwrap();
    assert_eq!(table_count(&conn).await, 28);
    db::migrate(&conn).await.unwrap(); // idempotent
    Migrator::down(&conn, None).await.unwrap();
    assert_eq!(table_count(&conn).await, 0);
    db::migrate(&conn).await.unwrap();
    assert_eq!(table_count(&conn).await, 28);
    assert!(
        Migrator::get_pending_migrations(&conn)
            .await
            .unwrap()
            .is_empty()
    );
    conn.close().await.unwrap();
}

/// A pool connection that read the schema before another connection added a column (as
/// happens while migrations run on a pool) reads that column by name afterwards: before,
/// SQLite prepared `RETURNING "shared"` on the old schema as the string 'shared', and sqlx
/// kept that preparation's column name (`"shared"`, quotes included), so `shared` was missing
/// from the row ("Missing value for column 'shared'", once in about fifty test runs).
#[tokio::test]
async fn a_connection_with_the_old_schema_reads_a_new_column_by_name() {
    use sea_orm::sqlx::{self, Row};
    let Some(env) = TestEnv::new(Variant::Embedded).await else {
        return;
    };
    let db = db::connect(&env.settings.database_url()).await.unwrap();
    let pool = db.get_sqlite_connection_pool();
    let (mut a, mut b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT NOT NULL)")
        .execute(&mut *a)
        .await
        .unwrap();
    // `b` reads the schema, then `a` changes it.
    sqlx::query("SELECT count(*) FROM t")
        .fetch_one(&mut *b)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE t ADD COLUMN shared BOOLEAN NOT NULL DEFAULT FALSE")
        .execute(&mut *a)
        .await
        .unwrap();
    let row = sqlx::query(r#"INSERT INTO t (a) VALUES ('x') RETURNING "id", "shared""#)
        .fetch_one(&mut *b)
        .await
        .unwrap();
    let names: Vec<&str> = row.columns().iter().map(sqlx::Column::name).collect();
    assert_eq!(names, ["id", "shared"]);
    assert!(!row.try_get::<bool, _>("shared").unwrap());
    // And a quoted name of no column is an error, not a string.
    let err = sqlx::query(r#"SELECT "no_such_column" FROM t"#)
        .fetch_one(&mut *b)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no such column"), "{err}");
    drop((a, b));
    db.close().await.unwrap();
}

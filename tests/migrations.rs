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
    assert_eq!(table_count(&conn).await, 23);
    db::migrate(&conn).await.unwrap(); // idempotent
    Migrator::down(&conn, None).await.unwrap();
    assert_eq!(table_count(&conn).await, 0);
    db::migrate(&conn).await.unwrap();
    assert_eq!(table_count(&conn).await, 23);
    assert!(
        Migrator::get_pending_migrations(&conn)
            .await
            .unwrap()
            .is_empty()
    );
    conn.close().await.unwrap();
}

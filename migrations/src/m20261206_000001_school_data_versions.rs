//! A per-school data version, so that every process sees a school's change before its next
//! message: `school_data_versions` holds one counter per tenant, bumped by triggers on every
//! table the conversation reads (the school's profile, welcome message, students and their
//! phone links, classes, subjects, terms, exam sessions, marks, attendance, notices), whatever
//! wrote to it (the API, an import, a release, the demo seed, a manual SQL fix).
//!
//! PostgreSQL: a deferred constraint trigger per table bumps the counter once per school and
//! transaction, at commit, so a long import holds the counter's row lock only for the instant
//! of its commit (no lock held across the transaction, no deadlock with other writers).
//! SQLite: row triggers (one writer at a time; an upsert per row written).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Tables whose rows carry `tenant_id` and that the conversation reads.
const TABLES: &[&str] = &[
    "welcome_messages",
    "students",
    "whatsapp_student_mappings",
    "classes",
    "subjects",
    "terms",
    "exam_sessions",
    "marks",
    "attendance",
    "notices",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared(
            "CREATE TABLE school_data_versions (
                tenant_id BIGINT NOT NULL PRIMARY KEY,
                version BIGINT NOT NULL
            )",
        )
        .await?;
        match db.get_database_backend() {
            DatabaseBackend::Postgres => {
                db.execute_unprepared(
                    r#"
CREATE FUNCTION chatbot_bump_school_data() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    school BIGINT;
    flag TEXT;
BEGIN
    IF TG_TABLE_NAME = 'tenants' THEN
        school := CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END;
    ELSIF TG_OP = 'DELETE' THEN
        school := OLD.tenant_id;
    ELSE
        school := NEW.tenant_id;
    END IF;
    -- Once per school and transaction.
    flag := 'chatbot.bumped_' || school;
    IF current_setting(flag, true) = 'y' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config(flag, 'y', true);
    INSERT INTO school_data_versions (tenant_id, version) VALUES (school, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = school_data_versions.version + 1;
    RETURN NULL;
END
$$"#,
                )
                .await?;
                for table in TABLES.iter().chain(&["tenants"]) {
                    db.execute_unprepared(&format!(
                        "CREATE CONSTRAINT TRIGGER chatbot_bump_{table} \
                         AFTER INSERT OR UPDATE OR DELETE ON {table} \
                         DEFERRABLE INITIALLY DEFERRED \
                         FOR EACH ROW EXECUTE FUNCTION chatbot_bump_school_data()"
                    ))
                    .await?;
                }
            }
            _ => {
                for table in TABLES.iter().chain(&["tenants"]) {
                    let key = if *table == "tenants" {
                        "id"
                    } else {
                        "tenant_id"
                    };
                    for (op, row) in [("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")] {
                        db.execute_unprepared(&format!(
                            "CREATE TRIGGER chatbot_bump_{table}_{op} AFTER {op} ON {table} \
                             BEGIN \
                             INSERT INTO school_data_versions (tenant_id, version) \
                             VALUES ({row}.{key}, 1) \
                             ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1; \
                             END",
                            op = op.to_lowercase()
                        ))
                        .await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        match db.get_database_backend() {
            DatabaseBackend::Postgres => {
                for table in TABLES.iter().chain(&["tenants"]) {
                    db.execute_unprepared(&format!(
                        "DROP TRIGGER IF EXISTS chatbot_bump_{table} ON {table}"
                    ))
                    .await?;
                }
                db.execute_unprepared("DROP FUNCTION IF EXISTS chatbot_bump_school_data()")
                    .await?;
            }
            _ => {
                for table in TABLES.iter().chain(&["tenants"]) {
                    for op in ["insert", "update", "delete"] {
                        db.execute_unprepared(&format!(
                            "DROP TRIGGER IF EXISTS chatbot_bump_{table}_{op}"
                        ))
                        .await?;
                    }
                }
            }
        }
        db.execute_unprepared("DROP TABLE school_data_versions")
            .await?;
        Ok(())
    }
}

//! The initial schema: tenants and everything a school owns.
//!
//! Tenancy is row-level: every table below `tenants` carries `tenant_id`, a foreign key that
//! cascades on delete, so removing a school removes all of its rows and nothing else.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `tenant_id` column plus its cascading foreign key, for every tenant-owned table.
fn with_tenant(mut table: TableCreateStatement, name: &'static str) -> TableCreateStatement {
    table
        .col(big_integer("tenant_id"))
        .foreign_key(
            ForeignKey::create()
                .name(format!("fk_{name}_tenant"))
                .from(name, "tenant_id")
                .to("tenants", "id")
                .on_delete(ForeignKeyAction::Cascade),
        )
        .to_owned()
}

/// A foreign key to another tenant-owned table.
fn fk(
    from_table: &'static str,
    column: &'static str,
    to_table: &'static str,
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{from_table}_{column}"))
        .from(from_table, column)
        .to(to_table, "id")
        .on_delete(on_delete)
        .to_owned()
}

fn created_at() -> ColumnDef {
    timestamp_with_time_zone("created_at")
}

fn updated_at() -> ColumnDef {
    timestamp_with_time_zone("updated_at")
}

fn index(
    name: &str,
    table: &'static str,
    cols: &[&'static str],
    unique: bool,
) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(name).table(table);
    for c in cols {
        idx.col(*c);
    }
    if unique {
        idx.unique();
    }
    idx.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use ForeignKeyAction::{Cascade, SetNull};

        m.create_table(
            Table::create()
                .table("tenants")
                .col(big_pk_auto("id"))
                .col(string_len_uniq("schema_name", 63))
                .col(string_len("name", 200))
                .col(string_len("time_zone", 64))
                .col(string_len("default_language", 8))
                .col(boolean("publish_position").default(true))
                .col(text_null("address"))
                .col(string_len_null("contact_phone", 32))
                .col(string_len_null("contact_email", 254))
                .col(string_len_null("motto", 200))
                .col(created_at())
                .col(updated_at())
                .to_owned(),
        )
        .await?;

        m.create_table(with_tenant(
            Table::create()
                .table("tenant_domains")
                .col(big_pk_auto("id"))
                .col(string_len_uniq("domain", 253))
                .col(created_at())
                .to_owned(),
            "tenant_domains",
        ))
        .await?;

        m.create_table(with_tenant(
            Table::create()
                .table("api_keys")
                .col(big_pk_auto("id"))
                .col(string_len("name", 100))
                .col(string_len("prefix", 16))
                .col(string_len_uniq("key_hash", 64))
                .col(text("scopes"))
                .col(created_at())
                .col(timestamp_with_time_zone_null("last_used_at"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .to_owned(),
            "api_keys",
        ))
        .await?;
        m.create_index(index(
            "ix_api_keys_tenant",
            "api_keys",
            &["tenant_id"],
            false,
        ))
        .await?;

        m.create_table(with_tenant(
            Table::create()
                .table("whatsapp_numbers")
                .col(big_pk_auto("id"))
                .col(string_len("provider", 16))
                .col(string_len("phone_number", 32))
                .col(string_len_null("phone_number_id", 64))
                .col(text_null("app_secret"))
                .col(text_null("verify_token"))
                .col(text_null("access_token"))
                .col(string_len_null("account_sid", 64))
                .col(text_null("auth_token"))
                .col(created_at())
                .to_owned(),
            "whatsapp_numbers",
        ))
        .await?;
        // A business number routes to exactly one school.
        m.create_index(index(
            "ux_whatsapp_numbers_provider_phone",
            "whatsapp_numbers",
            &["provider", "phone_number"],
            true,
        ))
        .await?;
        m.create_index(index(
            "ux_whatsapp_numbers_phone_number_id",
            "whatsapp_numbers",
            &["phone_number_id"],
            true,
        ))
        .await?;

        m.create_table(with_tenant(
            Table::create()
                .table("whatsapp_contacts")
                .col(big_pk_auto("id"))
                .col(string_len("phone", 32))
                .col(string_len_null("name", 200))
                .col(string_len_null("wa_user_id", 128))
                .col(boolean("opted_in").default(true))
                .col(created_at())
                .col(timestamp_with_time_zone_null("last_seen_at"))
                .to_owned(),
            "whatsapp_contacts",
        ))
        .await?;
        m.create_index(index(
            "ux_whatsapp_contacts_tenant_phone",
            "whatsapp_contacts",
            &["tenant_id", "phone"],
            true,
        ))
        .await?;
        // Sender -> school(s) resolution looks a phone up across tenants.
        m.create_index(index(
            "ix_whatsapp_contacts_phone",
            "whatsapp_contacts",
            &["phone"],
            false,
        ))
        .await?;

        m.create_table(with_tenant(
            Table::create()
                .table("academic_sessions")
                .col(big_pk_auto("id"))
                .col(string_len("name", 64))
                .col(date("starts_on"))
                .col(date("ends_on"))
                .col(boolean("is_current").default(false))
                .col(created_at())
                .to_owned(),
            "academic_sessions",
        ))
        .await?;
        m.create_index(index(
            "ux_academic_sessions_tenant_name",
            "academic_sessions",
            &["tenant_id", "name"],
            true,
        ))
        .await?;

        m.create_table(with_tenant(
            Table::create()
                .table("terms")
                .col(big_pk_auto("id"))
                .col(big_integer("academic_session_id"))
                .col(string_len("name", 64))
                .col(small_integer("ordinal"))
                .col(date("starts_on"))
                .col(date("ends_on"))
                .col(created_at())
                .foreign_key(&mut fk(
                    "terms",
                    "academic_session_id",
                    "academic_sessions",
                    Cascade,
                ))
                .to_owned(),
            "terms",
        ))
        .await?;
        m.create_index(index(
            "ux_terms_session_ordinal",
            "terms",
            &["tenant_id", "academic_session_id", "ordinal"],
            true,
        ))
        .await?;

        m.create_table(with_tenant(
            Table::create()
                .table("classes")
                .col(big_pk_auto("id"))
                .col(string_len("name", 64))
                .col(string_len("form", 64))
                .col(small_integer("level"))
                .col(created_at())
                .to_owned(),
            "classes",
        ))
        .await?;
        m.create_index(index(
            "ux_classes_tenant_name",
            "classes",
            &["tenant_id", "name"],
            true,
        ))
        .await?;

        m.create_table(with_tenant(
            Table::create()
                .table("students")
                .col(big_pk_auto("id"))
                .col(string_len("student_id", 64))
                .col(string_len("pin_hash", 160))
                .col(string_len("first_name", 100))
                .col(string_len("last_name", 100))
                .col(string_len_null("other_names", 100))
                .col(string_len_null("gender", 16))
                .col(date_null("date_of_birth"))
                .col(big_integer_null("class_id"))
                .col(boolean("active").default(true))
                .col(created_at())
                .col(updated_at())
                .foreign_key(&mut fk("students", "class_id", "classes", SetNull))
                .to_owned(),
            "students",
        ))
        .await?;
        m.create_index(index(
            "ux_students_tenant_student_id",
            "students",
            &["tenant_id", "student_id"],
            true,
        ))
        .await?;
        m.create_index(index("ix_students_class", "students", &["class_id"], false))
            .await?;

        m.create_table(with_tenant(
            Table::create()
                .table("whatsapp_student_mappings")
                .col(big_pk_auto("id"))
                .col(string_len("phone", 32))
                .col(big_integer("student_id"))
                .col(string_len_null("relationship", 32))
                .col(created_at())
                .foreign_key(&mut fk(
                    "whatsapp_student_mappings",
                    "student_id",
                    "students",
                    Cascade,
                ))
                .to_owned(),
            "whatsapp_student_mappings",
        ))
        .await?;
        m.create_index(index(
            "ux_student_mappings_tenant_phone_student",
            "whatsapp_student_mappings",
            &["tenant_id", "phone", "student_id"],
            true,
        ))
        .await?;

        m.create_table(with_tenant(
            Table::create()
                .table("subjects")
                .col(big_pk_auto("id"))
                .col(string_len("code", 32))
                .col(string_len("name", 100))
                .col(created_at())
                .to_owned(),
            "subjects",
        ))
        .await?;
        m.create_index(index(
            "ux_subjects_tenant_code",
            "subjects",
            &["tenant_id", "code"],
            true,
        ))
        .await?;

        m.create_table(with_tenant(
            Table::create()
                .table("exam_sessions")
                .col(big_pk_auto("id"))
                .col(big_integer("term_id"))
                .col(string_len("name", 100))
                .col(boolean("released").default(false))
                .col(timestamp_with_time_zone_null("released_at"))
                .col(created_at())
                .foreign_key(&mut fk("exam_sessions", "term_id", "terms", Cascade))
                .to_owned(),
            "exam_sessions",
        ))
        .await?;
        m.create_index(index(
            "ux_exam_sessions_term_name",
            "exam_sessions",
            &["tenant_id", "term_id", "name"],
            true,
        ))
        .await?;

        m.create_table(with_tenant(
            Table::create()
                .table("marks")
                .col(big_pk_auto("id"))
                .col(big_integer("exam_session_id"))
                .col(big_integer("student_id"))
                .col(big_integer("subject_id"))
                .col(double_null("ca_score"))
                .col(double_null("exam_score"))
                .col(double_null("total"))
                .col(string_len_null("grade", 8))
                .col(string_len_null("remark", 100))
                .col(created_at())
                .col(updated_at())
                .foreign_key(&mut fk(
                    "marks",
                    "exam_session_id",
                    "exam_sessions",
                    Cascade,
                ))
                .foreign_key(&mut fk("marks", "student_id", "students", Cascade))
                .foreign_key(&mut fk("marks", "subject_id", "subjects", Cascade))
                .to_owned(),
            "marks",
        ))
        .await?;
        m.create_index(index(
            "ux_marks_exam_student_subject",
            "marks",
            &["tenant_id", "exam_session_id", "student_id", "subject_id"],
            true,
        ))
        .await?;
        m.create_index(index("ix_marks_student", "marks", &["student_id"], false))
            .await?;

        m.create_table(with_tenant(
            Table::create()
                .table("attendance")
                .col(big_pk_auto("id"))
                .col(big_integer("student_id"))
                .col(big_integer("term_id"))
                .col(date("date"))
                .col(string_len("status", 16))
                .col(created_at())
                .foreign_key(&mut fk("attendance", "student_id", "students", Cascade))
                .foreign_key(&mut fk("attendance", "term_id", "terms", Cascade))
                .to_owned(),
            "attendance",
        ))
        .await?;
        m.create_index(index(
            "ux_attendance_student_date",
            "attendance",
            &["tenant_id", "student_id", "date"],
            true,
        ))
        .await?;
        m.create_index(index(
            "ix_attendance_student_term",
            "attendance",
            &["student_id", "term_id"],
            false,
        ))
        .await?;

        m.create_table(with_tenant(
            Table::create()
                .table("notices")
                .col(big_pk_auto("id"))
                .col(string_len("title", 200))
                .col(text("body"))
                .col(string_len("audience", 16))
                .col(string_len_null("audience_form", 64))
                .col(big_integer_null("audience_class_id"))
                .col(timestamp_with_time_zone("publish_at"))
                .col(timestamp_with_time_zone_null("expires_at"))
                .col(created_at())
                .col(updated_at())
                .foreign_key(&mut fk("notices", "audience_class_id", "classes", Cascade))
                .to_owned(),
            "notices",
        ))
        .await?;
        m.create_index(index(
            "ix_notices_tenant_publish",
            "notices",
            &["tenant_id", "publish_at"],
            false,
        ))
        .await?;

        // One welcome message per tenant, enforced here rather than in code.
        m.create_table(with_tenant(
            Table::create()
                .table("welcome_messages")
                .col(big_pk_auto("id"))
                .col(text("body"))
                .col(created_at())
                .col(updated_at())
                .to_owned(),
            "welcome_messages",
        ))
        .await?;
        m.create_index(index(
            "ux_welcome_messages_tenant",
            "welcome_messages",
            &["tenant_id"],
            true,
        ))
        .await?;

        m.create_table(with_tenant(
            Table::create()
                .table("chat_sessions")
                .col(big_pk_auto("id"))
                .col(string_len("channel", 16))
                .col(string_len("user_id", 128))
                .col(string_len("state", 64))
                .col(json("data"))
                .col(string_len_null("language", 8))
                .col(timestamp_with_time_zone("expires_at"))
                .col(created_at())
                .col(updated_at())
                .to_owned(),
            "chat_sessions",
        ))
        .await?;
        m.create_index(index(
            "ux_chat_sessions_tenant_channel_user",
            "chat_sessions",
            &["tenant_id", "channel", "user_id"],
            true,
        ))
        .await?;
        m.create_index(index(
            "ix_chat_sessions_expires",
            "chat_sessions",
            &["expires_at"],
            false,
        ))
        .await?;

        m.create_table(with_tenant(
            Table::create()
                .table("message_log")
                .col(big_pk_auto("id"))
                .col(big_integer_null("chat_session_id"))
                .col(string_len("channel", 16))
                .col(string_len("direction", 8))
                .col(string_len("user_id", 128))
                .col(string_len_null("provider_message_id", 128))
                .col(string_len_null("reply_to", 128))
                .col(string_len("kind", 16))
                .col(text("body"))
                .col(string_len("status", 16))
                .col(text_null("error"))
                .col(created_at())
                .col(updated_at())
                .foreign_key(&mut fk(
                    "message_log",
                    "chat_session_id",
                    "chat_sessions",
                    SetNull,
                ))
                .to_owned(),
            "message_log",
        ))
        .await?;
        // Provider ids are unique per channel and direction; NULLs (not yet sent) may repeat.
        m.create_index(index(
            "ux_message_log_provider_id",
            "message_log",
            &["channel", "direction", "provider_message_id"],
            true,
        ))
        .await?;
        m.create_index(index(
            "ix_message_log_tenant_user",
            "message_log",
            &["tenant_id", "user_id", "created_at"],
            false,
        ))
        .await?;

        m.create_table(with_tenant(
            Table::create()
                .table("reports")
                .col(big_pk_auto("id"))
                .col(string_len("kind", 16))
                .col(big_integer_null("student_id"))
                .col(big_integer_null("class_id"))
                .col(big_integer_null("exam_session_id"))
                .col(string_len("status", 16))
                .col(text_null("file_path"))
                .col(big_integer_null("size_bytes"))
                .col(text_null("error"))
                .col(created_at())
                .col(timestamp_with_time_zone_null("expires_at"))
                .foreign_key(&mut fk("reports", "student_id", "students", Cascade))
                .foreign_key(&mut fk("reports", "class_id", "classes", Cascade))
                .foreign_key(&mut fk(
                    "reports",
                    "exam_session_id",
                    "exam_sessions",
                    Cascade,
                ))
                .to_owned(),
            "reports",
        ))
        .await?;
        m.create_index(index(
            "ix_reports_tenant_created",
            "reports",
            &["tenant_id", "created_at"],
            false,
        ))
        .await?;

        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "reports",
            "message_log",
            "chat_sessions",
            "welcome_messages",
            "notices",
            "attendance",
            "marks",
            "exam_sessions",
            "subjects",
            "whatsapp_student_mappings",
            "students",
            "classes",
            "terms",
            "academic_sessions",
            "whatsapp_contacts",
            "whatsapp_numbers",
            "api_keys",
            "tenant_domains",
            "tenants",
        ] {
            m.drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

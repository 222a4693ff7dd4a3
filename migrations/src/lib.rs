//! Database migrations for the chatbot service; the same migrations run on SQLite and PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_initial;
mod m20261122_000002_conversation_routes;
mod m20261122_000003_message_payload;
mod m20261122_000004_shared_numbers;
mod m20261123_000001_background_jobs;
mod m20261123_000002_llm_usage;
mod m20261124_000001_engagement_reports;
mod m20261205_000001_pin_attempts;
mod m20261205_000002_contacts_seen;
mod m20261205_000003_number_secrets_updated;
mod m20261205_000004_contact_opt_changes;
mod m20261205_000005_number_templates;
mod m20261206_000001_school_data_versions;
mod m20261206_000002_message_log_reply_to;
mod m20261207_000001_handoff;
mod m20261207_000002_erasures;
mod m20261207_000003_school_settings;
mod m20261207_000004_inbox_feed;
mod m20261207_000005_analytics;

/// Every migration, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_initial::Migration),
            Box::new(m20261122_000002_conversation_routes::Migration),
            Box::new(m20261122_000003_message_payload::Migration),
            Box::new(m20261122_000004_shared_numbers::Migration),
            Box::new(m20261123_000001_background_jobs::Migration),
            Box::new(m20261123_000002_llm_usage::Migration),
            Box::new(m20261124_000001_engagement_reports::Migration),
            Box::new(m20261205_000001_pin_attempts::Migration),
            Box::new(m20261205_000002_contacts_seen::Migration),
            Box::new(m20261205_000003_number_secrets_updated::Migration),
            Box::new(m20261205_000004_contact_opt_changes::Migration),
            Box::new(m20261205_000005_number_templates::Migration),
            Box::new(m20261206_000001_school_data_versions::Migration),
            Box::new(m20261206_000002_message_log_reply_to::Migration),
            Box::new(m20261207_000001_handoff::Migration),
            Box::new(m20261207_000002_erasures::Migration),
            Box::new(m20261207_000003_school_settings::Migration),
            Box::new(m20261207_000004_inbox_feed::Migration),
            Box::new(m20261207_000005_analytics::Migration),
        ]
    }
}

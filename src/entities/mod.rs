//! sea-orm entities, one module per table.
//!
//! Tenant-owned tables implement [`TenantOwned`]; reach them through
//! [`crate::tenancy::TenantCtx`], never with a bare `Entity::find()`.

pub mod academic_session;
pub mod analytics_day;
pub mod api_key;
pub mod attendance;
pub mod background_job;
pub mod chat_session;
pub mod class;
pub mod conversation_action;
pub mod conversation_route;
pub mod engagement_report;
pub mod erasure;
pub mod exam_session;
pub mod llm_usage;
pub mod mark;
pub mod message_log;
pub mod notice;
pub mod pin_attempt;
pub mod report;
pub mod school_data_version;
pub mod student;
pub mod student_mapping;
pub mod subject;
pub mod tenant;
pub mod tenant_domain;
pub mod term;
pub mod welcome_message;
pub mod whatsapp_contact;
pub mod whatsapp_number;

use sea_orm::EntityTrait;

/// An entity whose rows belong to one tenant through a `tenant_id` column.
pub trait TenantOwned: EntityTrait {
    /// The `tenant_id` column of this table.
    fn tenant_column() -> Self::Column;
}

macro_rules! tenant_owned {
    ($($module:ident),* $(,)?) => {
        $(impl TenantOwned for $module::Entity {
            fn tenant_column() -> Self::Column {
                $module::Column::TenantId
            }
        })*
    };
}

tenant_owned!(
    academic_session,
    analytics_day,
    background_job,
    api_key,
    attendance,
    chat_session,
    class,
    conversation_action,
    engagement_report,
    erasure,
    exam_session,
    llm_usage,
    mark,
    message_log,
    notice,
    report,
    student,
    student_mapping,
    subject,
    tenant_domain,
    term,
    welcome_message,
    whatsapp_contact,
    whatsapp_number,
);

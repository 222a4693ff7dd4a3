//! `whatsapp_numbers` table.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "whatsapp_numbers")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: i64,
    pub provider: String,
    pub phone_number: String,
    pub phone_number_id: Option<String>,
    #[serde(skip_serializing)]
    pub app_secret: Option<String>,
    #[serde(skip_serializing)]
    pub verify_token: Option<String>,
    #[serde(skip_serializing)]
    pub access_token: Option<String>,
    pub account_sid: Option<String>,
    #[serde(skip_serializing)]
    pub auth_token: Option<String>,
    pub created_at: DateTimeUtc,
    /// A platform number serving several schools: the sender's phone picks the school.
    pub shared: bool,
    /// When the provider secrets were last set through the API or the CLI.
    pub secrets_updated_at: Option<DateTimeUtc>,
    /// The template broadcasts go as outside the 24-hour window
    /// ([`crate::tenancy::numbers::BroadcastTemplate`], as JSON).
    pub broadcast_template: Option<Json>,
}

// Hand-written so that secrets never reach logs through `{:?}`.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("provider", &self.provider)
            .field("phone_number", &self.phone_number)
            .field("phone_number_id", &self.phone_number_id)
            .field("app_secret", &"[redacted]")
            .field("verify_token", &"[redacted]")
            .field("access_token", &"[redacted]")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("shared", &self.shared)
            .field("secrets_updated_at", &self.secrets_updated_at)
            .field("broadcast_template", &self.broadcast_template)
            .finish()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

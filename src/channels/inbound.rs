//! What a parent wrote, whichever provider carried it: the one type the channel adapters hand
//! to the pipeline once a webhook is verified and parsed (`pipeline::accept`), and accepting
//! it (`accept_message`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// What the WhatsApp webhooks (Meta's and Twilio's) need: where they read numbers and
/// secrets, where they hand what they verified, and where they count. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    /// Data database (numbers, secrets, the message log for statuses).
    pub db: sea_orm::DatabaseConnection,
    /// Server secret (unseals the schools' provider secrets).
    pub secret: crate::crypto::SecretKey,
    /// `CHATBOT_PUBLIC_URL`: the base Twilio signs its calls with.
    pub public_url: Option<String>,
    /// Webhook counters.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where verified messages go (the pipeline's intake).
    pub intake: Arc<dyn Sink>,
    /// The schools' Meta app secrets, kept briefly so a webhook does not read them every time.
    pub app_secrets: super::meta_secrets::SecretsCache,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// Where verified messages go: the pipeline's intake implements it (channels know nothing of
/// jobs).
pub trait Sink: Send + Sync + 'static {
    /// Number `message` within its conversation and store it for its turn: `Some(seq)` when it
    /// is new, `None` for a repeat, an error when it may not be stored.
    fn accept(
        &self,
        message: InboundMessage,
    ) -> Pin<Box<dyn Future<Output = Result<Option<u64>>> + Send + '_>>;
}

/// What a message says, as the engine reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Said {
    /// Text (or the title of what was tapped).
    pub text: String,
    /// Choice id, for taps.
    pub choice: Option<String>,
    /// The message type, when it is one the rules cannot read (image, location...).
    #[serde(default)]
    pub unsupported: Option<String>,
}

/// A verified inbound message, provider-neutral.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundMessage {
    /// `meta` or `twilio`.
    pub provider: String,
    /// The business number written to: Meta `phone_number_id`, or Twilio's `To` (E.164).
    pub business: String,
    /// Sender, digits.
    pub from: String,
    /// Provider message id.
    pub message_id: String,
    /// Message type.
    pub kind: String,
    /// What it says.
    pub said: Said,
    /// Business-scoped user id, when sent.
    pub user_id: Option<String>,
    /// Sender's profile name.
    pub profile_name: Option<String>,
    /// When the webhook accepted it.
    pub received_at: DateTime<Utc>,
}

/// Accept one verified inbound message: it is numbered within its conversation and stored
/// for its turn, together with whatever other deliveries arrived meanwhile (a duplicate
/// delivery is `Ok(false)`). An error means it may not be stored: the webhook must not answer
/// 200, so the provider retries (the retry keeps its number and is stored once).
pub async fn accept_message(state: &Webhooks, message: InboundMessage) -> Result<bool> {
    let provider = crate::tenancy::Provider::named(&message.provider).as_str();
    let message_id = message.message_id.clone();
    if state.intake.accept(message).await?.is_none() {
        tracing::info!(%message_id, "duplicate delivery ignored");
        state.metrics.inc(
            "chatbot_webhook_messages_total",
            &[("provider", provider), ("outcome", "duplicate")],
        );
        return Ok(false);
    }
    state.metrics.inc(
        "chatbot_webhook_messages_total",
        &[("provider", provider), ("outcome", "queued")],
    );
    Ok(true)
}

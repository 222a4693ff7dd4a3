//! What a parent wrote, whichever provider carried it: the one type the channel adapters hand
//! to the pipeline once a webhook is verified and parsed (`pipeline::accept`), and accepting
//! it (`accept_message`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::state::AppState;

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
pub async fn accept_message(
    state: &AppState,
    message: InboundMessage,
) -> crate::error::Result<bool> {
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

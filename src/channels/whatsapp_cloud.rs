//! Meta's WhatsApp Cloud API webhook: `GET` verification and signed `POST` deliveries.
//!
//! A delivery is verified (HMAC-SHA256 of the raw body with an app secret, constant time)
//! before it is parsed, deduplicated on the message id, queued as an ingest job, and only then
//! acknowledged; if the job cannot be queued the answer is 503, so Meta retries.

use crate::error::ErrorCode;
use std::sync::Arc;
use std::time::Duration;

use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{Body, Request, Response, handler};
use serde::Deserialize;

pub use super::inbound::Said;
use super::inbound::{InboundMessage, Webhooks, accept_message};
use super::meta_secrets::same_secret;
pub use super::meta_secrets::{AppSecrets, SecretId, sign};
use crate::error::json_error;
use crate::tenancy;

/// Meta's own limit on a webhook body.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// How long the schools' app secrets are kept in memory, and the least time between two reads.
const SECRETS_MAX_AGE: Duration = Duration::from_secs(30);
const SECRETS_MIN_AGE: Duration = Duration::from_secs(1);

/// The schools' Meta app secrets, from memory when read less than `max_age` ago.
async fn app_secrets(state: &Webhooks, max_age: Duration) -> crate::error::Result<Arc<AppSecrets>> {
    if let Some(secrets) = state.app_secrets.fresh(max_age) {
        return Ok(secrets);
    }
    let secrets = Arc::new(AppSecrets::new(
        tenancy::meta_app_secrets(&state.db, &state.secret).await?,
    ));
    state.app_secrets.keep(secrets.clone());
    Ok(secrets)
}

/// `hub.*` query of the verification request.
#[derive(Debug, Deserialize)]
pub struct VerifyQuery {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// `GET`: answer the bare challenge when the verify token is one of a school's.
#[handler]
pub async fn verify(state: Data<&Webhooks>, Query(q): Query<VerifyQuery>) -> Response {
    let (Some("subscribe"), Some(token), Some(challenge)) =
        (q.mode.as_deref(), q.verify_token.as_deref(), q.challenge)
    else {
        return json_error(
            StatusCode::FORBIDDEN,
            ErrorCode::VerificationFailed,
            "hub.mode, hub.verify_token and hub.challenge are required",
        );
    };
    match tenancy::meta_verify_token_known(&state.db, &state.secret, token).await {
        Ok(true) => Response::builder()
            .content_type("text/plain")
            .body(challenge),
        Ok(false) => json_error(
            StatusCode::FORBIDDEN,
            ErrorCode::VerificationFailed,
            "unknown verify token",
        ),
        Err(e) => poem::error::ResponseError::as_response(&e),
    }
}

/// A webhook notification (only the fields we use; everything else is tolerated).
#[derive(Debug, Default, Deserialize)]
pub struct Notification {
    /// `whatsapp_business_account`.
    #[serde(default)]
    pub object: String,
    /// Entries.
    #[serde(default)]
    pub entry: Vec<Entry>,
}

/// One entry.
#[derive(Debug, Default, Deserialize)]
pub struct Entry {
    /// Changes.
    #[serde(default)]
    pub changes: Vec<Change>,
}

/// One change.
#[derive(Debug, Default, Deserialize)]
pub struct Change {
    /// `messages` for messages and statuses.
    #[serde(default)]
    pub field: String,
    /// The payload.
    #[serde(default)]
    pub value: ChangeValue,
}

/// The payload of a `messages` change.
#[derive(Debug, Default, Deserialize)]
pub struct ChangeValue {
    /// The business number written to.
    #[serde(default)]
    pub metadata: Metadata,
    /// Senders' profiles.
    #[serde(default)]
    pub contacts: Vec<Contact>,
    /// Inbound messages.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Delivery statuses of our messages.
    #[serde(default)]
    pub statuses: Vec<serde_json::Value>,
}

/// Business number metadata.
#[derive(Debug, Default, Deserialize)]
pub struct Metadata {
    /// Shown number.
    #[serde(default)]
    pub display_phone_number: String,
    /// Graph API id of the number.
    #[serde(default)]
    pub phone_number_id: String,
}

/// A sender's profile.
#[derive(Debug, Default, Deserialize)]
pub struct Contact {
    /// Phone (digits).
    #[serde(default)]
    pub wa_id: String,
    /// Business-scoped user id, when Meta sends one.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Profile.
    #[serde(default)]
    pub profile: Option<Profile>,
}

/// Profile name.
#[derive(Debug, Default, Deserialize)]
pub struct Profile {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
}

/// An inbound message, any type.
#[derive(Debug, Default, Deserialize)]
pub struct Message {
    /// Sender (digits).
    #[serde(default)]
    pub from: String,
    /// `wamid...`.
    #[serde(default)]
    pub id: String,
    /// Unix seconds, as a string.
    #[serde(default)]
    pub timestamp: String,
    /// `text`, `interactive`, `button`, `image`...
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Text body.
    #[serde(default)]
    pub text: Option<Text>,
    /// Tapped button or list row.
    #[serde(default)]
    pub interactive: Option<Interactive>,
    /// Template quick-reply button.
    #[serde(default)]
    pub button: Option<TemplateButton>,
}

/// Text body.
#[derive(Debug, Default, Deserialize)]
pub struct Text {
    /// The text.
    #[serde(default)]
    pub body: String,
}

/// An interactive reply.
#[derive(Debug, Default, Deserialize)]
pub struct Interactive {
    /// `button_reply` or `list_reply`.
    #[serde(default)]
    pub button_reply: Option<Reply>,
    /// List row.
    #[serde(default)]
    pub list_reply: Option<Reply>,
}

/// The id and title of what was tapped.
#[derive(Debug, Default, Deserialize)]
pub struct Reply {
    /// Our choice id.
    #[serde(default)]
    pub id: String,
    /// Its title.
    #[serde(default)]
    pub title: String,
}

/// A template quick-reply button.
#[derive(Debug, Default, Deserialize)]
pub struct TemplateButton {
    /// Payload.
    #[serde(default)]
    pub payload: String,
    /// Text.
    #[serde(default)]
    pub text: String,
}

impl Message {
    /// Text and choice of this message; media and other types are marked unsupported.
    pub fn said(&self) -> Said {
        let said = |text: &str, choice: Option<&str>| Said {
            text: text.to_string(),
            choice: choice.filter(|c| !c.is_empty()).map(str::to_string),
            unsupported: None,
        };
        match self.kind.as_str() {
            "text" => said(self.text.as_ref().map_or("", |t| t.body.as_str()), None),
            "interactive" => {
                let tapped = self
                    .interactive
                    .as_ref()
                    .and_then(|i| i.button_reply.as_ref().or(i.list_reply.as_ref()));
                match tapped {
                    Some(r) => said(&r.title, Some(&r.id)),
                    None => said("", None),
                }
            }
            "button" => match &self.button {
                Some(b) => said(&b.text, Some(&b.payload)),
                None => said("", None),
            },
            other => Said {
                unsupported: Some(other.to_string()),
                ..said("", None)
            },
        }
    }
}

/// Write `sent` / `delivered` / `read` / `failed` statuses of our replies to the message log of
/// the school each conversation belongs to.
async fn record_statuses(
    state: &Webhooks,
    business: &str,
    statuses: &[serde_json::Value],
) -> crate::error::Result<()> {
    let (owner, number) =
        match tenancy::by_business_number(&state.db, tenancy::Provider::Meta, business).await {
            Ok(found) => found,
            // Not known now (the database is busy or away): Meta is told to send them again.
            Err(e) if e.is_transient() => return Err(e),
            Err(_) => {
                tracing::warn!(business, "statuses for an unknown business number ignored");
                return Ok(());
            }
        };
    for s in statuses {
        let (Some(id), Some(status)) = (s["id"].as_str(), s["status"].as_str()) else {
            continue;
        };
        if !matches!(status, "sent" | "delivered" | "read" | "failed") {
            continue;
        }
        let error = s["errors"][0].as_object().map(|e| {
            format!(
                "{} {}",
                e.get("code").map(|c| c.to_string()).unwrap_or_default(),
                e.get("title").and_then(|t| t.as_str()).unwrap_or_default()
            )
            .trim()
            .to_string()
        });
        let update = super::StatusUpdate {
            recipient: s["recipient_id"].as_str(),
            id,
            status,
            error,
            tag: s["biz_opaque_callback_data"].as_str(),
        };
        super::record_status(&state.db, &owner, &number, update).await?;
    }
    Ok(())
}

/// `POST`: verify, parse, dedupe, queue, acknowledge.
#[handler]
pub async fn deliver(state: Data<&Webhooks>, req: &Request, body: Body) -> Response {
    let outcome = |o: &str| super::count_webhook(&state.metrics, "meta", o);
    let bytes = match super::read_webhook_body(body, MAX_BODY, "3 MB", "meta", &state.metrics).await
    {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let signature = req.header("x-hub-signature-256");
    // The schools' app secrets, read at most every 30 s. A number they do not know, or whose
    // secret does not verify, has them read again (at most once a second), so a number added or
    // a secret rotated a moment ago is not refused; the signature is checked again only when
    // that number's secret did change, so a bad delivery costs one HMAC however often it comes.
    let mut secrets = None;
    let mut signer = None;
    for max_age in [SECRETS_MAX_AGE, SECRETS_MIN_AGE] {
        let read = match app_secrets(&state, max_age).await {
            Ok(read) => read,
            Err(e) => {
                outcome("unavailable");
                return poem::error::ResponseError::as_response(&e);
            }
        };
        if let Some(before) = &secrets
            && std::sync::Arc::ptr_eq(before, &read)
        {
            break;
        }
        if !same_secret(secrets.as_deref(), &read, &bytes) {
            signer = read.verify(&bytes, signature);
        }
        secrets = Some(read);
        if signer.is_some() {
            break;
        }
    }
    let (Some(secrets), Some(signer)) = (secrets, signer) else {
        tracing::warn!("webhook rejected: bad or missing X-Hub-Signature-256");
        outcome("unauthorized");
        return json_error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidSignature,
            "X-Hub-Signature-256 does not match the app secret of the business number named",
        );
    };
    let notification: Notification = match serde_json::from_slice(&bytes) {
        Ok(n) => n,
        Err(e) => {
            outcome("malformed");
            return json_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidJson,
                format!("malformed webhook body: {e}"),
            );
        }
    };
    // One school's secret never speaks for another's number: every number the body names,
    // for messages and statuses alike, must be one signed with the secret that verified it.
    let changes = || notification.entry.iter().flat_map(|e| &e.changes);
    if let Some(foreign) = changes().map(|c| &c.value).find(|v| {
        let names = !v.metadata.phone_number_id.is_empty();
        (names || !v.messages.is_empty() || !v.statuses.is_empty())
            && !secrets.owns(signer, &v.metadata.phone_number_id)
    }) {
        tracing::warn!(
            number = ?foreign.metadata.phone_number_id,
            "webhook rejected: it names a business number its signing secret does not own"
        );
        outcome("unauthorized");
        return json_error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidSignature,
            "the body names a business number that is not signed with this app secret",
        );
    }
    let mut queued = 0;
    for change in changes() {
        let value = &change.value;
        for message in &value.messages {
            if message.id.is_empty() || message.from.is_empty() {
                continue;
            }
            let contact = value.contacts.iter().find(|c| c.wa_id == message.from);
            let job = InboundMessage {
                provider: "meta".into(),
                business: value.metadata.phone_number_id.clone(),
                from: message.from.clone(),
                message_id: message.id.clone(),
                kind: message.kind.clone(),
                said: message.said(),
                user_id: contact.and_then(|c| c.user_id.clone()),
                profile_name: contact
                    .and_then(|c| c.profile.as_ref())
                    .and_then(|p| p.name.clone()),
                received_at: chrono::Utc::now(),
            };
            match accept_message(&state, job).await {
                Ok(true) => queued += 1,
                Ok(false) => {}
                Err(e) => {
                    outcome("unavailable");
                    tracing::error!(error = %e, message_id = %message.id, "ingest job not persisted; asking Meta to retry");
                    return json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        ErrorCode::Unavailable,
                        "cannot queue the message; retry later",
                    );
                }
            }
        }
        if !value.statuses.is_empty()
            && let Err(e) =
                record_statuses(&state, &value.metadata.phone_number_id, &value.statuses).await
        {
            // Statuses are informational: a failure is logged, and Meta's retry may bring it again.
            tracing::warn!(error = %e, "delivery statuses not recorded");
            outcome("unavailable");
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "cannot record statuses; retry later",
            );
        }
    }
    tracing::info!(queued, "webhook accepted");
    outcome("accepted");
    Response::builder()
        .status(StatusCode::OK)
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

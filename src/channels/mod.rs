//! Messaging channels: WhatsApp through Meta's Cloud API (webhook in, Graph API out) and
//! through Twilio (webhook in, Messages API out); and the website engagement flow over
//! WebSocket.

pub mod engagement;
pub mod graph;
pub mod inbound;
pub mod meta_secrets;
pub mod mock_graph;
pub mod twilio;
pub mod whatsapp_cloud;

use crate::error::ErrorCode;
use std::time::Duration;

use poem::Response;
use poem::http::StatusCode;

use crate::domain::PhoneNumber;
use crate::entities::whatsapp_number;
use crate::error::{Error, Result, json_error};
use crate::metrics::Metrics;
use crate::tenancy::{self, TenantCtx};

/// The HTTP client both senders use: bounded connect and request times.
pub(crate) fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| Error::Internal(anyhow::anyhow!("HTTP client: {e}")))
}

/// The service's base URL as providers and browsers reach it: `CHATBOT_PUBLIC_URL`, or without
/// it the request's `X-Forwarded-Proto` and `X-Forwarded-Host` / `Host`.
pub fn public_base(public_url: Option<&str>, req: &poem::Request) -> String {
    if let Some(base) = public_url {
        return base.trim_end_matches('/').to_string();
    }
    let scheme = req
        .header("x-forwarded-proto")
        .and_then(|p| p.split(',').next())
        .map(str::trim)
        .filter(|p| matches!(*p, "http" | "https"))
        .unwrap_or("http");
    let host = req
        .header("x-forwarded-host")
        .or_else(|| req.header("host"))
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// Count one webhook request of `provider` by outcome.
pub(crate) fn count_webhook(metrics: &Metrics, provider: &'static str, outcome: &str) {
    metrics.inc(
        "chatbot_webhook_requests_total",
        &[("provider", provider), ("outcome", outcome)],
    );
}

/// A webhook body of at most `limit` bytes (`limit_text` says it to the caller), or the error
/// answer (413, 400), counted.
pub(crate) async fn read_webhook_body(
    body: poem::Body,
    limit: usize,
    limit_text: &str,
    provider: &'static str,
    metrics: &Metrics,
) -> std::result::Result<bytes::Bytes, Response> {
    match crate::http::read_limited(body, limit).await {
        Ok(Some(b)) => Ok(b),
        Ok(None) => {
            count_webhook(metrics, provider, "too_large");
            Err(json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                format!("webhook bodies are limited to {limit_text}"),
            ))
        }
        Err(e) => {
            count_webhook(metrics, provider, "malformed");
            Err(json_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                format!("cannot read body: {e}"),
            ))
        }
    }
}

/// A provider's delivery status of one message we sent.
pub(crate) struct StatusUpdate<'a> {
    /// To whom it went.
    pub recipient: Option<&'a str>,
    /// The provider's id of the message.
    pub id: &'a str,
    /// `sent`, `delivered`, `read` or `failed`.
    pub status: &'a str,
    /// The provider's error, when it failed.
    pub error: Option<String>,
    /// What the message was tagged with when sent (`transcript::reply_tag`), when the provider
    /// says it back.
    pub tag: Option<&'a str>,
}

/// Write a delivery status of the message we sent as `id` to `recipient` from `number` into the
/// message log of the school that conversation belongs to (the owner; on a shared number, the
/// recipient's school that sent it). A status of nobody's message changes nothing.
pub(crate) async fn record_status(
    db: &sea_orm::DatabaseConnection,
    owner: &TenantCtx,
    number: &whatsapp_number::Model,
    update: StatusUpdate<'_>,
) -> Result<()> {
    use crate::conversation::transcript;
    let StatusUpdate {
        recipient,
        id,
        status,
        error,
        tag,
    } = update;
    let schools = match recipient.map(PhoneNumber::parse) {
        Some(Ok(phone)) => tenancy::schools_on(db, owner, number, &phone).await?,
        _ if number.shared => Vec::new(),
        _ => vec![owner.clone()],
    };
    for ctx in &schools {
        if transcript::record_status(db, ctx, id, status, error.clone())
            .await?
            .is_some()
        {
            return Ok(());
        }
    }
    // No reply has this provider id: one whose worker died before recording it, named by the
    // tag it was sent with, learns it now (so it is not sent again), and takes the status.
    let Some(tag) = tag else {
        return Ok(());
    };
    for ctx in &schools {
        if transcript::reconcile(db, ctx, "whatsapp", tag, id).await? {
            transcript::record_status(db, ctx, id, status, error).await?;
            return Ok(());
        }
    }
    Ok(())
}

/// The WhatsApp sending settings, checked when the configuration is loaded.
impl crate::config::Check for crate::config::WhatsApp {
    fn check(&mut self) -> std::result::Result<(), crate::config::Problem> {
        use crate::config::keys::whatsapp as key;
        key::api_base.require_http_url(&self.api_base)?;
        key::twilio_api_base.require_http_url(&self.twilio_api_base)?;
        key::send_rate_per_second.require_within(
            self.send_rate_per_second,
            1..=10_000,
            "messages per second",
        )
    }
}

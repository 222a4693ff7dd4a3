//! Messaging channels: WhatsApp through Meta's Cloud API (webhook in, Graph API out) and
//! through Twilio (webhook in, Messages API out).

pub mod graph;
pub mod mock_graph;
pub mod twilio;
pub mod whatsapp_cloud;

use std::time::Duration;

use poem::Response;
use poem::http::StatusCode;

use crate::error::{Error, Result, json_error};
use crate::metrics::Metrics;

/// The HTTP client both senders use: bounded connect and request times.
pub(crate) fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| Error::Internal(anyhow::anyhow!("HTTP client: {e}")))
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
                "payload_too_large",
                format!("webhook bodies are limited to {limit_text}"),
            ))
        }
        Err(e) => {
            count_webhook(metrics, provider, "malformed");
            Err(json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("cannot read body: {e}"),
            ))
        }
    }
}

//! Meta's Graph API for sending: `POST {base}/{phone-number-id}/messages`.

use serde_json::{Value, json};

use crate::conversation::Reply;
use crate::error::Result;

/// WhatsApp limits on interactive titles.
const BUTTON_TITLE: usize = 20;
const ROW_TITLE: usize = 24;
const ROW_DESCRIPTION: usize = 72;

/// Why a send failed, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Rate limits (429, Meta error 130429), server errors, network trouble: retry later.
    #[error("retryable: {0}")]
    Retryable(String),
    /// The request itself is refused (bad recipient, outside the 24-hour window...): retrying
    /// sends the same refusal.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Send a provider request and read its JSON answer. A failure says whether trying again can
/// help: network trouble, 429, 5xx, or what the provider's answer marks as throttling
/// (`throttled`) are retryable; other refusals are permanent.
pub(crate) async fn exchange(
    request: reqwest::RequestBuilder,
    api: &str,
    throttled: impl Fn(&Value) -> bool,
) -> Result<Value, SendError> {
    let response = request
        .send()
        .await
        .map_err(|e| SendError::Retryable(format!("{api} unreachable: {e}")))?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(answer);
    }
    let reason = format!("{api} answered {status}: {answer}");
    if status.as_u16() == 429 || status.is_server_error() || throttled(&answer) {
        Err(SendError::Retryable(reason))
    } else {
        Err(SendError::Permanent(reason))
    }
}

/// A Graph API client.
#[derive(Clone, Debug)]
pub struct GraphClient {
    http: reqwest::Client,
    base: String,
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

/// The Graph API body that shows `reply` to `to` (digits).
pub fn message_body(to: &str, reply: &Reply) -> Value {
    let base = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to});
    let mut body = base;
    let extra = match reply {
        Reply::Text { text } => {
            json!({"type": "text", "text": {"body": text, "preview_url": false}})
        }
        Reply::Choices { text, choices, .. }
            if reply.shape() == crate::conversation::reply::Shape::Buttons =>
        {
            json!({
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "body": {"text": text},
                    "action": {"buttons": choices.iter().map(|c| json!({
                        "type": "reply",
                        "reply": {"id": c.id, "title": clip(&c.label, BUTTON_TITLE)}
                    })).collect::<Vec<_>>()}
                }
            })
        }
        Reply::Choices {
            text,
            button,
            choices,
        } => json!({
            "type": "interactive",
            "interactive": {
                "type": "list",
                "body": {"text": text},
                "action": {
                    "button": clip(button, BUTTON_TITLE),
                    "sections": [{"rows": choices.iter().map(|c| {
                        let mut row = json!({"id": c.id, "title": clip(&c.label, ROW_TITLE)});
                        if c.label.chars().count() > ROW_TITLE {
                            row["description"] = json!(clip(&c.label, ROW_DESCRIPTION));
                        }
                        row
                    }).collect::<Vec<_>>()}]
                }
            }
        }),
        Reply::Document {
            url,
            filename,
            caption,
        } => json!({
            "type": "document",
            "document": {"link": url, "filename": filename, "caption": caption}
        }),
    };
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

impl GraphClient {
    /// A client for `base` (e.g. `https://graph.facebook.com/v21.0`, or a mock).
    pub fn new(base: &str) -> Result<Self> {
        let http = super::http_client()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// Send one message; returns Meta's message id.
    pub async fn send(
        &self,
        phone_number_id: &str,
        token: &str,
        body: &Value,
    ) -> Result<String, SendError> {
        let url = format!("{}/{}/messages", self.base, phone_number_id);
        let request = self.http.post(&url).bearer_auth(token).json(body);
        // Meta's 130429: the business number's throughput limit.
        let answer = exchange(request, "Graph API", |a| a["error"]["code"] == 130429).await?;
        Ok(answer["messages"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }
}

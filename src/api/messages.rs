//! `messages/`: simulate an inbound message from a phone and get the bot's replies back. API
//! consumers and the eval harness talk to the engine through it.

use crate::error::ErrorCode;
use chrono::Utc;
use poem::web::Data;
use poem_openapi::{Object, OpenApi, payload::Json};

use super::ApiTags;
use super::auth::Caller;
use super::respond::ApiResult;
use crate::conversation::{Inbound, Reply};
use crate::domain::PhoneNumber;
use crate::error::Error;
use crate::state::AppState;

/// WhatsApp's limit on a text message.
const MAX_TEXT: usize = 4096;

/// An inbound message, as if `phone` had sent it.
#[derive(Debug, Object)]
pub struct InboundMessage {
    /// Sender's phone number, in international form (`+2348030000002`).
    #[oai(validator(pattern = r"^\+?[1-9][0-9]{7,14}$"))]
    pub phone: String,
    /// What they typed; at most 4096 characters.
    #[oai(default, validator(max_length = 4096))]
    pub text: String,
    /// Id of a tapped button or list row from a previous reply (`choices[].id`).
    #[oai(nullable)]
    pub choice: Option<String>,
    /// Conversation channel within the API (1-16 of `a-z` and `_`); sessions are kept per
    /// channel, stored as `api:<channel>` (default `api`), so an API conversation is never a
    /// WhatsApp one. Wrong PINs count against the student and the caller's credential.
    #[oai(nullable, validator(pattern = "^[a-z_]{1,16}$"))]
    pub channel: Option<String>,
}

/// One choice of a reply.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ChoiceOut {
    /// Send it back as `choice` to pick it.
    pub id: String,
    /// Label shown.
    pub label: String,
}

/// One outbound message.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ReplyOut {
    /// `text`, `choices` or `document`.
    #[oai(rename = "type")]
    pub kind: String,
    /// Body text (caption for documents).
    pub text: String,
    /// Choices, for `choices` replies (up to 3 show as buttons on WhatsApp, up to 10 as a list).
    pub choices: Vec<ChoiceOut>,
    /// Document link, for `document` replies.
    pub url: Option<String>,
    /// The reply as a channel without buttons shows it (numbered choices).
    pub plain: String,
}

/// The bot's answer to one message.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct MessageResult {
    /// Replies, in order.
    pub replies: Vec<ReplyOut>,
    /// Conversation state after the message (e.g. `main_menu`, `awaiting_pin`).
    pub state: String,
    /// The text, when no rule could place it.
    pub unhandled: Option<String>,
    /// Effects triggered (e.g. `{"type": "generate_report", ...}`).
    pub effects: Vec<serde_json::Value>,
}

fn reply_out(reply: &Reply) -> ReplyOut {
    let plain = reply.to_plain();
    match reply {
        Reply::Text { text } => ReplyOut {
            kind: "text".into(),
            text: text.clone(),
            choices: vec![],
            url: None,
            plain,
        },
        Reply::Choices { text, choices, .. } => ReplyOut {
            kind: "choices".into(),
            text: text.clone(),
            choices: choices
                .iter()
                .map(|c| ChoiceOut {
                    id: c.id.clone(),
                    label: c.label.clone(),
                })
                .collect(),
            url: None,
            plain,
        },
        Reply::Document { url, caption, .. } => ReplyOut {
            kind: "document".into(),
            text: caption.clone(),
            choices: vec![],
            url: Some(url.clone()),
            plain,
        },
    }
}

/// `messages/`.
pub struct MessagesApi;

#[OpenApi(tag = "ApiTags::Conversations")]
impl MessagesApi {
    /// Send a message as a parent's phone and get the bot's replies. The school is the API
    /// key's; the conversation (session, verification, language) is the phone's, per channel.
    #[oai(path = "/messages/", method = "post", operation_id = "send_message")]
    async fn send(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        body: Json<InboundMessage>,
    ) -> ApiResult<Json<MessageResult>> {
        let tenant = caller.require("messages")?;
        let phone = PhoneNumber::parse(&body.phone)?;
        if body.text.chars().count() > MAX_TEXT {
            return Err(Error::invalid(
                ErrorCode::TextTooLong,
                format!("text is limited to {MAX_TEXT} characters"),
            )
            .into());
        }
        let channel = body.channel.as_deref().unwrap_or("api");
        if channel.is_empty()
            || channel.len() > 16
            || !channel.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            return Err(Error::invalid(
                ErrorCode::InvalidChannel,
                "channel is 1-16 characters of a-z and _",
            )
            .into());
        }
        let inbound = Inbound {
            text: body.text.clone(),
            choice: body.choice.clone(),
            unsupported: None,
            provider_id: None,
        };
        // The API's own namespace: never `whatsapp` or `twilio`, whatever the caller names.
        let channel = match channel {
            "api" => "api".to_string(),
            other => format!("api:{other}"),
        };
        let guesser = Some(super::results::guesser(&caller));
        let turn = crate::pipeline::converse_as(
            state.turns(),
            tenant,
            &channel,
            &phone,
            &inbound,
            Utc::now(),
            guesser,
        )
        .await?;
        let outcome = turn.outcome;
        Ok(Json(MessageResult {
            replies: outcome.replies.iter().map(reply_out).collect(),
            state: outcome.session.state.name().to_string(),
            unhandled: outcome.unhandled,
            effects: outcome
                .effects
                .iter()
                .map(|e| serde_json::to_value(e).unwrap_or_default())
                .collect(),
        }))
    }
}

//! `conversations/`: what parents wrote, and staff stepping in where the bot could not help:
//! the list (waiting first when filtered so), a transcript, taking a conversation over,
//! answering it, and handing it back to the bot.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};

use super::ApiTags;
use super::auth::Caller;
use super::respond::{ApiResult, Page, fetch_page};
use crate::conversation::{Reply, handoff, input};
use crate::entities::{chat_session, message_log};
use crate::error::Error;
use crate::state::AppState;
use crate::tenancy::TenantCtx;

/// Who answers a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum Status {
    /// The bot.
    Bot,
    /// Nobody yet: the parent asked for a person, or the bot could not answer.
    Waiting,
    /// A member of staff (`assignee`).
    Staff,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Bot => handoff::BOT,
            Self::Waiting => handoff::WAITING,
            Self::Staff => handoff::STAFF,
        }
    }

    fn parse(stored: &str) -> Self {
        match stored {
            handoff::WAITING => Self::Waiting,
            handoff::STAFF => Self::Staff,
            _ => Self::Bot,
        }
    }
}

/// A conversation: one parent on one channel.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ConversationOut {
    /// Id.
    pub id: i64,
    /// `whatsapp`, `api`...
    pub channel: String,
    /// The parent's phone (E.164).
    pub phone: String,
    /// Who answers it.
    pub status: Status,
    /// The member of staff answering it, when `staff`.
    pub assignee: Option<String>,
    /// When it last moved between the bot and staff.
    pub status_changed_at: Option<DateTime<Utc>>,
    /// The last message, either way.
    pub last_activity_at: DateTime<Utc>,
}

impl From<chat_session::Model> for ConversationOut {
    fn from(c: chat_session::Model) -> Self {
        Self {
            id: c.id,
            channel: c.channel,
            phone: c.user_id,
            status: Status::parse(&c.handoff),
            assignee: c.assignee,
            status_changed_at: c.handoff_at,
            last_activity_at: c.updated_at,
        }
    }
}

/// A message of a transcript.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct MessageOut {
    /// Id.
    pub id: i64,
    /// `in` (from the parent) or `out`.
    pub direction: String,
    /// `text`, `choices`, `document`, or the type of an unsupported message.
    pub kind: String,
    /// What it said (PINs masked).
    pub body: String,
    /// `received`; for replies `queued`, `sent`, `delivered`, `read`, `failed`.
    pub status: String,
    /// Why a reply failed.
    pub error: Option<String>,
    /// Written by a member of staff (rather than the bot).
    pub from_staff: bool,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl From<message_log::Model> for MessageOut {
    fn from(m: message_log::Model) -> Self {
        Self {
            id: m.id,
            from_staff: m
                .reply_to
                .as_deref()
                .is_some_and(|r| r.starts_with("staff:")),
            direction: m.direction,
            kind: m.kind,
            body: input::withhold_pins(&m.body).into_owned(),
            status: m.status,
            error: m.error,
            created_at: m.created_at,
        }
    }
}

/// A staff reply.
#[derive(Debug, Object)]
pub struct ReplyIn {
    /// The text, 1 to 4096 characters.
    #[oai(validator(min_length = 1, max_length = 4096))]
    pub text: String,
}

#[derive(ApiResponse)]
enum Queued {
    /// Queued for delivery: its `status` moves as the provider reports it.
    #[oai(status = 202)]
    Queued(Json<MessageOut>),
}

async fn one(state: &AppState, ctx: &TenantCtx, id: i64) -> ApiResult<chat_session::Model> {
    Ok(handoff::find(&state.db, ctx, id).await?)
}

/// `conversations/`.
pub struct ConversationsApi;

#[OpenApi(tag = "ApiTags::Inbox")]
impl ConversationsApi {
    /// Conversations, latest activity first.
    #[oai(
        path = "/conversations/",
        method = "get",
        operation_id = "list_conversations"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        /// Only those the bot, staff, or nobody yet answers.
        status: Query<Option<Status>>,
        /// Only this channel (`whatsapp`, `api`...).
        #[oai(validator(max_length = 32))]
        channel: Query<Option<String>>,
        /// Only this parent's phone (E.164).
        #[oai(validator(max_length = 32))]
        phone: Query<Option<String>>,
        /// Only those active since.
        since: Query<Option<DateTime<Utc>>>,
        /// Page number, from 1.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u64>>,
        /// Items per page, 1 to 100 (default 25).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        page_size: Query<Option<u64>>,
    ) -> ApiResult<Json<Page<ConversationOut>>> {
        let ctx = caller.require("staff")?;
        let mut query = ctx.find::<chat_session::Entity>();
        if let Some(s) = status.0 {
            query = query.filter(chat_session::Column::Handoff.eq(s.as_str()));
        }
        if let Some(c) = channel.0 {
            query = query.filter(chat_session::Column::Channel.eq(c));
        }
        if let Some(p) = phone.0 {
            let p = crate::domain::PhoneNumber::parse(&p)?;
            query = query.filter(chat_session::Column::UserId.eq(p.as_str()));
        }
        if let Some(t) = since.0 {
            query = query.filter(chat_session::Column::UpdatedAt.gte(t));
        }
        let query = query
            .order_by_desc(chat_session::Column::UpdatedAt)
            .order_by_desc(chat_session::Column::Id);
        let slice = fetch_page(&state.db, query, page.0, page_size.0).await?;
        let results = slice.rows.iter().cloned().map(Into::into).collect();
        Ok(Json(slice.page(results)))
    }

    /// One conversation.
    #[oai(
        path = "/conversations/:id/",
        method = "get",
        operation_id = "get_conversation"
    )]
    async fn get(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Json<ConversationOut>> {
        let ctx = caller.require("staff")?;
        Ok(Json(one(&state, ctx, id.0).await?.into()))
    }

    /// A conversation's transcript, newest first (PINs masked).
    #[oai(
        path = "/conversations/:id/messages/",
        method = "get",
        operation_id = "list_conversation_messages"
    )]
    async fn messages(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
        /// Page number, from 1.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u64>>,
        /// Items per page, 1 to 100 (default 25).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        page_size: Query<Option<u64>>,
    ) -> ApiResult<Json<Page<MessageOut>>> {
        let ctx = caller.require("staff")?;
        let c = one(&state, ctx, id.0).await?;
        let query = ctx
            .find::<message_log::Entity>()
            .filter(message_log::Column::Channel.eq(c.channel))
            .filter(message_log::Column::UserId.eq(c.user_id))
            .order_by_desc(message_log::Column::Id);
        let slice = fetch_page(&state.db, query, page.0, page_size.0).await?;
        let results = slice.rows.iter().cloned().map(Into::into).collect();
        Ok(Json(slice.page(results)))
    }

    /// Take a conversation over: the bot stops answering it until it is released. Refused
    /// (409) while another member of staff has it.
    #[oai(
        path = "/conversations/:id/takeover/",
        method = "post",
        operation_id = "take_over_conversation"
    )]
    async fn take_over(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Json<ConversationOut>> {
        let ctx = caller.require("staff")?;
        let c = handoff::take_over(&state.db, ctx, id.0, &caller.who(), Utc::now()).await?;
        Ok(Json(c.into()))
    }

    /// Hand a conversation back to the bot.
    #[oai(
        path = "/conversations/:id/release/",
        method = "post",
        operation_id = "release_conversation"
    )]
    async fn release(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Json<ConversationOut>> {
        let ctx = caller.require("staff")?;
        let c = handoff::release(&state.db, ctx, id.0, &caller.who(), Utc::now()).await?;
        Ok(Json(c.into()))
    }

    /// Answer the parent of a conversation taken over (409 otherwise). The reply goes out
    /// like the bot's: paced, retried, sent once, as the number's template outside
    /// WhatsApp's 24-hour window; its `status` shows in the transcript.
    #[oai(
        path = "/conversations/:id/reply/",
        method = "post",
        operation_id = "reply_to_conversation"
    )]
    async fn reply(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
        body: Json<ReplyIn>,
    ) -> ApiResult<Queued> {
        let ctx = caller.require("staff")?;
        let text = body.0.text.trim();
        if text.is_empty() {
            return Err(Error::invalid("empty_reply", "the reply says nothing").into());
        }
        let row = crate::pipeline::staff::reply(
            &state.pipeline,
            ctx,
            id.0,
            &caller.who(),
            Reply::text(text),
            Utc::now(),
        )
        .await?;
        Ok(Queued::Queued(Json(row.into())))
    }
}

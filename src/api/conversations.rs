//! `conversations/`: what parents wrote, and staff stepping in where the bot could not help:
//! the list (waiting first when filtered so), a transcript, taking a conversation over,
//! answering it, handing it back to the bot, and the changes as they happen (Server-Sent
//! Events).

use crate::error::ErrorCode;
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};

use super::ApiTags;
use super::auth::Caller;
use super::contacts::{LastMessageOut, LinkedStudentOut};
use super::respond::{ApiResult, Page, fetch_page};
use crate::conversation::{Reply, feed, handoff, input, transcript};
use crate::entities::{chat_session, message_log, student, student_mapping};
use crate::error::Error;
use crate::school::students;
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
    /// The last message's first characters (PINs masked).
    pub last_message: Option<LastMessageOut>,
    /// The children linked to the parent's phone (on `conversations/{id}/`).
    pub children: Option<Vec<LinkedStudentOut>>,
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
            last_message: None,
            children: None,
        }
    }
}

/// Conversations as listed: each with its last message.
async fn listed(
    state: &AppState,
    ctx: &TenantCtx,
    rows: Vec<chat_session::Model>,
) -> ApiResult<Vec<ConversationOut>> {
    let mut out = Vec::with_capacity(rows.len());
    for c in rows {
        let last = transcript::last(&state.db, ctx, Some(&c.channel), &c.user_id).await?;
        let mut o = ConversationOut::from(c);
        o.last_message = last.map(Into::into);
        out.push(o);
    }
    Ok(out)
}

/// The school's children linked to `phone` (active ones, by name).
async fn children_of(
    state: &AppState,
    ctx: &TenantCtx,
    phone: &str,
) -> ApiResult<Vec<LinkedStudentOut>> {
    let phone = crate::domain::PhoneNumber::parse(phone)?;
    Ok(students::linked_to_phone(&state.db, ctx, &phone)
        .await?
        .iter()
        .map(Into::into)
        .collect())
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

/// A staff reply: a text, or a document with the text as its caption.
#[derive(Debug, Object)]
pub struct ReplyIn {
    /// The text, 1 to 4096 characters, not only spaces (a document's caption: at most 1024).
    #[oai(validator(
        min_length = 1,
        max_length = 4096,
        pattern = r"[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    ))]
    pub text: String,
    /// A document to send, by its link.
    pub document: Option<DocumentIn>,
}

/// A document staff send by link (a form, a letter): the provider fetches it from there.
#[derive(Debug, Object)]
pub struct DocumentIn {
    /// Where the provider fetches it: an `https://` link, at most 2048 characters.
    #[oai(validator(
        max_length = 2048,
        pattern = r"^https://[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:[0-9]{1,4})?(/[!-~]*)?$"
    ))]
    pub url: String,
    /// The file name the parent sees (default: the link's last part).
    #[oai(validator(max_length = 120))]
    pub filename: Option<String>,
}

/// Longest caption of a document (WhatsApp's limit).
const MAX_CAPTION: usize = 1024;

impl ReplyIn {
    /// The reply to send, checked.
    fn reply(self) -> Result<Reply, Error> {
        let text = self.text.trim();
        if text.is_empty() {
            return Err(Error::invalid(
                ErrorCode::EmptyReply,
                "the reply says nothing",
            ));
        }
        let Some(doc) = self.document else {
            return Ok(Reply::text(text));
        };
        if text.chars().count() > MAX_CAPTION {
            return Err(Error::invalid(
                ErrorCode::InvalidField,
                format!("a document's caption (`text`) is at most {MAX_CAPTION} characters"),
            ));
        }
        let url = reqwest::Url::parse(doc.url.trim())
            .ok()
            .filter(|u| u.scheme() == "https" && u.host_str().is_some())
            .ok_or_else(|| {
                Error::invalid(
                    ErrorCode::InvalidUrl,
                    "`document.url` must be an https:// link the provider can fetch",
                )
            })?;
        let filename = doc
            .filename
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .or_else(|| {
                url.path_segments()
                    .and_then(|mut s| s.next_back().map(str::to_string))
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| "document".to_string());
        if filename
            .chars()
            .any(|c| c.is_control() || matches!(c, '/' | '\\'))
        {
            return Err(Error::invalid(
                ErrorCode::InvalidField,
                "`document.filename` is a file name, without / or \\",
            ));
        }
        Ok(Reply::Document {
            url: url.to_string(),
            filename,
            caption: text.to_string(),
        })
    }
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

/// What an inbox event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum EventKind {
    /// A message, new or with a new delivery status.
    Message,
    /// A conversation moved between the bot and staff, or staff answered it.
    Conversation,
}

/// A message as an event tells it.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct EventMessage {
    /// The message's id (the same message comes again when its status moves).
    pub id: i64,
    /// Its conversation.
    pub conversation: Option<i64>,
    /// `whatsapp`, `api`...
    pub channel: String,
    /// The parent's phone.
    pub phone: String,
    /// `in` (from the parent) or `out`.
    pub direction: String,
    /// `text`, `choices`, `document`...
    pub kind: String,
    /// Its first characters (PINs masked).
    pub preview: String,
    /// `received`; for replies `queued`, `sent`, `delivered`, `read`, `failed`.
    pub status: String,
    /// Why a reply failed.
    pub error: Option<String>,
    /// Written by a member of staff.
    pub from_staff: bool,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// A conversation's move as an event tells it.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct EventConversation {
    /// The conversation's id.
    pub id: Option<i64>,
    /// `whatsapp`, `api`...
    pub channel: String,
    /// The parent's phone.
    pub phone: String,
    /// `escalated`, `takeover`, `reply`, `release`.
    pub action: String,
    /// `parent`, `bot`, or the credential that acted.
    pub actor: String,
    /// Who answers it now.
    pub status: Status,
    /// When.
    pub at: DateTime<Utc>,
}

/// One change in the school's conversations (the SSE event's name is its `kind`).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct InboxEvent {
    /// What it is about.
    pub kind: EventKind,
    /// For `message`.
    pub message: Option<EventMessage>,
    /// For `conversation`.
    pub conversation: Option<EventConversation>,
}

impl From<feed::Change> for InboxEvent {
    fn from(change: feed::Change) -> Self {
        match change {
            feed::Change::Message(m) => Self {
                kind: EventKind::Message,
                message: Some(EventMessage {
                    id: m.id,
                    conversation: m.chat_session_id,
                    from_staff: m
                        .reply_to
                        .as_deref()
                        .is_some_and(|r| r.starts_with("staff:")),
                    channel: m.channel,
                    phone: m.user_id,
                    direction: m.direction,
                    kind: m.kind,
                    preview: feed::Change::preview(&m.body),
                    status: m.status,
                    error: m.error,
                    created_at: m.created_at,
                }),
                conversation: None,
            },
            feed::Change::Action {
                action,
                conversation,
            } => Self {
                kind: EventKind::Conversation,
                message: None,
                conversation: Some(EventConversation {
                    id: conversation,
                    status: match action.action.as_str() {
                        "escalated" => Status::Waiting,
                        "release" => Status::Bot,
                        _ => Status::Staff,
                    },
                    channel: action.channel,
                    phone: action.user_id,
                    action: action.action,
                    actor: action.actor,
                    at: action.created_at,
                }),
            },
        }
    }
}

/// How often an event stream looks for changes.
const EVENTS_EVERY: std::time::Duration = std::time::Duration::from_millis(500);
/// How long one event stream lasts before it ends (the client connects again: a revoked
/// credential is refused then).
const EVENTS_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// The school's changes from now on, as a stream that ends after [`EVENTS_FOR`] or at a
/// database error.
fn inbox_events(
    state: &AppState,
    ctx: TenantCtx,
    slot: crate::api::limits::StreamSlot,
    lasts: std::time::Duration,
) -> futures::stream::BoxStream<'static, InboxEvent> {
    use futures::StreamExt;
    struct Reader {
        db: sea_orm::DatabaseConnection,
        ctx: TenantCtx,
        cursor: feed::Cursor,
        pending: std::collections::VecDeque<InboxEvent>,
        ticks: tokio::time::Interval,
        ends: tokio::time::Instant,
        read: bool,
        _slot: crate::api::limits::StreamSlot,
    }
    let mut ticks = tokio::time::interval(EVENTS_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reader = Reader {
        db: state.db.clone(),
        cursor: feed::Cursor::starting(Utc::now()),
        ctx,
        pending: Default::default(),
        ticks,
        ends: tokio::time::Instant::now() + lasts,
        read: false,
        _slot: slot,
    };
    futures::stream::unfold(reader, |mut r| async move {
        loop {
            if let Some(event) = r.pending.pop_front() {
                return Some((event, r));
            }
            if r.read && tokio::time::Instant::now() >= r.ends {
                return None;
            }
            r.read = true;
            r.ticks.tick().await;
            match r.cursor.next(&r.db, &r.ctx).await {
                Ok(changes) => r.pending.extend(changes.into_iter().map(InboxEvent::from)),
                Err(e) => {
                    tracing::warn!(tenant = r.ctx.schema_name(), error = %e, "inbox event stream ended");
                    return None;
                }
            }
        }
    })
    .boxed()
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
        #[oai(validator(pattern = r"^\+?[1-9][0-9]{7,14}$"))]
        phone: Query<Option<String>>,
        /// Only parents of this child (the school's student ID).
        #[oai(validator(pattern = r"^[A-Za-z0-9/._-]{1,64}$"))]
        student_id: Query<Option<String>>,
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
        if let Some(id) = student_id.0 {
            let id = crate::domain::StudentId::parse(&id)?;
            let child = ctx
                .find::<student::Entity>()
                .filter(student::Column::StudentId.eq(id.as_str()))
                .one(&state.db)
                .await?
                .ok_or_else(|| {
                    Error::NotFound(format!("no student {} in this school", id.as_str()))
                })?;
            let phones: Vec<String> = ctx
                .find::<student_mapping::Entity>()
                .filter(student_mapping::Column::StudentId.eq(child.id))
                .all(&state.db)
                .await?
                .into_iter()
                .map(|l| l.phone)
                .collect();
            query = query.filter(chat_session::Column::UserId.is_in(phones));
        }
        if let Some(t) = since.0 {
            query = query.filter(chat_session::Column::UpdatedAt.gte(t));
        }
        let query = query
            .order_by_desc(chat_session::Column::UpdatedAt)
            .order_by_desc(chat_session::Column::Id);
        let slice = fetch_page(&state.db, query, page.0, page_size.0).await?;
        let results = listed(&state, ctx, slice.rows.clone()).await?;
        Ok(Json(slice.page(results)))
    }

    /// The school's conversations as they change, as Server-Sent Events (`text/event-stream`),
    /// so an inbox refreshes itself: `message` (a new message either way, or a reply's new
    /// delivery status: the same `id` again) and `conversation` (escalated, taken over,
    /// answered by staff, released). Only this credential's school. A stream starts with the
    /// last few seconds, sends a comment every 15 s to keep the connection, and ends after 10
    /// minutes (connect again); at most 20 are open per school. It is live when the request
    /// asks for `Accept: text/event-stream` (as `EventSource` does); otherwise it holds the
    /// last few seconds' events and ends at once, for a client that polls.
    #[oai(
        path = "/conversations/events/",
        method = "get",
        operation_id = "conversation_events"
    )]
    async fn events(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        request: &poem::Request,
    ) -> ApiResult<EventStream<futures::stream::BoxStream<'static, InboxEvent>>> {
        let ctx = caller.require("staff")?.clone();
        let live = request
            .header(poem::http::header::ACCEPT)
            .is_some_and(|accept| accept.to_ascii_lowercase().contains("text/event-stream"));
        let lasts = if live {
            EVENTS_FOR
        } else {
            std::time::Duration::ZERO
        };
        let Some(slot) = state.streams.open(ctx.id()) else {
            return Err(Error::RateLimited {
                retry_after_secs: 60,
            }
            .into());
        };
        tracing::info!(tenant = ctx.schema_name(), by = %caller.who(), "inbox event stream opened");
        Ok(EventStream::new(inbox_events(&state, ctx, slot, lasts))
            .keep_alive(std::time::Duration::from_secs(15))
            .to_event(|e| {
                let name = match e.kind {
                    EventKind::Message => "message",
                    EventKind::Conversation => "conversation",
                };
                poem::web::sse::Event::message(e.to_json_string()).event_type(name)
            }))
    }

    /// One conversation, with its last message and the children linked to the phone.
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
        let c = one(&state, ctx, id.0).await?;
        let children = children_of(&state, ctx, &c.user_id).await?;
        let mut out = listed(&state, ctx, vec![c]).await?.remove(0);
        out.children = Some(children);
        Ok(Json(out))
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

    /// Answer the parent of a conversation taken over (409 otherwise), with a text or a
    /// document by its link (the text as its caption). The reply goes out
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
        let reply = body.0.reply()?;
        let row = crate::pipeline::staff::reply(
            &state.pipeline,
            ctx,
            id.0,
            &caller.who(),
            reply,
            Utc::now(),
        )
        .await?;
        Ok(Queued::Queued(Json(row.into())))
    }
}

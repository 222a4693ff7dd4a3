//! The message log as the channels use it: has this inbound message been handled, which
//! provider id did a reply get, and how far has it got (sent, delivered, read, failed).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, NotSet, QueryFilter, QueryOrder, Set,
};

use super::Reply;
use crate::entities::message_log;
use crate::error::Result;
use crate::tenancy::TenantCtx;

/// `reply` to `user` on `channel` as a row of the message log, `queued` until the provider
/// takes it; `reply_to` is the key its sender claims it under and statuses find it by (the
/// message it answers, `staff:<action>`, a broadcast's). Every column is set: rows stored in one
/// statement must set the same ones.
pub fn outbound(
    ctx: &TenantCtx,
    channel: &str,
    user: &str,
    reply_to: Option<String>,
    reply: &Reply,
    now: DateTime<Utc>,
) -> message_log::ActiveModel {
    message_log::ActiveModel {
        id: NotSet,
        tenant_id: Set(ctx.id()),
        chat_session_id: Set(None),
        channel: Set(channel.to_string()),
        direction: Set("out".to_string()),
        user_id: Set(user.to_string()),
        provider_message_id: Set(None),
        reply_to: Set(reply_to),
        kind: Set(reply.kind().to_string()),
        body: Set(reply.to_plain()),
        status: Set("queued".to_string()),
        error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        payload: Set(serde_json::to_value(reply).ok()),
        answered_by: Set(None),
        topic: Set(None),
    }
}

/// Longest preview of a message where a list shows one (contacts, conversations).
pub const PREVIEW_CHARS: usize = 120;

/// The first `chars` characters of a logged message's body, PINs masked.
pub fn preview(body: &str, chars: usize) -> String {
    super::input::withhold_pins(body)
        .chars()
        .take(chars)
        .collect()
}

/// The last message either way with `user` (on `channel`, when given), if any.
pub async fn last(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    channel: Option<&str>,
    user: &str,
) -> Result<Option<message_log::Model>> {
    let mut query = ctx
        .find::<message_log::Entity>()
        .filter(message_log::Column::UserId.eq(user));
    if let Some(channel) = channel {
        query = query.filter(message_log::Column::Channel.eq(channel));
    }
    Ok(query
        .order_by_desc(message_log::Column::CreatedAt)
        .order_by_desc(message_log::Column::Id)
        .one(db)
        .await?)
}

/// Has the inbound message with this provider id already been through the engine?
pub async fn seen(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    channel: &str,
    provider_id: &str,
) -> Result<bool> {
    Ok(ctx
        .find::<message_log::Entity>()
        .filter(message_log::Column::Channel.eq(channel))
        .filter(message_log::Column::Direction.eq("in"))
        .filter(message_log::Column::ProviderMessageId.eq(provider_id))
        .one(db)
        .await?
        .is_some())
}

/// The logged replies to inbound message `reply_to`, in the order they were sent.
async fn replies_to(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    channel: &str,
    reply_to: &str,
) -> Result<Vec<message_log::Model>> {
    Ok(ctx
        .find::<message_log::Entity>()
        .filter(message_log::Column::Channel.eq(channel))
        .filter(message_log::Column::Direction.eq("out"))
        .filter(message_log::Column::ReplyTo.eq(reply_to))
        .order_by_asc(message_log::Column::Id)
        .all(db)
        .await?)
}

/// The replies logged for inbound message `reply_to`, in order, and the places of those already
/// settled (sent, or refused for good), if any of them is still unsent (`queued`); `None` when
/// there are none or all went out.
pub async fn unsent_replies(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    channel: &str,
    reply_to: &str,
) -> Result<Option<(Vec<crate::conversation::Reply>, Vec<usize>)>> {
    let rows = replies_to(db, ctx, channel, reply_to).await?;
    if !rows.iter().any(|r| r.status == "queued") {
        return Ok(None);
    }
    let replies: Option<Vec<crate::conversation::Reply>> = rows
        .iter()
        .map(|r| {
            r.payload
                .clone()
                .and_then(|p| serde_json::from_value(p).ok())
        })
        .collect();
    Ok(replies.map(|replies| (replies, settled(&rows))))
}

/// The places of the replies to `reply_to` already settled (sent, or refused for good).
pub async fn settled_replies(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    channel: &str,
    reply_to: &str,
) -> Result<Vec<usize>> {
    Ok(settled(&replies_to(db, ctx, channel, reply_to).await?))
}

fn settled(rows: &[message_log::Model]) -> Vec<usize> {
    rows.iter()
        .enumerate()
        .filter(|(_, r)| r.status != "queued")
        .map(|(i, _)| i)
        .collect()
}

/// What a provider is told of a reply so that its status callbacks name it (Meta's
/// `biz_opaque_callback_data`): its place and the message it answers.
pub fn reply_tag(reply_to: &str, index: usize) -> String {
    format!("reply:{index}:{reply_to}")
}

/// A [`reply_tag`] read back: the message answered and the reply's place.
pub fn read_reply_tag(tag: &str) -> Option<(&str, usize)> {
    let (index, reply_to) = tag.strip_prefix("reply:")?.split_once(':')?;
    Some((reply_to, index.parse().ok()?))
}

/// Record the outcome of sending reply number `index` to the message `reply_to`.
pub async fn mark_reply(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    channel: &str,
    reply_to: &str,
    index: usize,
    outcome: std::result::Result<&str, &str>,
) -> Result<()> {
    use sea_orm::sea_query::Expr;
    use sea_orm::{QuerySelect, QueryTrait};
    // One statement: the `index`-th reply of `reply_to`, found and updated at once.
    let row = ctx
        .find::<message_log::Entity>()
        .select_only()
        .column(message_log::Column::Id)
        .filter(message_log::Column::Channel.eq(channel))
        .filter(message_log::Column::Direction.eq("out"))
        .filter(message_log::Column::ReplyTo.eq(reply_to))
        .order_by_asc(message_log::Column::Id)
        .offset(index as u64)
        .limit(1)
        .into_query();
    let update = ctx
        .update_many::<message_log::Entity>()
        .col_expr(message_log::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(message_log::Column::Id.in_subquery(row));
    let update = match outcome {
        // Not over a status the provider already gave (it can come first: see `reconcile`).
        Ok(provider_id) => update
            .filter(message_log::Column::Status.eq("queued"))
            .col_expr(
                message_log::Column::ProviderMessageId,
                Expr::value(provider_id.to_string()),
            )
            .col_expr(message_log::Column::Status, Expr::value("sent")),
        Err(reason) => update
            .col_expr(message_log::Column::Status, Expr::value("failed"))
            .col_expr(message_log::Column::Error, Expr::value(reason.to_string())),
    };
    if update.exec(db).await?.rows_affected == 0 {
        tracing::debug!(reply_to, index, "no unsent logged reply to mark");
    }
    Ok(())
}

/// A provider's status for a reply whose provider id was never recorded (its worker died
/// between the provider's answer and the record), named by its [`reply_tag`]: the reply gets
/// that provider id. Returns whether this school's log holds the reply.
pub async fn reconcile(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    channel: &str,
    tag: &str,
    provider_id: &str,
) -> Result<bool> {
    let Some((reply_to, index)) = read_reply_tag(tag) else {
        return Ok(false);
    };
    let rows = replies_to(db, ctx, channel, reply_to).await?;
    let Some(row) = rows.into_iter().nth(index) else {
        return Ok(false);
    };
    if row.provider_message_id.is_none() {
        tracing::info!(
            reply_to,
            index,
            provider_id,
            "a reply's provider id learnt from its status"
        );
        let mut active: message_log::ActiveModel = row.into();
        active.provider_message_id = Set(Some(provider_id.to_string()));
        active.status = Set("sent".to_string());
        active.updated_at = Set(Utc::now());
        active.update(db).await?;
    }
    Ok(true)
}

fn rank(status: &str) -> u8 {
    match status {
        "queued" => 0,
        "sent" => 1,
        "delivered" => 2,
        "read" => 3,
        "failed" => 4,
        _ => 0,
    }
}

/// Apply a provider's delivery status to the reply with that provider id; statuses arriving
/// out of order never move a message back (a late `delivered` after `read`). Returns whether a
/// row changed, or `None` when no reply of this school has that provider id.
pub async fn record_status(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    provider_id: &str,
    status: &str,
    error: Option<String>,
) -> Result<Option<bool>> {
    let Some(row) = ctx
        .find::<message_log::Entity>()
        .filter(message_log::Column::Direction.eq("out"))
        .filter(message_log::Column::ProviderMessageId.eq(provider_id))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    if rank(status) <= rank(&row.status) {
        return Ok(Some(false));
    }
    let mut active: message_log::ActiveModel = row.into();
    active.status = Set(status.to_string());
    if error.is_some() {
        active.error = Set(error);
    }
    active.updated_at = Set(Utc::now());
    active.update(db).await?;
    Ok(Some(true))
}

/// When `user` last wrote on `channel` (the start of WhatsApp's 24-hour customer-service
/// window), if ever.
pub async fn last_inbound_at(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    channel: &str,
    user: &str,
) -> Result<Option<chrono::DateTime<Utc>>> {
    Ok(ctx
        .find::<message_log::Entity>()
        .filter(message_log::Column::Channel.eq(channel))
        .filter(message_log::Column::Direction.eq("in"))
        .filter(message_log::Column::UserId.eq(user))
        .order_by_desc(message_log::Column::CreatedAt)
        .one(db)
        .await?
        .map(|row| row.created_at))
}

/// The last `n` logged messages of chat session `session_id`, oldest first, as
/// (`in` | `out`, text): the conversation so far, for the LLM fallback.
pub async fn recent(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    session_id: i64,
    n: u64,
) -> Result<Vec<(String, String)>> {
    use sea_orm::QuerySelect;
    let mut rows = ctx
        .find::<message_log::Entity>()
        .filter(message_log::Column::ChatSessionId.eq(session_id))
        .order_by_desc(message_log::Column::Id)
        .limit(n)
        .all(db)
        .await?;
    rows.reverse();
    Ok(rows.into_iter().map(|r| (r.direction, r.body)).collect())
}

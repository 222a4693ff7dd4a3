//! Who answers a conversation: the bot (`bot`), nobody yet (`waiting`: the parent asked for a
//! person, or the bot could not answer twice in a row), or a member of staff (`staff`). While
//! it is not the bot's, the bot says nothing and the parent's messages are logged for staff.
//! Every move is recorded in `conversation_actions` (who, when).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, QueryFilter, Set};

use crate::entities::{chat_session, conversation_action};
use crate::error::{Error, Result};
use crate::tenancy::TenantCtx;

/// The bot answers.
pub const BOT: &str = "bot";
/// Waiting for staff.
pub const WAITING: &str = "waiting";
/// A member of staff answers.
pub const STAFF: &str = "staff";

#[derive(Debug, Clone)]
pub struct Handoff {
    /// [`BOT`], [`WAITING`] or [`STAFF`].
    pub status: &'static str,
    /// Who answers it, for `staff`.
    pub assignee: Option<String>,
    /// The record of who moved it, when.
    pub action: conversation_action::ActiveModel,
}

/// A record of `actor` doing `action` on the conversation of `user` on `channel`.
pub fn action(
    ctx: &TenantCtx,
    channel: &str,
    user: &str,
    action: &str,
    actor: &str,
    detail: Option<String>,
    now: DateTime<Utc>,
) -> conversation_action::ActiveModel {
    conversation_action::ActiveModel {
        tenant_id: Set(ctx.id()),
        channel: Set(channel.to_string()),
        user_id: Set(user.to_string()),
        action: Set(action.to_string()),
        actor: Set(actor.to_string()),
        detail: Set(detail),
        created_at: Set(now),
        ..Default::default()
    }
}

/// Move conversation `id` as `handoff` says, and record it.
pub async fn set(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id: i64,
    handoff: &Handoff,
    now: DateTime<Utc>,
) -> Result<()> {
    ctx.update_many::<chat_session::Entity>()
        .col_expr(chat_session::Column::Handoff, Expr::value(handoff.status))
        .col_expr(
            chat_session::Column::Assignee,
            Expr::value(handoff.assignee.clone()),
        )
        .col_expr(chat_session::Column::HandoffAt, Expr::value(now))
        .filter(chat_session::Column::Id.eq(id))
        .exec(db)
        .await?;
    handoff.action.clone().insert(db).await?;
    Ok(())
}

/// Conversation `id` of the school, or `not_found`.
pub async fn find(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id: i64,
) -> Result<chat_session::Model> {
    ctx.find::<chat_session::Entity>()
        .filter(chat_session::Column::Id.eq(id))
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no conversation {id}")))
}

/// Staff (`who`) take conversation `id` over: the bot stops answering it. Refused while
/// another member of staff has it.
pub async fn take_over(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id: i64,
    who: &str,
    now: DateTime<Utc>,
) -> Result<chat_session::Model> {
    let c = find(db, ctx, id).await?;
    if c.handoff == STAFF && c.assignee.as_deref() != Some(who) {
        return Err(Error::Conflict(format!(
            "conversation {id} is answered by {}; they release it first",
            c.assignee.as_deref().unwrap_or("someone else")
        )));
    }
    let from = c.handoff.clone();
    let h = Handoff {
        status: STAFF,
        assignee: Some(who.to_string()),
        action: action(
            ctx,
            &c.channel,
            &c.user_id,
            "takeover",
            who,
            Some(from),
            now,
        ),
    };
    set(db, ctx, id, &h, now).await?;
    find(db, ctx, id).await
}

/// Staff (`who`) give conversation `id` back to the bot.
pub async fn release(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id: i64,
    who: &str,
    now: DateTime<Utc>,
) -> Result<chat_session::Model> {
    let c = find(db, ctx, id).await?;
    let h = Handoff {
        status: BOT,
        assignee: None,
        action: action(
            ctx,
            &c.channel,
            &c.user_id,
            "release",
            who,
            Some(c.handoff.clone()),
            now,
        ),
    };
    set(db, ctx, id, &h, now).await?;
    find(db, ctx, id).await
}

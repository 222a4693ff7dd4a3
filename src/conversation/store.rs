//! Sessions in the database, one per (tenant, channel, user); they survive restarts.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, QueryFilter, Set};

use super::engine::Session;
use crate::entities::chat_session;
use crate::error::Result;
use crate::tenancy::TenantCtx;

/// Whose session: a user on a channel (within a tenant).
#[derive(Debug, Clone, Copy)]
pub struct SessionKey<'a> {
    /// `whatsapp`, `twilio`, `terminal`, `api`...
    pub channel: &'a str,
    /// The user's id on that channel (a phone number).
    pub user: &'a str,
}

/// The stored session row and its decoded session; a fresh session when there is none.
pub async fn load(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    key: SessionKey<'_>,
) -> Result<(Option<chat_session::Model>, Session)> {
    let row = ctx
        .find::<chat_session::Entity>()
        .filter(chat_session::Column::Channel.eq(key.channel))
        .filter(chat_session::Column::UserId.eq(key.user))
        .one(db)
        .await?;
    let session = match &row {
        Some(r) => serde_json::from_value(r.data.clone()).unwrap_or_else(|e| {
            tracing::warn!(error = %e, session = r.id, "unreadable session data; starting afresh");
            Session::default()
        }),
        None => Session::default(),
    };
    Ok((row, session))
}

/// Store `session`; it expires after `idle`. `row` is the id of its row, if it has one;
/// returns the row's id (an existing row is updated without reading it back).
pub async fn save(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    key: SessionKey<'_>,
    row: Option<i64>,
    session: &Session,
    idle: Duration,
    now: DateTime<Utc>,
) -> Result<i64> {
    let expires_at = now + idle;
    let data =
        serde_json::to_value(session).map_err(|e| anyhow::anyhow!("session encodes: {e}"))?;
    let id = match row {
        Some(existing) => {
            ctx.update_many::<chat_session::Entity>()
                .col_expr(
                    chat_session::Column::State,
                    Expr::value(session.state.name()),
                )
                .col_expr(chat_session::Column::Data, Expr::value(data))
                .col_expr(
                    chat_session::Column::Language,
                    Expr::value(session.lang.clone()),
                )
                .col_expr(chat_session::Column::ExpiresAt, Expr::value(expires_at))
                .col_expr(chat_session::Column::UpdatedAt, Expr::value(now))
                .filter(chat_session::Column::Id.eq(existing))
                .exec(db)
                .await?;
            existing
        }
        None => {
            chat_session::ActiveModel {
                tenant_id: Set(ctx.id()),
                channel: Set(key.channel.to_string()),
                user_id: Set(key.user.to_string()),
                state: Set(session.state.name().to_string()),
                data: Set(data),
                language: Set(session.lang.clone()),
                expires_at: Set(expires_at),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            }
            .insert(db)
            .await?
            .id
        }
    };
    Ok(id)
}

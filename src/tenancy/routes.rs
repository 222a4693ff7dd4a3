//! The school a phone linked to several schools chose, per channel, until it expires.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use super::{TenantCtx, by_pk};
use crate::domain::PhoneNumber;
use crate::entities::conversation_route;
use crate::error::Result;

/// The school this phone chose on this channel, if the choice has not expired.
pub async fn chosen(
    db: &impl ConnectionTrait,
    channel: &str,
    phone: &PhoneNumber,
    now: DateTime<Utc>,
) -> Result<Option<TenantCtx>> {
    let route = conversation_route::Entity::find()
        .filter(conversation_route::Column::Channel.eq(channel))
        .filter(conversation_route::Column::UserId.eq(phone.as_str()))
        .filter(conversation_route::Column::ExpiresAt.gt(now))
        .one(db)
        .await?;
    match route {
        Some(r) => Ok(Some(by_pk(db, r.tenant_id).await?)),
        None => Ok(None),
    }
}

/// Remember that this phone talks to `ctx` on this channel until `expires_at`.
pub async fn choose(
    db: &impl ConnectionTrait,
    channel: &str,
    phone: &PhoneNumber,
    ctx: &TenantCtx,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<()> {
    forget(db, channel, phone).await?;
    conversation_route::ActiveModel {
        channel: Set(channel.to_string()),
        user_id: Set(phone.as_str().to_string()),
        tenant_id: Set(ctx.id()),
        expires_at: Set(expires_at),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Extend the current choice (each message keeps it alive).
pub async fn touch(
    db: &impl ConnectionTrait,
    channel: &str,
    phone: &PhoneNumber,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    conversation_route::Entity::update_many()
        .col_expr(
            conversation_route::Column::ExpiresAt,
            sea_orm::sea_query::Expr::value(expires_at),
        )
        .filter(conversation_route::Column::Channel.eq(channel))
        .filter(conversation_route::Column::UserId.eq(phone.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// Forget the choice: the next message asks again.
pub async fn forget(db: &impl ConnectionTrait, channel: &str, phone: &PhoneNumber) -> Result<()> {
    conversation_route::Entity::delete_many()
        .filter(conversation_route::Column::Channel.eq(channel))
        .filter(conversation_route::Column::UserId.eq(phone.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// The choices of school `ctx` made by this phone, on any channel.
pub async fn of_phone(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    phone: &PhoneNumber,
) -> Result<Vec<conversation_route::Model>> {
    Ok(conversation_route::Entity::find()
        .filter(conversation_route::Column::TenantId.eq(ctx.id()))
        .filter(conversation_route::Column::UserId.eq(phone.as_str()))
        .all(db)
        .await?)
}

/// Forget every choice of school `ctx` this phone made (an erasure); returns how many went.
pub async fn forget_school(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    phone: &PhoneNumber,
) -> Result<u64> {
    Ok(conversation_route::Entity::delete_many()
        .filter(conversation_route::Column::TenantId.eq(ctx.id()))
        .filter(conversation_route::Column::UserId.eq(phone.as_str()))
        .exec(db)
        .await?
        .rows_affected)
}

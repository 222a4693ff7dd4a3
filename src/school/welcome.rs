//! The tenant's welcome message (one per tenant, enforced by a unique index).

use sea_orm::ConnectionTrait;

use crate::entities::welcome_message;
use crate::error::Result;
use crate::tenancy::TenantCtx;

/// The welcome message, if the school set one.
pub async fn get(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
) -> Result<Option<welcome_message::Model>> {
    Ok(ctx.find::<welcome_message::Entity>().one(db).await?)
}

//! Tokens used per school and day: recorded after every call, checked against the daily cap
//! before the next one.

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use crate::entities::llm_usage;
use crate::error::Result;
use crate::tenancy::TenantCtx;

/// A school's usage on `day`, if any.
pub async fn on(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    day: NaiveDate,
) -> Result<Option<llm_usage::Model>> {
    Ok(ctx
        .find::<llm_usage::Entity>()
        .filter(llm_usage::Column::Day.eq(day))
        .one(db)
        .await?)
}

/// Tokens (prompt and completion) the school used on `day`.
pub async fn tokens_on(db: &impl ConnectionTrait, ctx: &TenantCtx, day: NaiveDate) -> Result<i64> {
    Ok(on(db, ctx, day)
        .await?
        .map(|u| u.prompt_tokens + u.completion_tokens)
        .unwrap_or(0))
}

/// Add one call to the school's day (one statement, so concurrent workers add up).
pub async fn record(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    now: DateTime<Utc>,
    prompt_tokens: u64,
    completion_tokens: u64,
    failed: bool,
) -> Result<()> {
    use llm_usage::Column as C;
    let row = llm_usage::ActiveModel {
        tenant_id: Set(ctx.id()),
        day: Set(now.date_naive()),
        requests: Set(1),
        failures: Set(i64::from(failed)),
        prompt_tokens: Set(prompt_tokens as i64),
        completion_tokens: Set(completion_tokens as i64),
        updated_at: Set(now),
        ..Default::default()
    };
    let add = |c: C| {
        let name = sea_orm::IdenStatic::as_str(&c);
        (
            c,
            Expr::col((llm_usage::Entity, c)).add(Expr::cust(format!("excluded.{name}"))),
        )
    };
    let mut on_conflict = OnConflict::columns([C::TenantId, C::Day]);
    for c in [
        C::Requests,
        C::Failures,
        C::PromptTokens,
        C::CompletionTokens,
    ] {
        let (c, e) = add(c);
        on_conflict.value(c, e);
    }
    on_conflict.update_column(C::UpdatedAt);
    llm_usage::Entity::insert(row)
        .on_conflict(on_conflict)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Give a school its own daily token cap (`None`: the service's).
pub async fn set_cap(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    tokens: Option<i64>,
) -> Result<()> {
    use sea_orm::ActiveModelTrait;
    let mut row: crate::entities::tenant::ActiveModel = ctx.profile(db).await?.into();
    row.llm_daily_tokens = Set(tokens);
    row.updated_at = Set(Utc::now());
    row.update(db).await?;
    Ok(())
}

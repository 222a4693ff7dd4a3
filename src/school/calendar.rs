//! Academic sessions, terms and exam sessions.

use sea_orm::{ColumnTrait, ConnectionTrait, QueryFilter, QueryOrder};

use crate::entities::{academic_session, exam_session, term};
use crate::error::Result;
use crate::tenancy::TenantCtx;

/// Academic sessions, newest first.
pub async fn academic_sessions(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
) -> Result<Vec<academic_session::Model>> {
    Ok(ctx
        .find::<academic_session::Entity>()
        .order_by_desc(academic_session::Column::StartsOn)
        .all(db)
        .await?)
}

/// Terms of the tenant, newest first.
pub async fn terms(db: &impl ConnectionTrait, ctx: &TenantCtx) -> Result<Vec<term::Model>> {
    Ok(ctx
        .find::<term::Entity>()
        .order_by_desc(term::Column::StartsOn)
        .all(db)
        .await?)
}

/// A term within the tenant.
pub async fn term(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id: i64,
) -> Result<Option<term::Model>> {
    Ok(ctx
        .find::<term::Entity>()
        .filter(term::Column::Id.eq(id))
        .one(db)
        .await?)
}

/// Exam sessions whose results are released to parents, newest first.
pub async fn released_exam_sessions(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
) -> Result<Vec<exam_session::Model>> {
    Ok(ctx
        .find::<exam_session::Entity>()
        .filter(exam_session::Column::Released.eq(true))
        .order_by_desc(exam_session::Column::Id)
        .all(db)
        .await?)
}

/// An exam session within the tenant, released or not.
pub async fn exam_session(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id: i64,
) -> Result<Option<exam_session::Model>> {
    Ok(ctx
        .find::<exam_session::Entity>()
        .filter(exam_session::Column::Id.eq(id))
        .one(db)
        .await?)
}

/// Every exam session of the school, released or not, newest first.
pub async fn exam_sessions(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
) -> Result<Vec<exam_session::Model>> {
    Ok(ctx
        .find::<exam_session::Entity>()
        .order_by_desc(exam_session::Column::Id)
        .all(db)
        .await?)
}

//! Notices: current ones, and those that concern a given student.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, QueryFilter, QueryOrder};

use crate::entities::{class, notice, student};
use crate::error::Result;
use crate::tenancy::TenantCtx;

/// Who a notice is for.
pub mod audience {
    /// Whole school.
    pub const SCHOOL: &str = "school";
    /// One form (e.g. all JSS 1 classes).
    pub const FORM: &str = "form";
    /// One class.
    pub const CLASS: &str = "class";
}

fn live(now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(notice::Column::PublishAt.lte(now))
        .add(
            Condition::any()
                .add(notice::Column::ExpiresAt.is_null())
                .add(notice::Column::ExpiresAt.gt(now)),
        )
}

/// Notices published and not expired at `now`, newest first.
pub async fn current(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    now: DateTime<Utc>,
) -> Result<Vec<notice::Model>> {
    Ok(ctx
        .find::<notice::Entity>()
        .filter(live(now))
        .order_by_desc(notice::Column::PublishAt)
        .all(db)
        .await?)
}

/// Current notices that concern `student`: whole school, the student's form, or their class.
pub async fn current_for_student(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    student: &student::Model,
    now: DateTime<Utc>,
) -> Result<Vec<notice::Model>> {
    let mut audience = Condition::any().add(notice::Column::Audience.eq(audience::SCHOOL));
    if let Some(class_id) = student.class_id {
        audience = audience.add(
            Condition::all()
                .add(notice::Column::Audience.eq(audience::CLASS))
                .add(notice::Column::AudienceClassId.eq(class_id)),
        );
        if let Some(class) = ctx
            .find::<class::Entity>()
            .filter(class::Column::Id.eq(class_id))
            .one(db)
            .await?
        {
            audience = audience.add(
                Condition::all()
                    .add(notice::Column::Audience.eq(audience::FORM))
                    .add(notice::Column::AudienceForm.eq(class.form)),
            );
        }
    }
    Ok(ctx
        .find::<notice::Entity>()
        .filter(live(now))
        .filter(audience)
        .order_by_desc(notice::Column::PublishAt)
        .all(db)
        .await?)
}

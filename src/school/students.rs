//! Students and the phones verified for them.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::crypto::SecretKey;
use crate::domain::{PhoneNumber, Pin, StudentId};
use crate::entities::{class, student, student_mapping};
use crate::error::Result;
use crate::tenancy::TenantCtx;

/// A student by the school's student ID.
pub async fn by_student_id(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id: &StudentId,
) -> Result<Option<student::Model>> {
    Ok(ctx
        .find::<student::Entity>()
        .filter(student::Column::StudentId.eq(id.as_str()))
        .one(db)
        .await?)
}

/// A student by primary key, within the tenant.
pub async fn by_pk(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    id: i64,
) -> Result<Option<student::Model>> {
    Ok(ctx
        .find::<student::Entity>()
        .filter(student::Column::Id.eq(id))
        .one(db)
        .await?)
}

/// The student whose ID and PIN both match; `None` for a wrong ID or a wrong PIN alike. A PIN
/// hashed under the previous server secret (during a rotation) is hashed again under the
/// current one.
pub async fn verify_pin(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    key: &SecretKey,
    id: &StudentId,
    pin: &Pin,
) -> Result<Option<student::Model>> {
    let Some(found) = by_student_id(db, ctx, id).await?.filter(|s| s.active) else {
        return Ok(None);
    };
    match key.pin_match(pin.as_str(), &found.pin_hash) {
        None => Ok(None),
        Some(false) => Ok(Some(found)),
        Some(true) => {
            ctx.update_many::<student::Entity>()
                .col_expr(
                    student::Column::PinHash,
                    Expr::value(key.hash_pin(pin.as_str())),
                )
                .filter(student::Column::Id.eq(found.id))
                .exec(db)
                .await?;
            Ok(Some(found))
        }
    }
}

/// Students this phone is mapped to (WhatsApp student mappings), by name.
pub async fn linked_to_phone(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    phone: &PhoneNumber,
) -> Result<Vec<student::Model>> {
    let ids: Vec<i64> = ctx
        .find::<student_mapping::Entity>()
        .select_only()
        .column(student_mapping::Column::StudentId)
        .filter(student_mapping::Column::Phone.eq(phone.as_str()))
        .into_tuple()
        .all(db)
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(ctx
        .find::<student::Entity>()
        .filter(student::Column::Id.is_in(ids))
        .filter(student::Column::Active.eq(true))
        .order_by_asc(student::Column::FirstName)
        .order_by_asc(student::Column::Id)
        .all(db)
        .await?)
}

/// Students of a class, by name.
pub async fn in_class(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    class_id: i64,
) -> Result<Vec<student::Model>> {
    Ok(ctx
        .find::<student::Entity>()
        .filter(student::Column::ClassId.eq(class_id))
        .filter(student::Column::Active.eq(true))
        .order_by_asc(student::Column::LastName)
        .order_by_asc(student::Column::FirstName)
        .all(db)
        .await?)
}

/// A class within the tenant.
pub async fn class(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    class_id: i64,
) -> Result<Option<class::Model>> {
    Ok(ctx
        .find::<class::Entity>()
        .filter(class::Column::Id.eq(class_id))
        .one(db)
        .await?)
}

/// All classes, by level then name.
pub async fn classes(db: &impl ConnectionTrait, ctx: &TenantCtx) -> Result<Vec<class::Model>> {
    Ok(ctx
        .find::<class::Entity>()
        .order_by_asc(class::Column::Level)
        .order_by_asc(class::Column::Name)
        .all(db)
        .await?)
}

/// "First Last" with other names in between when present.
pub fn full_name(s: &student::Model) -> String {
    match &s.other_names {
        Some(o) if !o.is_empty() => format!("{} {} {}", s.first_name, o, s.last_name),
        _ => format!("{} {}", s.first_name, s.last_name),
    }
}

/// Every student of the school as (full name, student ID): what an LLM answer is checked
/// against, so that it names no child the prompt did not hold.
pub async fn roster(db: &impl ConnectionTrait, ctx: &TenantCtx) -> Result<Vec<(String, String)>> {
    Ok(ctx
        .find::<student::Entity>()
        .all(db)
        .await?
        .iter()
        .map(|s| (full_name(s), s.student_id.clone()))
        .collect())
}

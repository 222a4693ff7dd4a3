//! A school's WhatsApp contacts (the phones it may send broadcasts to) and their opt-in state:
//! a parent's STOP and START in the chat, staff changes through `contacts/`, imports. Each
//! change keeps when and how it happened.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, QueryFilter, Set};

use crate::domain::PhoneNumber;
use crate::entities::whatsapp_contact;
use crate::error::Result;
use crate::tenancy::TenantCtx;

/// Who changed a contact's opt-in state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptSource {
    /// The parent, by sending STOP or START.
    Chat,
    /// Staff through the API; the credential's name.
    Api(String),
    /// A contacts import.
    Import,
}

impl OptSource {
    /// As stored in `whatsapp_contacts.opt_changed_by`.
    pub fn as_stored(&self) -> String {
        match self {
            Self::Chat => "chat".into(),
            Self::Api(who) => {
                let who: String = who.chars().take(100).collect();
                format!("api:{who}")
            }
            Self::Import => "import".into(),
        }
    }
}

/// The school's contact for `phone`, if it has one.
pub async fn find(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    phone: &PhoneNumber,
) -> Result<Option<whatsapp_contact::Model>> {
    Ok(ctx
        .find::<whatsapp_contact::Entity>()
        .filter(whatsapp_contact::Column::Phone.eq(phone.as_str()))
        .one(db)
        .await?)
}

/// Opt `phone` in to (or out of) the school's broadcasts. A phone the school has no contact for
/// becomes one (a parent who sends STOP must stay opted out whatever is imported later; staff
/// may register a phone this way). Changing nothing records nothing.
pub async fn set_opt_in(
    db: &impl ConnectionTrait,
    ctx: &TenantCtx,
    phone: &PhoneNumber,
    opted_in: bool,
    by: &OptSource,
    now: DateTime<Utc>,
) -> Result<whatsapp_contact::Model> {
    for _ in 0..2 {
        if let Some(existing) = find(db, ctx, phone).await? {
            if existing.opted_in == opted_in {
                return Ok(existing);
            }
            let mut row = whatsapp_contact::ActiveModel::from(existing);
            row.opted_in = Set(opted_in);
            row.opt_changed_at = Set(Some(now));
            row.opt_changed_by = Set(Some(by.as_stored()));
            let saved = row.update(db).await?;
            log_change(ctx, &saved, by);
            return Ok(saved);
        }
        let inserted = whatsapp_contact::ActiveModel {
            tenant_id: Set(ctx.id()),
            phone: Set(phone.as_str().to_string()),
            opted_in: Set(opted_in),
            opt_changed_at: Set(Some(now)),
            opt_changed_by: Set(Some(by.as_stored())),
            // A parent who wrote has been seen by the school.
            last_seen_at: Set((*by == OptSource::Chat).then_some(now)),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await;
        match inserted {
            Ok(saved) => {
                log_change(ctx, &saved, by);
                return Ok(saved);
            }
            // Created at the same instant by another turn or request: change that one.
            Err(e) if crate::error::is_unique_violation(&e) => {
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(crate::error::Error::Conflict(
        "the contact changed while it was being updated; try again".into(),
    ))
}

fn log_change(ctx: &TenantCtx, c: &whatsapp_contact::Model, by: &OptSource) {
    tracing::info!(
        school = ctx.schema_name(),
        contact = c.id,
        opted_in = c.opted_in,
        by = %by.as_stored(),
        "contact opt-in changed"
    );
}

//! What a school holds about a parent's phone, to hand it over (`contacts/{phone}/export/`)
//! or erase it (`DELETE contacts/{phone}/`): the contact and its opt-in, the children linked
//! to the phone, its conversations, transcripts and the staff's actions on them, the school it
//! chose on a shared number, and the report cards rendered for it. An erasure leaves a record
//! that it happened (who asked, when, how many rows of each kind) without the phone.
//!
//! Not covered, and why: the counter of wrong PINs from the phone (a security control shared
//! by every school, gone when its window ends: erasing it would lift a guesser's lock); the
//! queue's finished jobs (deleted a day after they ran by the cleanup); a message still on its
//! way through the pipeline when the erasure runs (it is answered, and so kept, afterwards).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, Set,
};

use crate::domain::PhoneNumber;
use crate::entities::{
    chat_session, conversation_action, conversation_route, erasure, message_log, pin_attempt,
    report, student, student_mapping, whatsapp_contact,
};
use crate::error::Result;
use crate::tenancy::{TenantCtx, routes};

/// Everything school `ctx` holds about one phone.
#[derive(Debug)]
pub struct Held {
    /// The contact (opt-in, name, last seen), if the school has one.
    pub contact: Option<whatsapp_contact::Model>,
    /// The children linked to the phone, with their links.
    pub children: Vec<(student_mapping::Model, student::Model)>,
    /// Its conversations (one per channel).
    pub conversations: Vec<chat_session::Model>,
    /// Its transcripts, oldest first.
    pub messages: Vec<message_log::Model>,
    /// Who moved its conversations between the bot and staff, or answered them.
    pub actions: Vec<conversation_action::Model>,
    /// The school it chose on a number several schools share.
    pub routes: Vec<conversation_route::Model>,
    /// Report cards rendered for it (sent as documents).
    pub reports: Vec<report::Model>,
}

/// Everything school `ctx` holds about `phone`.
pub async fn held(db: &impl ConnectionTrait, ctx: &TenantCtx, phone: &PhoneNumber) -> Result<Held> {
    let p = phone.as_str();
    let contact = super::contacts::find(db, ctx, phone).await?;
    let links = ctx
        .find::<student_mapping::Entity>()
        .filter(student_mapping::Column::Phone.eq(p))
        .order_by_asc(student_mapping::Column::Id)
        .all(db)
        .await?;
    let pupils: BTreeMap<i64, student::Model> = ctx
        .find::<student::Entity>()
        .filter(student::Column::Id.is_in(links.iter().map(|l| l.student_id)))
        .all(db)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    let children = links
        .into_iter()
        .filter_map(|l| pupils.get(&l.student_id).cloned().map(|s| (l, s)))
        .collect();
    let conversations = ctx
        .find::<chat_session::Entity>()
        .filter(chat_session::Column::UserId.eq(p))
        .order_by_asc(chat_session::Column::Id)
        .all(db)
        .await?;
    let messages = ctx
        .find::<message_log::Entity>()
        .filter(message_log::Column::UserId.eq(p))
        .order_by_asc(message_log::Column::Id)
        .all(db)
        .await?;
    let actions = ctx
        .find::<conversation_action::Entity>()
        .filter(conversation_action::Column::UserId.eq(p))
        .order_by_asc(conversation_action::Column::Id)
        .all(db)
        .await?;
    let sent: Vec<i64> = messages.iter().filter_map(report_sent).collect();
    let reports = ctx
        .find::<report::Entity>()
        .filter(report::Column::Id.is_in(sent))
        .order_by_asc(report::Column::Id)
        .all(db)
        .await?;
    Ok(Held {
        contact,
        children,
        conversations,
        messages,
        actions,
        routes: routes::of_phone(db, ctx, phone).await?,
        reports,
    })
}

/// The report card a reply sent as a document, from its download link.
fn report_sent(m: &message_log::Model) -> Option<i64> {
    if m.direction != "out" || m.kind != "document" {
        return None;
    }
    let url = m.payload.as_ref()?.get("url")?.as_str()?;
    crate::reports::store::report_in_link(url)
}

/// Rows removed by an erasure, by kind (`messages`, `conversations`...).
pub type Removed = BTreeMap<String, u64>;

/// Erase everything school `ctx` holds about `phone` (see the module's documentation), in one
/// transaction, and record that `actor` did: the record, with how many rows of each kind
/// went. Report files are deleted before their rows.
pub async fn erase(
    db: &DatabaseConnection,
    ctx: &TenantCtx,
    phone: &PhoneNumber,
    actor: &str,
    reports_dir: &Path,
    now: DateTime<Utc>,
) -> Result<erasure::Model> {
    let p = phone.as_str();
    let txn = crate::db::begin_write(db).await?;
    let held = held(&txn, ctx, phone).await?;
    let mut removed = Removed::new();
    let mut count = |kind: &str, n: u64| {
        removed.insert(kind.to_string(), n);
    };
    count(
        "report_cards",
        crate::reports::store::delete(&txn, ctx, reports_dir, held.reports).await?,
    );
    count(
        "messages",
        ctx.delete_many::<message_log::Entity>()
            .filter(message_log::Column::UserId.eq(p))
            .exec(&txn)
            .await?
            .rows_affected,
    );
    count(
        "staff_actions",
        ctx.delete_many::<conversation_action::Entity>()
            .filter(conversation_action::Column::UserId.eq(p))
            .exec(&txn)
            .await?
            .rows_affected,
    );
    count(
        "conversations",
        ctx.delete_many::<chat_session::Entity>()
            .filter(chat_session::Column::UserId.eq(p))
            .exec(&txn)
            .await?
            .rows_affected,
    );
    count(
        "children_links",
        ctx.delete_many::<student_mapping::Entity>()
            .filter(student_mapping::Column::Phone.eq(p))
            .exec(&txn)
            .await?
            .rows_affected,
    );
    count(
        "contacts",
        ctx.delete_many::<whatsapp_contact::Entity>()
            .filter(whatsapp_contact::Column::Phone.eq(p))
            .exec(&txn)
            .await?
            .rows_affected,
    );
    count(
        "school_choices",
        routes::forget_school(&txn, ctx, phone).await?,
    );
    count(
        "report_counters",
        pin_attempt::Entity::delete_many()
            .filter(pin_attempt::Column::Key.eq(crate::reports::renders_key(ctx, phone)))
            .exec(&txn)
            .await?
            .rows_affected,
    );
    let record = erasure::ActiveModel {
        tenant_id: Set(ctx.id()),
        actor: Set(actor.to_string()),
        removed: Set(serde_json::to_value(&removed).unwrap_or_default()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    tracing::info!(
        tenant = ctx.schema_name(),
        erasure = record.id,
        actor,
        removed = %record.removed,
        "everything held about a phone erased"
    );
    Ok(record)
}

//! `contacts/`: the phones a school may send broadcasts to, whether each is opted in (a parent's
//! STOP and START in the chat change it, and so can staff), the children linked to it and its
//! last message; everything held about a phone, exported in one document or erased
//! (`contacts/{phone}/export/`, `DELETE contacts/{phone}/`), and the record of erasures.

use crate::error::ErrorCode;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};

use super::ApiTags;
use super::auth::Caller;
use super::respond::{ApiResult, Page, fetch_page};
use crate::conversation::transcript;
use crate::domain::PhoneNumber;
use crate::entities::{erasure, message_log, student, student_mapping, whatsapp_contact};
use crate::error::Error;
use crate::school::contacts::{self, OptSource};
use crate::school::{privacy, students};
use crate::state::AppState;
use crate::tenancy::TenantCtx;

/// A child linked to a contact's phone.
#[derive(Debug, Object)]
pub struct LinkedStudentOut {
    /// Internal id.
    pub id: i64,
    /// The school's student ID.
    pub student_id: String,
    /// Full name.
    pub full_name: String,
}

impl From<&student::Model> for LinkedStudentOut {
    fn from(s: &student::Model) -> Self {
        Self {
            id: s.id,
            student_id: s.student_id.clone(),
            full_name: students::full_name(s),
        }
    }
}

/// The last message exchanged with a contact.
#[derive(Debug, Object)]
pub struct LastMessageOut {
    /// `in` (from the parent) or `out` (to the parent).
    pub direction: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Its first characters (PINs masked).
    pub preview: String,
}

impl From<message_log::Model> for LastMessageOut {
    fn from(m: message_log::Model) -> Self {
        Self {
            preview: transcript::preview(&m.body, transcript::PREVIEW_CHARS),
            direction: m.direction,
            at: m.created_at,
        }
    }
}

/// A WhatsApp contact of the school.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ContactOut {
    /// Id, for the item paths.
    pub id: i64,
    /// The phone, international format.
    pub phone: String,
    /// Name, when imported or known.
    pub name: Option<String>,
    /// Whether broadcasts reach this phone (STOP from the parent turns it off).
    pub opted_in: bool,
    /// When the opt-in state last changed.
    pub opt_changed_at: Option<DateTime<Utc>>,
    /// How it last changed: `chat` (the parent sent STOP or START), `api:<credential>`,
    /// `import`.
    pub opt_changed_by: Option<String>,
    /// When the parent last wrote to the school.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Children linked to this phone.
    pub students: Vec<LinkedStudentOut>,
    /// The last message with this phone.
    pub last_message: Option<LastMessageOut>,
}

/// A contact's opt-in state to set.
#[derive(Debug, Object)]
pub struct ContactOptIn {
    /// Whether the school's broadcasts reach this phone. Only with the parent's consent: a
    /// parent who sent STOP asked not to receive them.
    pub opted_in: bool,
}

async fn rows_out(
    state: &AppState,
    ctx: &TenantCtx,
    rows: Vec<whatsapp_contact::Model>,
) -> ApiResult<Vec<ContactOut>> {
    let phones: Vec<String> = rows.iter().map(|c| c.phone.clone()).collect();
    let links = ctx
        .find::<student_mapping::Entity>()
        .filter(student_mapping::Column::Phone.is_in(phones.clone()))
        .all(&state.db)
        .await?;
    let pupils: HashMap<i64, student::Model> = ctx
        .find::<student::Entity>()
        .filter(student::Column::Id.is_in(links.iter().map(|l| l.student_id)))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    let mut out = Vec::with_capacity(rows.len());
    for c in rows {
        let last = transcript::last(&state.db, ctx, None, &c.phone).await?;
        let students = links
            .iter()
            .filter(|l| l.phone == c.phone)
            .filter_map(|l| pupils.get(&l.student_id))
            .map(Into::into)
            .collect();
        out.push(ContactOut {
            id: c.id,
            phone: c.phone,
            name: c.name,
            opted_in: c.opted_in,
            opt_changed_at: c.opt_changed_at,
            opt_changed_by: c.opt_changed_by,
            last_seen_at: c.last_seen_at,
            students,
            last_message: last.map(Into::into),
        });
    }
    Ok(out)
}

/// The phone `id` names: a phone in international format with its `+`, or a contact's id.
async fn phone_named(state: &AppState, ctx: &TenantCtx, id: &str) -> Result<PhoneNumber, Error> {
    let id = id.trim();
    if id.starts_with('+') {
        return PhoneNumber::parse(id);
    }
    match id.parse::<i64>() {
        Ok(n) => PhoneNumber::parse(&contact(state, ctx, n).await?.phone),
        Err(_) => Err(Error::invalid(
            ErrorCode::InvalidPhone,
            format!("`{id}` is neither a phone with its + (+2348012345678) nor a contact's id"),
        )),
    }
}

async fn contact(
    state: &AppState,
    ctx: &TenantCtx,
    id: i64,
) -> Result<whatsapp_contact::Model, Error> {
    ctx.find::<whatsapp_contact::Entity>()
        .filter(whatsapp_contact::Column::Id.eq(id))
        .one(&state.db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no contact {id} in this school")))
}

/// What a school holds about a phone: its contact and opt-in, the children linked to it,
/// its conversations and transcripts, staff actions on them, the school it chose on a shared
/// number, and the report cards rendered for it.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ContactExport {
    /// The phone (E.164).
    pub phone: String,
    /// The school (`X-Schema-Name`).
    pub school: String,
    /// When this was read.
    pub exported_at: DateTime<Utc>,
    /// The contact, if the school has one.
    pub contact: Option<ExportedContact>,
    /// Children linked to the phone.
    pub children: Vec<ExportedChild>,
    /// Conversations, one per channel.
    pub conversations: Vec<ExportedConversation>,
    /// Every message either way, oldest first (PINs were never stored).
    pub messages: Vec<ExportedMessage>,
    /// Who escalated, took over, answered or released a conversation, and when.
    pub staff_actions: Vec<ExportedAction>,
    /// The school chosen on a number several schools share, per channel.
    pub school_choices: Vec<ExportedChoice>,
    /// Report cards rendered for the phone.
    pub report_cards: Vec<ExportedReport>,
}

/// A contact, as held.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ExportedContact {
    /// Name, when imported or known.
    pub name: Option<String>,
    /// WhatsApp's id of the user.
    pub wa_user_id: Option<String>,
    /// Whether broadcasts reach the phone.
    pub opted_in: bool,
    /// When and how the opt-in last changed.
    pub opt_changed_at: Option<DateTime<Utc>>,
    /// `chat`, `api:<credential>`, `import`.
    pub opt_changed_by: Option<String>,
    /// When the parent last wrote.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// When the school first held it.
    pub created_at: DateTime<Utc>,
}

/// A child linked to the phone.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ExportedChild {
    /// The school's student ID.
    pub student_id: String,
    /// Full name.
    pub full_name: String,
    /// The phone's relationship to the child, when given.
    pub relationship: Option<String>,
    /// When the phone was linked.
    pub linked_at: DateTime<Utc>,
}

/// A conversation, as held.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ExportedConversation {
    /// `whatsapp`, `api`...
    pub channel: String,
    /// Where the conversation stood (`menu`, `awaiting_pin`...).
    pub state: String,
    /// What the conversation remembers (chosen child, language...).
    pub data: serde_json::Value,
    /// Language chosen.
    pub language: Option<String>,
    /// `bot`, `waiting`, `staff`.
    pub status: String,
    /// The member of staff answering it.
    pub assignee: Option<String>,
    /// Started.
    pub created_at: DateTime<Utc>,
    /// Last activity.
    pub updated_at: DateTime<Utc>,
}

/// A message, as held.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ExportedMessage {
    /// `whatsapp`, `api`...
    pub channel: String,
    /// `in` (from the parent) or `out`.
    pub direction: String,
    /// `text`, `choices`, `document`...
    pub kind: String,
    /// What it said.
    pub body: String,
    /// `received`, `queued`, `sent`, `delivered`, `read`, `failed`.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A staff action on a conversation.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ExportedAction {
    /// `whatsapp`, `api`...
    pub channel: String,
    /// `escalated`, `takeover`, `reply`, `release`.
    pub action: String,
    /// `parent`, `bot`, or the credential that acted.
    pub actor: String,
    /// Why, or what.
    pub detail: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// The school chosen on a shared number.
#[derive(Debug, Object)]
pub struct ExportedChoice {
    /// `whatsapp`, `api`...
    pub channel: String,
    /// Until when.
    pub expires_at: DateTime<Utc>,
}

/// A report card rendered for the phone.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ExportedReport {
    /// Its id.
    pub id: i64,
    /// The student it is about (internal id).
    pub student: Option<i64>,
    /// Rendered.
    pub created_at: DateTime<Utc>,
    /// Deleted then.
    pub expires_at: Option<DateTime<Utc>>,
}

impl ContactExport {
    fn of(ctx: &TenantCtx, phone: &PhoneNumber, held: privacy::Held) -> Self {
        Self {
            phone: phone.as_str().to_string(),
            school: ctx.schema_name().to_string(),
            exported_at: Utc::now(),
            contact: held.contact.map(|c| ExportedContact {
                name: c.name,
                wa_user_id: c.wa_user_id,
                opted_in: c.opted_in,
                opt_changed_at: c.opt_changed_at,
                opt_changed_by: c.opt_changed_by,
                last_seen_at: c.last_seen_at,
                created_at: c.created_at,
            }),
            children: held
                .children
                .into_iter()
                .map(|(link, s)| ExportedChild {
                    full_name: students::full_name(&s),
                    student_id: s.student_id,
                    relationship: link.relationship,
                    linked_at: link.created_at,
                })
                .collect(),
            conversations: held
                .conversations
                .into_iter()
                .map(|c| ExportedConversation {
                    channel: c.channel,
                    state: c.state,
                    data: c.data,
                    language: c.language,
                    status: c.handoff,
                    assignee: c.assignee,
                    created_at: c.created_at,
                    updated_at: c.updated_at,
                })
                .collect(),
            messages: held
                .messages
                .into_iter()
                .map(|m| ExportedMessage {
                    channel: m.channel,
                    direction: m.direction,
                    kind: m.kind,
                    body: m.body,
                    status: m.status,
                    error: m.error,
                    created_at: m.created_at,
                })
                .collect(),
            staff_actions: held
                .actions
                .into_iter()
                .map(|a| ExportedAction {
                    channel: a.channel,
                    action: a.action,
                    actor: a.actor,
                    detail: a.detail,
                    created_at: a.created_at,
                })
                .collect(),
            school_choices: held
                .routes
                .into_iter()
                .map(|r| ExportedChoice {
                    channel: r.channel,
                    expires_at: r.expires_at,
                })
                .collect(),
            report_cards: held
                .reports
                .into_iter()
                .map(|r| ExportedReport {
                    id: r.id,
                    student: r.student_id,
                    created_at: r.created_at,
                    expires_at: r.expires_at,
                })
                .collect(),
        }
    }
}

/// That a school erased everything it held about a phone (the phone itself is not kept).
#[derive(Debug, Object)]
pub struct ErasureOut {
    /// Id.
    pub id: i64,
    /// The credential that asked.
    pub actor: String,
    /// Rows removed, by kind: `messages`, `conversations`, `staff_actions`, `children_links`,
    /// `contacts`, `school_choices`, `report_cards`, `report_counters`.
    pub removed: BTreeMap<String, u64>,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl From<erasure::Model> for ErasureOut {
    fn from(e: erasure::Model) -> Self {
        Self {
            id: e.id,
            actor: e.actor,
            removed: serde_json::from_value(e.removed).unwrap_or_default(),
            created_at: e.created_at,
        }
    }
}

/// `contacts/`.
pub struct ContactsApi;

#[OpenApi(tag = "ApiTags::School")]
impl ContactsApi {
    /// The school's WhatsApp contacts by phone, with their opt-in state, linked children and
    /// last message.
    #[oai(path = "/contacts/", method = "get", operation_id = "list_contacts")]
    async fn list(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        /// Only opted-in (`true`) or opted-out (`false`) contacts.
        opted_in: Query<Option<bool>>,
        /// Only this phone (international format).
        #[oai(validator(pattern = r"^\+?[1-9][0-9]{7,14}$"))]
        phone: Query<Option<String>>,
        /// Page number, from 1.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u64>>,
        /// Items per page, 1 to 100 (default 25).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        page_size: Query<Option<u64>>,
    ) -> ApiResult<Json<Page<ContactOut>>> {
        let ctx = caller.require("staff")?;
        let mut query = ctx.find::<whatsapp_contact::Entity>();
        if let Some(o) = opted_in.0 {
            query = query.filter(whatsapp_contact::Column::OptedIn.eq(o));
        }
        if let Some(p) = phone.0.as_deref() {
            let p = PhoneNumber::parse(p)?;
            query = query.filter(whatsapp_contact::Column::Phone.eq(p.as_str()));
        }
        let query = query
            .order_by_asc(whatsapp_contact::Column::Phone)
            .order_by_asc(whatsapp_contact::Column::Id);
        let slice = fetch_page(&state.db, query, page.0, page_size.0).await?;
        let results = rows_out(&state, ctx, slice.rows.clone()).await?;
        Ok(Json(slice.page(results)))
    }

    /// One contact.
    #[oai(path = "/contacts/:id/", method = "get", operation_id = "get_contact")]
    async fn get(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Json<ContactOut>> {
        let ctx = caller.require("staff")?;
        let c = contact(&state, ctx, id.0).await?;
        let mut out = rows_out(&state, ctx, vec![c]).await?;
        Ok(Json(out.remove(0)))
    }

    /// Opt a contact in to the school's broadcasts or out of them (recorded as changed by
    /// this credential).
    #[oai(
        path = "/contacts/:id/",
        method = "put",
        operation_id = "update_contact"
    )]
    async fn update(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
        body: Json<ContactOptIn>,
    ) -> ApiResult<Json<ContactOut>> {
        let ctx = caller.require("staff")?;
        let c = contact(&state, ctx, id.0).await?;
        let phone = PhoneNumber::parse(&c.phone)?;
        let by = OptSource::Api(caller.who());
        let saved =
            contacts::set_opt_in(&state.db, ctx, &phone, body.opted_in, &by, Utc::now()).await?;
        let mut out = rows_out(&state, ctx, vec![saved]).await?;
        Ok(Json(out.remove(0)))
    }
    /// Everything the school holds about a phone, in one JSON document (a parent's request
    /// for their data). `id` is the phone with its `+` (`+2348012345678`; it need not be a
    /// contact: a phone that only chatted has a transcript), or a contact's id.
    #[oai(
        path = "/contacts/:id/export/",
        method = "get",
        operation_id = "export_contact"
    )]
    async fn export(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        #[oai(validator(pattern = r"^(\+[1-9][0-9]{7,14}|[0-9]{1,18})$"))] id: Path<String>,
    ) -> ApiResult<Json<ContactExport>> {
        let ctx = caller.require("staff")?;
        let phone = phone_named(&state, ctx, &id.0).await?;
        let held = privacy::held(&state.db, ctx, &phone).await?;
        tracing::info!(tenant = ctx.schema_name(), by = %caller.who(), "everything held about a phone exported");
        Ok(Json(ContactExport::of(ctx, &phone, held)))
    }

    /// Erase everything the school holds about a phone (a parent's request for erasure):
    /// its contact and opt-in, links to children, conversations, transcripts, staff actions,
    /// school choices and the report cards rendered for it. What is left is a record that an
    /// erasure happened, by whom, and how many rows of each kind went (see `erasures/`).
    /// `id` as for the export. Erasing a phone the school holds nothing about records an
    /// erasure of nothing.
    #[oai(
        path = "/contacts/:id/",
        method = "delete",
        operation_id = "erase_contact"
    )]
    async fn erase(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        #[oai(validator(pattern = r"^(\+[1-9][0-9]{7,14}|[0-9]{1,18})$"))] id: Path<String>,
    ) -> ApiResult<Json<ErasureOut>> {
        let ctx = caller.require("staff")?;
        let phone = phone_named(&state, ctx, &id.0).await?;
        let record = privacy::erase(
            &state.db,
            ctx,
            &phone,
            &caller.who(),
            &state.settings.reports_dir(),
            Utc::now(),
        )
        .await?;
        Ok(Json(record.into()))
    }

    /// The erasures the school made, newest first.
    #[oai(path = "/erasures/", method = "get", operation_id = "list_erasures")]
    async fn erasures(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        /// Page number, from 1.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u64>>,
        /// Items per page, 1 to 100 (default 25).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        page_size: Query<Option<u64>>,
    ) -> ApiResult<Json<Page<ErasureOut>>> {
        let ctx = caller.require("staff")?;
        let query = ctx
            .find::<erasure::Entity>()
            .order_by_desc(erasure::Column::Id);
        let slice = fetch_page(&state.db, query, page.0, page_size.0).await?;
        let results = slice.rows.iter().cloned().map(Into::into).collect();
        Ok(Json(slice.page(results)))
    }
}

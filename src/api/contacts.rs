//! `contacts/`: the phones a school may send broadcasts to, whether each is opted in (a parent's
//! STOP and START in the chat change it, and so can staff), the children linked to it and its
//! last message.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};

use super::ApiTags;
use super::auth::Caller;
use super::respond::{ApiResult, Page, fetch_page};
use crate::domain::PhoneNumber;
use crate::entities::{message_log, student, student_mapping, whatsapp_contact};
use crate::error::Error;
use crate::school::contacts::{self, OptSource};
use crate::school::students;
use crate::state::AppState;
use crate::tenancy::TenantCtx;

/// Longest preview of a contact's last message.
const PREVIEW_CHARS: usize = 120;

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

/// The last message exchanged with a contact.
#[derive(Debug, Object)]
pub struct LastMessageOut {
    /// `in` (from the parent) or `out` (to the parent).
    pub direction: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Its first characters (PINs are never stored).
    pub preview: String,
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
        let last = ctx
            .find::<message_log::Entity>()
            .filter(message_log::Column::UserId.eq(c.phone.as_str()))
            .order_by_desc(message_log::Column::CreatedAt)
            .order_by_desc(message_log::Column::Id)
            .one(&state.db)
            .await?;
        let students = links
            .iter()
            .filter(|l| l.phone == c.phone)
            .filter_map(|l| pupils.get(&l.student_id))
            .map(|s| LinkedStudentOut {
                id: s.id,
                student_id: s.student_id.clone(),
                full_name: students::full_name(s),
            })
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
            last_message: last.map(|m| LastMessageOut {
                direction: m.direction,
                at: m.created_at,
                preview: m.body.chars().take(PREVIEW_CHARS).collect(),
            }),
        });
    }
    Ok(out)
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
}

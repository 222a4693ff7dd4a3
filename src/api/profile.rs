//! `school/`: the school's profile and settings as parents meet them: name, time zone, reply
//! language, contact details, motto, published positions, office hours and whether `menu`
//! reaches the bot while staff have a conversation.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use super::auth::Caller;
use super::respond::ApiResult;
use crate::entities::tenant;
use crate::school::profile::{self, Change};
use crate::state::AppState;

/// The school's profile and settings.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SchoolOut {
    /// The slug clients send as `X-Schema-Name` (set by the operator).
    pub schema_name: String,
    /// Display name, used in replies and on report cards.
    pub name: String,
    /// IANA time zone (`Africa/Lagos`).
    pub time_zone: String,
    /// Reply language for parents who have not chosen one.
    pub default_language: String,
    /// Whether class positions are shown to parents.
    pub publish_position: bool,
    /// Postal address.
    pub address: Option<String>,
    /// Phone parents are told to call.
    pub contact_phone: Option<String>,
    /// E-mail parents are told to write to.
    pub contact_email: Option<String>,
    /// Printed on report cards.
    pub motto: Option<String>,
    /// When staff answer ("Monday to Friday, 8am to 4pm"), told to a parent whose
    /// conversation goes to staff.
    pub office_hours: Option<String>,
    /// Whether a parent's `menu` is answered while the conversation waits for or is with
    /// staff (the conversation then goes back to the bot).
    pub menu_during_handoff: bool,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<tenant::Model> for SchoolOut {
    fn from(t: tenant::Model) -> Self {
        Self {
            schema_name: t.schema_name,
            name: t.name,
            time_zone: t.time_zone,
            default_language: t.default_language,
            publish_position: t.publish_position,
            address: t.address,
            contact_phone: t.contact_phone,
            contact_email: t.contact_email,
            motto: t.motto,
            office_hours: t.office_hours,
            menu_during_handoff: t.menu_during_handoff,
            updated_at: t.updated_at,
        }
    }
}

/// Fields to change; those left out stay as they are, `null` (or blank text) clears an
/// optional one.
#[derive(Debug, Object)]
pub struct SchoolPatch {
    /// Display name, 1 to 200 characters, not only spaces.
    #[oai(validator(
        max_length = 200,
        pattern = r"[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    ))]
    pub name: Option<String>,
    /// IANA time zone (`Africa/Lagos`, `UTC`).
    #[oai(validator(pattern = "^[A-Za-z0-9/_+-]{1,64}$"))]
    pub time_zone: Option<String>,
    /// A language replies are written in (`en`, `fr`).
    #[oai(validator(pattern = "^[a-z]{2,3}$"))]
    pub default_language: Option<String>,
    /// Whether class positions are shown to parents.
    pub publish_position: Option<bool>,
    /// Postal address, at most 500 characters.
    #[oai(validator(max_length = 500))]
    pub address: MaybeUndefined<String>,
    /// Phone in international format (empty: none).
    #[oai(validator(pattern = r"^$|^\+?[1-9][0-9]{7,14}$"))]
    pub contact_phone: MaybeUndefined<String>,
    /// E-mail address (empty: none).
    #[oai(validator(
        max_length = 254,
        pattern = r"^$|^[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000@]+@[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000@.][^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000@]*\.[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000@]*[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000@.]$"
    ))]
    pub contact_email: MaybeUndefined<String>,
    /// At most 200 characters.
    #[oai(validator(max_length = 200))]
    pub motto: MaybeUndefined<String>,
    /// When staff answer, at most 200 characters.
    #[oai(validator(max_length = 200))]
    pub office_hours: MaybeUndefined<String>,
    /// Whether a parent's `menu` is answered while staff have the conversation.
    pub menu_during_handoff: Option<bool>,
}

fn field(value: MaybeUndefined<String>) -> Option<Option<String>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

/// `school/`.
pub struct ProfileApi;

#[OpenApi(tag = "ApiTags::School")]
impl ProfileApi {
    /// The school's profile and settings.
    #[oai(path = "/school/", method = "get", operation_id = "get_school")]
    async fn get(&self, caller: Caller, state: Data<&AppState>) -> ApiResult<Json<SchoolOut>> {
        let ctx = caller.require("staff")?;
        Ok(Json(ctx.profile(&state.db).await?.into()))
    }

    /// Change the school's profile or settings (admin). Parents see the change from their
    /// next message.
    #[oai(path = "/school/", method = "patch", operation_id = "update_school")]
    async fn update(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        body: Json<SchoolPatch>,
    ) -> ApiResult<Json<SchoolOut>> {
        let ctx = caller.require("admin")?;
        let b = body.0;
        let change = Change {
            name: b.name,
            time_zone: b.time_zone,
            default_language: b.default_language,
            publish_position: b.publish_position,
            address: field(b.address),
            contact_phone: field(b.contact_phone),
            contact_email: field(b.contact_email),
            motto: field(b.motto),
            office_hours: field(b.office_hours),
            menu_during_handoff: b.menu_during_handoff,
        };
        let saved = profile::update(&state.db, ctx, change, Utc::now()).await?;
        Ok(Json(saved.into()))
    }
}

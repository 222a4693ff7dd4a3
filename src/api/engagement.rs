//! `engagement-reports/`: the reports a school's website sells through the engagement chat
//! (`/ws/chat/{report_id}`), each with its titles and dialogue in ru, en and pl.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::auth::Caller;
use super::respond::{ApiError, ApiResult, Deleted};
use crate::channels::engagement::catalogue;
use crate::channels::engagement::script::{Dialogues, Script, Titles, check_slug};
use crate::entities::engagement_report;
use crate::error::Error;
use crate::state::AppState;

/// A report of the catalogue.
#[derive(Debug, Object)]
pub struct EngagementReportOut {
    /// The `report_id` of `/ws/chat/{report_id}` and `/ws/chat-success/{report_id}`.
    pub slug: String,
    /// Inactive reports answer `Invalid Url`, as unknown ones.
    pub active: bool,
    /// Titles per language.
    pub titles: Titles,
    /// Dialogue per language (see `prompts/engagement/newjob.yaml` for a complete example).
    pub dialogue: Dialogues,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<engagement_report::Model> for EngagementReportOut {
    type Error = Error;
    fn try_from(m: engagement_report::Model) -> Result<Self, Error> {
        let script = catalogue::parse_stored(&m)?;
        Ok(Self {
            slug: m.slug,
            active: m.active,
            titles: script.titles,
            dialogue: script.dialogue,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// A report to add to the catalogue.
#[derive(Debug, Object)]
pub struct EngagementReportIn {
    /// Its id in URLs: 1-64 characters of a-z, 0-9, '-' and '_'.
    #[oai(validator(pattern = "^[a-z0-9_-]{1,64}$"))]
    pub slug: String,
    /// Whether visitors can open it (default `true`).
    pub active: Option<bool>,
    /// Titles per language.
    pub titles: Titles,
    /// Dialogue per language.
    pub dialogue: Dialogues,
}

/// A report's new content.
#[derive(Debug, Object)]
pub struct EngagementReportUpdate {
    /// Whether visitors can open it (default `true`).
    pub active: Option<bool>,
    /// Titles per language.
    pub titles: Titles,
    /// Dialogue per language.
    pub dialogue: Dialogues,
}

#[derive(ApiResponse)]
enum Created {
    /// Created.
    #[oai(status = 201)]
    Created(Json<EngagementReportOut>),
}

fn not_found(slug: &str) -> ApiError {
    Error::NotFound(format!("no engagement report `{slug}` in this school")).into()
}

fn out(m: engagement_report::Model) -> ApiResult<Json<EngagementReportOut>> {
    Ok(Json(m.try_into()?))
}

/// `engagement-reports/`.
pub struct EngagementApi;

#[OpenApi(tag = "ApiTags::Engagement")]
impl EngagementApi {
    /// The school's report catalogue, by slug.
    #[oai(
        path = "/engagement-reports/",
        method = "get",
        operation_id = "list_engagement_reports"
    )]
    async fn list(
        &self,
        caller: Caller,
        state: Data<&AppState>,
    ) -> ApiResult<Json<Vec<EngagementReportOut>>> {
        let ctx = caller.require("staff")?;
        let rows = catalogue::list(&state.db, ctx).await?;
        let reports = rows
            .into_iter()
            .map(TryInto::try_into)
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Json(reports))
    }

    /// Add a report. The dialogue is checked: every line renders, every branch leads to a
    /// step, a `checkout` step is reachable, one line after payment carries the link.
    #[oai(
        path = "/engagement-reports/",
        method = "post",
        operation_id = "create_engagement_report"
    )]
    async fn create(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        body: Json<EngagementReportIn>,
    ) -> ApiResult<Created> {
        let ctx = caller.require("admin")?;
        let Json(body) = body;
        let script = Script {
            titles: body.titles,
            dialogue: body.dialogue,
        };
        let row = catalogue::insert(
            &state.db,
            ctx,
            &body.slug,
            &script,
            body.active.unwrap_or(true),
        )
        .await?;
        state.site.engagement.catalogue.forget(ctx, &body.slug);
        Ok(Created::Created(Json(row.try_into()?)))
    }

    /// One report.
    #[oai(
        path = "/engagement-reports/:slug/",
        method = "get",
        operation_id = "get_engagement_report"
    )]
    async fn get(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        slug: Path<String>,
    ) -> ApiResult<Json<EngagementReportOut>> {
        let ctx = caller.require("staff")?;
        match catalogue::get(&state.db, ctx, &slug.0).await? {
            Some(m) => out(m),
            None => Err(not_found(&slug.0)),
        }
    }

    /// Replace a report's titles, dialogue and active flag (checked as on create). Chats
    /// already open finish with the dialogue they started with.
    #[oai(
        path = "/engagement-reports/:slug/",
        method = "put",
        operation_id = "update_engagement_report"
    )]
    async fn update(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        slug: Path<String>,
        body: Json<EngagementReportUpdate>,
    ) -> ApiResult<Json<EngagementReportOut>> {
        let ctx = caller.require("admin")?;
        check_slug(&slug.0).map_err(|_| not_found(&slug.0))?;
        let Json(body) = body;
        let script = Script {
            titles: body.titles,
            dialogue: body.dialogue,
        };
        let updated = catalogue::replace(
            &state.db,
            ctx,
            &slug.0,
            &script,
            body.active.unwrap_or(true),
        )
        .await?;
        state.site.engagement.catalogue.forget(ctx, &slug.0);
        match updated {
            Some(m) => out(m),
            None => Err(not_found(&slug.0)),
        }
    }

    /// Remove a report from the catalogue.
    #[oai(
        path = "/engagement-reports/:slug/",
        method = "delete",
        operation_id = "delete_engagement_report"
    )]
    async fn delete(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        slug: Path<String>,
    ) -> ApiResult<Deleted> {
        let ctx = caller.require("admin")?;
        let gone = catalogue::delete(&state.db, ctx, &slug.0).await?;
        state.site.engagement.catalogue.forget(ctx, &slug.0);
        if gone {
            Ok(Deleted::NoContent)
        } else {
            Err(not_found(&slug.0))
        }
    }
}

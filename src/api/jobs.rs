//! Work accepted now and finished by a worker: `generate-reports/`, `batch-reports/`,
//! `delete-reports/`, `notices/{id}/broadcast/`; and `jobs/{id}/`, where its status,
//! progress and (for broadcasts) each recipient's delivery can be read.

use crate::error::ErrorCode;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sea_orm::{ActiveModelTrait, ColumnTrait, QueryFilter, QueryOrder, QuerySelect, Set};

use super::ApiTags;
use super::auth::Caller;
use super::respond::{ApiResult, Page, fetch_page};
use super::school::{class_of, exam_session_of};
use crate::entities::{background_job, message_log, notice};
use crate::error::Error;
use crate::pipeline::work::{self, DeleteReports, WorkJob, kind, status};
use crate::school::students;
use crate::state::AppState;
use crate::tenancy::TenantCtx;

/// Report ids one `delete-reports/` request may name.
const MAX_IDS: usize = 1_000;

/// A job and how far it has got.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct JobOut {
    /// Job id, for `jobs/{id}/`.
    pub id: i64,
    /// `generate_reports`, `batch_reports`, `delete_reports` or `broadcast`.
    pub kind: String,
    /// `queued`, `running`, `done` or `failed`. A broadcast is `done` once every message is
    /// queued for sending; `progress` follows each one out.
    pub status: String,
    /// What was asked for.
    pub params: serde_json::Value,
    /// What came of it.
    pub result: Option<serde_json::Value>,
    /// Why it failed (e.g. `the class or form no longer exists`).
    pub error: Option<String>,
    /// Recipients of a broadcast, or students of a report job.
    pub total: i64,
    /// A broadcast's messages by delivery status (`queued`, `sent`, `delivered`, `read`,
    /// `failed`); a report job's cards `rendered` so far.
    pub progress: BTreeMap<String, i64>,
    /// Accepted.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// One recipient of a broadcast.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RecipientOut {
    /// Phone (E.164).
    pub phone: String,
    /// `queued`, `sent`, `delivered`, `read` or `failed`.
    pub status: String,
    /// Why it failed (e.g. outside the 24-hour window with no template configured).
    pub error: Option<String>,
    /// The provider's message id, once sent.
    pub provider_message_id: Option<String>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
enum Accepted {
    /// Accepted: the job is queued; follow it at `jobs/{id}/`.
    #[oai(status = 202)]
    Accepted(Json<JobOut>),
}

/// `generate-reports/`: one PDF per student of a class, or one student's; exactly one of
/// `class_id` and `student_id`.
#[derive(Debug, Object)]
pub struct GenerateReportsIn {
    /// The class...
    #[oai(nullable)]
    pub class_id: Option<i64>,
    /// ...or one student, by the school's student ID (e.g. `GFA/2026/0001`).
    #[oai(nullable, validator(pattern = r"^[A-Za-z0-9/._-]{1,64}$"))]
    pub student_id: Option<String>,
    /// The exam session.
    pub exam_session_id: i64,
}

/// `batch-reports/`: a class or a form in one combined PDF, and per-student files.
#[derive(Debug, Object)]
pub struct BatchReportsIn {
    /// The exam session.
    pub exam_session_id: i64,
    /// A class...
    #[oai(nullable)]
    pub class_id: Option<i64>,
    /// ...or a form (e.g. `JSS 1`).
    #[oai(
        nullable,
        validator(
            max_length = 64,
            pattern = r"[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
        )
    )]
    pub form: Option<String>,
}

/// `delete-reports/`: exactly one of the three.
#[derive(Debug, Object)]
pub struct DeleteReportsIn {
    /// These reports (at most 1000).
    #[oai(nullable, validator(min_items = 1, max_items = 1000))]
    pub ids: Option<Vec<i64>>,
    /// The reports of this class.
    #[oai(nullable)]
    pub class_id: Option<i64>,
    /// Reports created more than this many days ago.
    #[oai(nullable)]
    pub older_than_days: Option<u32>,
}

async fn progress_of(
    state: &AppState,
    ctx: &TenantCtx,
    row: &background_job::Model,
) -> Result<BTreeMap<String, i64>, Error> {
    let mut progress = BTreeMap::new();
    if row.kind == kind::GENERATE_REPORTS || row.kind == kind::BATCH_REPORTS {
        if let Some(n) = row.result.as_ref().and_then(|r| r["rendered"].as_i64()) {
            progress.insert("rendered".to_string(), n);
        }
        return Ok(progress);
    }
    if row.kind != kind::BROADCAST {
        return Ok(progress);
    }
    let statuses: Vec<String> = ctx
        .find::<message_log::Entity>()
        .select_only()
        .column(message_log::Column::Status)
        .filter(message_log::Column::ReplyTo.starts_with(work::broadcast_key_prefix(row.id)))
        .into_tuple()
        .all(&state.db)
        .await?;
    for s in statuses {
        *progress.entry(s).or_default() += 1;
    }
    Ok(progress)
}

async fn job_out(
    state: &AppState,
    ctx: &TenantCtx,
    row: background_job::Model,
) -> Result<JobOut, Error> {
    let progress = progress_of(state, ctx, &row).await?;
    Ok(JobOut {
        id: row.id,
        kind: row.kind,
        status: row.status,
        params: row.params,
        result: row.result,
        error: row.error,
        total: row.total,
        progress,
        created_at: row.created_at,
        updated_at: row.updated_at,
        finished_at: row.finished_at,
    })
}

/// Record the job and queue it. If the queue refuses, the row says so and the caller gets
/// a 503: nothing is left looking queued that never will run.
async fn accept(
    state: &AppState,
    ctx: &TenantCtx,
    kind: &str,
    params: serde_json::Value,
) -> Result<Accepted, Error> {
    let now = Utc::now();
    let row = background_job::ActiveModel {
        tenant_id: Set(ctx.id()),
        kind: Set(kind.to_string()),
        status: Set(status::QUEUED.into()),
        params: Set(params),
        total: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&state.db)
    .await?;
    let pushed = state
        .queue
        .push(WorkJob {
            tenant: ctx.schema_name().to_string(),
            job_id: row.id,
        })
        .await;
    if let Err(e) = pushed {
        let mut failed: background_job::ActiveModel = row.into();
        failed.status = Set(status::FAILED.into());
        failed.error = Set(Some(format!("not queued: {e}")));
        failed.finished_at = Set(Some(Utc::now()));
        failed.update(&state.db).await?;
        return Err(e);
    }
    tracing::info!(
        school = ctx.schema_name(),
        job_id = row.id,
        kind,
        "work accepted"
    );
    Ok(Accepted::Accepted(Json(job_out(state, ctx, row).await?)))
}

async fn find_job(
    state: &AppState,
    ctx: &TenantCtx,
    id: i64,
) -> Result<background_job::Model, Error> {
    ctx.find::<background_job::Entity>()
        .filter(background_job::Column::Id.eq(id))
        .one(&state.db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no job {id} in this school")))
}

/// Jobs.
pub struct JobsApi;

#[OpenApi(tag = "ApiTags::School")]
impl JobsApi {
    /// Generate report cards: one per student of a class (`class_id`), or one student's
    /// (`student_id`). The job's result lists each card with its signed download link.
    #[oai(
        path = "/generate-reports/",
        method = "post",
        operation_id = "generate_reports"
    )]
    async fn generate_reports(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        body: Json<GenerateReportsIn>,
    ) -> ApiResult<Accepted> {
        let ctx = caller.require("staff")?;
        exam_session_of(&state, ctx, body.exam_session_id).await?;
        let params = match (body.class_id, body.student_id.as_deref()) {
            (Some(class_id), None) => {
                class_of(&state, ctx, class_id).await?;
                serde_json::json!({
                    "class_id": class_id,
                    "exam_session_id": body.exam_session_id,
                })
            }
            (None, Some(student_id)) => {
                let id = crate::domain::StudentId::parse(student_id)?;
                let Some(student) = students::by_student_id(&state.db, ctx, &id).await? else {
                    return Err(Error::NotFound(format!("no student `{id}` in this school")).into());
                };
                serde_json::json!({
                    "student": student.id,
                    "exam_session_id": body.exam_session_id,
                })
            }
            _ => {
                return Err(Error::invalid(
                    ErrorCode::InvalidFilter,
                    "give exactly one of class_id and student_id",
                )
                .into());
            }
        };
        Ok(accept(&state, ctx, kind::GENERATE_REPORTS, params).await?)
    }

    /// Generate a class or a form into one combined PDF (a page per student) and per-student
    /// files. The job's result lists every card and the combined file with signed links.
    #[oai(
        path = "/batch-reports/",
        method = "post",
        operation_id = "batch_reports"
    )]
    async fn batch_reports(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        body: Json<BatchReportsIn>,
    ) -> ApiResult<Accepted> {
        let ctx = caller.require("staff")?;
        exam_session_of(&state, ctx, body.exam_session_id).await?;
        let form = body
            .form
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty());
        match (body.class_id, form) {
            (Some(class_id), None) => {
                class_of(&state, ctx, class_id).await?;
            }
            (None, Some(form)) => {
                let known = students::classes(&state.db, ctx)
                    .await?
                    .iter()
                    .any(|c| c.form == form);
                if !known {
                    return Err(Error::NotFound(format!("no form `{form}` in this school")).into());
                }
            }
            _ => {
                return Err(Error::invalid(
                    ErrorCode::InvalidFilter,
                    "give exactly one of class_id and form",
                )
                .into());
            }
        }
        let params = serde_json::json!({
            "exam_session_id": body.exam_session_id,
            "class_id": body.class_id,
            "form": form,
        });
        Ok(accept(&state, ctx, kind::BATCH_REPORTS, params).await?)
    }

    /// Delete generated reports (their files and rows) by ids, by class, or by age.
    #[oai(
        path = "/delete-reports/",
        method = "post",
        operation_id = "delete_reports"
    )]
    async fn delete_reports(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        body: Json<DeleteReportsIn>,
    ) -> ApiResult<Accepted> {
        let ctx = caller.require("staff")?;
        let given = [
            body.ids.is_some(),
            body.class_id.is_some(),
            body.older_than_days.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(Error::invalid(
                ErrorCode::InvalidFilter,
                "give exactly one of ids, class_id and older_than_days",
            )
            .into());
        }
        if let Some(ids) = &body.ids
            && (ids.is_empty() || ids.len() > MAX_IDS)
        {
            return Err(Error::invalid(
                ErrorCode::InvalidFilter,
                format!("ids holds 1 to {MAX_IDS} report ids"),
            )
            .into());
        }
        if let Some(class_id) = body.class_id {
            class_of(&state, ctx, class_id).await?;
        }
        let params = DeleteReports {
            ids: body.ids.clone(),
            class_id: body.class_id,
            older_than_days: body.older_than_days,
        };
        let params = serde_json::to_value(params).map_err(|e| Error::Internal(e.into()))?;
        Ok(accept(&state, ctx, kind::DELETE_REPORTS, params).await?)
    }

    /// Send a notice to the school's registered WhatsApp numbers: every opted-in contact for a
    /// whole-school notice, those linked to the form's or class' students otherwise. Messages
    /// go out through the sender (paced per business number, a template outside the 24-hour
    /// window when one is configured); follow them at `jobs/{id}/` and its `recipients/`.
    #[oai(
        path = "/notices/:id/broadcast/",
        method = "post",
        operation_id = "broadcast_notice"
    )]
    async fn broadcast(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Accepted> {
        let ctx = caller.require("staff")?;
        ctx.find::<notice::Entity>()
            .filter(notice::Column::Id.eq(id.0))
            .one(&state.db)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no notice {} in this school", id.0)))?;
        let params = serde_json::json!({"notice_id": id.0});
        Ok(accept(&state, ctx, kind::BROADCAST, params).await?)
    }

    /// A job of the school: status, progress, result or error.
    #[oai(path = "/jobs/:id/", method = "get", operation_id = "get_job")]
    async fn get(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Json<JobOut>> {
        let ctx = caller.require("staff")?;
        let row = find_job(&state, ctx, id.0).await?;
        Ok(Json(job_out(&state, ctx, row).await?))
    }

    /// A broadcast's recipients and each one's delivery status, by phone.
    #[oai(
        path = "/jobs/:id/recipients/",
        method = "get",
        operation_id = "list_job_recipients"
    )]
    async fn recipients(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
        /// Page number, from 1.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u64>>,
        /// Items per page, 1 to 100 (default 25).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        page_size: Query<Option<u64>>,
    ) -> ApiResult<Json<Page<RecipientOut>>> {
        let ctx = caller.require("staff")?;
        let row = find_job(&state, ctx, id.0).await?;
        let query = ctx
            .find::<message_log::Entity>()
            .filter(message_log::Column::ReplyTo.starts_with(work::broadcast_key_prefix(row.id)))
            .order_by_asc(message_log::Column::UserId)
            .order_by_asc(message_log::Column::Id);
        let slice = fetch_page(&state.db, query, page.0, page_size.0).await?;
        let results = slice
            .rows
            .iter()
            .map(|m| RecipientOut {
                phone: m.user_id.clone(),
                status: m.status.clone(),
                error: m.error.clone(),
                provider_message_id: m.provider_message_id.clone(),
                updated_at: m.updated_at,
            })
            .collect();
        Ok(Json(slice.page(results)))
    }
}

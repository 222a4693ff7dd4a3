//! `students/`, `released-exam-sessions/`: what the chatbot flows know about a school, read by
//! staff and integrators.

use std::collections::HashMap;

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait};

use super::ApiTags;
use super::auth::Caller;
use super::curriculum::ExamSessionOut;
use super::respond::{ApiResult, Page, fetch_page};
use crate::domain::PhoneNumber;
use crate::entities::{class, student, student_mapping};
use crate::error::Error;
use crate::school::{calendar, students};
use crate::state::AppState;
use crate::tenancy::TenantCtx;

/// A student, without anything secret (the PIN is never returned).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct StudentOut {
    /// Internal id.
    pub id: i64,
    /// The school's student ID (what parents type).
    pub student_id: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Other names.
    pub other_names: Option<String>,
    /// Full name as the bot shows it.
    pub full_name: String,
    /// Class id.
    pub class_id: Option<i64>,
    /// Class name, e.g. `JSS 1A`.
    pub class_name: Option<String>,
    /// Form, e.g. `JSS 1`.
    pub form: Option<String>,
    /// Whether the student is enrolled.
    pub active: bool,
}

/// The school's exam session `id` (released or not), or a 404.
pub(crate) async fn exam_session_of(
    state: &AppState,
    ctx: &TenantCtx,
    id: i64,
) -> Result<crate::entities::exam_session::Model, Error> {
    calendar::exam_session(&state.db, ctx, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no exam session {id} in this school")))
}

/// The school's class `id`, or a 404.
pub(crate) async fn class_of(
    state: &AppState,
    ctx: &TenantCtx,
    id: i64,
) -> Result<class::Model, Error> {
    students::class(&state.db, ctx, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no class {id} in this school")))
}

/// Output rows for `rows`, with their classes looked up once.
pub(crate) async fn student_rows(
    state: &AppState,
    ctx: &TenantCtx,
    rows: Vec<student::Model>,
) -> Result<Vec<StudentOut>, Error> {
    let class_ids: Vec<i64> = rows.iter().filter_map(|s| s.class_id).collect();
    let classes: HashMap<i64, class::Model> = if class_ids.is_empty() {
        HashMap::new()
    } else {
        ctx.find::<class::Entity>()
            .filter(class::Column::Id.is_in(class_ids))
            .all(&state.db)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect()
    };
    Ok(rows
        .into_iter()
        .map(|s| {
            let class = s.class_id.and_then(|id| classes.get(&id));
            StudentOut {
                full_name: students::full_name(&s),
                id: s.id,
                student_id: s.student_id,
                first_name: s.first_name,
                last_name: s.last_name,
                other_names: s.other_names,
                class_id: s.class_id,
                class_name: class.map(|c| c.name.clone()),
                form: class.map(|c| c.form.clone()),
                active: s.active,
            }
        })
        .collect())
}

/// School information endpoints.
pub struct SchoolApi;

#[OpenApi(tag = "ApiTags::School")]
impl SchoolApi {
    /// Students of the school, by last and first name: those linked to `phone` (the parent
    /// verification list), or of a class, or all of them.
    #[oai(path = "/students/", method = "get", operation_id = "list_students")]
    async fn students(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        /// A parent's phone (E.164): only students linked to it.
        #[oai(validator(pattern = r"^\+?[1-9][0-9]{7,14}$"))]
        phone: Query<Option<String>>,
        /// Only students of this class.
        class_id: Query<Option<i64>>,
        /// Page number, from 1.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u64>>,
        /// Items per page, 1 to 100 (default 25).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        page_size: Query<Option<u64>>,
    ) -> ApiResult<Json<Page<StudentOut>>> {
        let ctx = caller.require("staff")?;
        let mut query = ctx.find::<student::Entity>();
        if let Some(phone) = phone.0.as_deref() {
            let phone = PhoneNumber::parse(phone)?;
            let linked = ctx
                .find::<student_mapping::Entity>()
                .select_only()
                .column(student_mapping::Column::StudentId)
                .filter(student_mapping::Column::Phone.eq(phone.as_str()))
                .into_query();
            query = query.filter(student::Column::Id.in_subquery(linked));
        }
        if let Some(class_id) = class_id.0 {
            query = query.filter(student::Column::ClassId.eq(class_id));
        }
        let query = query
            .order_by_asc(student::Column::LastName)
            .order_by_asc(student::Column::FirstName)
            .order_by_asc(student::Column::Id);
        let slice = fetch_page(&state.db, query, page.0, page_size.0).await?;
        let results = student_rows(&state, ctx, slice.rows.clone()).await?;
        Ok(Json(slice.page(results)))
    }

    /// Exam sessions whose results are released to parents, newest first.
    #[oai(
        path = "/released-exam-sessions/",
        method = "get",
        operation_id = "list_released_exam_sessions"
    )]
    async fn released_exam_sessions(
        &self,
        caller: Caller,
        state: Data<&AppState>,
    ) -> ApiResult<Json<Vec<ExamSessionOut>>> {
        let ctx = caller.require("staff")?;
        let terms: HashMap<i64, _> = calendar::terms(&state.db, ctx)
            .await?
            .into_iter()
            .map(|t| (t.id, t))
            .collect();
        let rows = calendar::released_exam_sessions(&state.db, ctx).await?;
        Ok(Json(
            rows.into_iter()
                .map(|e| {
                    let term = terms.get(&e.term_id);
                    ExamSessionOut::of(e, term)
                })
                .collect(),
        ))
    }
}

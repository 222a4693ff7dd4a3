//! The school's calendar and curriculum, entered by the school itself: `academic-sessions/`,
//! `terms/`, `classes/`, `subjects/`, `exam-sessions/` (with release and unrelease). Admin
//! keys write, staff keys read; every list is paginated; another school's ids are not found;
//! a delete that students, marks or attendance hang on is a 409 naming them.

use chrono::{DateTime, NaiveDate, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};

use super::ApiTags;
use super::auth::Caller;
use super::respond::{ApiResult, Deleted, Page, fetch_page};
use crate::entities::{academic_session, class, exam_session, subject, term};
use crate::school::curriculum::{
    self, ClassFields, ExamFields, SessionFields, SubjectFields, TermFields,
};
use crate::state::AppState;

/// An academic session (school year).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AcademicSessionOut {
    /// Id.
    pub id: i64,
    /// Name, e.g. `2025/2026`.
    pub name: String,
    /// First day.
    pub starts_on: NaiveDate,
    /// Last day.
    pub ends_on: NaiveDate,
    /// Whether it is the current one.
    pub is_current: bool,
}

impl From<academic_session::Model> for AcademicSessionOut {
    fn from(s: academic_session::Model) -> Self {
        Self {
            id: s.id,
            name: s.name,
            starts_on: s.starts_on,
            ends_on: s.ends_on,
            is_current: s.is_current,
        }
    }
}

/// An academic session to create or replace.
#[derive(Debug, Object)]
pub struct AcademicSessionIn {
    /// Name, unique in the school, e.g. `2025/2026`.
    #[oai(validator(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    ))]
    pub name: String,
    /// First day.
    pub starts_on: NaiveDate,
    /// Last day (not before `starts_on`).
    pub ends_on: NaiveDate,
    /// The current session (the school's other sessions stop being current). Default false.
    #[oai(default)]
    pub is_current: bool,
}

/// A term of an academic session.
#[derive(Debug, Object)]
pub struct TermOut {
    /// Id.
    pub id: i64,
    /// Its academic session.
    pub academic_session_id: i64,
    /// Name, e.g. `First Term`.
    pub name: String,
    /// 1 for the session's first term.
    pub ordinal: i16,
    /// First day.
    pub starts_on: NaiveDate,
    /// Last day.
    pub ends_on: NaiveDate,
}

impl From<term::Model> for TermOut {
    fn from(t: term::Model) -> Self {
        Self {
            id: t.id,
            academic_session_id: t.academic_session_id,
            name: t.name,
            ordinal: t.ordinal,
            starts_on: t.starts_on,
            ends_on: t.ends_on,
        }
    }
}

/// A term to create or replace: inside its session's dates, overlapping no other term of it.
#[derive(Debug, Object)]
pub struct TermIn {
    /// The academic session it belongs to.
    pub academic_session_id: i64,
    /// Name, e.g. `First Term`.
    #[oai(validator(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    ))]
    pub name: String,
    /// 1 to 12, unique in the session; default: the next one.
    #[oai(validator(minimum(value = "1"), maximum(value = "12")))]
    pub ordinal: Option<i16>,
    /// First day.
    pub starts_on: NaiveDate,
    /// Last day (not before `starts_on`).
    pub ends_on: NaiveDate,
}

/// A class.
#[derive(Debug, Object)]
pub struct ClassOut {
    /// Id.
    pub id: i64,
    /// Name, e.g. `JSS 1A`.
    pub name: String,
    /// Form (year group), e.g. `JSS 1`.
    pub form: String,
    /// Order of forms (JSS 1 = 1).
    pub level: i16,
    /// Enrolled students.
    pub student_count: u64,
}

/// A class to create or replace.
#[derive(Debug, Object)]
pub struct ClassIn {
    /// Name, unique in the school, e.g. `JSS 1A`.
    #[oai(validator(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    ))]
    pub name: String,
    /// Form (year group), e.g. `JSS 1`: notices and reports address a whole form.
    #[oai(validator(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    ))]
    pub form: String,
    /// Order of forms, 0 to 99; default: the number in `form` (`JSS 2` -> 2).
    #[oai(validator(minimum(value = "0"), maximum(value = "99")))]
    pub level: Option<i16>,
}

/// A subject.
#[derive(Debug, Object)]
pub struct SubjectOut {
    /// Id.
    pub id: i64,
    /// Code, as mark imports name it, e.g. `MTH`.
    pub code: String,
    /// Name, e.g. `Mathematics`.
    pub name: String,
}

impl From<subject::Model> for SubjectOut {
    fn from(s: subject::Model) -> Self {
        Self {
            id: s.id,
            code: s.code,
            name: s.name,
        }
    }
}

/// A subject to create or replace.
#[derive(Debug, Object)]
pub struct SubjectIn {
    /// Code, unique in the school: 1 to 16 letters, digits, `-` or `_`; stored in capitals.
    #[oai(validator(pattern = "^[A-Za-z0-9_-]{1,16}$"))]
    pub code: String,
    /// Name, e.g. `Mathematics`.
    #[oai(validator(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    ))]
    pub name: String,
}

/// An exam session, released to parents or not.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ExamSessionOut {
    /// Id, for `results/` and `get-chatbot/`.
    pub id: i64,
    /// Name, e.g. `First Term Examination`.
    pub name: String,
    /// Term id.
    pub term_id: i64,
    /// Term name.
    pub term: Option<String>,
    /// Academic session id of the term.
    pub academic_session_id: Option<i64>,
    /// Whether parents can see its results.
    pub released: bool,
    /// When the results were released.
    pub released_at: Option<DateTime<Utc>>,
}

impl ExamSessionOut {
    /// `e`, with its term's name and session when `term` is known.
    pub fn of(e: exam_session::Model, term: Option<&term::Model>) -> Self {
        Self {
            id: e.id,
            name: e.name,
            term_id: e.term_id,
            term: term.map(|t| t.name.clone()),
            academic_session_id: term.map(|t| t.academic_session_id),
            released: e.released,
            released_at: e.released_at,
        }
    }
}

/// An exam session to create or replace.
#[derive(Debug, Object)]
pub struct ExamSessionIn {
    /// The term it belongs to.
    pub term_id: i64,
    /// Name, unique in the term, e.g. `First Term Examination`.
    #[oai(validator(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    ))]
    pub name: String,
    /// Whether parents can see its results (release later with `.../release/`). Default false.
    #[oai(default)]
    pub released: bool,
}

#[derive(ApiResponse)]
enum CreatedSession {
    /// Created.
    #[oai(status = 201)]
    Created(Json<AcademicSessionOut>),
}

#[derive(ApiResponse)]
enum CreatedTerm {
    /// Created.
    #[oai(status = 201)]
    Created(Json<TermOut>),
}

#[derive(ApiResponse)]
enum CreatedClass {
    /// Created.
    #[oai(status = 201)]
    Created(Json<ClassOut>),
}

#[derive(ApiResponse)]
enum CreatedSubject {
    /// Created.
    #[oai(status = 201)]
    Created(Json<SubjectOut>),
}

#[derive(ApiResponse)]
enum CreatedExam {
    /// Created.
    #[oai(status = 201)]
    Created(Json<ExamSessionOut>),
}

fn session_fields(b: AcademicSessionIn) -> SessionFields {
    SessionFields {
        name: b.name,
        starts_on: b.starts_on,
        ends_on: b.ends_on,
        is_current: b.is_current,
    }
}

fn term_fields(b: TermIn) -> TermFields {
    TermFields {
        academic_session_id: b.academic_session_id,
        name: b.name,
        ordinal: b.ordinal,
        starts_on: b.starts_on,
        ends_on: b.ends_on,
    }
}

fn class_fields(b: ClassIn) -> ClassFields {
    ClassFields {
        name: b.name,
        form: b.form,
        level: b.level,
    }
}

fn subject_fields(b: SubjectIn) -> SubjectFields {
    SubjectFields {
        code: b.code,
        name: b.name,
    }
}

fn exam_fields(b: ExamSessionIn) -> ExamFields {
    ExamFields {
        term_id: b.term_id,
        name: b.name,
        released: b.released,
    }
}

async fn class_out(
    state: &AppState,
    ctx: &crate::tenancy::TenantCtx,
    c: class::Model,
) -> ApiResult<ClassOut> {
    let counts = curriculum::student_counts(&state.db, ctx).await?;
    Ok(ClassOut {
        student_count: counts.get(&c.id).copied().unwrap_or(0),
        id: c.id,
        name: c.name,
        form: c.form,
        level: c.level,
    })
}

async fn exam_out(
    state: &AppState,
    ctx: &crate::tenancy::TenantCtx,
    e: exam_session::Model,
) -> ApiResult<ExamSessionOut> {
    let t = crate::school::calendar::term(&state.db, ctx, e.term_id).await?;
    Ok(ExamSessionOut::of(e, t.as_ref()))
}

/// The school's calendar and curriculum.
pub struct CurriculumApi;

#[OpenApi(tag = "ApiTags::School")]
impl CurriculumApi {
    /// Academic sessions, newest first.
    #[oai(
        path = "/academic-sessions/",
        method = "get",
        operation_id = "list_academic_sessions"
    )]
    async fn list_sessions(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        /// Page number, from 1.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u64>>,
        /// Items per page, 1 to 100 (default 25).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        page_size: Query<Option<u64>>,
    ) -> ApiResult<Json<Page<AcademicSessionOut>>> {
        let ctx = caller.require("staff")?;
        let query = ctx
            .find::<academic_session::Entity>()
            .order_by_desc(academic_session::Column::StartsOn)
            .order_by_desc(academic_session::Column::Id);
        let slice = fetch_page(&state.db, query, page.0, page_size.0).await?;
        let results = slice.rows.iter().cloned().map(Into::into).collect();
        Ok(Json(slice.page(results)))
    }

    /// Create an academic session; `is_current` makes it the current one.
    #[oai(
        path = "/academic-sessions/",
        method = "post",
        operation_id = "create_academic_session"
    )]
    async fn create_session(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        body: Json<AcademicSessionIn>,
    ) -> ApiResult<CreatedSession> {
        let ctx = caller.require("admin")?;
        let s = curriculum::save_session(&state.db, ctx, None, session_fields(body.0), Utc::now())
            .await?;
        Ok(CreatedSession::Created(Json(s.into())))
    }

    /// One academic session.
    #[oai(
        path = "/academic-sessions/:id/",
        method = "get",
        operation_id = "get_academic_session"
    )]
    async fn get_session(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Json<AcademicSessionOut>> {
        let ctx = caller.require("staff")?;
        Ok(Json(
            curriculum::session(&state.db, ctx, id.0).await?.into(),
        ))
    }

    /// Replace an academic session (its terms must stay inside its dates).
    #[oai(
        path = "/academic-sessions/:id/",
        method = "put",
        operation_id = "update_academic_session"
    )]
    async fn update_session(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
        body: Json<AcademicSessionIn>,
    ) -> ApiResult<Json<AcademicSessionOut>> {
        let ctx = caller.require("admin")?;
        let s = curriculum::save_session(
            &state.db,
            ctx,
            Some(id.0),
            session_fields(body.0),
            Utc::now(),
        )
        .await?;
        Ok(Json(s.into()))
    }

    /// Delete an academic session without terms (409 naming them otherwise).
    #[oai(
        path = "/academic-sessions/:id/",
        method = "delete",
        operation_id = "delete_academic_session"
    )]
    async fn delete_session(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Deleted> {
        let ctx = caller.require("admin")?;
        curriculum::delete_session(&state.db, ctx, id.0).await?;
        Ok(Deleted::NoContent)
    }

    /// Terms, newest first; of one academic session when asked.
    #[oai(path = "/terms/", method = "get", operation_id = "list_terms")]
    async fn list_terms(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        /// Only this academic session's terms.
        academic_session_id: Query<Option<i64>>,
        /// Page number, from 1.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u64>>,
        /// Items per page, 1 to 100 (default 25).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        page_size: Query<Option<u64>>,
    ) -> ApiResult<Json<Page<TermOut>>> {
        let ctx = caller.require("staff")?;
        let mut query = ctx.find::<term::Entity>();
        if let Some(s) = academic_session_id.0 {
            query = query.filter(term::Column::AcademicSessionId.eq(s));
        }
        let query = query
            .order_by_desc(term::Column::StartsOn)
            .order_by_desc(term::Column::Id);
        let slice = fetch_page(&state.db, query, page.0, page_size.0).await?;
        let results = slice.rows.iter().cloned().map(Into::into).collect();
        Ok(Json(slice.page(results)))
    }

    /// Create a term of an academic session.
    #[oai(path = "/terms/", method = "post", operation_id = "create_term")]
    async fn create_term(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        body: Json<TermIn>,
    ) -> ApiResult<CreatedTerm> {
        let ctx = caller.require("admin")?;
        let t =
            curriculum::save_term(&state.db, ctx, None, term_fields(body.0), Utc::now()).await?;
        Ok(CreatedTerm::Created(Json(t.into())))
    }

    /// One term.
    #[oai(path = "/terms/:id/", method = "get", operation_id = "get_term")]
    async fn get_term(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Json<TermOut>> {
        let ctx = caller.require("staff")?;
        Ok(Json(curriculum::term(&state.db, ctx, id.0).await?.into()))
    }

    /// Replace a term.
    #[oai(path = "/terms/:id/", method = "put", operation_id = "update_term")]
    async fn update_term(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
        body: Json<TermIn>,
    ) -> ApiResult<Json<TermOut>> {
        let ctx = caller.require("admin")?;
        let t = curriculum::save_term(&state.db, ctx, Some(id.0), term_fields(body.0), Utc::now())
            .await?;
        Ok(Json(t.into()))
    }

    /// Delete a term without exam sessions or attendance (409 naming them otherwise).
    #[oai(path = "/terms/:id/", method = "delete", operation_id = "delete_term")]
    async fn delete_term(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Deleted> {
        let ctx = caller.require("admin")?;
        curriculum::delete_term(&state.db, ctx, id.0).await?;
        Ok(Deleted::NoContent)
    }

    /// Classes by level and name, each with its number of enrolled students.
    #[oai(path = "/classes/", method = "get", operation_id = "list_classes")]
    async fn list_classes(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        /// Only the classes of this form, e.g. `JSS 1`.
        form: Query<Option<String>>,
        /// Page number, from 1.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u64>>,
        /// Items per page, 1 to 100 (default 25).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        page_size: Query<Option<u64>>,
    ) -> ApiResult<Json<Page<ClassOut>>> {
        let ctx = caller.require("staff")?;
        let mut query = ctx.find::<class::Entity>();
        if let Some(form) = form.0.as_deref() {
            query = query.filter(class::Column::Form.eq(form.trim()));
        }
        let query = query
            .order_by_asc(class::Column::Level)
            .order_by_asc(class::Column::Name)
            .order_by_asc(class::Column::Id);
        let slice = fetch_page(&state.db, query, page.0, page_size.0).await?;
        let counts = curriculum::student_counts(&state.db, ctx).await?;
        let results = slice
            .rows
            .iter()
            .map(|c| ClassOut {
                id: c.id,
                name: c.name.clone(),
                form: c.form.clone(),
                level: c.level,
                student_count: counts.get(&c.id).copied().unwrap_or(0),
            })
            .collect();
        Ok(Json(slice.page(results)))
    }

    /// Create a class.
    #[oai(path = "/classes/", method = "post", operation_id = "create_class")]
    async fn create_class(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        body: Json<ClassIn>,
    ) -> ApiResult<CreatedClass> {
        let ctx = caller.require("admin")?;
        let c =
            curriculum::save_class(&state.db, ctx, None, class_fields(body.0), Utc::now()).await?;
        Ok(CreatedClass::Created(Json(
            class_out(&state, ctx, c).await?,
        )))
    }

    /// One class.
    #[oai(path = "/classes/:id/", method = "get", operation_id = "get_class")]
    async fn get_class(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Json<ClassOut>> {
        let ctx = caller.require("staff")?;
        let c = curriculum::class(&state.db, ctx, id.0).await?;
        Ok(Json(class_out(&state, ctx, c).await?))
    }

    /// Replace a class.
    #[oai(path = "/classes/:id/", method = "put", operation_id = "update_class")]
    async fn update_class(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
        body: Json<ClassIn>,
    ) -> ApiResult<Json<ClassOut>> {
        let ctx = caller.require("admin")?;
        let c =
            curriculum::save_class(&state.db, ctx, Some(id.0), class_fields(body.0), Utc::now())
                .await?;
        Ok(Json(class_out(&state, ctx, c).await?))
    }

    /// Delete a class without students or notices addressed to it (409 naming them
    /// otherwise).
    #[oai(
        path = "/classes/:id/",
        method = "delete",
        operation_id = "delete_class"
    )]
    async fn delete_class(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Deleted> {
        let ctx = caller.require("admin")?;
        curriculum::delete_class(&state.db, ctx, id.0).await?;
        Ok(Deleted::NoContent)
    }

    /// Subjects by code.
    #[oai(path = "/subjects/", method = "get", operation_id = "list_subjects")]
    async fn list_subjects(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        /// Page number, from 1.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u64>>,
        /// Items per page, 1 to 100 (default 25).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        page_size: Query<Option<u64>>,
    ) -> ApiResult<Json<Page<SubjectOut>>> {
        let ctx = caller.require("staff")?;
        let query = ctx
            .find::<subject::Entity>()
            .order_by_asc(subject::Column::Code)
            .order_by_asc(subject::Column::Id);
        let slice = fetch_page(&state.db, query, page.0, page_size.0).await?;
        let results = slice.rows.iter().cloned().map(Into::into).collect();
        Ok(Json(slice.page(results)))
    }

    /// Create a subject; codes are unique in the school (409).
    #[oai(path = "/subjects/", method = "post", operation_id = "create_subject")]
    async fn create_subject(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        body: Json<SubjectIn>,
    ) -> ApiResult<CreatedSubject> {
        let ctx = caller.require("admin")?;
        let s = curriculum::save_subject(&state.db, ctx, None, subject_fields(body.0), Utc::now())
            .await?;
        Ok(CreatedSubject::Created(Json(s.into())))
    }

    /// One subject.
    #[oai(path = "/subjects/:id/", method = "get", operation_id = "get_subject")]
    async fn get_subject(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Json<SubjectOut>> {
        let ctx = caller.require("staff")?;
        Ok(Json(
            curriculum::subject(&state.db, ctx, id.0).await?.into(),
        ))
    }

    /// Replace a subject.
    #[oai(
        path = "/subjects/:id/",
        method = "put",
        operation_id = "update_subject"
    )]
    async fn update_subject(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
        body: Json<SubjectIn>,
    ) -> ApiResult<Json<SubjectOut>> {
        let ctx = caller.require("admin")?;
        let s = curriculum::save_subject(
            &state.db,
            ctx,
            Some(id.0),
            subject_fields(body.0),
            Utc::now(),
        )
        .await?;
        Ok(Json(s.into()))
    }

    /// Delete a subject without marks (409 naming them otherwise).
    #[oai(
        path = "/subjects/:id/",
        method = "delete",
        operation_id = "delete_subject"
    )]
    async fn delete_subject(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Deleted> {
        let ctx = caller.require("admin")?;
        curriculum::delete_subject(&state.db, ctx, id.0).await?;
        Ok(Deleted::NoContent)
    }

    /// Exam sessions, released or not, newest first; of one term when asked.
    #[oai(
        path = "/exam-sessions/",
        method = "get",
        operation_id = "list_exam_sessions"
    )]
    async fn list_exams(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        /// Only this term's exam sessions.
        term_id: Query<Option<i64>>,
        /// Only released (`true`) or unreleased (`false`) ones.
        released: Query<Option<bool>>,
        /// Page number, from 1.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u64>>,
        /// Items per page, 1 to 100 (default 25).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        page_size: Query<Option<u64>>,
    ) -> ApiResult<Json<Page<ExamSessionOut>>> {
        let ctx = caller.require("staff")?;
        let mut query = ctx.find::<exam_session::Entity>();
        if let Some(t) = term_id.0 {
            query = query.filter(exam_session::Column::TermId.eq(t));
        }
        if let Some(r) = released.0 {
            query = query.filter(exam_session::Column::Released.eq(r));
        }
        let query = query.order_by_desc(exam_session::Column::Id);
        let slice = fetch_page(&state.db, query, page.0, page_size.0).await?;
        let terms: std::collections::HashMap<i64, term::Model> =
            crate::school::calendar::terms(&state.db, ctx)
                .await?
                .into_iter()
                .map(|t| (t.id, t))
                .collect();
        let results = slice
            .rows
            .iter()
            .cloned()
            .map(|e| {
                let t = terms.get(&e.term_id);
                ExamSessionOut::of(e, t)
            })
            .collect();
        Ok(Json(slice.page(results)))
    }

    /// Create an exam session of a term (unreleased unless `released`).
    #[oai(
        path = "/exam-sessions/",
        method = "post",
        operation_id = "create_exam_session"
    )]
    async fn create_exam(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        body: Json<ExamSessionIn>,
    ) -> ApiResult<CreatedExam> {
        let ctx = caller.require("admin")?;
        let e =
            curriculum::save_exam(&state.db, ctx, None, exam_fields(body.0), Utc::now()).await?;
        Ok(CreatedExam::Created(Json(exam_out(&state, ctx, e).await?)))
    }

    /// One exam session.
    #[oai(
        path = "/exam-sessions/:id/",
        method = "get",
        operation_id = "get_exam_session"
    )]
    async fn get_exam(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Json<ExamSessionOut>> {
        let ctx = caller.require("staff")?;
        let e = curriculum::exam(&state.db, ctx, id.0).await?;
        Ok(Json(exam_out(&state, ctx, e).await?))
    }

    /// Replace an exam session.
    #[oai(
        path = "/exam-sessions/:id/",
        method = "put",
        operation_id = "update_exam_session"
    )]
    async fn update_exam(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
        body: Json<ExamSessionIn>,
    ) -> ApiResult<Json<ExamSessionOut>> {
        let ctx = caller.require("admin")?;
        let e = curriculum::save_exam(&state.db, ctx, Some(id.0), exam_fields(body.0), Utc::now())
            .await?;
        Ok(Json(exam_out(&state, ctx, e).await?))
    }

    /// Delete an exam session without marks (409 naming them otherwise).
    #[oai(
        path = "/exam-sessions/:id/",
        method = "delete",
        operation_id = "delete_exam_session"
    )]
    async fn delete_exam(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Deleted> {
        let ctx = caller.require("admin")?;
        curriculum::delete_exam(&state.db, ctx, id.0).await?;
        Ok(Deleted::NoContent)
    }

    /// Release an exam session's results: parents can see them from now on (in the chat and
    /// `released-exam-sessions/`). Releasing a released one changes nothing.
    #[oai(
        path = "/exam-sessions/:id/release/",
        method = "post",
        operation_id = "release_exam_session"
    )]
    async fn release(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Json<ExamSessionOut>> {
        let ctx = caller.require("admin")?;
        let e = curriculum::set_released(&state.db, ctx, id.0, true, Utc::now()).await?;
        Ok(Json(exam_out(&state, ctx, e).await?))
    }

    /// Withdraw an exam session's results from parents.
    #[oai(
        path = "/exam-sessions/:id/unrelease/",
        method = "post",
        operation_id = "unrelease_exam_session"
    )]
    async fn unrelease(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Json<ExamSessionOut>> {
        let ctx = caller.require("admin")?;
        let e = curriculum::set_released(&state.db, ctx, id.0, false, Utc::now()).await?;
        Ok(Json(exam_out(&state, ctx, e).await?))
    }
}

//! What every endpoint shares: the documented error responses and pagination.

use crate::error::ErrorCode;
use poem_openapi::payload::Json;
use poem_openapi::types::{ParseFromJSON, ToJSON};
use poem_openapi::{ApiResponse, Object};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, Select,
};

use crate::error::{Error, ErrorBody};

/// Largest page a list endpoint returns.
pub const MAX_PAGE_SIZE: u64 = 100;
/// Page size when the client names none.
pub const DEFAULT_PAGE_SIZE: u64 = 25;

/// The error responses of the API; every body is `{"error": "<code>", "message": "..."}`.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// Invalid input; `error` names the rule it broke (e.g. `invalid_phone`).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No credential, or an unknown, revoked, expired or malformed one.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The credential lacks the scope, or `X-Schema-Name` or the domain names another school.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Not found in this school (another school's ids are not found either), or the
    /// `X-Schema-Name` school does not exist.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Conflicts with existing data (e.g. a second welcome message).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The request body is larger than the server accepts.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// Too many requests from this credential; retry after `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyRequests(
        Json<ErrorBody>,
        /// Seconds to wait before the next request.
        #[oai(header = "Retry-After")]
        u64,
    ),
    /// Our fault; the server log has the cause (the body never does).
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The database or the job queue cannot take the request now; retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        if e.status().is_server_error() {
            tracing::error!(error = %e, code = e.code().as_str(), "request failed");
        }
        let body = Json(e.body());
        match e {
            Error::Invalid { .. } | Error::InvalidRows { .. } => Self::BadRequest(body),
            Error::Unauthorized(_) => Self::Unauthorized(body),
            Error::Forbidden(_) => Self::Forbidden(body),
            Error::NotFound(_) => Self::NotFound(body),
            Error::Conflict(_) => Self::Conflict(body),
            Error::RateLimited { retry_after_secs } => {
                Self::TooManyRequests(body, retry_after_secs)
            }
            Error::Unavailable(_) => Self::Unavailable(body),
            Error::Database(_) | Error::Internal(_) => Self::Internal(body),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        Error::from(e).into()
    }
}

/// An endpoint's result: its success response, or one of [`ApiError`].
pub type ApiResult<T> = Result<T, ApiError>;

/// One page of a list.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Page<T: ParseFromJSON + ToJSON> {
    /// Items in the whole list.
    pub count: u64,
    /// This page's number, from 1.
    pub page: u64,
    /// Items per page.
    pub page_size: u64,
    /// This page's items.
    pub results: Vec<T>,
}

/// The rows of one page of an ordered query, and where they stand in the whole list.
pub struct Slice<M> {
    count: u64,
    page: u64,
    page_size: u64,
    /// This page's rows.
    pub rows: Vec<M>,
}

impl<M> Slice<M> {
    /// The page as the API returns it, with `results` made from [`Slice::rows`].
    pub fn page<T: ParseFromJSON + ToJSON>(&self, results: Vec<T>) -> Page<T> {
        Page {
            count: self.count,
            page: self.page,
            page_size: self.page_size,
            results,
        }
    }
}

/// Page `page` (from 1) of `page_size` rows of `query`, which must be ordered.
pub async fn fetch_page<E>(
    db: &sea_orm::DatabaseConnection,
    query: Select<E>,
    page: Option<u64>,
    page_size: Option<u64>,
) -> Result<Slice<E::Model>, Error>
where
    E: EntityTrait,
    E::Model: Sync,
{
    let (page, page_size, offset) = paging(page, page_size)?;
    let count = query.clone().count(db).await?;
    let rows = query.offset(offset).limit(page_size).all(db).await?;
    Ok(Slice {
        count,
        page,
        page_size,
        rows,
    })
}

/// Page `page` of `page_size` items of a list already in memory.
pub fn slice_of<T>(
    mut items: Vec<T>,
    page: Option<u64>,
    page_size: Option<u64>,
) -> Result<Slice<T>, Error> {
    let (page, page_size, offset) = paging(page, page_size)?;
    let count = items.len() as u64;
    let start = (offset.min(count)) as usize;
    let end = (offset.saturating_add(page_size).min(count)) as usize;
    let rows = items.drain(start..end).collect();
    Ok(Slice {
        count,
        page,
        page_size,
        rows,
    })
}

/// No content: what a DELETE answers.
#[derive(ApiResponse)]
pub enum Deleted {
    /// Deleted.
    #[oai(status = 204)]
    NoContent,
}

/// Delete the row of `ctx`'s school whose `id_column` is `id`; a 404 naming `what` when the
/// school has none (another school's ids included).
pub async fn delete_one<E: crate::entities::TenantOwned>(
    db: &impl ConnectionTrait,
    ctx: &crate::tenancy::TenantCtx,
    id_column: E::Column,
    id: i64,
    what: &str,
) -> ApiResult<Deleted> {
    let deleted = ctx
        .delete_many::<E>()
        .filter(id_column.eq(id))
        .exec(db)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(Error::NotFound(format!("no {what} {id} in this school")).into());
    }
    Ok(Deleted::NoContent)
}

/// `page` and `page_size` query values, checked: `(page from 1, size, offset)`.
fn paging(page: Option<u64>, page_size: Option<u64>) -> Result<(u64, u64, u64), Error> {
    let page = page.unwrap_or(1);
    let size = page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if page == 0 || page > 1_000_000 {
        return Err(Error::invalid(
            ErrorCode::InvalidPage,
            "page counts from 1 (at most 1000000)",
        ));
    }
    if size == 0 || size > MAX_PAGE_SIZE {
        return Err(Error::invalid(
            ErrorCode::InvalidPageSize,
            format!("page_size is 1 to {MAX_PAGE_SIZE}"),
        ));
    }
    Ok((page, size, (page - 1) * size))
}

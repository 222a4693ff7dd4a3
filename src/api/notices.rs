//! `notices/`: what the school announces, shown in the chat's notices menu.

use crate::error::ErrorCode;
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Set,
};

use super::ApiTags;
use super::auth::Caller;
use super::respond::{ApiError, ApiResult, Deleted, Page, delete_one, fetch_page};
use crate::entities::{class, notice};
use crate::error::Error;
use crate::school::notices::audience;
use crate::state::AppState;
use crate::tenancy::TenantCtx;

const MAX_TITLE: usize = 200;
const MAX_BODY: usize = 4096;

/// Who a notice is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum Audience {
    /// Every parent of the school.
    School,
    /// Parents of one form (`audience_form`, e.g. `JSS 1`).
    Form,
    /// Parents of one class (`audience_class_id`).
    Class,
}

impl Audience {
    fn as_str(self) -> &'static str {
        match self {
            Self::School => audience::SCHOOL,
            Self::Form => audience::FORM,
            Self::Class => audience::CLASS,
        }
    }

    fn parse(stored: &str) -> Self {
        match stored {
            audience::FORM => Self::Form,
            audience::CLASS => Self::Class,
            _ => Self::School,
        }
    }
}

/// A notice as stored.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NoticeOut {
    /// Id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Text.
    pub body: String,
    /// Who it is for.
    pub audience: Audience,
    /// The form, for `form` notices.
    pub audience_form: Option<String>,
    /// The class, for `class` notices.
    pub audience_class_id: Option<i64>,
    /// Shown from.
    pub publish_at: DateTime<Utc>,
    /// Shown until (never expires when absent).
    pub expires_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<notice::Model> for NoticeOut {
    fn from(n: notice::Model) -> Self {
        Self {
            id: n.id,
            title: n.title,
            body: n.body,
            audience: Audience::parse(&n.audience),
            audience_form: n.audience_form,
            audience_class_id: n.audience_class_id,
            publish_at: n.publish_at,
            expires_at: n.expires_at,
            created_at: n.created_at,
            updated_at: n.updated_at,
        }
    }
}

/// A notice to create, or to replace an existing one with.
#[derive(Debug, Object)]
pub struct NoticeIn {
    /// Title: 1 to 200 characters, not only spaces.
    #[oai(validator(
        min_length = 1,
        max_length = 200,
        pattern = r"[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    ))]
    pub title: String,
    /// Text: 1 to 4096 characters, not only spaces.
    #[oai(validator(
        min_length = 1,
        max_length = 4096,
        pattern = r"[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    ))]
    pub body: String,
    /// Who it is for (default `school`).
    #[oai(nullable)]
    pub audience: Option<Audience>,
    /// Required for `form` notices: a form of the school's classes.
    #[oai(nullable)]
    pub audience_form: Option<String>,
    /// Required for `class` notices: a class of the school.
    #[oai(nullable)]
    pub audience_class_id: Option<i64>,
    /// Shown from (default: now).
    #[oai(nullable)]
    pub publish_at: Option<DateTime<Utc>>,
    /// Shown until (default: never expires); after `publish_at`.
    #[oai(nullable)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A checked [`NoticeIn`].
struct Checked {
    title: String,
    body: String,
    audience: Audience,
    form: Option<String>,
    class_id: Option<i64>,
    publish_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
}

fn text(field: &str, value: &str, max: usize) -> Result<String, Error> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(Error::invalid(
            ErrorCode::InvalidNotice,
            format!("{field} must be 1 to {max} characters"),
        ));
    }
    Ok(value.to_string())
}

impl NoticeIn {
    async fn checked(&self, state: &AppState, ctx: &TenantCtx) -> Result<Checked, Error> {
        let audience = self.audience.unwrap_or(Audience::School);
        let (mut form, mut class_id) = (None, None);
        match audience {
            Audience::School => {}
            Audience::Form => {
                let name = self
                    .audience_form
                    .as_deref()
                    .map(str::trim)
                    .filter(|f| !f.is_empty())
                    .ok_or_else(|| {
                        Error::invalid(
                            ErrorCode::InvalidNotice,
                            "a `form` notice needs audience_form",
                        )
                    })?;
                let known = ctx
                    .find::<class::Entity>()
                    .filter(class::Column::Form.eq(name))
                    .limit(1)
                    .count(&state.db)
                    .await?;
                if known == 0 {
                    return Err(Error::invalid(
                        ErrorCode::InvalidNotice,
                        format!("no class of this school is in form `{name}`"),
                    ));
                }
                form = Some(name.to_string());
            }
            Audience::Class => {
                let id = self.audience_class_id.ok_or_else(|| {
                    Error::invalid(
                        ErrorCode::InvalidNotice,
                        "a `class` notice needs audience_class_id",
                    )
                })?;
                if crate::school::students::class(&state.db, ctx, id)
                    .await?
                    .is_none()
                {
                    return Err(Error::invalid(
                        ErrorCode::InvalidNotice,
                        format!("no class {id} in this school"),
                    ));
                }
                class_id = Some(id);
            }
        }
        let publish_at = self.publish_at.unwrap_or_else(Utc::now);
        if let Some(expires) = self.expires_at
            && expires <= publish_at
        {
            return Err(Error::invalid(
                ErrorCode::InvalidNotice,
                "expires_at must be after publish_at",
            ));
        }
        Ok(Checked {
            title: text("title", &self.title, MAX_TITLE)?,
            body: text("body", &self.body, MAX_BODY)?,
            audience,
            form,
            class_id,
            publish_at,
            expires_at: self.expires_at,
        })
    }
}

#[derive(ApiResponse)]
enum Created {
    /// Created.
    #[oai(status = 201)]
    Created(Json<NoticeOut>),
}

fn not_found(id: i64) -> ApiError {
    Error::NotFound(format!("no notice {id} in this school")).into()
}

async fn one(state: &AppState, ctx: &TenantCtx, id: i64) -> ApiResult<notice::Model> {
    ctx.find::<notice::Entity>()
        .filter(notice::Column::Id.eq(id))
        .one(&state.db)
        .await?
        .ok_or_else(|| not_found(id))
}

/// `notices/`.
pub struct NoticesApi;

#[OpenApi(tag = "ApiTags::School")]
impl NoticesApi {
    /// Notices, newest first: those shown now, or every one with `include_inactive`.
    #[oai(path = "/notices/", method = "get", operation_id = "list_notices")]
    async fn list(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        /// Also notices not yet published or already expired.
        include_inactive: Query<Option<bool>>,
        /// Page number, from 1.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u64>>,
        /// Items per page, 1 to 100 (default 25).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        page_size: Query<Option<u64>>,
    ) -> ApiResult<Json<Page<NoticeOut>>> {
        let ctx = caller.require("staff")?;
        let mut query = ctx.find::<notice::Entity>();
        if !include_inactive.0.unwrap_or(false) {
            let now = Utc::now();
            query = query.filter(notice::Column::PublishAt.lte(now)).filter(
                Condition::any()
                    .add(notice::Column::ExpiresAt.is_null())
                    .add(notice::Column::ExpiresAt.gt(now)),
            );
        }
        let query = query
            .order_by_desc(notice::Column::PublishAt)
            .order_by_desc(notice::Column::Id);
        let slice = fetch_page(&state.db, query, page.0, page_size.0).await?;
        let results = slice.rows.iter().cloned().map(Into::into).collect();
        Ok(Json(slice.page(results)))
    }

    /// Publish a notice.
    #[oai(path = "/notices/", method = "post", operation_id = "create_notice")]
    async fn create(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        body: Json<NoticeIn>,
    ) -> ApiResult<Created> {
        let ctx = caller.require("staff")?;
        let n = body.checked(&state, ctx).await?;
        let now = Utc::now();
        let model = notice::ActiveModel {
            tenant_id: Set(ctx.id()),
            title: Set(n.title),
            body: Set(n.body),
            audience: Set(n.audience.as_str().to_string()),
            audience_form: Set(n.form),
            audience_class_id: Set(n.class_id),
            publish_at: Set(n.publish_at),
            expires_at: Set(n.expires_at),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&state.db)
        .await?;
        Ok(Created::Created(Json(model.into())))
    }

    /// One notice.
    #[oai(path = "/notices/:id/", method = "get", operation_id = "get_notice")]
    async fn get(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Json<NoticeOut>> {
        let ctx = caller.require("staff")?;
        Ok(Json(one(&state, ctx, id.0).await?.into()))
    }

    /// Replace a notice.
    #[oai(path = "/notices/:id/", method = "put", operation_id = "update_notice")]
    async fn update(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
        body: Json<NoticeIn>,
    ) -> ApiResult<Json<NoticeOut>> {
        let ctx = caller.require("staff")?;
        let existing = one(&state, ctx, id.0).await?;
        let n = body.checked(&state, ctx).await?;
        let mut model: notice::ActiveModel = existing.into();
        model.title = Set(n.title);
        model.body = Set(n.body);
        model.audience = Set(n.audience.as_str().to_string());
        model.audience_form = Set(n.form);
        model.audience_class_id = Set(n.class_id);
        model.publish_at = Set(n.publish_at);
        model.expires_at = Set(n.expires_at);
        model.updated_at = Set(Utc::now());
        Ok(Json(model.update(&state.db).await?.into()))
    }

    /// Delete a notice.
    #[oai(
        path = "/notices/:id/",
        method = "delete",
        operation_id = "delete_notice"
    )]
    async fn delete(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Deleted> {
        let ctx = caller.require("staff")?;
        delete_one::<notice::Entity>(&state.db, ctx, notice::Column::Id, id.0, "notice").await
    }
}

//! `welcome-messages/`: the one welcome message of a school, sent when a parent first writes.

use crate::error::ErrorCode;
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sea_orm::{ActiveModelTrait, ColumnTrait, QueryFilter, Set};

use super::ApiTags;
use super::auth::Caller;
use super::respond::{ApiError, ApiResult, Deleted, delete_one};
use crate::entities::welcome_message;
use crate::error::Error;
use crate::state::AppState;

/// WhatsApp's limit on a text message.
const MAX_BODY: usize = 4096;

/// A welcome message as stored.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WelcomeMessageOut {
    /// Id, for the item paths.
    pub id: i64,
    /// The text parents receive.
    pub body: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<welcome_message::Model> for WelcomeMessageOut {
    fn from(m: welcome_message::Model) -> Self {
        Self {
            id: m.id,
            body: m.body,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// A welcome message to create or replace.
#[derive(Debug, Object)]
pub struct WelcomeMessageIn {
    /// The text parents receive: 1 to 4096 characters, not only spaces.
    #[oai(validator(
        min_length = 1,
        max_length = 4096,
        pattern = r"[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    ))]
    pub body: String,
}

impl WelcomeMessageIn {
    fn checked(&self) -> Result<String, Error> {
        let body = self.body.trim();
        if body.is_empty() {
            return Err(Error::invalid(
                ErrorCode::InvalidBody,
                "body must not be empty",
            ));
        }
        if body.chars().count() > MAX_BODY {
            return Err(Error::invalid(
                ErrorCode::InvalidBody,
                format!("body is limited to {MAX_BODY} characters (WhatsApp's limit)"),
            ));
        }
        Ok(body.to_string())
    }
}

#[derive(ApiResponse)]
enum Created {
    /// Created.
    #[oai(status = 201)]
    Created(Json<WelcomeMessageOut>),
}

fn not_found(id: i64) -> ApiError {
    Error::NotFound(format!("no welcome message {id} in this school")).into()
}

/// `welcome-messages/`.
pub struct WelcomeApi;

#[OpenApi(tag = "ApiTags::School")]
impl WelcomeApi {
    /// The school's welcome message: a list of at most one.
    #[oai(
        path = "/welcome-messages/",
        method = "get",
        operation_id = "list_welcome_messages"
    )]
    async fn list(
        &self,
        caller: Caller,
        state: Data<&AppState>,
    ) -> ApiResult<Json<Vec<WelcomeMessageOut>>> {
        let ctx = caller.require("staff")?;
        let found = crate::school::welcome::get(&state.db, ctx).await?;
        Ok(Json(found.into_iter().map(Into::into).collect()))
    }

    /// Create the school's welcome message; a school has one, so a second is a 409.
    #[oai(
        path = "/welcome-messages/",
        method = "post",
        operation_id = "create_welcome_message"
    )]
    async fn create(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        body: Json<WelcomeMessageIn>,
    ) -> ApiResult<Created> {
        let ctx = caller.require("admin")?;
        let text = body.checked()?;
        let conflict = || -> ApiError {
            Error::Conflict(
                "this school already has a welcome message; change it with PUT \
                 welcome-messages/{id}/ or delete it first"
                    .into(),
            )
            .into()
        };
        if crate::school::welcome::get(&state.db, ctx).await?.is_some() {
            return Err(conflict());
        }
        let now = Utc::now();
        let inserted = welcome_message::ActiveModel {
            tenant_id: Set(ctx.id()),
            body: Set(text),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&state.db)
        .await;
        match inserted {
            Ok(m) => Ok(Created::Created(Json(m.into()))),
            // Two creates at once: the unique index keeps one, the other is the same 409.
            Err(e) if crate::error::is_unique_violation(&e) => Err(conflict()),
            Err(e) => Err(e.into()),
        }
    }

    /// One welcome message of the school.
    #[oai(
        path = "/welcome-messages/:id/",
        method = "get",
        operation_id = "get_welcome_message"
    )]
    async fn get(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Json<WelcomeMessageOut>> {
        let ctx = caller.require("staff")?;
        let found = ctx
            .find::<welcome_message::Entity>()
            .filter(welcome_message::Column::Id.eq(id.0))
            .one(&state.db)
            .await?;
        found.map(|m| Json(m.into())).ok_or_else(|| not_found(id.0))
    }

    /// Replace the text of the school's welcome message.
    #[oai(
        path = "/welcome-messages/:id/",
        method = "put",
        operation_id = "update_welcome_message"
    )]
    async fn update(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
        body: Json<WelcomeMessageIn>,
    ) -> ApiResult<Json<WelcomeMessageOut>> {
        let ctx = caller.require("admin")?;
        let text = body.checked()?;
        let updated = ctx
            .update_many::<welcome_message::Entity>()
            .filter(welcome_message::Column::Id.eq(id.0))
            .col_expr(welcome_message::Column::Body, text.into())
            .col_expr(welcome_message::Column::UpdatedAt, Utc::now().into())
            .exec_with_returning(&state.db)
            .await?;
        updated
            .into_iter()
            .next()
            .map(|m| Json(m.into()))
            .ok_or_else(|| not_found(id.0))
    }

    /// Delete the school's welcome message (the bot then greets with its built-in text).
    #[oai(
        path = "/welcome-messages/:id/",
        method = "delete",
        operation_id = "delete_welcome_message"
    )]
    async fn delete(
        &self,
        caller: Caller,
        state: Data<&AppState>,
        id: Path<i64>,
    ) -> ApiResult<Deleted> {
        let ctx = caller.require("admin")?;
        let column = welcome_message::Column::Id;
        delete_one::<welcome_message::Entity>(&state.db, ctx, column, id.0, "welcome message").await
    }
}

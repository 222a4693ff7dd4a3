//! One domain error, mapped to HTTP once, at the edge.
//!
//! Every error response has the same JSON shape: `{"error": "<stable_code>", "message": "..."}`.
//! Codes are snake_case and stable so clients can switch on them; internal causes are logged,
//! never shown.

use poem::http::StatusCode;
use poem_openapi::Object;
use serde::{Deserialize, Serialize};

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct ErrorBody {
    /// Stable, snake_case error code.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
    /// For uploads checked row by row (CSV, JSON imports): every problem found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub errors: Option<Vec<RowError>>,
}

/// One problem of an upload, by row and column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Object)]
pub struct RowError {
    /// Row number: the line in a CSV file (the header is line 1), the index from 1 in JSON.
    pub row: u64,
    /// The column or field at fault, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// What can go wrong in the service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing asked for does not exist (or belongs to another tenant, which looks the same).
    #[error("{0}")]
    NotFound(String),
    /// Input that does not make sense; `code` says which rule it broke.
    #[error("{message}")]
    Invalid {
        /// Stable error code, e.g. `invalid_phone`.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An upload with problems in some rows; nothing of it was written.
    #[error("{message}")]
    InvalidRows {
        /// Stable error code, e.g. `invalid_rows`.
        code: &'static str,
        /// Summary.
        message: String,
        /// Every problem, by row and column.
        errors: Vec<RowError>,
    },
    /// The request conflicts with existing data.
    #[error("{0}")]
    Conflict(String),
    /// Missing or bad credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// Too many requests from one credential; try again after this many seconds.
    #[error("rate limit exceeded; retry after {retry_after_secs} s")]
    RateLimited {
        /// Seconds until the next request is accepted.
        retry_after_secs: u64,
    },
    /// A dependency (database, queue) cannot take the work right now.
    #[error("{0}")]
    Unavailable(String),
    /// A database failure.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// Anything else that is our fault.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Result with the domain error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }

    /// Whether trying again later may succeed (a dependency was busy or away), as opposed to
    /// an answer about the input (unknown, invalid...).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Database(_) | Self::Internal(_)
        )
    }

    /// The stable code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::Invalid { code, .. } | Self::InvalidRows { code, .. } => code,
            Self::Conflict(_) => "conflict",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Database(_) | Self::Internal(_) => "internal_error",
        }
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Invalid { .. } | Self::InvalidRows { .. } => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The body clients see: internal details are replaced by a generic message.
    pub fn body(&self) -> ErrorBody {
        let message = match self {
            Self::Database(_) | Self::Internal(_) => {
                "internal error; see the server log".to_string()
            }
            other => other.to_string(),
        };
        ErrorBody {
            error: self.code().to_string(),
            message,
            errors: match self {
                Self::InvalidRows { errors, .. } => Some(errors.clone()),
                _ => None,
            },
        }
    }
}

/// A JSON error response with the shared shape.
/// Did a unique index refuse this write (a row with the same key exists, or was written at the
/// same instant)?
pub fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

pub fn json_error(status: StatusCode, code: &str, message: impl Into<String>) -> poem::Response {
    let body = ErrorBody {
        error: code.to_string(),
        message: message.into(),
        errors: None,
    };
    poem::Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(serde_json::to_vec(&body).unwrap_or_default())
}

impl poem::error::ResponseError for Error {
    fn status(&self) -> StatusCode {
        Error::status(self)
    }

    fn as_response(&self) -> poem::Response {
        if self.status().is_server_error() {
            tracing::error!(error = %self, code = self.code(), "request failed");
        }
        let body = self.body();
        let mut response = poem::Response::builder()
            .status(self.status())
            .content_type("application/json; charset=utf-8")
            .body(serde_json::to_vec(&body).unwrap_or_default());
        if let Self::RateLimited { retry_after_secs } = self {
            response.headers_mut().insert(
                poem::http::header::RETRY_AFTER,
                poem::http::HeaderValue::from(*retry_after_secs),
            );
        }
        response
    }
}

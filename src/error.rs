//! One domain error, mapped to HTTP once, at the edge.
//!
//! Every error response has the same JSON shape: `{"error": "<stable_code>", "message": "..."}`.
//! Codes are snake_case and stable so clients can switch on them; internal causes are logged,
//! never shown.

use poem::http::StatusCode;
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};

/// Declares [`ErrorCode`]: each code once, with what it means (the spec lists them).
macro_rules! error_codes {
    ($( #[doc = $doc:literal] $variant:ident = $code:literal, )+) => {
        /// The stable `error` code of every error response, which clients may switch on. Codes
        /// are only ever added; what each means is in the OpenAPI document's `ErrorCode`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Enum)]
        pub enum ErrorCode {
            $(
                #[doc = $doc]
                #[serde(rename = $code)]
                #[oai(rename = $code)]
                $variant,
            )+
        }

        impl ErrorCode {
            /// Every code, in the order declared.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The code as clients see it (`invalid_phone`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }

            /// What the code means, in a sentence.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $doc.trim(),)+
                }
            }
        }
    };
}

error_codes! {
    /// The request could not be read: malformed JSON or a field of the wrong type or shape (the message names the field), a bad parameter, or a bad `Content-Length`.
    BadRequest = "bad_request",
    /// No credential, or an unknown, revoked, expired or malformed one (`/metrics` without its token).
    Unauthorized = "unauthorized",
    /// The credential lacks the scope, or `X-Schema-Name` or the domain names another school.
    Forbidden = "forbidden",
    /// Not in this school (another school's ids are not found either), no such route, or an unknown `X-Schema-Name`.
    NotFound = "not_found",
    /// Conflicts with existing data: a second welcome message, a number another school has, a row others depend on, a conversation another member of staff has.
    Conflict = "conflict",
    /// The path exists, not with this method (`Allow` lists those it has).
    MethodNotAllowed = "method_not_allowed",
    /// The body is larger than `CHATBOT_BODY_LIMIT`.
    PayloadTooLarge = "payload_too_large",
    /// The headers or the body did not arrive within `CHATBOT_REQUEST_READ_TIMEOUT`.
    RequestTimeout = "request_timeout",
    /// The body's `Content-Type` is not one the operation takes.
    UnsupportedMediaType = "unsupported_media_type",
    /// The request was read but cannot be carried out as it stands.
    UnprocessableEntity = "unprocessable_entity",
    /// Too many requests from this credential, or too many PIN attempts; retry after `Retry-After` seconds.
    RateLimited = "rate_limited",
    /// The database or the job queue cannot take the request now; retry later.
    Unavailable = "unavailable",
    /// `/readyz`: the database or the job queue does not answer.
    NotReady = "not_ready",
    /// Our fault; the server log has the cause.
    InternalError = "internal_error",
    /// A refusal with no more specific code.
    Error = "error",
    /// `page` counts from 1 (at most 1,000,000).
    InvalidPage = "invalid_page",
    /// `page_size` is 1 to 100.
    InvalidPageSize = "invalid_page_size",
    /// Query filters that do not go together, or not one of those the operation needs.
    InvalidFilter = "invalid_filter",
    /// A date range that is backwards or too long.
    InvalidRange = "invalid_range",
    /// Not a phone number in international form (`+` and 8 to 15 digits).
    InvalidPhone = "invalid_phone",
    /// A PIN is 4 to 8 digits.
    InvalidPin = "invalid_pin",
    /// Not a student ID (1 to 64 letters, digits, `/`, `-`, `_`).
    InvalidStudentId = "invalid_student_id",
    /// Not a school's schema name (a letter, then up to 62 letters, digits, `-` or `_`).
    InvalidSchemaName = "invalid_schema_name",
    /// `get-chatbot/` needs either a `pin` or a linked `phone`.
    InvalidProof = "invalid_proof",
    /// A channel is 1 to 16 characters of a-z and `_`.
    InvalidChannel = "invalid_channel",
    /// The message's text is longer than the bot takes.
    TextTooLong = "text_too_long",
    /// A welcome message's body is empty or too long.
    InvalidBody = "invalid_body",
    /// A notice's title, body, dates or audience do not hold together.
    InvalidNotice = "invalid_notice",
    /// A name is empty or too long.
    InvalidName = "invalid_name",
    /// A field is too long, or not one that can be changed.
    InvalidField = "invalid_field",
    /// Not an e-mail address.
    InvalidEmail = "invalid_email",
    /// Not a language the bot speaks.
    InvalidLanguage = "invalid_language",
    /// Not an IANA time zone (e.g. `Africa/Lagos`).
    InvalidTimeZone = "invalid_time_zone",
    /// Dates out of order, or a term outside its session or overlapping another.
    InvalidDates = "invalid_dates",
    /// Not a date (`YYYY-MM-DD`).
    InvalidDate = "invalid_date",
    /// A class level is 0 to 99.
    InvalidLevel = "invalid_level",
    /// A term's ordinal is 1 to 12.
    InvalidOrdinal = "invalid_ordinal",
    /// A subject code is 1 to 16 letters, digits, `-` or `_`.
    InvalidCode = "invalid_code",
    /// No such academic session in this school.
    InvalidSession = "invalid_session",
    /// No subject with that code in this school.
    InvalidSubject = "invalid_subject",
    /// An attendance status is `present`, `absent` or `late`.
    InvalidStatus = "invalid_status",
    /// The upload is not CSV (or a JSON array) the import can read.
    InvalidCsv = "invalid_csv",
    /// Some rows of an upload are wrong; `errors` lists each by row and column, and nothing was written.
    InvalidRows = "invalid_rows",
    /// An upload has more rows than one import takes; split it.
    TooManyRows = "too_many_rows",
    /// A Meta `phone_number_id` is digits.
    InvalidPhoneNumberId = "invalid_phone_number_id",
    /// A Twilio account SID is `AC` and 32 hexadecimal digits.
    InvalidAccountSid = "invalid_account_sid",
    /// A provider secret is missing, too short or too long.
    InvalidSecret = "invalid_secret",
    /// A broadcast template's name, language or parameters are wrong.
    InvalidTemplate = "invalid_template",
    /// That secret belongs to the other provider's numbers.
    WrongProvider = "wrong_provider",
    /// An update that names nothing to change.
    NothingToChange = "nothing_to_change",
    /// Not an API key scope (`admin`, `staff`, `messages`).
    InvalidScope = "invalid_scope",
    /// A report id is 1 to 64 characters of a-z, 0-9, `-` and `_`.
    InvalidSlug = "invalid_slug",
    /// An engagement report's dialogue does not hold together (a missing language, a branch to no step, the purchase unreachable, a template that does not render).
    InvalidScript = "invalid_script",
    /// A staff reply with no text and no document.
    EmptyReply = "empty_reply",
    /// A document link must be an `https://` URL.
    InvalidUrl = "invalid_url",
    /// Staff answer WhatsApp conversations only.
    NotWhatsapp = "not_whatsapp",
    /// The school has no WhatsApp number with sending credentials.
    NoSendingNumber = "no_sending_number",
    /// A setting the conversation does not know.
    UnknownSetting = "unknown_setting",
    /// A report card link that was changed or guessed.
    InvalidLink = "invalid_link",
    /// A report card link past its expiry.
    LinkExpired = "link_expired",
    /// A webhook whose signature does not match the number's secret.
    InvalidSignature = "invalid_signature",
    /// Meta's webhook verification with a wrong or missing token.
    VerificationFailed = "verification_failed",
    /// A webhook body that is not the provider's JSON.
    InvalidJson = "invalid_json",
    /// A Twilio webhook without the form fields it needs.
    InvalidForm = "invalid_form",
    /// An engagement WebSocket from an origin not in `CHATBOT_ENGAGEMENT_ALLOWED_ORIGINS`.
    OriginNotAllowed = "origin_not_allowed",
    /// Too many engagement WebSockets from one address.
    TooManyConnections = "too_many_connections",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, Object)]
pub struct ErrorBody {
    /// Stable error code (see `ErrorCode`).
    pub error: ErrorCode,
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
        code: ErrorCode,
        /// What is wrong.
        message: String,
    },
    /// An upload with problems in some rows; nothing of it was written.
    #[error("{message}")]
    InvalidRows {
        /// Stable error code, e.g. `invalid_rows`.
        code: ErrorCode,
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
    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
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
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Invalid { code, .. } | Self::InvalidRows { code, .. } => *code,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Database(_) | Self::Internal(_) => ErrorCode::InternalError,
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
            error: self.code(),
            message,
            errors: match self {
                Self::InvalidRows { errors, .. } => Some(errors.clone()),
                _ => None,
            },
        }
    }
}

/// Did a unique index refuse this write (a row with the same key exists, or was written at the
/// same instant)?
pub fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// A JSON error response with the shared shape.
pub fn json_error(
    status: StatusCode,
    code: ErrorCode,
    message: impl Into<String>,
) -> poem::Response {
    let body = ErrorBody {
        error: code,
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
            tracing::error!(error = %self, code = self.code().as_str(), "request failed");
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

//! The middleware every request passes: a request id (kept from `X-Request-Id` when sane), a
//! tracing span, a body size limit and read deadlines, one access log line, and the shared JSON
//! error shape for every error, including poem's own (404, 405, bad payloads).
//!
//! A body is read here, whole, before the request goes on: no pause in it may last longer than
//! the read timeout, and all of it must arrive within six times that, or the answer is 408 and
//! the connection is closed. So a client sending a body a byte at a time holds a connection a
//! bounded time, and the handlers' own work never counts against the client.

use crate::error::ErrorCode;
use std::time::{Duration, Instant};

use poem::http::{HeaderValue, StatusCode, header};
use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response};
use poem_openapi::error::{ParseParamError, ParseRequestPayloadError};
use tracing::Instrument;

use super::explain::{BodySchemas, Problem, matches, segments};

use crate::error::{Error, json_error};

const REQUEST_ID: &str = "x-request-id";

/// Path templates (segments; `{...}` matches any one) and the methods each allows.
type AllowTable = std::sync::Arc<Vec<(Vec<String>, String)>>;

/// Edge middleware; see the module docs.
pub struct Edge {
    body_limit: usize,
    read_timeout: Duration,
    allow: AllowTable,
    schemas: std::sync::Arc<BodySchemas>,
}

impl Edge {
    /// Limit request bodies to `body_limit` bytes.
    pub fn new(body_limit: usize) -> Self {
        Self {
            body_limit,
            read_timeout: Duration::from_secs(10),
            allow: Default::default(),
            schemas: Default::default(),
        }
    }

    /// Say what is wrong with a JSON body the API refuses, from what these schemas document.
    pub fn explaining(mut self, schemas: BodySchemas) -> Self {
        self.schemas = std::sync::Arc::new(schemas);
        self
    }

    /// The longest pause allowed while a body arrives (six times it for the whole body).
    pub fn reading_within(mut self, read_timeout: Duration) -> Self {
        self.read_timeout = read_timeout;
        self
    }

    /// Answer `405`s with the `Allow` header these paths (`/a/{id}/b/` templates) document.
    pub fn allowing(mut self, paths: Vec<(String, Vec<String>)>) -> Self {
        let table = paths
            .into_iter()
            .map(|(path, methods)| (segments(&path), methods.join(", ")))
            .collect();
        self.allow = std::sync::Arc::new(table);
        self
    }
}

fn allowed<'a>(table: &'a [(Vec<String>, String)], path: &str) -> Option<&'a str> {
    let parts = segments(path);
    table
        .iter()
        .find(|(template, _)| matches(template, &parts))
        .map(|(_, methods)| methods.as_str())
}

impl<E: Endpoint> Middleware<E> for Edge {
    type Output = EdgeEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        EdgeEndpoint {
            inner,
            body_limit: self.body_limit,
            read_timeout: self.read_timeout,
            allow: self.allow.clone(),
            schemas: self.schemas.clone(),
        }
    }
}

/// Endpoint produced by [`Edge`].
pub struct EdgeEndpoint<E> {
    inner: E,
    body_limit: usize,
    read_timeout: Duration,
    allow: AllowTable,
    schemas: std::sync::Arc<BodySchemas>,
}

fn request_id(req: &Request) -> String {
    req.header(REQUEST_ID)
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// How much of an over-limit chunked body is still read (and dropped), and for how long, so
/// that the client, still sending, gets the 413 instead of a connection reset.
const DRAIN_BYTES: usize = 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Read and drop what is left of an over-limit body, up to [`DRAIN_BYTES`] / [`DRAIN_TIME`].
async fn drain(stream: &mut (impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Unpin)) {
    use futures::StreamExt;
    let mut drained = 0usize;
    let rest = async {
        while let Some(Ok(more)) = stream.next().await {
            drained += more.len();
            if drained > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, rest).await;
}

/// Read a body of at most `limit` bytes: `Ok(None)` when it is longer (the rest is drained up
/// to [`DRAIN_BYTES`] / [`DRAIN_TIME`]).
pub(crate) async fn read_limited(
    body: Body,
    limit: usize,
) -> std::io::Result<Option<bytes::Bytes>> {
    use futures::StreamExt;
    let mut stream = body.into_bytes_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > limit {
            drain(&mut stream).await;
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

/// Why a body was not read.
enum Unread {
    /// Longer than the limit.
    TooLarge,
    /// A pause longer than the read timeout, or longer than six of them in all.
    TooSlow,
    /// The connection failed.
    Failed(std::io::Error),
}

/// Read a body of at most `limit` bytes, each chunk within `pause` of the one before and the
/// whole within `6 * pause`.
async fn read_within(body: Body, limit: usize, pause: Duration) -> Result<bytes::Bytes, Unread> {
    use futures::StreamExt;
    let mut stream = body.into_bytes_stream();
    let mut buf = bytes::BytesMut::new();
    let whole = tokio::time::sleep(pause * 6);
    tokio::pin!(whole);
    loop {
        let next = tokio::select! {
            _ = &mut whole => return Err(Unread::TooSlow),
            next = tokio::time::timeout(pause, stream.next()) => next.map_err(|_| Unread::TooSlow)?,
        };
        let Some(chunk) = next else {
            return Ok(buf.freeze());
        };
        let chunk = chunk.map_err(Unread::Failed)?;
        if buf.len() + chunk.len() > limit {
            drain(&mut stream).await;
            return Err(Unread::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
}

/// What reading a request's body gave.
enum BodyRead {
    /// The answer instead of the request: too large, too slow, unreadable.
    Refused(Response),
    /// The body, now in the request again (`None`: it had none).
    Read(Option<bytes::Bytes>),
}

impl<E: Endpoint> EdgeEndpoint<E> {
    /// [`BodyRead::Refused`] when the body is too large or too slow; otherwise the request goes
    /// on with its body read, which is also returned (`None`: no body).
    async fn limit_body(&self, req: &mut Request) -> BodyRead {
        let too_large = || {
            BodyRead::Refused(json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                format!("request body exceeds {} bytes", self.body_limit),
            ))
        };
        let declared = req
            .header(header::CONTENT_LENGTH)
            .map(|v| v.trim().parse::<u64>());
        match declared {
            Some(Ok(len)) if len > self.body_limit as u64 => return too_large(),
            Some(Ok(0)) => return BodyRead::Read(None),
            Some(Ok(_)) => {}
            Some(Err(_)) => {
                return BodyRead::Refused(json_error(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BadRequest,
                    "invalid Content-Length header",
                ));
            }
            None if req.header(header::TRANSFER_ENCODING).is_some() => {}
            None => return BodyRead::Read(None),
        }
        match read_within(req.take_body(), self.body_limit, self.read_timeout).await {
            Ok(bytes) => {
                req.set_body(Body::from_bytes(bytes.clone()));
                BodyRead::Read(Some(bytes))
            }
            Err(Unread::TooLarge) => too_large(),
            Err(Unread::TooSlow) => {
                tracing::warn!("request body too slow; connection closed");
                BodyRead::Refused(json_error(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorCode::RequestTimeout,
                    format!(
                        "the request body did not arrive in time (no pause over {} s, all of it \
                         within {} s)",
                        self.read_timeout.as_secs(),
                        self.read_timeout.as_secs() * 6
                    ),
                ))
            }
            Err(Unread::Failed(e)) => BodyRead::Refused(json_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                format!("cannot read request body: {e}"),
            )),
        }
    }
}

impl<E: Endpoint> Endpoint for EdgeEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let id = request_id(&req);
        let span = tracing::info_span!(
            "http",
            request_id = %id,
            method = %req.method(),
            path = %req.uri().path(),
        );
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let query = req.uri().query().map(str::to_string);
        async move {
            let started = Instant::now();
            let mut response = match self.limit_body(&mut req).await {
                BodyRead::Refused(rejected) => rejected,
                BodyRead::Read(Some(body))
                    if let Some(problem) = self.schemas.refuse(
                        &method,
                        &path,
                        req.header(header::CONTENT_TYPE),
                        &body,
                    ) =>
                {
                    refused(problem)
                }
                BodyRead::Read(body) => match self.inner.call(req).await {
                    Ok(r) => r.into_response(),
                    Err(e) if e.is::<ParseRequestPayloadError>() => {
                        let body = body.as_deref().unwrap_or_default();
                        match self.schemas.explain(&method, &path, body) {
                            Some(problem) => refused(problem),
                            None => json_error(
                                StatusCode::BAD_REQUEST,
                                ErrorCode::BadRequest,
                                e.to_string(),
                            ),
                        }
                    }
                    Err(e) if e.is::<ParseParamError>() => {
                        let name = e.downcast_ref::<ParseParamError>().map(|p| p.name);
                        let explained = name.and_then(|name| {
                            self.schemas
                                .explain_parameter(&method, &path, query.as_deref(), name)
                        });
                        match explained {
                            Some(problem) => refused(problem),
                            None => error_response(e),
                        }
                    }
                    Err(e) => error_response(e),
                },
            };
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert(REQUEST_ID, value);
            }
            if response.status() == StatusCode::METHOD_NOT_ALLOWED
                && let Some(methods) = allowed(&self.allow, &path)
                && let Ok(value) = HeaderValue::from_str(methods)
            {
                response.headers_mut().insert(header::ALLOW, value);
            }
            if matches!(
                response.status(),
                StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
            ) {
                // The rest of the body may never be read: the connection is not reusable, and
                // a client that put it back in its pool would fail its next request on it.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            let status = response.status().as_u16();
            let ms = (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
            if status >= 500 {
                tracing::error!(status, ms, "request finished");
            } else {
                tracing::info!(status, ms, "request finished");
            }
            Ok(response)
        }
        .instrument(span)
        .await
    }
}

/// A `400` for a body that breaks what the document says, with the code it gives the field.
fn refused(problem: Problem) -> Response {
    let code = problem
        .code
        .and_then(|c| serde_json::from_value(serde_json::Value::String(c)).ok())
        .unwrap_or(ErrorCode::BadRequest);
    json_error(StatusCode::BAD_REQUEST, code, problem.message)
}

/// Turn any poem error into the shared JSON shape, keeping its status.
fn error_response(err: poem::Error) -> Response {
    if let Some(e) = err.downcast_ref::<Error>() {
        return poem::error::ResponseError::as_response(e);
    }
    let status = err.status();
    // An API's own documented error response (`api::respond::ApiError`) passes as it is.
    if err.is_from_response() {
        let response = err.into_response();
        if response
            .content_type()
            .is_some_and(|c| c.starts_with("application/json"))
        {
            return response;
        }
        let reason = status.canonical_reason().unwrap_or("request refused");
        return json_error(status, status_code_name(status), reason);
    }
    let code = status_code_name(status);
    let message = if status.is_server_error() {
        tracing::error!(error = %err, "unhandled error");
        "internal error; see the server log".to_string()
    } else if status == StatusCode::NOT_FOUND {
        "no such route".to_string()
    } else {
        err.to_string()
    };
    json_error(status, code, message)
}

/// The stable error code of a bare status.
fn status_code_name(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::BAD_REQUEST => ErrorCode::BadRequest,
        StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::UnprocessableEntity,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        s if s.is_server_error() => ErrorCode::InternalError,
        _ => ErrorCode::Error,
    }
}

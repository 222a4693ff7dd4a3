//! The staff inbox page at `/inbox/`: one HTML page and its script, no build step. It signs in
//! with an API key or a bearer token kept in the tab's session storage, lists the waiting
//! conversations first, shows a transcript, takes over, answers and hands back through the
//! REST API, and refreshes itself from `conversations/events/`.
//!
//! The page holds a credential, so it is served with a strict Content-Security-Policy: its
//! own script only, requests to this server only, no framing.

use poem::http::header;
use poem::{IntoResponse, Response, handler};

const PAGE: &str = include_str!("inbox.html");
const SCRIPT: &str = include_str!("inbox.js");
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

fn hardened(body: &'static str, content_type: &str) -> Response {
    body.with_content_type(content_type)
        .with_header(header::CONTENT_SECURITY_POLICY, POLICY)
        .with_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .with_header(header::REFERRER_POLICY, "no-referrer")
        .with_header(header::CACHE_CONTROL, "no-cache")
        .into_response()
}

/// `GET /inbox/`.
#[handler]
pub fn page() -> Response {
    hardened(PAGE, "text/html; charset=utf-8")
}

/// `GET /inbox/inbox.js`.
#[handler]
pub fn script() -> Response {
    hardened(SCRIPT, "text/javascript; charset=utf-8")
}

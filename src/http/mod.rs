//! The HTTP server's routes and edge: health probes, the API, its docs, and the middleware
//! every request passes through.

mod deadlines;
mod edge;
mod explain;
mod health;
mod inbox;

pub use deadlines::Deadlines;
pub use edge::Edge;
pub(crate) use edge::read_limited;

use poem::middleware::{NormalizePath, TrailingSlash};
use poem::web::Html;
use poem::{Endpoint, EndpointExt, Response, Route, get, handler};

use crate::api;
use crate::channels::{engagement, twilio, whatsapp_cloud};
use crate::state::AppState;
use explain::BodySchemas;

/// All routes of the service, wrapped in the edge middleware.
pub fn routes(state: AppState) -> impl Endpoint {
    let body_limit = state.settings.server.body_limit;
    let read_timeout =
        std::time::Duration::from_secs(state.settings.server.request_read_timeout_secs);
    let docs = Html(api::swagger_html());
    let spec = api::spec_json();
    let spec_for_errors = spec.clone();
    Route::new()
        .at("/healthz", get(health::healthz))
        .at("/readyz", get(health::readyz))
        .at("/metrics", get(health::public_metrics))
        .at(
            "/api/v1/chatbot/webhooks/whatsapp",
            get(whatsapp_cloud::verify).post(whatsapp_cloud::deliver),
        )
        .at(
            "/api/v1/chatbot/webhooks/twilio",
            poem::post(twilio::deliver),
        )
        .at(
            format!("{}/:id", crate::reports::store::ROUTE),
            get(crate::reports::download),
        )
        .at("/ws/chat/:report_id", get(engagement::chat))
        .at("/ws/chat-success/:report_id", get(engagement::chat_success))
        .at(
            "/api/chatbot-demo/engagement/:report_id",
            get(engagement::pages::engagement_page),
        )
        .at(
            "/api/chatbot-demo/success/:report_id",
            get(engagement::pages::success_page),
        )
        .at("/inbox", get(inbox::page))
        .at("/inbox/inbox.js", get(inbox::script))
        .nest(api::BASE_PATH, api::service())
        .at(
            "/docs",
            get(poem::endpoint::make_sync(move |_| docs.clone())),
        )
        .at("/openapi.json", get(spec_endpoint).data(SpecDocument(spec)))
        .data(state.webhooks.clone())
        .data(state.reports().clone())
        .data(state.site.clone())
        .data(state)
        // Seed clients call `welcome-messages/`; poem-openapi routes `welcome-messages`.
        .with(NormalizePath::new(TrailingSlash::Trim))
        .with(
            Edge::new(body_limit)
                .reading_within(read_timeout)
                .allowing(api::documented_methods())
                .explaining(BodySchemas::from_spec(&spec_for_errors, api::BASE_PATH)),
        )
}

/// The routes of the metrics listener (`CHATBOT_METRICS_LISTEN`): `/metrics` only.
pub fn metrics_routes(state: AppState) -> impl Endpoint {
    Route::new()
        .at("/metrics", get(health::private_metrics))
        .data(state)
}

#[derive(Clone)]
struct SpecDocument(String);

#[handler]
fn spec_endpoint(doc: poem::web::Data<&SpecDocument>) -> Response {
    Response::builder()
        .content_type("application/json; charset=utf-8")
        .body(doc.0.0.clone())
}

/// The server's settings, checked (and the proxy header and public URL normalised) when the
/// configuration is loaded.
impl crate::config::Check for crate::config::Server {
    fn check(&mut self) -> Result<(), crate::config::Problem> {
        use crate::config::keys::server as key;
        if let Some(token) = &self.metrics_token {
            key::metrics_token.require_secret_length(token, 16)?;
        }
        key::request_read_timeout_secs.require_within(
            self.request_read_timeout_secs,
            1..=3600,
            "seconds",
        )?;
        key::body_limit.require(self.body_limit >= 1024, "must be at least 1024 bytes")?;
        if let Some(url) = &mut self.public_url {
            *url = url.trim_end_matches('/').to_string();
            key::public_url.require_http_url(url)?;
        }
        if let Some(header) = &mut self.client_ip_header {
            *header = header.trim().to_ascii_lowercase();
            key::client_ip_header.require(
                poem::http::HeaderName::from_bytes(header.as_bytes()).is_ok(),
                "must be a valid HTTP header name",
            )?;
        }
        Ok(())
    }
}

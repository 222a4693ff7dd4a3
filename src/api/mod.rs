//! The REST API under `/api/v1/chatbot/`, described by a generated OpenAPI document.
//!
//! The document is built without a database or queue, so `chatbot openapi` and the drift test
//! can produce it anywhere.

mod analytics;
pub mod auth;
mod contacts;
mod conversations;
mod curriculum;
mod engagement;
mod imports;
mod jobs;
pub mod jwt;
pub mod limits;
mod messages;
mod meta;
mod notices;
mod numbers;
mod profile;
pub mod respond;
mod results;
mod school;
mod setup;
mod spec;
mod tags;
mod welcome;

use poem_openapi::OpenApiService;

pub use tags::ApiTags;

/// Where the API is mounted.
pub const BASE_PATH: &str = "/api/v1/chatbot";

/// Every API of the service.
pub type Apis = (
    meta::MetaApi,
    messages::MessagesApi,
    conversations::ConversationsApi,
    analytics::AnalyticsApi,
    welcome::WelcomeApi,
    numbers::NumbersApi,
    school::SchoolApi,
    profile::ProfileApi,
    curriculum::CurriculumApi,
    contacts::ContactsApi,
    setup::SetupApi,
    notices::NoticesApi,
    results::ResultsApi,
    jobs::JobsApi,
    imports::ImportsApi,
    engagement::EngagementApi,
);

/// The OpenAPI service, ready to be nested at [`BASE_PATH`].
pub fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            meta::MetaApi,
            messages::MessagesApi,
            conversations::ConversationsApi,
            analytics::AnalyticsApi,
            welcome::WelcomeApi,
            numbers::NumbersApi,
            school::SchoolApi,
            profile::ProfileApi,
            curriculum::CurriculumApi,
            contacts::ContactsApi,
            setup::SetupApi,
            notices::NoticesApi,
            results::ResultsApi,
            jobs::JobsApi,
            imports::ImportsApi,
            engagement::EngagementApi,
        ),
        "chatbot",
        env!("CARGO_PKG_VERSION"),
    )
    .summary("Rules-first WhatsApp chatbot for schools")
    .description(
        "School staff and integrators drive the chatbot through this API. Authenticate with \
         `X-API-KEY` or `Authorization: Bearer <JWT>`; the school is the credential's, and an \
         `X-Schema-Name` header or a school's own domain, when sent, must name the same school \
         (another school: 403; an unknown one: 404). Requests are rate-limited per credential \
         (429 with `Retry-After`). Every error has the shape \
         `{\"error\": \"<stable_code>\", \"message\": \"...\"}`.",
    )
    .server(BASE_PATH)
}

/// The OpenAPI document as pretty JSON, with a trailing newline (as committed in `openapi/`).
///
/// poem-openapi drops trailing slashes from paths, but the seed's paths end in `/`
/// (`welcome-messages/`) and the server accepts both; the document lists them as the seed does.
pub fn spec_json() -> String {
    spec::finish(&service().spec())
}

/// Every documented path (with [`BASE_PATH`], `{id}` templates) and its methods, upper case.
pub fn documented_methods() -> Vec<(String, Vec<String>)> {
    let doc: serde_json::Value =
        serde_json::from_str(&spec_json()).expect("the spec is valid JSON");
    let mut out = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) {
        for (path, item) in paths {
            let methods = item
                .as_object()
                .map(|ops| ops.keys().map(|m| m.to_ascii_uppercase()).collect())
                .unwrap_or_default();
            out.push((format!("{BASE_PATH}{path}"), methods));
        }
    }
    out
}

/// The Swagger UI page, showing the same document as [`spec_json`].
pub fn swagger_html() -> String {
    let service = service();
    service
        .swagger_ui_html()
        .replacen(&service.spec(), spec_json().trim_end(), 1)
}

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
    with_trailing_slashes(&service().spec())
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

/// The `X-Schema-Name` header is read by the credential check ([`auth::Caller`]), which
/// poem-openapi documents only as security schemes: list it on every authenticated operation.
fn document_schema_header(doc: &mut serde_json::Value) {
    let parameter = serde_json::json!({
        "name": auth::SCHEMA_HEADER,
        "in": "header",
        "required": false,
        "description": "The school, by schema name. Optional: the credential names it; when \
                        sent it must be the credential's school (403 otherwise, 404 when no \
                        school has that name).",
        "schema": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_-]{0,62}$"}
    });
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            let secured = operation
                .get("security")
                .and_then(|s| s.as_array())
                .is_some_and(|s| !s.is_empty());
            if !secured {
                continue;
            }
            let params = operation
                .as_object_mut()
                .expect("an operation is an object")
                .entry("parameters")
                .or_insert_with(|| serde_json::json!([]));
            if let Some(params) = params.as_array_mut() {
                params.push(parameter.clone());
            }
        }
    }
}

fn with_trailing_slashes(spec: &str) -> String {
    let mut doc: serde_json::Value =
        serde_json::from_str(spec).expect("poem-openapi produces valid JSON");
    document_schema_header(&mut doc);
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        let renamed: serde_json::Map<String, serde_json::Value> = std::mem::take(paths)
            .into_iter()
            .map(|(path, item)| {
                let path = if path.ends_with('/') {
                    path
                } else {
                    format!("{path}/")
                };
                (path, item)
            })
            .collect();
        *paths = renamed;
    }
    let mut out = serde_json::to_string_pretty(&doc).expect("a JSON value serialises");
    out.push('\n');
    out
}

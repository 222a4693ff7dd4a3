//! The REST API under `/api/v1/chatbot/`, described by a generated OpenAPI document.
//!
//! The document is built without a database or queue, so `chatbot openapi` and the drift test
//! can produce it anywhere.

pub mod auth;
mod messages;
mod meta;

use poem_openapi::{OpenApiService, Tags};

/// Where the API is mounted.
pub const BASE_PATH: &str = "/api/v1/chatbot";

/// Operation groups in the docs.
#[derive(Tags)]
pub enum ApiTags {
    /// The service itself.
    Service,
    /// Talking to the bot as a parent.
    Conversations,
}

/// Every API of the service.
pub type Apis = (meta::MetaApi, messages::MessagesApi);

/// The OpenAPI service, ready to be nested at [`BASE_PATH`].
pub fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (meta::MetaApi, messages::MessagesApi),
        "chatbot",
        env!("CARGO_PKG_VERSION"),
    )
    .summary("Rules-first WhatsApp chatbot for schools")
    .description(
        "School staff and integrators drive the chatbot through this API. Every response \
             error has the shape `{\"error\": \"<stable_code>\", \"message\": \"...\"}`.",
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

/// The Swagger UI page, showing the same document as [`spec_json`].
pub fn swagger_html() -> String {
    let service = service();
    service
        .swagger_ui_html()
        .replacen(&service.spec(), spec_json().trim_end(), 1)
}

fn with_trailing_slashes(spec: &str) -> String {
    let mut doc: serde_json::Value =
        serde_json::from_str(spec).expect("poem-openapi produces valid JSON");
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

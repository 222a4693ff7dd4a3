//! Facts about the running service.

use poem_openapi::{Object, OpenApi, payload::Json};

use super::ApiTags;

/// Service name and versions.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct VersionInfo {
    /// Always `chatbot`.
    pub service: String,
    /// Release version of the server.
    pub version: String,
    /// API version, part of every path.
    pub api: String,
}

/// `version/`.
pub struct MetaApi;

#[OpenApi(tag = "ApiTags::Service")]
impl MetaApi {
    /// Service name and version; needs no authentication.
    #[oai(path = "/version/", method = "get", operation_id = "version")]
    async fn version(&self) -> Json<VersionInfo> {
        Json(VersionInfo {
            service: "chatbot".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            api: "v1".to_string(),
        })
    }
}

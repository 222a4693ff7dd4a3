//! API authentication. `X-API-KEY` resolves to the key's tenant and scopes; JWT comes with the
//! REST API issue.

use poem::Request;
use poem_openapi::{SecurityScheme, auth::ApiKey};

use crate::error::Error;
use crate::state::AppState;
use crate::tenancy::{self, ApiKeyIdentity};

/// A school's API key in the `X-API-KEY` header.
#[derive(SecurityScheme)]
#[oai(
    ty = "api_key",
    key_name = "X-API-KEY",
    key_in = "header",
    checker = "check_api_key"
)]
pub struct ApiKeyAuth(pub ApiKeyIdentity);

async fn check_api_key(req: &Request, key: ApiKey) -> poem::Result<ApiKeyIdentity> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("app state missing from the request")))?;
    Ok(tenancy::by_api_key(&state.db, &key.key).await?)
}

impl ApiKeyAuth {
    /// Refuse unless the key has `scope` (or `admin`).
    pub fn require(&self, scope: &str) -> Result<&ApiKeyIdentity, Error> {
        if self.0.scopes.iter().any(|s| s == scope || s == "admin") {
            Ok(&self.0)
        } else {
            Err(Error::Forbidden(format!(
                "this API key lacks the `{scope}` scope"
            )))
        }
    }
}

//! Who is calling, and for which school.
//!
//! A request carries one credential: an `X-API-KEY` (stored hashed, tied to one school and its
//! scopes) or an `Authorization: Bearer <JWT>` (see [`super::jwt`]; its claims name the school
//! and a role). The school is the credential's. The seed's other ways of naming the school,
//! the `X-Schema-Name` header and the request's domain, must agree with it: naming an unknown
//! school is a 404, naming another school than the credential's a 403. Each credential is
//! rate-limited on its own.

use std::time::Instant;

use poem::Request;
use poem::http::header;
use poem_openapi::auth::{ApiKey, Bearer};
use poem_openapi::registry::Registry;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, SecurityScheme};

use crate::domain::SchemaName;
use crate::error::Error;
use crate::state::AppState;
use crate::tenancy::{self, TenantCtx};

/// Header naming the school (the seed's tenant header).
pub const SCHEMA_HEADER: &str = "X-Schema-Name";

/// A school's API key, created with `chatbot apikey create`.
#[derive(SecurityScheme)]
#[oai(
    rename = "ApiKeyAuth",
    ty = "api_key",
    key_name = "X-API-KEY",
    key_in = "header"
)]
#[allow(dead_code)]
struct ApiKeyScheme(ApiKey);

/// A JWT signed with the configured algorithm; claims `tenant` (schema name), `role`, `sub`,
/// `exp`, `iss` and `aud`.
#[derive(SecurityScheme)]
#[oai(rename = "BearerAuth", ty = "bearer", bearer_format = "JWT")]
#[allow(dead_code)]
struct BearerScheme(Bearer);

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API key, by id.
    ApiKey(i64),
    /// A bearer token, by subject.
    Jwt(String),
}

/// An authenticated caller acting for one school.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The school every query of the request is scoped to.
    pub tenant: TenantCtx,
    /// Granted scopes (an API key's) or the role (a token's).
    pub scopes: Vec<String>,
    /// The credential used.
    pub credential: Credential,
}

impl Caller {
    /// Refuse unless the caller has `scope` (or `admin`, which is every scope).
    pub fn require(&self, scope: &str) -> Result<&TenantCtx, Error> {
        self.require_any(&[scope])
    }

    /// Who is calling, as records of changes name it: `key:<id>` or `jwt:<subject>`.
    pub fn who(&self) -> String {
        match &self.credential {
            Credential::ApiKey(id) => format!("key:{id}"),
            Credential::Jwt(sub) => format!("jwt:{sub}"),
        }
    }

    /// Refuse unless the caller has one of `scopes` (or `admin`).
    pub fn require_any(&self, scopes: &[&str]) -> Result<&TenantCtx, Error> {
        if self
            .scopes
            .iter()
            .any(|s| s == "admin" || scopes.contains(&s.as_str()))
        {
            Ok(&self.tenant)
        } else {
            Err(Error::Forbidden(format!(
                "this credential lacks the `{}` scope",
                scopes.join("` or `")
            )))
        }
    }

    /// The rate-limit bucket of the credential.
    fn bucket(&self) -> String {
        match &self.credential {
            Credential::ApiKey(id) => format!("key:{id}"),
            Credential::Jwt(sub) => format!("jwt:{}:{sub}", self.tenant.schema_name()),
        }
    }
}

fn bearer_token(req: &Request) -> Result<Option<&str>, Error> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| Error::Unauthorized("malformed Authorization header".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(Error::Unauthorized(
            "the Authorization header must be `Bearer <JWT>`".into(),
        )),
    }
}

async fn identify(state: &AppState, req: &Request) -> Result<Caller, Error> {
    let api_key = req
        .header("X-API-KEY")
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let bearer = bearer_token(req)?;
    match (api_key, bearer) {
        // Refused as unauthenticated: which of two credentials would the request act as?
        (Some(_), Some(_)) => Err(Error::Unauthorized(
            "send either X-API-KEY or Authorization: Bearer, not both".into(),
        )),
        (None, None) => Err(Error::Unauthorized(
            "authentication required: send X-API-KEY or Authorization: Bearer <JWT>".into(),
        )),
        (Some(key), None) => {
            let who = tenancy::by_api_key(&state.db, key).await?;
            Ok(Caller {
                tenant: who.tenant,
                scopes: who.scopes,
                credential: Credential::ApiKey(who.key_id),
            })
        }
        (None, Some(token)) => {
            let verifier = state.jwt.as_deref().ok_or_else(|| {
                Error::Unauthorized(
                    "bearer tokens are not accepted by this server (no JWT key configured); \
                     use X-API-KEY"
                        .into(),
                )
            })?;
            let claims = verifier.verify(token)?;
            if !crate::admin::SCOPES.contains(&claims.role.as_str()) {
                return Err(Error::Unauthorized(format!(
                    "invalid bearer token: unknown role `{}`",
                    claims.role
                )));
            }
            let schema = SchemaName::parse(&claims.tenant).map_err(|_| {
                Error::Unauthorized("invalid bearer token: malformed tenant claim".into())
            })?;
            // A token for a school that does not exist (any more) proves nothing.
            let tenant =
                tenancy::by_schema_name(&state.db, &schema)
                    .await
                    .map_err(|e| match e {
                        Error::NotFound(_) => Error::Unauthorized(format!(
                            "invalid bearer token: unknown tenant `{schema}`"
                        )),
                        other => other,
                    })?;
            Ok(Caller {
                tenant,
                scopes: vec![claims.role],
                credential: Credential::Jwt(claims.sub),
            })
        }
    }
}

/// The `X-Schema-Name` header and the domain, when they name a school, must name the caller's.
async fn check_tenant_context(
    state: &AppState,
    req: &Request,
    caller: &Caller,
) -> Result<(), Error> {
    if let Some(raw) = req.header(SCHEMA_HEADER) {
        let name = SchemaName::parse(raw.trim()).map_err(|_| {
            Error::NotFound(format!(
                "unknown tenant: `{}` is not a schema name",
                raw.chars().take(64).collect::<String>()
            ))
        })?;
        let named = tenancy::by_schema_name(&state.db, &name).await?;
        if named != caller.tenant {
            return Err(Error::Forbidden(format!(
                "{SCHEMA_HEADER} names `{name}`, but this credential belongs to another school"
            )));
        }
    }
    if let Some(host) = req.header(header::HOST) {
        match tenancy::by_domain(&state.db, host).await {
            Ok(named) if named != caller.tenant => {
                return Err(Error::Forbidden(
                    "this domain serves another school than this credential's".into(),
                ));
            }
            // The API is also served on hosts no school claims (the platform's own).
            Ok(_) | Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn authenticate(req: &Request) -> Result<Caller, Error> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("app state missing from the request")))?;
    let caller = identify(state, req).await?;
    if let Err(wait) = state.api_limits.check(&caller.bucket(), Instant::now()) {
        state.metrics.inc("chatbot_api_rate_limited_total", &[]);
        return Err(Error::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        });
    }
    check_tenant_context(state, req, &caller).await?;
    Ok(caller)
}

impl<'a> ApiExtractor<'a> for Caller {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        ApiKeyScheme::register(registry);
        BearerScheme::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        let mut schemes = ApiKeyScheme::security_schemes();
        schemes.extend(BearerScheme::security_schemes());
        schemes
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut poem::RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(authenticate(req).await?)
    }
}

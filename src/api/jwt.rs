//! Bearer tokens: one algorithm pinned in configuration, `exp`, `iss` and `aud` required and
//! checked, the school and role named in the claims.
//!
//! The algorithm comes from the settings, never from the token: a token whose header names
//! another algorithm (`none`, or HS256 signed with an RSA public key as its secret) is refused
//! before its signature is looked at.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;

use crate::config::keys::auth as key;
use crate::config::{Auth, Check, Problem};
use crate::error::Error;

/// Seconds of clock difference tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;
/// Longest token accepted, in bytes (a few hundred is typical).
const MAX_TOKEN: usize = 8 * 1024;

/// The claims this service reads; others are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// Who the token was issued to (logged; a rate-limit bucket of its own).
    pub sub: String,
    /// The school's schema name.
    pub tenant: String,
    /// The caller's role: one of `crate::admin::SCOPES`.
    pub role: String,
}

/// Checks bearer tokens against the configured algorithm, key, issuer and audience.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithm", &self.validation.algorithms)
            .field("iss", &self.validation.iss)
            .field("aud", &self.validation.aud)
            .finish()
    }
}

fn algorithm(name: &str) -> Result<Algorithm, String> {
    let alg = match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EDDSA" => Algorithm::EdDSA,
        other => {
            return Err(format!(
                "unknown algorithm `{other}`; use HS256, HS384, HS512, RS256, RS384, RS512, \
                 PS256, PS384, PS512, ES256, ES384 or EdDSA"
            ));
        }
    };
    Ok(alg)
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn public_key(alg: Algorithm, path: &Path) -> Result<DecodingKey, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
        _ => DecodingKey::from_rsa_pem(&pem),
    };
    key.map_err(|e| {
        format!(
            "{} is not a PEM public key for {alg:?}: {e}",
            path.display()
        )
    })
}

/// Build the verifier the settings describe; `Ok(None)` when JWT is not configured. Errors
/// name the setting at fault.
fn build(settings: &Auth) -> Result<Option<JwtVerifier>, Problem> {
    let alg = algorithm(&settings.jwt_algorithm).map_err(|e| key::jwt_algorithm.problem(e))?;
    let key = match (&settings.jwt_secret, &settings.jwt_public_key_file) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(key::jwt_secret.problem(format!(
                "set {} or {}, not both",
                key::jwt_secret,
                key::jwt_public_key_file
            )));
        }
        (Some(secret), None) => {
            use secrecy::ExposeSecret;
            if !is_hmac(alg) {
                return Err(key::jwt_secret.problem(format!(
                    "{alg:?} verifies with a public key: set {} instead",
                    key::jwt_public_key_file
                )));
            }
            key::jwt_secret.require_secret_length(secret, 32)?;
            DecodingKey::from_secret(secret.expose_secret().as_bytes())
        }
        (None, Some(path)) => {
            if is_hmac(alg) {
                return Err(key::jwt_public_key_file.problem(format!(
                    "{alg:?} verifies with a shared secret: set {}",
                    key::jwt_secret
                )));
            }
            public_key(alg, path).map_err(|e| key::jwt_public_key_file.problem(e))?
        }
    };
    let issuer = settings
        .jwt_issuer
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            key::jwt_issuer.problem("required when JWT is on: tokens must name their issuer")
        })?;
    let audience = settings.jwt_audience.trim();
    key::jwt_audience.require(!audience.is_empty(), "must not be empty")?;
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    Ok(Some(JwtVerifier { key, validation }))
}

/// The API's access settings, checked (the algorithm's name upper-cased) when the
/// configuration is loaded: the JWT verifier must build, the rate limits be sane.
impl Check for Auth {
    fn check(&mut self) -> Result<(), Problem> {
        self.jwt_algorithm = self.jwt_algorithm.trim().to_ascii_uppercase();
        build(self)?;
        key::api_rate_per_minute.require_within(
            self.api_rate_per_minute,
            1..=1_000_000,
            "requests per minute",
        )?;
        key::api_rate_burst.require_within(self.api_rate_burst, 1..=100_000, "requests")
    }
}

impl JwtVerifier {
    /// The verifier for these settings, `None` when JWT is off.
    pub fn from_settings(settings: &Auth) -> crate::error::Result<Option<Self>> {
        build(settings).map_err(|p| {
            Error::Internal(anyhow::anyhow!(
                "invalid value for {}: {}",
                p.key,
                p.message
            ))
        })
    }

    /// Verify a token and return its claims; every refusal is `unauthorized` with the reason.
    pub fn verify(&self, token: &str) -> Result<Claims, Error> {
        if token.len() > MAX_TOKEN {
            return Err(Error::Unauthorized("bearer token too long".into()));
        }
        let refuse = |why: String| Error::Unauthorized(format!("invalid bearer token: {why}"));
        // The header first: `alg: none` and unknown algorithms do not even parse, and any
        // algorithm but the pinned one is refused before the signature is checked.
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            refuse("malformed token or unsupported algorithm (`none` is never accepted)".into())
        })?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(refuse(format!(
                "algorithm {:?} not accepted (this server accepts {:?})",
                header.alg, self.validation.algorithms[0]
            )));
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "token expired",
                    ErrorKind::ImmatureSignature => "token not valid yet (nbf)",
                    ErrorKind::InvalidIssuer => "token issuer not accepted",
                    ErrorKind::InvalidAudience => "token audience not accepted",
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        "token algorithm not accepted"
                    }
                    ErrorKind::InvalidSignature => "token signature invalid",
                    ErrorKind::MissingRequiredClaim(_) => {
                        "token lacks a required claim (exp, iss, aud)"
                    }
                    ErrorKind::Json(_) => "token claims malformed (sub, tenant, role required)",
                    _ => "malformed token",
                };
                refuse(why.to_string())
            })?;
        Ok(data.claims)
    }
}

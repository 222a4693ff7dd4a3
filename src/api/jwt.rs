//! Bearer tokens: one algorithm pinned in configuration, `exp`, `iss` and `aud` required and
//! checked, the school and role named in the claims.
//!
//! The algorithm comes from the settings, never from the token: a token whose header names
//! another algorithm (`none`, or HS256 signed with an RSA public key as its secret) is refused
//! before its signature is looked at.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;

use secrecy::SecretString;

use crate::config::env;
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

/// The bearer-token settings (`CHATBOT_JWT_*`), as [`crate::config::Settings::jwt`] lends them.
#[derive(Debug, Clone, Copy)]
pub struct JwtSettings<'a> {
    /// The one algorithm accepted.
    pub algorithm: &'a str,
    /// The shared secret (HS*).
    pub secret: Option<&'a SecretString>,
    /// The public key's file (RS*, PS*, ES*, EdDSA).
    pub public_key_file: Option<&'a Path>,
    /// The issuer tokens must name.
    pub issuer: Option<&'a str>,
    /// The audience tokens must name.
    pub audience: &'a str,
}

/// Build the verifier the settings describe; `Ok(None)` when JWT is not configured. Errors
/// name the setting at fault.
fn build(settings: &JwtSettings<'_>) -> Result<Option<JwtVerifier>, (&'static str, String)> {
    let alg = algorithm(settings.algorithm).map_err(|e| (env::JWT_ALGORITHM, e))?;
    let key = match (settings.secret, settings.public_key_file) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err((
                env::JWT_SECRET,
                format!(
                    "set {} or {}, not both",
                    env::JWT_SECRET,
                    env::JWT_PUBLIC_KEY_FILE
                ),
            ));
        }
        (Some(secret), None) => {
            use secrecy::ExposeSecret;
            if !is_hmac(alg) {
                return Err((
                    env::JWT_SECRET,
                    format!(
                        "{alg:?} verifies with a public key: set {} instead",
                        env::JWT_PUBLIC_KEY_FILE
                    ),
                ));
            }
            if secret.expose_secret().len() < 32 {
                return Err((env::JWT_SECRET, "must be at least 32 characters".into()));
            }
            DecodingKey::from_secret(secret.expose_secret().as_bytes())
        }
        (None, Some(path)) => {
            if is_hmac(alg) {
                return Err((
                    env::JWT_PUBLIC_KEY_FILE,
                    format!(
                        "{alg:?} verifies with a shared secret: set {}",
                        env::JWT_SECRET
                    ),
                ));
            }
            public_key(alg, path).map_err(|e| (env::JWT_PUBLIC_KEY_FILE, e))?
        }
    };
    let issuer = settings
        .issuer
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or((
            env::JWT_ISSUER,
            "required when JWT is on: tokens must name their issuer".to_string(),
        ))?;
    let audience = settings.audience.trim();
    if audience.is_empty() {
        return Err((env::JWT_AUDIENCE, "must not be empty".into()));
    }
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    Ok(Some(JwtVerifier { key, validation }))
}

/// Check the JWT settings (algorithm, key, issuer) when the configuration is loaded.
pub fn check_settings(settings: &JwtSettings<'_>) -> Result<(), (&'static str, String)> {
    build(settings).map(|_| ())
}

impl JwtVerifier {
    /// The verifier for these settings, `None` when JWT is off.
    pub fn from_settings(settings: &JwtSettings<'_>) -> crate::error::Result<Option<Self>> {
        build(settings).map_err(|(name, message)| {
            Error::Internal(anyhow::anyhow!("invalid value for {name}: {message}"))
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

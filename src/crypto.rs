//! The server secret and what is derived from it: keyed PIN hashes, API key hashes, and the
//! sealing of provider secrets at rest.
//!
//! Student PINs are 4-8 digits: any unkeyed hash of them, however slow, falls to at most 10^8
//! guesses once the database leaks. So PINs are hashed with HMAC-SHA256 keyed by a subkey of
//! the server secret (kept outside the database) plus a per-row salt; online guessing is
//! limited by lockouts in the conversation engine. API keys are 190-bit random tokens, for
//! which a plain SHA-256 is enough and allows lookup by hash.
//!
//! Provider secrets (a number's Meta app secret and access token, its Twilio auth token) are
//! stored sealed: XChaCha20-Poly1305 under a subkey of the server secret, with a random nonce,
//! bound to the school and the column they belong to (so a sealed value copied into another
//! school's row does not open); so is a number's webhook verify token. A database leak alone
//! gives away none of them.
//!
//! The server secret can be rotated: with the old one as `CHATBOT_PREVIOUS_SECRET_KEY`, what
//! was sealed or hashed under it still opens, start-up seals every provider secret again under
//! the new one, and a PIN is hashed again under the new one the next time it is typed right.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::KeyInit as _;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

const PIN_SCHEME: &str = "hmac-sha256";

/// The server secret, and the one it replaced while a rotation is under way; `Debug` never
/// shows either.
#[derive(Clone)]
pub struct SecretKey {
    current: SecretString,
    previous: Option<SecretString>,
}

/// The prefix of a sealed provider secret; anything else in those columns is plaintext that
/// start-up has not sealed yet.
pub const SEALED_PREFIX: &str = "sealed:v1:";

/// A column that holds a sealed provider secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealedColumn {
    AppSecret,
    VerifyToken,
    AccessToken,
    AuthToken,
}

impl SealedColumn {
    pub const ALL: [SealedColumn; 4] = [
        Self::AppSecret,
        Self::VerifyToken,
        Self::AccessToken,
        Self::AuthToken,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::AppSecret => "app_secret",
            Self::VerifyToken => "verify_token",
            Self::AccessToken => "access_token",
            Self::AuthToken => "auth_token",
        }
    }

    /// What a sealed value is bound to: its table, column and school.
    fn associated_data(self, tenant_id: i64) -> String {
        format!("whatsapp_numbers.{}:{tenant_id}", self.name())
    }
}

/// A stored provider secret that does not open: sealed under another key, tampered with, or
/// moved from another row.
#[derive(Debug, thiserror::Error)]
#[error(
    "a sealed {column} of school {tenant_id} does not open with this server secret (was \
     CHATBOT_SECRET_KEY changed without CHATBOT_PREVIOUS_SECRET_KEY?)"
)]
pub struct Unsealable {
    pub column: &'static str,
    pub tenant_id: i64,
}

/// How a stored value stands against the keys.
#[derive(Debug)]
pub enum Opened {
    /// Sealed under the current key.
    Current(SecretString),
    /// Sealed under the previous key, or not sealed at all: to be sealed again.
    Stale(SecretString),
}

impl Opened {
    pub fn secret(self) -> SecretString {
        match self {
            Self::Current(s) | Self::Stale(s) => s,
        }
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

fn subkey_of(secret: &SecretString, purpose: &str) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(b"chatbot/v1/");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

fn cipher(secret: &SecretString) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&subkey_of(secret, "provider-secrets").into())
}

fn open_with(secret: &SecretString, aad: &[u8], sealed: &[u8]) -> Option<SecretString> {
    if sealed.len() < 24 {
        return None;
    }
    let (nonce, body) = sealed.split_at(24);
    let plain = cipher(secret)
        .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
        .ok()?;
    String::from_utf8(plain).ok().map(SecretString::from)
}

fn pin_matches(secret: &SecretString, pin: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(PIN_SCHEME), Some(salt), Some(mac), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(salt), Ok(expected)) = (hex::decode(salt), hex::decode(mac)) else {
        return false;
    };
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(&subkey_of(secret, "pin")).expect("any key length");
    mac.update(&salt);
    mac.update(pin.as_bytes());
    mac.verify_slice(&expected).is_ok()
}

impl SecretKey {
    /// Use a configured secret (at least 32 characters, checked by the config loader).
    pub fn from_configured(secret: SecretString) -> Self {
        Self {
            current: secret,
            previous: None,
        }
    }

    /// The secret this one replaces (`CHATBOT_PREVIOUS_SECRET_KEY`), during a rotation.
    pub fn with_previous(mut self, previous: Option<SecretString>) -> Self {
        self.previous = previous;
        self
    }

    /// Read `secret.key` in the data dir, creating it (mode 0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join("secret.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let text = text.trim().to_string();
                if text.len() < 32 {
                    return Err(Error::Internal(anyhow::anyhow!(
                        "{} is shorter than 32 characters; delete it to generate a new one",
                        path.display()
                    )));
                }
                Ok(Self::from_configured(SecretString::from(text)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir).map_err(|e| {
                    anyhow::anyhow!("cannot create data dir {}: {e}", data_dir.display())
                })?;
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                let text = hex::encode(bytes);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = options
                    .open(&path)
                    .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
                file.write_all(text.as_bytes())
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                tracing::info!(path = %path.display(), "generated a new server secret key");
                Ok(Self::from_configured(SecretString::from(text)))
            }
            Err(e) => Err(Error::Internal(anyhow::anyhow!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// A subkey for one purpose, so one use of the secret never helps attack another.
    pub fn subkey(&self, purpose: &str) -> [u8; 32] {
        subkey_of(&self.current, purpose)
    }

    /// Hash a PIN for storage: `hmac-sha256$<salt>$<mac>`.
    pub fn hash_pin(&self, pin: &str) -> String {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.subkey("pin")).expect("any key length");
        mac.update(&salt);
        mac.update(pin.as_bytes());
        format!(
            "{PIN_SCHEME}${}${}",
            hex::encode(salt),
            hex::encode(mac.finalize().into_bytes())
        )
    }

    /// Check a PIN against a stored hash, in constant time, under the current key or the
    /// previous one.
    pub fn verify_pin(&self, pin: &str, stored: &str) -> bool {
        self.pin_match(pin, stored).is_some()
    }

    /// `Some(true)` when the PIN matches a hash made under the previous key (to be hashed
    /// again), `Some(false)` under the current one, `None` when it does not match.
    pub fn pin_match(&self, pin: &str, stored: &str) -> Option<bool> {
        if pin_matches(&self.current, pin, stored) {
            return Some(false);
        }
        let previous = self.previous.as_ref()?;
        pin_matches(previous, pin, stored).then_some(true)
    }

    /// Seal a provider secret for `column` of school `tenant_id`: `sealed:v1:<base64>`.
    pub fn seal(&self, column: SealedColumn, tenant_id: i64, plaintext: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let aad = column.associated_data(tenant_id);
        let body = cipher(&self.current)
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 seals any length we store");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&body);
        format!(
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(out)
        )
    }

    /// Open a stored provider secret. A value without the sealed prefix is plaintext left by an
    /// older version (stale: start-up seals it).
    pub fn open(
        &self,
        column: SealedColumn,
        tenant_id: i64,
        stored: &str,
    ) -> std::result::Result<Opened, Unsealable> {
        let Some(encoded) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(Opened::Stale(SecretString::from(stored.to_string())));
        };
        let unsealable = Unsealable {
            column: column.name(),
            tenant_id,
        };
        let Ok(sealed) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded) else {
            return Err(unsealable);
        };
        let aad = column.associated_data(tenant_id);
        if let Some(plain) = open_with(&self.current, aad.as_bytes(), &sealed) {
            return Ok(Opened::Current(plain));
        }
        self.previous
            .as_ref()
            .and_then(|previous| open_with(previous, aad.as_bytes(), &sealed))
            .map(Opened::Stale)
            .ok_or(unsealable)
    }
}

/// Are two secrets (a token as given, one as stored) equal? Compared as SHA-256 digests, byte by
/// byte without an early exit, so neither their content nor their length shows in the time.
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// A freshly generated API key: the plaintext is shown once; only `hash` is stored.
pub struct NewApiKey {
    /// The key the client sends in `X-API-KEY`.
    pub plaintext: SecretString,
    /// First characters, stored to let staff recognise a key.
    pub prefix: String,
    /// Hex SHA-256 of the plaintext.
    pub hash: String,
}

const API_KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Generate an API key from random bytes: `cbk_` + 32 base62 characters.
pub fn generate_api_key() -> NewApiKey {
    let mut rng = rand::rng();
    api_key_from(|| rng.next_u32())
}

/// Build an API key from a source of randomness (the demo uses a seeded one).
pub fn api_key_from(mut next_u32: impl FnMut() -> u32) -> NewApiKey {
    let body: String = (0..32)
        .map(|_| API_KEY_ALPHABET[(next_u32() % API_KEY_ALPHABET.len() as u32) as usize] as char)
        .collect();
    let plaintext = format!("cbk_{body}");
    NewApiKey {
        prefix: plaintext[..12].to_string(),
        hash: hash_api_key(&plaintext),
        plaintext: SecretString::from(plaintext),
    }
}

/// Hex SHA-256 of an API key, the form stored and looked up.
pub fn hash_api_key(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

/// The server secrets, checked when the configuration is loaded.
impl crate::config::Check for crate::config::Secrets {
    fn check(&mut self) -> std::result::Result<(), crate::config::Problem> {
        use crate::config::keys::secrets as key;
        for (key, secret) in [
            (key::secret_key, &self.secret_key),
            (key::previous_secret_key, &self.previous_secret_key),
        ] {
            if let Some(secret) = secret {
                key.require_secret_length(secret, 32)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SecretKey {
        SecretKey::from_configured(SecretString::from(s.to_string()))
    }

    #[test]
    fn pin_round_trip_and_salting() {
        let k = key("0123456789abcdef0123456789abcdef");
        let a = k.hash_pin("4321");
        let b = k.hash_pin("4321");
        assert_ne!(a, b, "per-row salt");
        assert!(k.verify_pin("4321", &a));
        assert!(!k.verify_pin("4322", &a));
        assert!(!k.verify_pin("4321", "garbage"));
        assert!(!k.verify_pin("4321", "hmac-sha256$zz$zz"));
        let other = key("fedcba9876543210fedcba9876543210");
        assert!(
            !other.verify_pin("4321", &a),
            "hash is keyed by the server secret"
        );
        assert!(!format!("{k:?}").contains("0123"));
    }

    #[test]
    fn sealed_secrets_open_only_in_their_place_and_under_their_key() {
        let k = key("0123456789abcdef0123456789abcdef");
        let sealed = k.seal(SealedColumn::AppSecret, 7, "s3cret");
        assert!(sealed.starts_with(SEALED_PREFIX) && !sealed.contains("s3cret"));
        assert_ne!(
            sealed,
            k.seal(SealedColumn::AppSecret, 7, "s3cret"),
            "random nonce"
        );
        let opened = k.open(SealedColumn::AppSecret, 7, &sealed).unwrap();
        assert!(matches!(&opened, Opened::Current(s) if s.expose_secret() == "s3cret"));
        assert!(
            k.open(SealedColumn::AppSecret, 8, &sealed).is_err(),
            "another school"
        );
        assert!(
            k.open(SealedColumn::AccessToken, 7, &sealed).is_err(),
            "another column"
        );
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(k.open(SealedColumn::AppSecret, 7, &tampered).is_err());
        assert!(matches!(
            k.open(SealedColumn::AppSecret, 7, "plain").unwrap(),
            Opened::Stale(s) if s.expose_secret() == "plain"
        ));

        // Rotation: the new key opens what the old one sealed, as stale, until sealed again.
        let new = key("fedcba9876543210fedcba9876543210");
        assert!(new.open(SealedColumn::AppSecret, 7, &sealed).is_err());
        let rotating = new.with_previous(Some(SecretString::from(
            "0123456789abcdef0123456789abcdef".to_string(),
        )));
        assert!(matches!(
            rotating.open(SealedColumn::AppSecret, 7, &sealed).unwrap(),
            Opened::Stale(s) if s.expose_secret() == "s3cret"
        ));
        let pin = k.hash_pin("4321");
        assert_eq!(rotating.pin_match("4321", &pin), Some(true));
        assert_eq!(rotating.pin_match("4322", &pin), None);
    }

    #[test]
    fn api_keys_hash_and_prefix() {
        let k = generate_api_key();
        let plain = k.plaintext.expose_secret();
        assert!(plain.starts_with("cbk_") && plain.len() == 36);
        assert_eq!(k.hash, hash_api_key(plain));
        assert!(plain.starts_with(&k.prefix));
        assert_ne!(generate_api_key().hash, k.hash);
    }

    #[test]
    fn secret_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = SecretKey::load_or_create(dir.path()).unwrap();
        let b = SecretKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.subkey("x"), b.subkey("x"));
        assert_ne!(a.subkey("x"), a.subkey("y"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secret.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

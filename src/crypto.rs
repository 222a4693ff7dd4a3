//! The server secret and what is derived from it: keyed PIN hashes, API key hashes.
//!
//! Student PINs are 4-8 digits: any unkeyed hash of them, however slow, falls to at most 10^8
//! guesses once the database leaks. So PINs are hashed with HMAC-SHA256 keyed by a subkey of
//! the server secret (kept outside the database) plus a per-row salt; online guessing is
//! limited by lockouts in the conversation engine. API keys are 190-bit random tokens, for
//! which a plain SHA-256 is enough and allows lookup by hash.

use std::io::Write;
use std::path::Path;

use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

const PIN_SCHEME: &str = "hmac-sha256";

/// The server secret; `Debug` never shows it.
#[derive(Clone)]
pub struct SecretKey(SecretString);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

impl SecretKey {
    /// Use a configured secret (at least 32 characters, checked by the config loader).
    pub fn from_configured(secret: SecretString) -> Self {
        Self(secret)
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
                Ok(Self(SecretString::from(text)))
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
                Ok(Self(SecretString::from(text)))
            }
            Err(e) => Err(Error::Internal(anyhow::anyhow!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// A subkey for one purpose, so one use of the secret never helps attack another.
    pub fn subkey(&self, purpose: &str) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(self.0.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(b"chatbot/v1/");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Hash a PIN for storage: `hmac-sha256$<salt>$<mac>`.
    pub fn hash_pin(&self, pin: &str) -> String {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let mac = self.pin_mac(&salt, pin).finalize().into_bytes();
        format!("{PIN_SCHEME}${}${}", hex::encode(salt), hex::encode(mac))
    }

    /// Check a PIN against a stored hash, in constant time.
    pub fn verify_pin(&self, pin: &str, stored: &str) -> bool {
        let mut parts = stored.split('$');
        let (Some(PIN_SCHEME), Some(salt), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let (Ok(salt), Ok(mac)) = (hex::decode(salt), hex::decode(mac)) else {
            return false;
        };
        self.pin_mac(&salt, pin).verify_slice(&mac).is_ok()
    }

    fn pin_mac(&self, salt: &[u8], pin: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.subkey("pin")).expect("any key length");
        mac.update(salt);
        mac.update(pin.as_bytes());
        mac
    }
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

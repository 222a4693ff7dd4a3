//! Meta's delivery signatures: the schools' app secrets, each keyed once, which business
//! number uses which, checking an `X-Hub-Signature-256` against the one the body names, and
//! keeping them in memory between deliveries.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The schools' Meta app secrets as read at an instant, kept by the webhooks between requests.
#[derive(Clone, Default)]
pub struct SecretsCache(Arc<Mutex<Option<Kept>>>);

/// App secrets and when they were read.
type Kept = (Instant, Arc<AppSecrets>);

impl SecretsCache {
    /// Forget them (a number was registered, rotated or removed), so the next webhook reads
    /// them again; other processes notice within a second of a signature that no longer
    /// matches.
    pub fn forget(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) fn fresh(&self, max_age: Duration) -> Option<Arc<AppSecrets>> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.as_ref()
            .filter(|(at, _)| at.elapsed() < max_age)
            .map(|(_, secrets)| secrets.clone())
    }

    pub(crate) fn keep(&self, secrets: Arc<AppSecrets>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), secrets));
    }
}

/// The schools' Meta app secrets, each keyed for HMAC once (its padded key blocks hashed
/// ahead, two of the dozen or so SHA-256 blocks of a typical delivery), and which one each
/// business number uses.
pub struct AppSecrets {
    keys: Vec<Hmac<Sha256>>,
    /// SHA-256 of each secret, to tell a rotated secret from the one kept.
    fingerprints: Vec<[u8; 32]>,
    by_number: std::collections::HashMap<String, SecretId>,
}

/// Which of the app secrets verified a delivery: the numbers it may name are those using it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretId(usize);

impl std::fmt::Debug for AppSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSecrets")
            .field("secrets", &self.keys.len())
            .field("numbers", &self.by_number.len())
            .finish()
    }
}

impl AppSecrets {
    /// From (business number's Graph API id, its app secret) pairs; a secret shared by several
    /// numbers (one Meta app for several numbers) is kept once.
    pub fn new(numbers: impl IntoIterator<Item = (String, SecretString)>) -> Self {
        let mut keys = Vec::new();
        let mut fingerprints = Vec::new();
        let mut seen = std::collections::HashMap::new();
        let mut by_number = std::collections::HashMap::new();
        for (number, secret) in numbers {
            let secret = secret.expose_secret().as_bytes();
            let fingerprint: [u8; 32] = <Sha256 as sha2::Digest>::digest(secret).into();
            let at = *seen.entry(fingerprint).or_insert_with(|| {
                keys.push(Hmac::<Sha256>::new_from_slice(secret).expect("any key length"));
                fingerprints.push(fingerprint);
                SecretId(keys.len() - 1)
            });
            by_number.entry(number).or_insert(at);
        }
        Self {
            keys,
            fingerprints,
            by_number,
        }
    }

    /// Does a business number with this Graph API id have an app secret here?
    pub fn knows(&self, number: &str) -> bool {
        self.by_number.contains_key(number)
    }

    /// Is `number` one of those signed with the secret `id`? A delivery may only name these.
    pub fn owns(&self, id: SecretId, number: &str) -> bool {
        self.by_number.get(number) == Some(&id)
    }

    /// The secret whose `X-Hub-Signature-256` `header` is, for `body`: only the secret of the
    /// business number the body names is tried (found by a plain byte search, not by parsing a
    /// body that is not verified yet), compared in constant time. So a delivery, good or bad,
    /// costs one HMAC at most however many schools there are; the caller then checks that every
    /// number the parsed body names uses that same secret ([`AppSecrets::owns`]).
    pub fn verify(&self, body: &[u8], header: Option<&str>) -> Option<SecretId> {
        let hex_sig = header.and_then(|h| h.trim().strip_prefix("sha256="))?;
        // A SHA-256 MAC is 32 bytes; anything else cannot match.
        let mut sig = [0u8; 32];
        hex::decode_to_slice(hex_sig, &mut sig).ok()?;
        let id = *self.by_number.get(named_number(body)?)?;
        let mut mac = self.keys[id.0].clone();
        mac.update(body);
        mac.verify_slice(&sig).is_ok().then_some(id)
    }
}

/// Would `after` verify `body` with the same secret as `before` did (or did not)? True when the
/// number the body names has the same secret in both, or is unknown to both.
pub(crate) fn same_secret(before: Option<&AppSecrets>, after: &AppSecrets, body: &[u8]) -> bool {
    let Some(before) = before else {
        return false;
    };
    let fingerprint = |s: &AppSecrets| {
        named_number(body)
            .and_then(|n| s.by_number.get(n))
            .map(|id| s.fingerprints[id.0])
    };
    fingerprint(before) == fingerprint(after)
}

/// The first `"phone_number_id":"..."` of a raw webhook body, as Meta writes it (no spaces):
/// a hint of which secret signed it.
fn named_number(body: &[u8]) -> Option<&str> {
    const FIELD: &str = "\"phone_number_id\":\"";
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(FIELD));
    let start = FINDER.find(body)? + FIELD.len();
    let len = body[start..].iter().take(64).position(|&b| b == b'"')?;
    std::str::from_utf8(&body[start..start + len]).ok()
}

/// The signature header value for `body` (tests and the mock use it).
pub fn sign(body: &[u8], secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(number: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"value": {"metadata": {"phone_number_id": number}}}]}]
        }))
        .unwrap()
    }

    fn secrets() -> AppSecrets {
        AppSecrets::new([
            ("111".to_string(), SecretString::from("secret-a")),
            ("222".to_string(), SecretString::from("secret-b")),
            // One Meta app for two schools: its secret is kept once.
            ("333".to_string(), SecretString::from("secret-b")),
        ])
    }

    #[test]
    fn the_named_number_is_found_without_parsing() {
        assert_eq!(named_number(&delivery("222")), Some("222"));
        assert_eq!(named_number(b"{\"phone_number_id\": \"222\"}"), None);
        assert_eq!(named_number(b"{\"phone_number_id\":\"222"), None);
        assert_eq!(named_number(b"not json at all"), None);
    }

    #[test]
    fn only_the_named_numbers_secret_verifies_and_owns_its_numbers() {
        let secrets = secrets();
        assert_eq!(secrets.keys.len(), 2);
        for (number, secret) in [
            ("111", "secret-a"),
            ("222", "secret-b"),
            ("333", "secret-b"),
        ] {
            let body = delivery(number);
            let header = sign(&body, secret);
            let id = secrets.verify(&body, Some(&header));
            assert!(id.is_some(), "{number} {secret}");
            assert_eq!(secrets.verify(&body, Some(&format!(" {header} "))), id);
            assert!(secrets.owns(id.unwrap(), number));
        }
        // One Meta app for numbers 222 and 333: its signature owns both, and not 111.
        let b = secrets.verify(&delivery("222"), Some(&sign(&delivery("222"), "secret-b")));
        assert!(secrets.owns(b.unwrap(), "333"));
        assert!(!secrets.owns(b.unwrap(), "111"));
        assert!(!secrets.owns(b.unwrap(), "999"));
        // Another school's secret, or a number nobody has, verifies nothing.
        for (number, secret) in [
            ("222", "secret-a"),
            ("111", "secret-b"),
            ("999", "secret-b"),
        ] {
            let body = delivery(number);
            assert_eq!(secrets.verify(&body, Some(&sign(&body, secret))), None);
        }
        assert!(secrets.knows("333") && !secrets.knows("999"));
    }

    #[test]
    fn a_rotated_secret_is_told_from_the_one_kept() {
        let body = delivery("111");
        let before = secrets();
        let same = secrets();
        let rotated = AppSecrets::new([("111".to_string(), SecretString::from("secret-a2"))]);
        assert!(!same_secret(None, &before, &body));
        assert!(same_secret(Some(&before), &same, &body));
        assert!(!same_secret(Some(&before), &rotated, &body));
        let unknown = delivery("999");
        assert!(same_secret(Some(&before), &rotated, &unknown));
    }

    #[test]
    fn a_wrong_missing_or_malformed_signature_is_refused() {
        let secrets = secrets();
        let body = delivery("111");
        let other = sign(&body, "secret-c");
        let tampered = sign(&delivery("112"), "secret-a");
        let bare = sign(&body, "secret-a").replace("sha256=", "");
        for header in [
            Some(other.as_str()),
            Some(tampered.as_str()),
            Some(bare.as_str()),
            Some("sha256=zz"),
            Some("sha256="),
            None,
        ] {
            assert_eq!(secrets.verify(&body, header), None, "{header:?}");
        }
        assert_eq!(
            AppSecrets::new([]).verify(&body, Some(&sign(&body, "secret-a"))),
            None
        );
    }
}

//! Meta's WhatsApp Cloud API webhook: `GET` verification and signed `POST` deliveries.
//!
//! A delivery is verified (HMAC-SHA256 of the raw body with an app secret, constant time)
//! before it is parsed, deduplicated on the message id, queued as an ingest job, and only then
//! acknowledged; if the job cannot be queued the answer is 503, so Meta retries.

use std::time::Duration;

use hmac::{Hmac, Mac};
use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{Body, Request, Response, handler};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

pub use super::inbound::Said;
use super::inbound::{InboundMessage, accept_message};
use crate::error::json_error;
use crate::state::AppState;
use crate::tenancy;

/// Meta's own limit on a webhook body.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// How long the schools' app secrets are kept in memory, and the least time between two reads.
const SECRETS_MAX_AGE: Duration = Duration::from_secs(30);
const SECRETS_MIN_AGE: Duration = Duration::from_secs(1);

/// The schools' Meta app secrets, from memory when read less than `max_age` ago.
async fn app_secrets(
    state: &AppState,
    max_age: Duration,
) -> crate::error::Result<std::sync::Arc<AppSecrets>> {
    if let Some((at, secrets)) = state
        .secrets_cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        && at.elapsed() < max_age
    {
        return Ok(secrets.clone());
    }
    let secrets = std::sync::Arc::new(AppSecrets::new(
        tenancy::meta_app_secrets(&state.db, &state.secret).await?,
    ));
    *state
        .secrets_cache
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), secrets.clone()));
    Ok(secrets)
}

/// `hub.*` query of the verification request.
#[derive(Debug, Deserialize)]
pub struct VerifyQuery {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// `GET`: answer the bare challenge when the verify token is one of a school's.
#[handler]
pub async fn verify(state: Data<&AppState>, Query(q): Query<VerifyQuery>) -> Response {
    let (Some("subscribe"), Some(token), Some(challenge)) =
        (q.mode.as_deref(), q.verify_token.as_deref(), q.challenge)
    else {
        return json_error(
            StatusCode::FORBIDDEN,
            "verification_failed",
            "hub.mode, hub.verify_token and hub.challenge are required",
        );
    };
    match tenancy::meta_verify_token_known(&state.db, &state.secret, token).await {
        Ok(true) => Response::builder()
            .content_type("text/plain")
            .body(challenge),
        Ok(false) => json_error(
            StatusCode::FORBIDDEN,
            "verification_failed",
            "unknown verify token",
        ),
        Err(e) => poem::error::ResponseError::as_response(&e),
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
fn same_secret(before: Option<&AppSecrets>, after: &AppSecrets, body: &[u8]) -> bool {
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

/// A webhook notification (only the fields we use; everything else is tolerated).
#[derive(Debug, Default, Deserialize)]
pub struct Notification {
    /// `whatsapp_business_account`.
    #[serde(default)]
    pub object: String,
    /// Entries.
    #[serde(default)]
    pub entry: Vec<Entry>,
}

/// One entry.
#[derive(Debug, Default, Deserialize)]
pub struct Entry {
    /// Changes.
    #[serde(default)]
    pub changes: Vec<Change>,
}

/// One change.
#[derive(Debug, Default, Deserialize)]
pub struct Change {
    /// `messages` for messages and statuses.
    #[serde(default)]
    pub field: String,
    /// The payload.
    #[serde(default)]
    pub value: ChangeValue,
}

/// The payload of a `messages` change.
#[derive(Debug, Default, Deserialize)]
pub struct ChangeValue {
    /// The business number written to.
    #[serde(default)]
    pub metadata: Metadata,
    /// Senders' profiles.
    #[serde(default)]
    pub contacts: Vec<Contact>,
    /// Inbound messages.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Delivery statuses of our messages.
    #[serde(default)]
    pub statuses: Vec<serde_json::Value>,
}

/// Business number metadata.
#[derive(Debug, Default, Deserialize)]
pub struct Metadata {
    /// Shown number.
    #[serde(default)]
    pub display_phone_number: String,
    /// Graph API id of the number.
    #[serde(default)]
    pub phone_number_id: String,
}

/// A sender's profile.
#[derive(Debug, Default, Deserialize)]
pub struct Contact {
    /// Phone (digits).
    #[serde(default)]
    pub wa_id: String,
    /// Business-scoped user id, when Meta sends one.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Profile.
    #[serde(default)]
    pub profile: Option<Profile>,
}

/// Profile name.
#[derive(Debug, Default, Deserialize)]
pub struct Profile {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
}

/// An inbound message, any type.
#[derive(Debug, Default, Deserialize)]
pub struct Message {
    /// Sender (digits).
    #[serde(default)]
    pub from: String,
    /// `wamid...`.
    #[serde(default)]
    pub id: String,
    /// Unix seconds, as a string.
    #[serde(default)]
    pub timestamp: String,
    /// `text`, `interactive`, `button`, `image`...
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Text body.
    #[serde(default)]
    pub text: Option<Text>,
    /// Tapped button or list row.
    #[serde(default)]
    pub interactive: Option<Interactive>,
    /// Template quick-reply button.
    #[serde(default)]
    pub button: Option<TemplateButton>,
}

/// Text body.
#[derive(Debug, Default, Deserialize)]
pub struct Text {
    /// The text.
    #[serde(default)]
    pub body: String,
}

/// An interactive reply.
#[derive(Debug, Default, Deserialize)]
pub struct Interactive {
    /// `button_reply` or `list_reply`.
    #[serde(default)]
    pub button_reply: Option<Reply>,
    /// List row.
    #[serde(default)]
    pub list_reply: Option<Reply>,
}

/// The id and title of what was tapped.
#[derive(Debug, Default, Deserialize)]
pub struct Reply {
    /// Our choice id.
    #[serde(default)]
    pub id: String,
    /// Its title.
    #[serde(default)]
    pub title: String,
}

/// A template quick-reply button.
#[derive(Debug, Default, Deserialize)]
pub struct TemplateButton {
    /// Payload.
    #[serde(default)]
    pub payload: String,
    /// Text.
    #[serde(default)]
    pub text: String,
}

impl Message {
    /// Text and choice of this message; media and other types are marked unsupported.
    pub fn said(&self) -> Said {
        let said = |text: &str, choice: Option<&str>| Said {
            text: text.to_string(),
            choice: choice.filter(|c| !c.is_empty()).map(str::to_string),
            unsupported: None,
        };
        match self.kind.as_str() {
            "text" => said(self.text.as_ref().map_or("", |t| t.body.as_str()), None),
            "interactive" => {
                let tapped = self
                    .interactive
                    .as_ref()
                    .and_then(|i| i.button_reply.as_ref().or(i.list_reply.as_ref()));
                match tapped {
                    Some(r) => said(&r.title, Some(&r.id)),
                    None => said("", None),
                }
            }
            "button" => match &self.button {
                Some(b) => said(&b.text, Some(&b.payload)),
                None => said("", None),
            },
            other => Said {
                unsupported: Some(other.to_string()),
                ..said("", None)
            },
        }
    }
}

/// Write `sent` / `delivered` / `read` / `failed` statuses of our replies to the message log of
/// the school each conversation belongs to.
async fn record_statuses(
    state: &AppState,
    business: &str,
    statuses: &[serde_json::Value],
) -> crate::error::Result<()> {
    let (owner, number) =
        match tenancy::by_business_number(&state.db, tenancy::Provider::Meta, business).await {
            Ok(found) => found,
            // Not known now (the database is busy or away): Meta is told to send them again.
            Err(e) if e.is_transient() => return Err(e),
            Err(_) => {
                tracing::warn!(business, "statuses for an unknown business number ignored");
                return Ok(());
            }
        };
    for s in statuses {
        let (Some(id), Some(status)) = (s["id"].as_str(), s["status"].as_str()) else {
            continue;
        };
        if !matches!(status, "sent" | "delivered" | "read" | "failed") {
            continue;
        }
        let error = s["errors"][0].as_object().map(|e| {
            format!(
                "{} {}",
                e.get("code").map(|c| c.to_string()).unwrap_or_default(),
                e.get("title").and_then(|t| t.as_str()).unwrap_or_default()
            )
            .trim()
            .to_string()
        });
        let update = super::StatusUpdate {
            recipient: s["recipient_id"].as_str(),
            id,
            status,
            error,
            tag: s["biz_opaque_callback_data"].as_str(),
        };
        super::record_status(&state.db, &owner, &number, update).await?;
    }
    Ok(())
}

/// `POST`: verify, parse, dedupe, queue, acknowledge.
#[handler]
pub async fn deliver(state: Data<&AppState>, req: &Request, body: Body) -> Response {
    let outcome = |o: &str| super::count_webhook(&state.metrics, "meta", o);
    let bytes = match super::read_webhook_body(body, MAX_BODY, "3 MB", "meta", &state.metrics).await
    {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let signature = req.header("x-hub-signature-256");
    // The schools' app secrets, read at most every 30 s. A number they do not know, or whose
    // secret does not verify, has them read again (at most once a second), so a number added or
    // a secret rotated a moment ago is not refused; the signature is checked again only when
    // that number's secret did change, so a bad delivery costs one HMAC however often it comes.
    let mut secrets = None;
    let mut signer = None;
    for max_age in [SECRETS_MAX_AGE, SECRETS_MIN_AGE] {
        let read = match app_secrets(&state, max_age).await {
            Ok(read) => read,
            Err(e) => {
                outcome("unavailable");
                return poem::error::ResponseError::as_response(&e);
            }
        };
        if let Some(before) = &secrets
            && std::sync::Arc::ptr_eq(before, &read)
        {
            break;
        }
        if !same_secret(secrets.as_deref(), &read, &bytes) {
            signer = read.verify(&bytes, signature);
        }
        secrets = Some(read);
        if signer.is_some() {
            break;
        }
    }
    let (Some(secrets), Some(signer)) = (secrets, signer) else {
        tracing::warn!("webhook rejected: bad or missing X-Hub-Signature-256");
        outcome("unauthorized");
        return json_error(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "X-Hub-Signature-256 does not match the app secret of the business number named",
        );
    };
    let notification: Notification = match serde_json::from_slice(&bytes) {
        Ok(n) => n,
        Err(e) => {
            outcome("malformed");
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("malformed webhook body: {e}"),
            );
        }
    };
    // One school's secret never speaks for another's number: every number the body names,
    // for messages and statuses alike, must be one signed with the secret that verified it.
    let changes = || notification.entry.iter().flat_map(|e| &e.changes);
    if let Some(foreign) = changes().map(|c| &c.value).find(|v| {
        let names = !v.metadata.phone_number_id.is_empty();
        (names || !v.messages.is_empty() || !v.statuses.is_empty())
            && !secrets.owns(signer, &v.metadata.phone_number_id)
    }) {
        tracing::warn!(
            number = ?foreign.metadata.phone_number_id,
            "webhook rejected: it names a business number its signing secret does not own"
        );
        outcome("unauthorized");
        return json_error(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "the body names a business number that is not signed with this app secret",
        );
    }
    let mut queued = 0;
    for change in changes() {
        let value = &change.value;
        for message in &value.messages {
            if message.id.is_empty() || message.from.is_empty() {
                continue;
            }
            let contact = value.contacts.iter().find(|c| c.wa_id == message.from);
            let job = InboundMessage {
                provider: "meta".into(),
                business: value.metadata.phone_number_id.clone(),
                from: message.from.clone(),
                message_id: message.id.clone(),
                kind: message.kind.clone(),
                said: message.said(),
                user_id: contact.and_then(|c| c.user_id.clone()),
                profile_name: contact
                    .and_then(|c| c.profile.as_ref())
                    .and_then(|p| p.name.clone()),
                received_at: chrono::Utc::now(),
            };
            match accept_message(&state, job).await {
                Ok(true) => queued += 1,
                Ok(false) => {}
                Err(e) => {
                    outcome("unavailable");
                    tracing::error!(error = %e, message_id = %message.id, "ingest job not persisted; asking Meta to retry");
                    return json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "cannot queue the message; retry later",
                    );
                }
            }
        }
        if !value.statuses.is_empty()
            && let Err(e) =
                record_statuses(&state, &value.metadata.phone_number_id, &value.statuses).await
        {
            // Statuses are informational: a failure is logged, and Meta's retry may bring it again.
            tracing::warn!(error = %e, "delivery statuses not recorded");
            outcome("unavailable");
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "cannot record statuses; retry later",
            );
        }
    }
    tracing::info!(queued, "webhook accepted");
    outcome("accepted");
    Response::builder()
        .status(StatusCode::OK)
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
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

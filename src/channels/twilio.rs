//! Twilio's WhatsApp channel: the form-encoded webhook (messages and status callbacks, signed
//! with `X-Twilio-Signature`) and the Messages API for sending.
//!
//! The school is the owner of the business number (`To` of a message, `From` of a status
//! callback); its auth token checks the signature: base64 HMAC-SHA1 of the full URL Twilio
//! called followed by every POST parameter, sorted by name, as `name` + `value`.

use crate::error::ErrorCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Body, Request, Response, handler};
use secrecy::ExposeSecret;
use sha1::Sha1;

use super::graph::{SendError, exchange};
use super::inbound::{InboundMessage, Said, Webhooks, accept_message};
use crate::conversation::Reply;
use crate::crypto::SealedColumn;
use crate::error::{Error, Result, json_error};
use crate::tenancy::{self, Provider};

/// Twilio's own webhook bodies are small; anything near this is not Twilio.
pub const MAX_BODY: usize = 256 * 1024;

/// An empty TwiML answer: Twilio sends nothing itself (replies go out through the API).
const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

/// The HMAC-SHA1 Twilio signs: the URL, then each parameter name and value, sorted by name
/// (then value, for repeated names).
fn mac(url: &str, sorted: &[&(String, String)], auth_token: &str) -> Hmac<Sha1> {
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

fn sorted(params: &[(String, String)]) -> Vec<&(String, String)> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted
}

/// `X-Twilio-Signature` of a request to `url` with form `params`, made with `auth_token`.
pub fn sign(url: &str, params: &[(String, String)], auth_token: &str) -> String {
    BASE64.encode(
        mac(url, &sorted(params), auth_token)
            .finalize()
            .into_bytes(),
    )
}

/// Does `signature` match any of the URL's spellings (with and without the scheme's default
/// port, which Twilio may or may not include)? Constant time per candidate.
pub fn signature_matches(
    url: &str,
    params: &[(String, String)],
    signature: Option<&str>,
    auth_token: &str,
) -> bool {
    let Some(Ok(given)) = signature.map(|s| BASE64.decode(s.trim())) else {
        return false;
    };
    let sorted = sorted(params);
    url_variants(url).iter().any(|candidate| {
        mac(candidate, &sorted, auth_token)
            .verify_slice(&given)
            .is_ok()
    })
}

/// `url` as given, plus the same URL with the default port added or removed.
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return out,
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    match authority
        .rsplit_once(':')
        .filter(|(host, port)| !host.is_empty() && port_like(port))
    {
        Some((host, port)) if port == default_port => out.push(format!("{scheme}://{host}{tail}")),
        // Another port: only as given.
        Some(_) => {}
        None => out.push(format!("{scheme}://{authority}:{default_port}{tail}")),
    }
    out
}

fn port_like(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The URL Twilio called: the service's public base ([`super::public_base`]) + the path and
/// query as received.
fn called_url(state: &Webhooks, req: &Request) -> String {
    let path = req
        .original_uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    format!(
        "{}{path}",
        super::public_base(state.public_url.as_deref(), req)
    )
}

/// The first value of form parameter `name`.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// `whatsapp:+2348031234567` -> `+2348031234567`.
fn strip_channel(address: &str) -> &str {
    address.strip_prefix("whatsapp:").unwrap_or(address).trim()
}

/// What an inbound Twilio message says, and its type.
pub fn said(params: &[(String, String)]) -> (String, Said) {
    let p = |name| param(params, name);
    let media: u32 = p("NumMedia").and_then(|n| n.parse().ok()).unwrap_or(0);
    let text = |t: &str, choice: Option<&str>| Said {
        text: t.to_string(),
        choice: choice.map(str::to_string),
        unsupported: None,
    };
    if let Some(payload) = p("ButtonPayload") {
        let label = p("ButtonText").or(p("Body")).unwrap_or_default();
        return ("button".into(), text(label, Some(payload)));
    }
    if let Some(id) = p("ListId") {
        let label = p("ListTitle").or(p("Body")).unwrap_or_default();
        return ("interactive".into(), text(label, Some(id)));
    }
    let kind = match p("MessageType") {
        Some(kind) => kind.to_string(),
        None if media > 0 => p("MediaContentType0")
            .and_then(|t| t.split('/').next())
            .unwrap_or("media")
            .to_string(),
        None if p("Latitude").is_some() => "location".to_string(),
        None => "text".to_string(),
    };
    if kind == "text" || (kind != "location" && media == 0 && p("Body").is_some()) {
        return ("text".into(), text(p("Body").unwrap_or_default(), None));
    }
    (
        kind.clone(),
        Said {
            text: String::new(),
            choice: None,
            unsupported: Some(kind),
        },
    )
}

fn twiml_ok() -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .content_type("text/xml")
        .body(EMPTY_TWIML)
}

/// `POST`: a message or a status callback.
#[handler]
pub async fn deliver(state: Data<&Webhooks>, req: &Request, body: Body) -> Response {
    let outcome = |o: &str| super::count_webhook(&state.metrics, "twilio", o);
    let bytes =
        match super::read_webhook_body(body, MAX_BODY, "256 KB", "twilio", &state.metrics).await {
            Ok(b) => b,
            Err(answer) => return answer,
        };
    let params: Vec<(String, String)> = form_urlencoded::parse(&bytes).into_owned().collect();
    let status_callback = param(&params, "MessageStatus").is_some_and(|s| s != "received");
    // Our number is `To` of a message and `From` of a status callback about one we sent.
    let ours = param(&params, if status_callback { "From" } else { "To" }).map(strip_channel);
    let Some(ours) = ours else {
        outcome("malformed");
        return json_error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidForm,
            "a Twilio webhook needs `To` (messages) or `From` (status callbacks)",
        );
    };
    let (ctx, number) = match tenancy::by_business_number(&state.db, Provider::Twilio, ours).await {
        Ok(found) => found,
        Err(Error::NotFound(_) | Error::Invalid { .. }) => {
            // Without the number's auth token nothing can be verified.
            tracing::warn!(
                number = ours,
                "Twilio webhook for an unknown number rejected"
            );
            outcome("unauthorized");
            return json_error(
                StatusCode::UNAUTHORIZED,
                ErrorCode::InvalidSignature,
                "X-Twilio-Signature cannot be verified for this number",
            );
        }
        Err(e) => {
            outcome("unavailable");
            return poem::error::ResponseError::as_response(&e);
        }
    };
    let url = called_url(&state, req);
    let token = tenancy::secret(&state.secret, &number, SealedColumn::AuthToken);
    let token = token.as_ref().map_or("", |t| t.expose_secret());
    if token.is_empty()
        || !signature_matches(&url, &params, req.header("x-twilio-signature"), token)
    {
        tracing::warn!(%url, "Twilio webhook rejected: bad or missing X-Twilio-Signature");
        outcome("unauthorized");
        return json_error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidSignature,
            "X-Twilio-Signature does not match",
        );
    }
    let Some(sid) = param(&params, "MessageSid").or(param(&params, "SmsSid")) else {
        outcome("malformed");
        return json_error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidForm,
            "MessageSid is required",
        );
    };
    if status_callback {
        let status = match param(&params, "MessageStatus").unwrap_or_default() {
            "undelivered" => "failed",
            s => s,
        };
        if matches!(status, "sent" | "delivered" | "read" | "failed") {
            let error = param(&params, "ErrorCode").map(|code| {
                format!(
                    "{code} {}",
                    param(&params, "ErrorMessage").unwrap_or_default()
                )
                .trim()
                .to_string()
            });
            let update = super::StatusUpdate {
                recipient: param(&params, "To").map(strip_channel),
                id: sid,
                status,
                error,
                tag: None,
            };
            if let Err(e) = super::record_status(&state.db, &ctx, &number, update).await {
                tracing::warn!(error = %e, "Twilio status not recorded");
                outcome("unavailable");
                return json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "cannot record the status; retry later",
                );
            }
        }
        outcome("status");
        return twiml_ok();
    }
    let Some(from) = param(&params, "From").map(strip_channel) else {
        outcome("malformed");
        return json_error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidForm,
            "From is required",
        );
    };
    let (kind, said) = said(&params);
    let job = InboundMessage {
        provider: Provider::Twilio.as_str().into(),
        business: number.phone_number.clone(),
        from: from.trim_start_matches('+').to_string(),
        message_id: sid.to_string(),
        kind,
        said,
        user_id: param(&params, "WaId").map(str::to_string),
        profile_name: param(&params, "ProfileName").map(str::to_string),
        received_at: chrono::Utc::now(),
    };
    match accept_message(&state, job).await {
        Ok(_) => {
            outcome("accepted");
            twiml_ok()
        }
        Err(e) => {
            outcome("unavailable");
            tracing::error!(error = %e, message_sid = sid, "ingest job not persisted; asking Twilio to retry");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "cannot queue the message; retry later",
            )
        }
    }
}

/// A Twilio Messages API client.
#[derive(Clone, Debug)]
pub struct TwilioClient {
    http: reqwest::Client,
    base: String,
}

/// The form parameters that show `reply` (Twilio renders no interactive buttons without a
/// pre-approved content template, so choices go as numbered text).
pub fn message_form(reply: &Reply) -> Vec<(&'static str, String)> {
    match reply {
        Reply::Document { url, caption, .. } => {
            vec![("Body", caption.clone()), ("MediaUrl", url.clone())]
        }
        other => vec![("Body", other.to_plain())],
    }
}

impl TwilioClient {
    /// A client for `base` (`https://api.twilio.com`, or a mock).
    pub fn new(base: &str) -> Result<Self> {
        let http = super::http_client()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// Send one message from `from` (E.164) to `to` (digits); returns the message SID.
    pub async fn send(
        &self,
        account_sid: &str,
        auth_token: &str,
        from: &str,
        to: &str,
        form: &[(&'static str, String)],
        status_callback: Option<&str>,
    ) -> Result<String, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
            self.base
        );
        let mut params: Vec<(&str, String)> = vec![
            ("From", format!("whatsapp:{from}")),
            ("To", format!("whatsapp:+{}", to.trim_start_matches('+'))),
        ];
        params.extend(form.iter().map(|(k, v)| (*k, v.clone())));
        if let Some(callback) = status_callback {
            params.push(("StatusCallback", callback.to_string()));
        }
        let request = self
            .http
            .post(&url)
            .basic_auth(account_sid, Some(auth_token))
            .form(&params);
        // 20429: too many requests.
        let answer = exchange(request, "Twilio API", |a| a["code"] == 20429).await?;
        Ok(answer["sid"].as_str().unwrap_or_default().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn twilio_documented_example() {
        // The example of Twilio's signature-validation snippets (TwilioDevEd/api-snippets).
        let p = params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(sign(url, &p, "12345"), "GvWf1cFY/Q7PnoempGyD5oXAezc=");
        assert!(signature_matches(
            url,
            &p,
            Some("GvWf1cFY/Q7PnoempGyD5oXAezc="),
            "12345"
        ));
        assert!(!signature_matches(
            url,
            &p,
            Some("GvWf1cFY/Q7PnoempGyD5oXAezc="),
            "54321"
        ));
        assert!(!signature_matches(url, &p, None, "12345"));
        assert!(!signature_matches(url, &p, Some("not base64!"), "12345"));
    }

    #[test]
    fn default_port_either_way() {
        assert_eq!(
            url_variants("https://bot.example/hook/?a=1"),
            [
                "https://bot.example/hook/?a=1",
                "https://bot.example:443/hook/?a=1"
            ]
        );
        assert_eq!(
            url_variants("https://bot.example:443/hook/"),
            ["https://bot.example:443/hook/", "https://bot.example/hook/"]
        );
        assert_eq!(
            url_variants("http://127.0.0.1:8080/x"),
            ["http://127.0.0.1:8080/x"]
        );
        let p = params(&[("Body", "hi")]);
        let signed_with_port = sign("https://bot.example:443/hook/", &p, "t");
        assert!(signature_matches(
            "https://bot.example/hook/",
            &p,
            Some(&signed_with_port),
            "t"
        ));
    }

    #[test]
    fn message_types() {
        let (kind, s) = said(&params(&[("Body", "results"), ("NumMedia", "0")]));
        assert_eq!(
            (kind.as_str(), s.text.as_str(), s.choice),
            ("text", "results", None)
        );
        let (kind, s) = said(&params(&[
            ("ButtonPayload", "menu:results"),
            ("ButtonText", "Results"),
        ]));
        assert_eq!(
            (kind.as_str(), s.choice.as_deref()),
            ("button", Some("menu:results"))
        );
        let (kind, s) = said(&params(&[
            ("NumMedia", "1"),
            ("MediaContentType0", "image/jpeg"),
        ]));
        assert_eq!(
            (kind.as_str(), s.unsupported.as_deref()),
            ("image", Some("image"))
        );
        let (kind, s) = said(&params(&[
            ("Latitude", "6.5"),
            ("Longitude", "3.3"),
            ("Body", ""),
        ]));
        assert_eq!(
            (kind.as_str(), s.unsupported.as_deref()),
            ("location", Some("location"))
        );
    }
}

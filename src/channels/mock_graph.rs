//! A mock of Meta's Graph API and of Twilio's Messages API for tests and demos: records every
//! message sent to it and can be told to fail or to answer slowly, and (Meta) to post each
//! message's `sent` status to a webhook, as Meta does. `chatbot mock-whatsapp` runs
//! it for people.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Json, Path};
use poem::{EndpointExt, Request, Response, Route, Server, handler, post};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// One message the mock received.
#[derive(Debug, Clone)]
pub struct Received {
    /// `meta` or `twilio`.
    pub provider: &'static str,
    /// `phone_number_id` in the path (Meta), or the account SID (Twilio).
    pub phone_number_id: String,
    /// `Authorization` header.
    pub authorization: Option<String>,
    /// JSON body (Meta), or the form parameters as a JSON object (Twilio).
    pub body: Value,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Received {
    /// The recipient, digits only, whichever the provider.
    pub fn to(&self) -> String {
        let to = self.body["to"]
            .as_str()
            .or(self.body["To"].as_str())
            .unwrap_or_default();
        to.chars().filter(char::is_ascii_digit).collect()
    }

    /// The text shown: a text body, an interactive body, a Twilio `Body`, or a template name.
    pub fn text(&self) -> String {
        let b = &self.body;
        [
            &b["text"]["body"],
            &b["interactive"]["body"]["text"],
            &b["Body"],
            &b["template"]["name"],
            &b["document"]["caption"],
        ]
        .iter()
        .find_map(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
    }
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    /// Statuses to answer with, one per request, before answering normally again.
    failures: Vec<u16>,
    /// Delays before answering the next requests (recorded on arrival).
    holds: Vec<std::time::Duration>,
    /// Where to post each Meta message's `sent` status, signed with this app secret.
    status_hook: Option<(String, String)>,
}

/// Post a Meta message's `sent` status to `url`, signed with `app_secret`, as Meta does on
/// accepting it (before its answer, which may not arrive): retried a few times.
fn post_status(url: String, app_secret: String, received: &Received, n: usize) {
    let status = json!({
        "id": format!("wamid.mock.{n}"),
        "status": "sent",
        "timestamp": chrono::Utc::now().timestamp().to_string(),
        "recipient_id": received.to(),
        "biz_opaque_callback_data": received.body["biz_opaque_callback_data"],
    });
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "mock", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"phone_number_id": received.phone_number_id},
            "statuses": [status]
        }}]}]
    })
    .to_string();
    let signature = super::whatsapp_cloud::sign(body.as_bytes(), &app_secret);
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        for _ in 0..10 {
            let posted = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", &signature)
                .body(body.clone())
                .send()
                .await;
            if posted.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    });
}

/// The answer to a request told to fail with `status`, in both providers' error shapes.
fn failure(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Response::builder()
        .status(code)
        .content_type("application/json")
        .body(
            json!({"error": {"message": "injected failure", "code": status}, "code": status, "message": "injected failure"})
                .to_string(),
        )
}

/// Record a request and, when told to, wait before answering; returns its number, or the
/// answer of an injected failure.
async fn record(shared: &Mutex<Shared>, received: Received) -> Result<usize, Response> {
    let (n, hold) = {
        let mut s = shared.lock().expect("mock state");
        if !s.failures.is_empty() {
            return Err(failure(s.failures.remove(0)));
        }
        if let Some((url, secret)) = s.status_hook.clone()
            && received.provider == "meta"
        {
            post_status(url, secret, &received, s.received.len() + 1);
        }
        s.received.push(received);
        let hold = (!s.holds.is_empty()).then(|| s.holds.remove(0));
        (s.received.len(), hold)
    };
    if let Some(hold) = hold {
        tokio::time::sleep(hold).await;
    }
    Ok(n)
}

/// A running mock Graph API.
#[derive(Clone)]
pub struct MockGraph {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
}

#[handler]
async fn messages(
    Path(id): Path<String>,
    req: &Request,
    shared: Data<&Arc<Mutex<Shared>>>,
    Json(body): Json<Value>,
) -> Response {
    let received = Received {
        at: std::time::Instant::now(),
        provider: "meta",
        phone_number_id: id,
        authorization: req.header("authorization").map(str::to_string),
        body: body.clone(),
    };
    let n = match record(&shared, received).await {
        Ok(n) => n,
        Err(answer) => return answer,
    };
    Response::builder().content_type("application/json").body(
        json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": body["to"], "wa_id": body["to"]}],
            "messages": [{"id": format!("wamid.mock.{n}")}]
        })
        .to_string(),
    )
}

/// Twilio: `POST /2010-04-01/Accounts/{sid}/Messages.json`, form-encoded.
#[handler]
async fn twilio_messages(
    Path(sid): Path<String>,
    req: &Request,
    shared: Data<&Arc<Mutex<Shared>>>,
    body: String,
) -> Response {
    let form: serde_json::Map<String, Value> = form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    let sid = sid.trim_end_matches(".json").to_string();
    let received = Received {
        at: std::time::Instant::now(),
        provider: "twilio",
        phone_number_id: sid.clone(),
        authorization: req.header("authorization").map(str::to_string),
        body: Value::Object(form.clone()),
    };
    let n = match record(&shared, received).await {
        Ok(n) => n,
        Err(answer) => return answer,
    };
    Response::builder()
        .status(StatusCode::CREATED)
        .content_type("application/json")
        .body(
            json!({"sid": format!("SM{n:032}"), "status": "queued", "account_sid": sid, "to": form.get("To")})
                .to_string(),
        )
}

impl MockGraph {
    /// Start on `addr` (port 0 picks one).
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let acceptor = TcpListener::bind(addr).into_acceptor().await?;
        let addr = acceptor
            .local_addr()
            .into_iter()
            .find_map(|a| a.as_socket_addr().copied())
            .unwrap_or(addr);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = CancellationToken::new();
        let app = Route::new()
            .at("/:id/messages", post(messages))
            .at(
                "/2010-04-01/Accounts/:sid/Messages.json",
                post(twilio_messages),
            )
            .data(shared.clone());
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(app, token.cancelled_owned(), None)
                .await;
        });
        Ok(Self { addr, shared, stop })
    }

    /// Base URL to configure as `CHATBOT_WHATSAPP_API_BASE`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().expect("mock state").received.clone()
    }

    /// How many messages were received so far (without copying them).
    pub fn count(&self) -> usize {
        self.shared.lock().expect("mock state").received.len()
    }

    /// Answer the next requests with these statuses (e.g. 429, 500), then normally.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.shared
            .lock()
            .expect("mock state")
            .failures
            .extend_from_slice(statuses);
    }

    /// Record the next requests on arrival but answer each only after its delay (a send that
    /// is in flight for a while, e.g. to kill a worker in the middle of it).
    pub fn hold_next(&self, delays: &[std::time::Duration]) {
        self.shared
            .lock()
            .expect("mock state")
            .holds
            .extend_from_slice(delays);
    }

    /// Post each Meta message's `sent` status (naming it by its `biz_opaque_callback_data`)
    /// to the webhook at `url`, signed with `app_secret`, as Meta does.
    pub fn post_statuses_to(&self, url: &str, app_secret: &str) {
        self.shared.lock().expect("mock state").status_hook =
            Some((url.to_string(), app_secret.to_string()));
    }

    /// Stop serving.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

//! The website engagement flow (contract: `../shared/seeds/002_e71e21452cd96850.txt`):
//! `/ws/chat/{report_id}` walks a visitor through a report's preprogrammed dialogue to the
//! purchase, `/ws/chat-success/{report_id}` hands over the report link after payment.
//!
//! Each connection is one task holding a few hundred bytes of state and small socket buffers;
//! no lock is held across an await, so one slow or hostile visitor only ever slows itself.
//! Limits: the largest client message, an idle timeout, a cap on connections per client
//! address, allowed origins, a cap on client messages per second.

pub mod catalogue;
pub mod pages;
pub mod params;
pub mod script;

use crate::error::ErrorCode;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use poem::http::StatusCode;
use poem::web::websocket::{CloseCode, Message, WebSocket, WebSocketConfig, WebSocketStream};
use poem::web::{Data, Path};
use poem::{IntoResponse, Request, Response, handler};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::time::{Instant, sleep_until, timeout};

use crate::error::json_error;
use catalogue::{Catalogue, Report};
use script::{Answer, Lang, Move, Vars};

/// The error the seed prescribes for an unknown report id.
pub const INVALID_URL: &str = "Invalid Url";
/// Client messages accepted per second before the connection is closed.
const MAX_MESSAGES_PER_SECOND: u32 = 10;
/// The longest a send may wait for a visitor who does not read.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers at most, per conversation (a script that loops on "no" still ends).
const MAX_TURNS: u32 = 200;

/// What every engagement connection shares: the catalogue and the open connections per address.
#[derive(Debug, Default)]
pub struct Engagement {
    /// Reports by school and slug.
    pub catalogue: Catalogue,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// What the engagement endpoints need: the catalogue's database, the settings they read
/// (origins, pacing, limits, the report hash secret), counters, and the shared [`Engagement`].
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct Site {
    /// Data database (the report catalogue).
    pub db: sea_orm::DatabaseConnection,
    /// Settings in force.
    pub settings: Arc<crate::config::Settings>,
    /// Connection counters.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The catalogue cache and the open connections.
    pub engagement: Arc<Engagement>,
}

/// An open connection counted against its address; released on drop.
struct Slot {
    engagement: Arc<Engagement>,
    addr: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.engagement.open.lock().expect("engagement slots");
        if let Some(n) = open.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.addr);
            }
        }
    }
}

impl Engagement {
    fn take_slot(self: &Arc<Self>, addr: IpAddr, cap: u32) -> Option<Slot> {
        let mut open = self.open.lock().expect("engagement slots");
        let n = open.entry(addr).or_insert(0);
        if cap > 0 && *n >= cap {
            return None;
        }
        *n += 1;
        Some(Slot {
            engagement: self.clone(),
            addr,
        })
    }
}

/// The limits a session runs under, from the settings.
#[derive(Debug, Clone, Copy)]
struct Pace {
    interval: Duration,
    idle: Duration,
}

/// What a connection is about, decided before the upgrade.
struct Opened {
    report: Option<Arc<Report>>,
    slot: Slot,
    pace: Pace,
    metrics: Arc<crate::metrics::Metrics>,
}

/// The client's address: the configured proxy header's last entry, else the socket peer.
fn client_addr(req: &Request, header: Option<&str>) -> IpAddr {
    let from_header = header
        .and_then(|h| req.header(h))
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse::<IpAddr>().ok());
    from_header
        .or_else(|| req.remote_addr().as_socket_addr().map(|a| a.ip()))
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Checks before the upgrade: origin, connections per address, the school and the report.
async fn open(
    req: &Request,
    state: &Site,
    report_id: &str,
    endpoint: &'static str,
) -> Result<Opened, Response> {
    let s = &state.settings;
    let count = |outcome: &str| {
        state.metrics.inc(
            "chatbot_engagement_connections_total",
            &[("endpoint", endpoint), ("outcome", outcome)],
        )
    };
    if !s.engagement.allowed_origins.0.is_empty() {
        let origin = req
            .header("origin")
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase());
        if !origin.is_some_and(|o| s.engagement.allowed_origins.0.contains(&o)) {
            count("origin_refused");
            return Err(json_error(
                StatusCode::FORBIDDEN,
                ErrorCode::OriginNotAllowed,
                "this origin may not open engagement chats",
            ));
        }
    }
    let addr = client_addr(req, s.server.client_ip_header.as_deref());
    let Some(slot) = state
        .engagement
        .take_slot(addr, s.engagement.max_per_address)
    else {
        count("too_many");
        tracing::warn!(%addr, cap = s.engagement.max_per_address, "engagement: too many connections from one address");
        return Err(json_error(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyConnections,
            format!(
                "at most {} open chats per client address",
                s.engagement.max_per_address
            ),
        ));
    };
    let host = req
        .header("host")
        .map(str::to_string)
        .or_else(|| req.uri().host().map(str::to_string));
    let looked_up = async {
        let school = state
            .engagement
            .catalogue
            .school(&state.db, host.as_deref(), s.engagement.tenant.as_deref())
            .await?;
        match school {
            Some(ctx) => {
                state
                    .engagement
                    .catalogue
                    .find(&state.db, &ctx, report_id)
                    .await
            }
            None => Ok(None),
        }
    };
    let report = match looked_up.await {
        Ok(r) => r,
        Err(e) => {
            count("unavailable");
            tracing::error!(error = %e, "engagement: cannot read the report catalogue");
            return Err(json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "the chat is unavailable, try again shortly",
            ));
        }
    };
    tracing::debug!(
        report = report_id,
        host = host.as_deref().unwrap_or(""),
        %addr,
        found = report.is_some(),
        "engagement: connection"
    );
    count(if report.is_some() {
        "opened"
    } else {
        "invalid_url"
    });
    Ok(Opened {
        report,
        slot,
        pace: Pace {
            interval: Duration::from_millis(s.engagement.interval_ms),
            idle: Duration::from_secs(s.engagement.idle_secs),
        },
        metrics: state.metrics.clone(),
    })
}

/// Small buffers (the defaults eagerly allocate 128 KiB per socket), eager writes, a bounded
/// write backlog and the configured message limit.
fn socket_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// Open (or refuse) a connection, upgrade it, and run `session` on it when the report exists.
async fn serve_socket<F, Fut>(
    req: &Request,
    report_id: &str,
    ws: WebSocket,
    state: &Site,
    endpoint: &'static str,
    session: F,
) -> Response
where
    F: FnOnce(Conn, Arc<Report>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = &'static str> + Send,
{
    let Opened {
        report,
        slot,
        pace,
        metrics,
    } = match open(req, state, report_id, endpoint).await {
        Ok(o) => o,
        Err(refused) => return refused,
    };
    ws.config(socket_config(state.settings.engagement.max_message_bytes))
        .on_upgrade(move |socket| async move {
            let mut conn = Conn::new(socket, pace, metrics.clone());
            let outcome = match report {
                None => conn.fail(INVALID_URL, CloseCode::Policy).await,
                Some(report) => session(conn, report).await,
            };
            metrics.inc(
                "chatbot_engagement_sessions_total",
                &[("endpoint", endpoint), ("outcome", outcome)],
            );
            drop(slot);
        })
        .into_response()
}

/// `GET /ws/chat/{report_id}`.
#[handler]
pub async fn chat(
    req: &Request,
    Path(report_id): Path<String>,
    ws: WebSocket,
    state: Data<&Site>,
) -> Response {
    serve_socket(
        req,
        &report_id,
        ws,
        &state,
        "chat",
        |mut conn, report| async move { chat_session(&mut conn, &report).await },
    )
    .await
}

/// `GET /ws/chat-success/{report_id}`.
#[handler]
pub async fn chat_success(
    req: &Request,
    Path(report_id): Path<String>,
    ws: WebSocket,
    state: Data<&Site>,
) -> Response {
    let secret = state
        .settings
        .engagement
        .hash_secret
        .as_ref()
        .map(|s| s.expose_secret().as_bytes().to_vec());
    serve_socket(
        req,
        &report_id,
        ws,
        &state,
        "chat_success",
        |mut conn, report| async move {
            success_session(&mut conn, &report, secret.as_deref()).await
        },
    )
    .await
}

/// Why a wait for the client ended without a usable message.
enum Gone {
    /// The client closed or the socket failed: nothing more to send.
    Left,
    /// Idle too long.
    Idle,
    /// Too many messages.
    Flood,
    /// A message the protocol does not allow; the text says why.
    Refused(String),
    /// A message over the size limit.
    TooBig,
}

/// One WebSocket connection with its pacing.
struct Conn {
    ws: WebSocketStream,
    pace: Pace,
    metrics: Arc<crate::metrics::Metrics>,
    /// When the next paced message is due.
    due: Instant,
    /// Rate window: its start and the messages in it.
    window: (Instant, u32),
}

#[derive(Serialize)]
struct Chunk<'a> {
    message: &'a str,
    status: &'a str,
}

#[derive(Serialize)]
struct Said<'a> {
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    report_url: Option<&'a str>,
}

#[derive(Serialize)]
struct Failure<'a> {
    error: &'a str,
}

impl Conn {
    fn new(ws: WebSocketStream, pace: Pace, metrics: Arc<crate::metrics::Metrics>) -> Self {
        let now = Instant::now();
        Self {
            ws,
            pace,
            metrics,
            due: now,
            window: (now, 0),
        }
    }

    /// Send one text frame, giving up on a visitor who does not read.
    async fn send_text(&mut self, text: String) -> bool {
        matches!(
            timeout(SEND_TIMEOUT, self.ws.send(Message::Text(text))).await,
            Ok(Ok(()))
        )
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        let _ = timeout(
            SEND_TIMEOUT,
            self.ws.send(Message::close_with(code, reason.to_string())),
        )
        .await;
        // Let the client's close reply arrive (bounded), so the close is clean on both sides.
        let _ = timeout(Duration::from_secs(2), async {
            while let Some(Ok(m)) = self.ws.next().await {
                if m.is_close() {
                    break;
                }
            }
        })
        .await;
    }

    /// Send `{"error": ...}` and close with `code`.
    async fn fail(&mut self, error: &str, code: CloseCode) -> &'static str {
        let text = serde_json::to_string(&Failure { error }).unwrap_or_default();
        if self.send_text(text).await {
            self.close(code, "").await;
        }
        match error {
            INVALID_URL => "invalid_url",
            _ => "refused",
        }
    }

    /// End after a [`Gone`].
    async fn gone(&mut self, why: Gone) -> &'static str {
        match why {
            Gone::Left => "left",
            Gone::Idle => {
                self.close(CloseCode::Away, "idle timeout").await;
                "idle"
            }
            Gone::Flood => {
                self.close(CloseCode::Policy, "too many messages").await;
                "flood"
            }
            Gone::TooBig => {
                self.close(CloseCode::Size, "message too big").await;
                "too_big"
            }
            Gone::Refused(why) => self.fail(&why, CloseCode::Policy).await,
        }
    }

    /// The next client message as a JSON object; pings and pongs are skipped.
    async fn receive(&mut self, until: Instant) -> Result<Map<String, Value>, Gone> {
        loop {
            let msg = tokio::select! {
                m = self.ws.next() => m,
                _ = sleep_until(until) => return Err(Gone::Idle),
            };
            let now = Instant::now();
            if now.duration_since(self.window.0) >= Duration::from_secs(1) {
                self.window = (now, 0);
            }
            self.window.1 += 1;
            if self.window.1 > MAX_MESSAGES_PER_SECOND {
                return Err(Gone::Flood);
            }
            match msg {
                None | Some(Ok(Message::Close(_))) => return Err(Gone::Left),
                Some(Err(e)) => {
                    let text = e.to_string();
                    return Err(if text.contains("too long") || text.contains("too big") {
                        Gone::TooBig
                    } else {
                        Gone::Left
                    });
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Binary(_))) => {
                    return Err(Gone::Refused(
                        "Invalid message format: send a JSON string".into(),
                    ));
                }
                Some(Ok(Message::Text(text))) => {
                    return match serde_json::from_str::<Value>(&text) {
                        Ok(Value::Object(map)) => Ok(map),
                        _ => Err(Gone::Refused(
                            "Invalid message format: send a JSON object, e.g. {\"lang\": \"en\"}"
                                .into(),
                        )),
                    };
                }
            }
        }
    }

    /// Wait for the visitor, up to the idle timeout.
    async fn wait_for_client(&mut self) -> Result<Map<String, Value>, Gone> {
        let until = Instant::now() + self.pace.idle;
        self.receive(until).await
    }

    /// Send `lines` paced at the interval (the first at once), ignoring what the client sends
    /// meanwhile (it may not speak while the bot is `sending`) unless it breaks the protocol.
    async fn send_paced(&mut self, lines: impl IntoIterator<Item = String>) -> Result<(), Gone> {
        let now = Instant::now();
        self.due = now;
        for text in lines {
            loop {
                if Instant::now() >= self.due {
                    break;
                }
                let due = self.due;
                match self.receive(due).await {
                    Ok(_) => continue,
                    Err(Gone::Idle) => break,
                    Err(other) => return Err(other),
                }
            }
            if !self.send_text(text).await {
                return Err(Gone::Left);
            }
            // How late the message went out: the server's own share of any pacing drift.
            self.metrics.observe(
                "chatbot_engagement_send_lag_seconds",
                &[],
                Instant::now().saturating_duration_since(self.due),
            );
            // Scheduled from the last due time, not from when the send finished: no drift.
            self.due += self.pace.interval;
            let now = Instant::now();
            if self.due < now {
                self.due = now;
            }
        }
        Ok(())
    }
}

/// The mandatory fields of the first message, checked as the contract lists them.
struct Opening {
    lang: Lang,
    is_new_visitor: bool,
    price: f64,
    currency: String,
}

fn missing(field: &str) -> String {
    format!("Missing mandatory field: {field}")
}

fn lang_of(map: &Map<String, Value>) -> Result<Lang, String> {
    match map.get("lang") {
        None | Some(Value::Null) => Err(missing("lang")),
        Some(Value::String(code)) => Lang::parse(code)
            .ok_or_else(|| format!("Unsupported lang: {code} (supported: ru, en, pl)")),
        Some(_) => Err("Invalid field lang: expected one of ru, en, pl".into()),
    }
}

fn opening(map: &Map<String, Value>) -> Result<Opening, String> {
    let lang = lang_of(map)?;
    let is_new_visitor = match map.get("is_new_visitor") {
        None | Some(Value::Null) => return Err(missing("is_new_visitor")),
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("Invalid field is_new_visitor: expected true or false".into()),
    };
    let price = match map.get("price") {
        None | Some(Value::Null) => return Err(missing("price")),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    }
    .filter(|p| p.is_finite() && (0.0..=1e9).contains(p))
    .ok_or("Invalid field price: expected a number between 0 and 1000000000")?;
    let currency = match map.get("currency") {
        None | Some(Value::Null) => return Err(missing("currency")),
        Some(Value::String(c)) if !c.trim().is_empty() && c.chars().count() <= 32 => {
            c.trim().to_string()
        }
        Some(_) => {
            return Err("Invalid field currency: expected a text of 1 to 32 characters".into());
        }
    };
    Ok(Opening {
        lang,
        is_new_visitor,
        price,
        currency,
    })
}

/// The visitor's answer in a later message: `message` (absent or empty: go on).
fn answer_of(map: &Map<String, Value>, lang: Lang) -> Result<Answer, String> {
    match map.get("message") {
        None | Some(Value::Null) => Ok(Answer::GoOn),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Answer::GoOn),
        Some(Value::String(s)) => Ok(script::classify(lang, s)),
        Some(_) => Err("Invalid field message: expected a string".into()),
    }
}

fn render_all<'a>(lines: impl IntoIterator<Item = &'a String>, vars: &Vars<'_>) -> Vec<String> {
    lines
        .into_iter()
        .map(|line| {
            script::render(line, vars).unwrap_or_else(|e| {
                tracing::error!(error = %e, "engagement: a validated line failed to render");
                line.clone()
            })
        })
        .collect()
}

/// Mark the lines of a chunk: all `sending` but the last, `waiting`.
fn chunk(lines: Vec<String>) -> impl Iterator<Item = String> {
    let last = lines.len().saturating_sub(1);
    lines.into_iter().enumerate().map(move |(i, message)| {
        let status = if i == last { "waiting" } else { "sending" };
        serde_json::to_string(&Chunk {
            message: &message,
            status,
        })
        .unwrap_or_default()
    })
}

async fn chat_session(conn: &mut Conn, report: &Report) -> &'static str {
    let first = match conn.wait_for_client().await {
        Ok(m) => m,
        Err(why) => return conn.gone(why).await,
    };
    let open = match opening(&first) {
        Ok(o) => o,
        Err(why) => return conn.fail(&why, CloseCode::Policy).await,
    };
    let lang = open.lang;
    let dialogue = report.script.dialogue.get(lang);
    let price = script::format_price(lang, open.price);
    let vars = Vars {
        price: &price,
        currency: &open.currency,
        title: report.script.titles.get(lang),
    };
    let greeting = if open.is_new_visitor {
        &dialogue.greeting_new
    } else {
        &dialogue.greeting_returning
    };
    let mut at: &str = &dialogue.start;
    let mut lines = render_all(greeting.iter().chain(&dialogue.steps[at].say), &vars);
    for _turn in 0..MAX_TURNS {
        let step = &dialogue.steps[at];
        if let Err(why) = conn.send_paced(chunk(lines)).await {
            return conn.gone(why).await;
        }
        if step.is_checkout() {
            conn.close(CloseCode::Normal, "checkout").await;
            return "checkout";
        }
        let msg = match conn.wait_for_client().await {
            Ok(m) => m,
            Err(why) => return conn.gone(why).await,
        };
        let answer = match answer_of(&msg, lang) {
            Ok(a) => a,
            Err(why) => return conn.fail(&why, CloseCode::Policy).await,
        };
        lines = match dialogue.follow(at, answer) {
            Move::To(next) => {
                at = next;
                render_all(&dialogue.steps[at].say, &vars)
            }
            Move::Repeat => {
                render_all(dialogue.not_understood.iter().chain(step.say.last()), &vars)
            }
        };
    }
    conn.close(CloseCode::Policy, "conversation too long").await;
    "too_long"
}

/// The report's relative link, as the contract shows it: `/api/reading/{report_id}/?{params}`.
pub fn report_url(report_id: &str, params: &str) -> String {
    format!("/api/reading/{report_id}/?{params}")
}

async fn success_session(conn: &mut Conn, report: &Report, secret: Option<&[u8]>) -> &'static str {
    let msg = match conn.wait_for_client().await {
        Ok(m) => m,
        Err(why) => return conn.gone(why).await,
    };
    let lang = match lang_of(&msg) {
        Ok(l) => l,
        Err(why) => return conn.fail(&why, CloseCode::Policy).await,
    };
    let success = match msg.get("success") {
        None | Some(Value::Null) => return conn.fail(&missing("success"), CloseCode::Policy).await,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return conn
                .fail(
                    "Invalid field success: expected true or false",
                    CloseCode::Policy,
                )
                .await;
        }
    };
    let dialogue = report.script.dialogue.get(lang);
    let vars = Vars {
        price: "",
        currency: "",
        title: report.script.titles.get(lang),
    };
    let said = |message: &str, report_url: Option<&str>| {
        serde_json::to_string(&Said {
            message,
            report_url,
        })
        .unwrap_or_default()
    };
    let lines: Vec<String> = if success {
        let params = match msg.get("report_url_params") {
            None | Some(Value::Null) => {
                return conn
                    .fail(&missing("report_url_params"), CloseCode::Policy)
                    .await;
            }
            Some(Value::String(p)) => p.as_str(),
            Some(_) => {
                return conn
                    .fail(
                        "Invalid field report_url_params: expected a string",
                        CloseCode::Policy,
                    )
                    .await;
            }
        };
        let Some(secret) = secret else {
            tracing::error!(
                "engagement: a paid report arrived but CHATBOT_REPORT_HASH_SECRET is not set"
            );
            return conn
                .fail(
                    "Payment confirmation is not configured on this server",
                    CloseCode::Error,
                )
                .await;
        };
        let params = match params::verify(secret, params, &report.slug) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(report = %report.slug, error = %e, "engagement: report_url_params refused");
                return conn
                    .fail(
                        &format!("Invalid report_url_params: {e}"),
                        CloseCode::Policy,
                    )
                    .await;
            }
        };
        let url = report_url(&report.slug, params);
        dialogue
            .paid
            .iter()
            .map(|line| {
                let text = render_all([&line.message], &vars).remove(0);
                said(&text, line.has_link().then_some(url.as_str()))
            })
            .collect()
    } else {
        render_all(&dialogue.unpaid, &vars)
            .iter()
            .map(|text| said(text, None))
            .collect()
    };
    if let Err(why) = conn.send_paced(lines).await {
        return conn.gone(why).await;
    }
    conn.close(CloseCode::Normal, "").await;
    if success { "paid" } else { "unpaid" }
}

/// The engagement WebSocket's settings, checked (and the school's name trimmed) when the
/// configuration is loaded.
impl crate::config::Check for crate::config::Engagement {
    fn check(&mut self) -> std::result::Result<(), crate::config::Problem> {
        use crate::config::keys::engagement as key;
        key::interval_ms.require_within(self.interval_ms, 1..=60_000, "milliseconds")?;
        key::idle_secs.require_within(self.idle_secs, 1..=86_400, "seconds (1 day)")?;
        key::max_message_bytes.require_within(
            self.max_message_bytes,
            256..=1_048_576,
            "bytes (1 MiB)",
        )?;
        if let Some(secret) = &self.hash_secret {
            key::hash_secret.require_secret_length(secret, 16)?;
        }
        if let Some(tenant) = &mut self.tenant {
            *tenant = tenant.trim().to_string();
            key::tenant.require(
                crate::domain::SchemaName::parse(tenant).is_ok(),
                "must be a school's schema name",
            )?;
        }
        Ok(())
    }
}

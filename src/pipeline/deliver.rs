//! Outbound: the replies to one inbound message, sent in order through Meta's Graph API or
//! Twilio's Messages API, paced per business number. Each reply is claimed while it is being
//! sent (keyed by the inbound message id and its place) and recorded in the message log once
//! sent, so a job that runs again, or twice at once, sends only what was not sent. A worker
//! killed while sending leaves a claim that expires: the reply is then sent again, unless the
//! provider's status callback (which names the reply: `transcript::reply_tag`) said by then
//! that it has it.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use chrono::Utc;

use super::handle::Claim;
use super::job::{Job, JobFuture};
use super::shared::Pipeline;
use crate::channels::graph::{SendError, message_body};
use crate::channels::twilio;
use crate::conversation::{Reply, transcript};
use crate::crypto::SealedColumn;
use crate::domain::{PhoneNumber, SchemaName};
use crate::tenancy::{self, Provider};

/// How long a reply being sent stays claimed: longer than a send can take (the HTTP client gives
/// up after 15 s). A claim its worker left when it died expires after this.
const IN_FLIGHT: Duration = Duration::from_secs(30);
/// WhatsApp's customer-service window: free-form messages only this long after the user wrote.
const SERVICE_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

fn meta() -> String {
    Provider::Meta.as_str().to_string()
}

/// Replies to send to one user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendJob {
    /// `meta` or `twilio`.
    #[serde(default = "meta")]
    pub provider: String,
    /// The business number to send from: Meta `phone_number_id`, or Twilio number (E.164).
    pub business: String,
    /// Recipient, digits.
    pub to: String,
    /// Replies, in order.
    pub replies: Vec<Reply>,
    /// The inbound message these answer.
    pub reply_to: String,
    /// The conversation whose turn `seq` these replies complete (see `ingest`).
    #[serde(default)]
    pub conversation: Option<String>,
    /// That turn's arrival number.
    #[serde(default)]
    pub seq: u64,
    /// On a shared number, the school whose conversation these replies belong to (its
    /// message log records them); ignored for a number that belongs to one school.
    #[serde(default)]
    pub tenant: Option<String>,
    /// When the message being answered arrived (the customer-service window is open for 24 h
    /// after it, even before its turn is in the log).
    #[serde(default)]
    pub inbound_at: Option<chrono::DateTime<Utc>>,
    /// A broadcast's notice: outside the window it goes as the number's template, its
    /// parameters filled from these fields.
    #[serde(default)]
    pub notice: Option<crate::tenancy::numbers::NoticeFields>,
    /// The places of replies already settled (sent, or refused for good): not sent again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<usize>,
}

impl Job for SendJob {
    const QUEUE: &'static str = "send";
}

/// Worker entry point.
pub fn handle(job: SendJob, pipe: Pipeline) -> JobFuture {
    let span = tracing::info_span!("send", reply_to = %job.reply_to, provider = %job.provider);
    super::shared::measured(
        pipe.clone(),
        SendJob::QUEUE,
        tracing::Instrument::instrument(
            async move {
                deliver(&pipe, &job).await?;
                // The turn is complete once its replies went out (or were refused for good);
                // a retryable failure leaves it open, and the job runs again.
                if let Some(conversation) = &job.conversation {
                    pipe.queue
                        .conversation_finished(conversation, job.seq)
                        .await?;
                }
                Ok(())
            },
            span,
        ),
    )
}

/// What goes out for one reply.
enum Outbound<'a> {
    Reply(&'a Reply),
    /// An approved template, outside the customer-service window.
    Template(&'a TemplateSend),
}

/// A template to send: a Meta template's name and language, or a Twilio Content SID (as
/// `name`), with its parameters' text in order.
struct TemplateSend {
    name: String,
    language: String,
    params: Vec<String>,
}

/// The template to send outside the window: for a broadcast, the number's own with the
/// notice's fields; else the number's own when it takes no parameters; else the service-wide
/// `CHATBOT_WHATSAPP_TEMPLATE`.
fn template_for(
    pipe: &Pipeline,
    number: &crate::entities::whatsapp_number::Model,
    notice: Option<&crate::tenancy::numbers::NoticeFields>,
) -> Option<TemplateSend> {
    use crate::tenancy::numbers::BroadcastTemplate;
    let own = BroadcastTemplate::of(number).filter(|t| notice.is_some() || t.parameters.is_empty());
    if let Some(t) = own {
        let params = notice.map(|n| t.values(n)).unwrap_or_default();
        return Some(TemplateSend {
            name: t.name.or(t.content_sid).unwrap_or_default(),
            language: t.language.unwrap_or_default(),
            params,
        });
    }
    pipe.settings
        .whatsapp
        .template
        .clone()
        .map(|name| TemplateSend {
            name,
            language: pipe.settings.whatsapp.template_language.clone(),
            params: Vec::new(),
        })
}

/// Send `job`'s replies, each at most once (claimed by the inbound message's id and the
/// reply's place); an error leaves the unsent ones to a retry.
pub(crate) async fn deliver(pipe: &Pipeline, job: &SendJob) -> crate::error::Result<()> {
    let provider = Provider::named(&job.provider);
    let (owner, number) = match tenancy::by_business_number(&pipe.db, provider, &job.business).await
    {
        Ok(found) => found,
        // The database is busy or away: the job is retried.
        Err(e) if e.is_transient() => return Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "replies for an unknown business number dropped");
            return Ok(());
        }
    };
    let ctx = match (&job.tenant, number.shared) {
        (Some(school), true) => match SchemaName::parse(school) {
            Ok(name) => tenancy::by_schema_name(&pipe.db, &name).await?,
            Err(e) => {
                tracing::warn!(error = %e, "replies for an unusable school name dropped");
                return Ok(());
            }
        },
        _ => owner,
    };
    // A retry: what went out meanwhile (an earlier attempt, or a status callback) stays out.
    let mut job = job.clone();
    job.done
        .extend(transcript::settled_replies(&pipe.db, &ctx, "whatsapp", &job.reply_to).await?);
    deliver_as(pipe, &job, &ctx, &number).await
}

/// Claim reply `index` of `job` for sending: `false` when it is settled already. A claim held by
/// another attempt (running now, or dead while sending) is waited out; then the reply is sent
/// unless the message log says it went out meanwhile.
async fn take(
    pipe: &Pipeline,
    ctx: &tenancy::TenantCtx,
    job: &SendJob,
    key: &str,
    index: usize,
) -> crate::error::Result<bool> {
    loop {
        match pipe.queue.claim(key, IN_FLIGHT).await? {
            Claim::Taken => return Ok(true),
            Claim::Held(left) if left <= IN_FLIGHT => {
                tracing::info!(
                    index,
                    wait_ms = left.as_millis() as u64,
                    "reply being sent by another attempt; waiting for its claim"
                );
                tokio::time::sleep(left + Duration::from_millis(50)).await;
                let settled =
                    transcript::settled_replies(&pipe.db, ctx, "whatsapp", &job.reply_to).await?;
                if settled.contains(&index) {
                    return Ok(false);
                }
            }
            // Claimed for longer than any send (by an earlier version, which kept claims for
            // days once sent): sent.
            Claim::Held(_) => return Ok(false),
        }
    }
}

/// [`deliver`] from `number`, in school `ctx`'s message log (already looked up by the caller).
pub(crate) async fn deliver_as(
    pipe: &Pipeline,
    job: &SendJob,
    ctx: &tenancy::TenantCtx,
    number: &crate::entities::whatsapp_number::Model,
) -> crate::error::Result<()> {
    let provider = Provider::named(&job.provider);
    let tenant = ctx.schema_name().to_string();
    let count = |outcome: &str| {
        pipe.metrics.inc(
            "chatbot_sends_total",
            &[
                ("provider", provider.as_str()),
                ("tenant", &tenant),
                ("outcome", outcome),
            ],
        )
    };
    let access_token = tenancy::secret(&pipe.secret, number, SealedColumn::AccessToken);
    let auth_token = tenancy::secret(&pipe.secret, number, SealedColumn::AuthToken);
    let credentials_missing = match provider {
        Provider::Meta => access_token.is_none(),
        Provider::Twilio => number.account_sid.is_none() || auth_token.is_none(),
    };
    if credentials_missing {
        tracing::error!(business = %job.business, "no sending credentials for this number; replies dropped");
        return Ok(());
    }
    let phone = PhoneNumber::parse(&job.to)?;
    let open =
        |at: Option<chrono::DateTime<Utc>>| at.is_some_and(|at| Utc::now() - at < SERVICE_WINDOW);
    // The message being answered opened the window; else the parent's last one may have.
    let window_open = open(job.inbound_at)
        || open(transcript::last_inbound_at(&pipe.db, ctx, "whatsapp", phone.as_str()).await?);
    let template = if window_open {
        None
    } else {
        template_for(pipe, number, job.notice.as_ref())
    };
    for (i, reply) in job.replies.iter().enumerate() {
        if job.done.contains(&i) {
            continue;
        }
        let key = format!("sent:{}:{i}", job.reply_to);
        let outbound = match (window_open, &template) {
            (true, _) => Outbound::Reply(reply),
            (false, Some(t)) if i == 0 => Outbound::Template(t),
            (false, _) => {
                let reason = if template.is_some() {
                    "outside the 24-hour customer-service window; the template was sent instead"
                } else {
                    "outside the 24-hour customer-service window and no template is configured (whatsapp-numbers/ broadcast_template, or CHATBOT_WHATSAPP_TEMPLATE)"
                };
                if !take(pipe, ctx, job, &key, i).await? {
                    continue;
                }
                tracing::warn!(index = i, reason, "reply not sent");
                count("skipped_window");
                transcript::mark_reply(&pipe.db, ctx, "whatsapp", &job.reply_to, i, Err(reason))
                    .await?;
                continue;
            }
        };
        // One shared pace per business number, across every worker process.
        let slot = pipe
            .queue
            .reserve_send_slot(
                &format!("{}:{}", provider.as_str(), job.business),
                pipe.settings.whatsapp.send_rate_per_second,
            )
            .await?;
        let wait = slot - Utc::now().timestamp_micros();
        if wait > 0 {
            tokio::time::sleep(Duration::from_micros(wait as u64)).await;
        }
        // Claimed only now, just before it goes: a worker killed while waiting for its slot
        // has claimed nothing.
        if !take(pipe, ctx, job, &key, i).await? {
            continue;
        }
        let sent = match provider {
            Provider::Meta => {
                let mut body = match outbound {
                    Outbound::Reply(reply) => message_body(&job.to, reply),
                    Outbound::Template(t) => template_body(&job.to, t),
                };
                // Said back in the status callbacks: how a reply whose worker died before
                // recording its id is recognised.
                body["biz_opaque_callback_data"] = transcript::reply_tag(&job.reply_to, i).into();
                let token = access_token.as_ref().map_or("", |t| t.expose_secret());
                pipe.graph.send(&job.business, token, &body).await
            }
            Provider::Twilio => {
                let form = match outbound {
                    Outbound::Reply(reply) => twilio::message_form(reply),
                    Outbound::Template(t) => content_form(t),
                };
                let callback = pipe
                    .settings
                    .server
                    .public_url
                    .as_ref()
                    .map(|base| format!("{base}/api/v1/chatbot/webhooks/twilio/"));
                pipe.twilio
                    .send(
                        number.account_sid.as_deref().unwrap_or_default(),
                        auth_token.as_ref().map_or("", |t| t.expose_secret()),
                        &number.phone_number,
                        &job.to,
                        &form,
                        callback.as_deref(),
                    )
                    .await
            }
        };
        match sent {
            Ok(id) => {
                let template = matches!(outbound, Outbound::Template(_));
                tracing::info!(index = i, provider_id = %id, template, "reply sent");
                count(if template { "template" } else { "sent" });
                transcript::mark_reply(&pipe.db, ctx, "whatsapp", &job.reply_to, i, Ok(&id))
                    .await?;
            }
            Err(SendError::Retryable(reason)) => {
                // Not sent: the job is retried with backoff and sends it then.
                pipe.queue.release(&key).await?;
                tracing::warn!(index = i, %reason, "send failed; will retry");
                count("retry");
                return Err(crate::error::Error::Unavailable(reason));
            }
            Err(SendError::Permanent(reason)) => {
                tracing::error!(index = i, %reason, "reply refused; not retried");
                count("refused");
                transcript::mark_reply(&pipe.db, ctx, "whatsapp", &job.reply_to, i, Err(&reason))
                    .await?;
            }
        }
    }
    Ok(())
}

/// A Graph API template message (the only kind allowed outside the customer-service window),
/// its body parameters filled in order.
fn template_body(to: &str, t: &TemplateSend) -> serde_json::Value {
    let mut template = serde_json::json!({"name": t.name, "language": {"code": t.language}});
    if !t.params.is_empty() {
        let parameters: Vec<serde_json::Value> = t
            .params
            .iter()
            .map(|text| serde_json::json!({"type": "text", "text": text}))
            .collect();
        template["components"] = serde_json::json!([{"type": "body", "parameters": parameters}]);
    }
    serde_json::json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": template
    })
}

/// A Twilio content template message: the Content SID and its variables, `{"1": ..., ...}`.
fn content_form(t: &TemplateSend) -> Vec<(&'static str, String)> {
    let mut form = vec![("ContentSid", t.name.clone())];
    if !t.params.is_empty() {
        let variables: serde_json::Map<String, serde_json::Value> = t
            .params
            .iter()
            .enumerate()
            .map(|(i, text)| ((i + 1).to_string(), text.clone().into()))
            .collect();
        form.push((
            "ContentVariables",
            serde_json::Value::Object(variables).to_string(),
        ));
    }
    form
}

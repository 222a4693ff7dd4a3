//! Ingest: one inbound WhatsApp message through the engine, and its replies sent.

use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::deliver::SendJob;
use super::job::{Job, JobFuture};
use super::shared::Pipeline;
use crate::channels::inbound::{InboundMessage, Said};
use crate::conversation::{self, Inbound};
use crate::domain::PhoneNumber;
use crate::tenancy::{self, Provider, TenantCtx};

/// How long a message set aside waits for the earlier messages of its conversation (their
/// turns and replies) before going on without them (one whose job failed for good, or is stuck
/// in retries): twice the orphan timeout and a minute more, so that a predecessor whose worker
/// died is run again well before (and only while no message waits on the queue: see
/// `JobQueue::watch_parked`).
pub fn order_patience(orphan_timeout_secs: u64) -> Duration {
    Duration::from_secs(orphan_timeout_secs * 2 + 60)
}

/// An inbound message, as acknowledged to the provider, and its place in its conversation.
/// (Stored as one flat JSON object: the message's fields and `seq`.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestJob {
    /// The message.
    #[serde(flatten)]
    pub message: InboundMessage,
    /// Arrival number within its conversation (1, 2...; 0: unordered).
    #[serde(default)]
    pub seq: u64,
}

impl super::job::Sequenced for IngestJob {
    fn conversation(&self) -> String {
        IngestJob::conversation(self)
    }

    fn seq(&self) -> u64 {
        self.seq
    }

    fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }
}

impl IngestJob {
    /// The conversation this message belongs to: provider, business number and sender.
    pub fn conversation(&self) -> String {
        format!(
            "{}:{}:{}",
            self.message.provider, self.message.business, self.message.from
        )
    }

    /// The provider it came through.
    pub fn provider(&self) -> Provider {
        Provider::named(&self.message.provider)
    }

    /// A Meta text message saying `text`, received now, with no profile (the tests' delivery).
    pub fn meta_text(business: &str, from: &str, message_id: &str, text: &str) -> Self {
        Self {
            message: InboundMessage {
                provider: "meta".into(),
                business: business.into(),
                from: from.into(),
                message_id: message_id.into(),
                kind: "text".into(),
                said: Said {
                    text: text.into(),
                    choice: None,
                    unsupported: None,
                },
                user_id: None,
                profile_name: None,
                received_at: chrono::Utc::now(),
            },
            seq: 0,
        }
    }
}

impl Job for IngestJob {
    const QUEUE: &'static str = "ingest";
}

/// Worker entry point.
pub fn handle(job: IngestJob, pipe: Pipeline) -> JobFuture {
    let span = tracing::info_span!("ingest", message_id = %job.message.message_id, kind = %job.message.kind, seq = job.seq);
    super::shared::measured(
        pipe.clone(),
        IngestJob::QUEUE,
        tracing::Instrument::instrument(
            async move {
                // One parent's messages are handled, and answered, in arrival order by any
                // number of workers in any number of processes: a message whose conversation's
                // earlier turns are not complete (turn done, replies sent) is set aside, without
                // holding a worker, until the turn before it completes and stores it again.
                if pipe.queue.park(&job).await? {
                    tracing::debug!(
                        "earlier messages of this conversation are not through; set aside"
                    );
                    return Ok(());
                }
                let finished = match run(&pipe, &job).await? {
                    None => true,
                    // The replies go out at once, from this job: a parent waits for no second
                    // job. What cannot go out now (the provider is down, a retryable refusal)
                    // is queued as a send job, which retries it with backoff and completes the
                    // turn; what did go out is claimed, so it is not sent twice.
                    Some((replies, ctx, number)) => {
                        match super::deliver::deliver_as(&pipe, &replies, &ctx, &number).await {
                            Ok(()) => true,
                            Err(e) => {
                                tracing::warn!(error = %e, "replies not all sent; queued to retry");
                                pipe.queue.push_follow_up(replies).await?;
                                false
                            }
                        }
                    }
                };
                if finished {
                    pipe.queue
                        .conversation_finished(&job.conversation(), job.seq)
                        .await?;
                }
                let delay = (Utc::now() - job.message.received_at)
                    .to_std()
                    .unwrap_or_default();
                pipe.metrics.observe(
                    "chatbot_ingest_delay_seconds",
                    &[("provider", job.provider().as_str())],
                    delay,
                );
                Ok(())
            },
            span,
        ),
    )
}

/// What a turn leaves to send: its replies, the school whose log they go in, the number they
/// go from.
type ToSend = (SendJob, TenantCtx, crate::entities::whatsapp_number::Model);

/// One message through the engine; returns its replies to send, if any (the turn is complete
/// once they are out).
async fn run(pipe: &Pipeline, job: &IngestJob) -> crate::error::Result<Option<ToSend>> {
    let (owner, number) = match tenancy::by_business_number(
        &pipe.db,
        job.provider(),
        &job.message.business,
    )
    .await
    {
        Ok(found) => found,
        // The database is busy or away: the job is retried.
        Err(e) if e.is_transient() => return Err(e),
        Err(e) => {
            // Nobody to answer for: retrying will not help.
            tracing::warn!(error = %e, business = %job.message.business, "message for an unknown business number dropped");
            return Ok(None);
        }
    };
    let phone = match PhoneNumber::parse(&job.message.from) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "message from an unusable sender dropped");
            return Ok(None);
        }
    };
    let send = |school: Option<&TenantCtx>, replies| SendJob {
        provider: job.message.provider.clone(),
        business: job.message.business.clone(),
        to: phone.digits().to_string(),
        replies,
        reply_to: job.message.message_id.clone(),
        conversation: Some(job.conversation()),
        seq: job.seq,
        tenant: school.map(|s| s.schema_name().to_string()),
        inbound_at: Some(job.message.received_at),
        notice: None,
        done: Vec::new(),
    };
    // At-least-once jobs: a message already through the engine is not answered again, but
    // replies it logged and never sent (a crash in between) are sent now; those the log holds
    // as sent or refused are skipped (`SendJob::done`).
    // On a shared number the turn may have run in any of the sender's schools.
    for ctx in tenancy::schools_on(&pipe.db, &owner, &number, &phone).await? {
        if !conversation::transcript::seen(&pipe.db, &ctx, "whatsapp", &job.message.message_id)
            .await?
        {
            continue;
        }
        let unsent = conversation::transcript::unsent_replies(
            &pipe.db,
            &ctx,
            "whatsapp",
            &job.message.message_id,
        )
        .await?;
        return match unsent {
            Some((replies, done)) => {
                tracing::warn!(
                    count = replies.len() - done.len(),
                    "message already handled; sending its unsent replies"
                );
                let mut send = send(Some(&ctx), replies);
                send.done = done;
                Ok(Some((send, ctx, number)))
            }
            None => {
                tracing::info!("message already handled; not answered again");
                Ok(None)
            }
        };
    }
    let inbound = Inbound {
        text: job.message.said.text.clone(),
        choice: job.message.said.choice.clone(),
        unsupported: job.message.said.unsupported.clone(),
        provider_id: Some(job.message.message_id.clone()),
    };
    let now = Utc::now();
    let (school, replies) = if number.shared {
        // A platform number: the sender's phone picks the school (asking when it is several).
        let turn =
            super::sender::converse_as_sender(&pipe.turns, "whatsapp", &phone, &inbound, now)
                .await?;
        (turn.school, turn.replies)
    } else {
        let turn =
            super::converse::converse(&pipe.turns, &owner, "whatsapp", &phone, &inbound, now)
                .await?;
        (Some(owner.clone()), turn.outcome.replies)
    };
    if let Some(ctx) = &school {
        // The parent has written to this school: its contact may now be reached from a shared
        // number too.
        tenancy::contact_seen(&pipe.db, ctx, &phone, now).await?;
    }
    if replies.is_empty() {
        return Ok(None);
    }
    let send = send(school.as_ref(), replies);
    Ok(Some((send, school.unwrap_or(owner), number)))
}

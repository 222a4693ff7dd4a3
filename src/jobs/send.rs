//! Outbound: the replies to one inbound message, sent in order through the Graph API. Each
//! reply is claimed once (keyed by the inbound message id), so a job that runs again sends
//! only what was not sent.

use std::time::Duration;

use apalis::prelude::Data;
use serde::{Deserialize, Serialize};

use super::{Job, JobFuture};
use crate::channels::graph::{SendError, message_body};
use crate::conversation::{Reply, transcript};
use crate::state::AppState;
use crate::tenancy::{self, Provider};

/// Remember sent replies this long (longer than any retry of the job).
const SENT_TTL: Duration = Duration::from_secs(8 * 24 * 3600);

/// Replies to send to one user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendJob {
    /// Meta `phone_number_id` to send from.
    pub business: String,
    /// Recipient, digits.
    pub to: String,
    /// Replies, in order.
    pub replies: Vec<Reply>,
    /// The inbound message these answer.
    pub reply_to: String,
}

impl Job for SendJob {
    const QUEUE: &'static str = "send";
}

/// Worker entry point.
pub fn handle(job: SendJob, state: Data<AppState>) -> JobFuture {
    Box::pin(async move {
        let (ctx, number) =
            match tenancy::by_business_number(&state.db, Provider::Meta, &job.business).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e, "replies for an unknown business number dropped");
                    return Ok(());
                }
            };
        let Some(token) = number.access_token.clone() else {
            tracing::error!(business = %job.business, "no Graph API access token for this number; replies dropped");
            return Ok(());
        };
        for (i, reply) in job.replies.iter().enumerate() {
            let key = format!("sent:{}:{i}", job.reply_to);
            if !state.queue.claim_once(&key, SENT_TTL).await? {
                continue;
            }
            match state
                .graph
                .send(&job.business, &token, &message_body(&job.to, reply))
                .await
            {
                Ok(id) => {
                    tracing::info!(reply_to = %job.reply_to, index = i, wamid = %id, "reply sent");
                    transcript::mark_reply(&state.db, &ctx, "whatsapp", &job.reply_to, i, Ok(&id))
                        .await?;
                }
                Err(SendError::Retryable(reason)) => {
                    // Not sent: the job is retried with backoff and sends it then.
                    state.queue.release(&key).await?;
                    tracing::warn!(reply_to = %job.reply_to, index = i, %reason, "send failed; will retry");
                    return Err(reason.into());
                }
                Err(SendError::Permanent(reason)) => {
                    tracing::error!(reply_to = %job.reply_to, index = i, %reason, "reply refused; not retried");
                    transcript::mark_reply(
                        &state.db,
                        &ctx,
                        "whatsapp",
                        &job.reply_to,
                        i,
                        Err(&reason),
                    )
                    .await?;
                }
            }
        }
        Ok(())
    })
}

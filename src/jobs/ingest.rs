//! Ingest: one inbound WhatsApp message through the engine; its replies are queued for sending.

use apalis::prelude::Data;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::send::SendJob;
use super::{Job, JobFuture};
use crate::channels::whatsapp_cloud::Said;
use crate::conversation::{self, Inbound};
use crate::domain::PhoneNumber;
use crate::state::AppState;
use crate::tenancy::{self, Provider};

/// An inbound message, as acknowledged to the provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestJob {
    /// `meta`.
    pub provider: String,
    /// The business number written to (Meta `phone_number_id`).
    pub business: String,
    /// Sender, digits.
    pub from: String,
    /// Provider message id.
    pub message_id: String,
    /// Message type.
    pub kind: String,
    /// What it says.
    pub said: Said,
    /// Business-scoped user id, when sent.
    pub user_id: Option<String>,
    /// Sender's profile name.
    pub profile_name: Option<String>,
    /// When the webhook accepted it.
    pub received_at: DateTime<Utc>,
}

impl Job for IngestJob {
    const QUEUE: &'static str = "ingest";
}

/// Worker entry point.
pub fn handle(job: IngestJob, state: Data<AppState>) -> JobFuture {
    let span = tracing::info_span!("ingest", message_id = %job.message_id, kind = %job.kind);
    Box::pin(tracing::Instrument::instrument(
        async move {
            let (ctx, _) = match tenancy::by_business_number(
                &state.db,
                Provider::Meta,
                &job.business,
            )
            .await
            {
                Ok(found) => found,
                Err(e) => {
                    // Nobody to answer for: retrying will not help.
                    tracing::warn!(error = %e, business = %job.business, "message for an unknown business number dropped");
                    return Ok(());
                }
            };
            let phone = match PhoneNumber::parse(&job.from) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "message from an unusable sender dropped");
                    return Ok(());
                }
            };
            // At-least-once jobs: a message already through the engine is not answered again,
            // but replies it logged and never queued (a crash in between) are queued now; the
            // sender's per-reply claims skip any that did go out.
            if conversation::transcript::seen(&state.db, &ctx, "whatsapp", &job.message_id).await? {
                let unsent = conversation::transcript::unsent_replies(
                    &state.db,
                    &ctx,
                    "whatsapp",
                    &job.message_id,
                )
                .await?;
                if let Some(replies) = unsent {
                    tracing::warn!(
                        count = replies.len(),
                        "message already handled; queueing its unsent replies"
                    );
                    state
                        .queue
                        .push(SendJob {
                            business: job.business.clone(),
                            to: phone.digits().to_string(),
                            replies,
                            reply_to: job.message_id.clone(),
                        })
                        .await?;
                } else {
                    tracing::info!("message already handled; not answered again");
                }
                return Ok(());
            }
            let inbound = Inbound {
                text: job.said.text.clone(),
                choice: job.said.choice.clone(),
                unsupported: job.said.unsupported.clone(),
                provider_id: Some(job.message_id.clone()),
            };
            let outcome =
                conversation::converse(&state, &ctx, "whatsapp", &phone, &inbound, Utc::now())
                    .await?;
            if !outcome.replies.is_empty() {
                state
                    .queue
                    .push(SendJob {
                        business: job.business.clone(),
                        to: phone.digits().to_string(),
                        replies: outcome.replies,
                        reply_to: job.message_id.clone(),
                    })
                    .await?;
            }
            Ok(())
        },
        span,
    ))
}

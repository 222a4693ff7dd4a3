//! A member of staff answers a parent: the reply is logged like the bot's and goes out through
//! the deliver step (paced, retried, claimed once, a template outside WhatsApp's 24-hour
//! window), so its delivery status shows in the transcript.

use crate::error::ErrorCode;
use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, Set};

use super::deliver::SendJob;
use super::shared::Pipeline;
use crate::conversation::{Reply, handoff, transcript};
use crate::domain::PhoneNumber;
use crate::entities::message_log;
use crate::error::{Error, Result};
use crate::tenancy::{self, Provider, TenantCtx};

/// The longest staff reply, in characters (WhatsApp's text limit).
pub const MAX_REPLY: usize = 4096;

/// Send `reply` from staff (`who`) to the parent of conversation `id`, which they have taken
/// over. Returns the reply's row in the transcript (`queued` until the provider takes it).
pub async fn reply(
    pipe: &Pipeline,
    ctx: &TenantCtx,
    id: i64,
    who: &str,
    reply: Reply,
    now: DateTime<Utc>,
) -> Result<message_log::Model> {
    let c = handoff::find(&pipe.db, ctx, id).await?;
    if c.handoff != handoff::STAFF {
        return Err(Error::Conflict(format!(
            "conversation {id} is not taken over (it is `{}`): take it over first",
            c.handoff
        )));
    }
    if c.channel != "whatsapp" {
        return Err(Error::invalid(
            ErrorCode::NotWhatsapp,
            format!(
                "conversation {id} is on `{}`: staff answer WhatsApp conversations",
                c.channel
            ),
        ));
    }
    let phone = PhoneNumber::parse(&c.user_id)?;
    let Some((provider, number)) = tenancy::sending_number(&pipe.db, ctx).await? else {
        return Err(Error::invalid(
            ErrorCode::NoSendingNumber,
            "this school has no WhatsApp number with sending credentials",
        ));
    };
    let business = match provider {
        Provider::Meta => number.phone_number_id.clone().unwrap_or_default(),
        Provider::Twilio => number.phone_number.clone(),
    };
    let detail = reply.to_plain().chars().take(200).collect();
    let action = handoff::action(ctx, &c.channel, &c.user_id, "reply", who, Some(detail), now)
        .insert(&pipe.db)
        .await?;
    // The key the sender claims the reply under, and the transcript finds it by.
    let key = format!("staff:{}", action.id);
    let mut row = transcript::outbound(ctx, &c.channel, &c.user_id, Some(key.clone()), &reply, now);
    row.chat_session_id = Set(Some(c.id));
    let row = row.insert(&pipe.db).await?;
    pipe.queue
        .push(SendJob {
            provider: provider.as_str().to_string(),
            business,
            to: phone.digits().to_string(),
            replies: vec![reply],
            reply_to: key,
            conversation: None,
            seq: 0,
            tenant: Some(ctx.schema_name().to_string()),
            inbound_at: None,
            notice: None,
            done: Vec::new(),
        })
        .await?;
    tracing::info!(
        tenant = ctx.schema_name(),
        conversation = id,
        who,
        "staff reply queued"
    );
    Ok(row)
}

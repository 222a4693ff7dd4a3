//! What changed in a school's conversations since the last look, for a staff inbox that
//! refreshes itself (`conversations/events`): new messages either way, their delivery
//! statuses as they move, and conversations moving between the bot and staff.
//!
//! Read from the database (the message log and the record of staff actions), so it sees what
//! every process wrote. Rows are read again for a short while behind the newest one seen
//! ([`LAG`]), because transactions commit out of order; what was already told is not told
//! again.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entities::{chat_session, conversation_action, message_log};
use crate::error::Result;
use crate::tenancy::TenantCtx;

/// How far behind the newest row seen a look reads again (a write that committed late).
pub const LAG: Duration = Duration::seconds(5);
/// Most rows of each kind told per look (the rest at the next).
const BATCH: u64 = 500;
/// Longest preview of a message.
const PREVIEW_CHARS: usize = 160;

/// A change in a school's conversations.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A message, new or with a new delivery status.
    Message(Box<message_log::Model>),
    /// A conversation moved (`escalated`, `takeover`, `release`) or staff answered it
    /// (`reply`); `conversation` is its id when it still exists.
    Action {
        /// The record.
        action: conversation_action::Model,
        /// The conversation's id.
        conversation: Option<i64>,
    },
}

impl Change {
    /// The preview of a message's body (PINs masked).
    pub fn preview(body: &str) -> String {
        super::transcript::preview(body, PREVIEW_CHARS)
    }
}

/// Where a reader of one school's changes is.
#[derive(Debug)]
pub struct Cursor {
    /// The newest `updated_at` of a message seen.
    messages: DateTime<Utc>,
    /// The newest `created_at` of an action seen.
    actions: DateTime<Utc>,
    /// What was told within [`LAG`] of them: message id and status, action id.
    told_messages: HashMap<(i64, String), DateTime<Utc>>,
    told_actions: HashMap<i64, DateTime<Utc>>,
}

impl Cursor {
    /// A reader that starts at `now`: only what changes from now on.
    pub fn starting(now: DateTime<Utc>) -> Self {
        Self {
            messages: now,
            actions: now,
            told_messages: HashMap::new(),
            told_actions: HashMap::new(),
        }
    }

    /// The changes in school `ctx`'s conversations since the last look, oldest first.
    pub async fn next(
        &mut self,
        db: &impl ConnectionTrait,
        ctx: &TenantCtx,
    ) -> Result<Vec<Change>> {
        let mut out = Vec::new();
        let rows = ctx
            .find::<message_log::Entity>()
            .filter(message_log::Column::UpdatedAt.gt(self.messages - LAG))
            .order_by_asc(message_log::Column::UpdatedAt)
            .order_by_asc(message_log::Column::Id)
            .limit(BATCH)
            .all(db)
            .await?;
        for row in rows {
            self.messages = self.messages.max(row.updated_at);
            let key = (row.id, row.status.clone());
            if self.told_messages.insert(key, row.updated_at).is_none() {
                out.push(Change::Message(Box::new(row)));
            }
        }
        let floor = self.messages - LAG;
        self.told_messages.retain(|_, at| *at > floor);

        let rows = ctx
            .find::<conversation_action::Entity>()
            .filter(conversation_action::Column::CreatedAt.gt(self.actions - LAG))
            .order_by_asc(conversation_action::Column::CreatedAt)
            .order_by_asc(conversation_action::Column::Id)
            .limit(BATCH)
            .all(db)
            .await?;
        for action in rows {
            self.actions = self.actions.max(action.created_at);
            if self
                .told_actions
                .insert(action.id, action.created_at)
                .is_some()
            {
                continue;
            }
            let conversation = ctx
                .find::<chat_session::Entity>()
                .filter(chat_session::Column::Channel.eq(action.channel.as_str()))
                .filter(chat_session::Column::UserId.eq(action.user_id.as_str()))
                .one(db)
                .await?
                .map(|c| c.id);
            out.push(Change::Action {
                action,
                conversation,
            });
        }
        let floor = self.actions - LAG;
        self.told_actions.retain(|_, at| *at > floor);
        Ok(out)
    }
}

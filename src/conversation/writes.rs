//! Group commit of turns: the session saves and transcript rows of turns that finish at about
//! the same time go to the database in one transaction.
//!
//! A turn hands its writes to [`TurnWriter::write`] and waits. Whoever takes the writer's gate
//! takes every write waiting at that moment and commits them together (one `BEGIN`, a session
//! statement each, the transcript rows of all of them in as few inserts as the database's
//! bind limit allows, one `COMMIT`); turns that arrive meanwhile wait for the next holder.
//! Alone, a turn commits at once; under load, commits grow instead of queueing. On SQLite,
//! where there is one writer at a time, the gate also keeps the turns of a process out of
//! SQLite's busy handler, which sleeps.
//!
//! A batch that fails is written again one turn at a time, so that one bad write fails only
//! its own turn. The commit runs in a task of its own: a caller that goes away (a client that
//! hung up) does not cut short the other turns' writes.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use sea_orm::{DatabaseConnection, EntityTrait, Set, TransactionTrait};
use tokio::sync::oneshot;

use super::engine::Session;
use super::handoff::Handoff;
use super::store::{self, SessionKey};
use crate::entities::message_log;
use crate::error::{Error, Result};
use crate::tenancy::TenantCtx;

/// Transcript rows per insert statement: 13 values each, under SQLite's oldest bind limit
/// (999).
const ROWS_PER_INSERT: usize = 70;

/// What one turn writes.
pub struct TurnWrite {
    /// The school.
    pub ctx: TenantCtx,
    /// The channel (`whatsapp`, `api`...).
    pub channel: String,
    /// The user on it (a phone number).
    pub user: String,
    /// The id of the session's row, when it has one.
    pub row: Option<i64>,
    /// The session after the turn.
    pub session: Session,
    /// How long it lives idle.
    pub idle: Duration,
    /// The turn's time.
    pub now: DateTime<Utc>,
    /// The turn's transcript rows; each is given the session's row id.
    pub log: Vec<message_log::ActiveModel>,
    /// The conversation goes to staff (or back), recorded as this action.
    pub handoff: Option<Handoff>,
}

type Waiting = (TurnWrite, oneshot::Sender<Result<()>>);

/// Where turns' writes wait to be committed together; one per process.
#[derive(Default, Debug)]
pub struct TurnWriter {
    waiting: Mutex<Vec<Waiting>>,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for TurnWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnWrite")
            .field("tenant", &self.ctx.id())
            .field("channel", &self.channel)
            .field("rows", &self.log.len())
            .finish_non_exhaustive()
    }
}

impl TurnWriter {
    /// Commit `write`, with whatever other turns' writes are waiting; returns once it is
    /// committed (or has failed).
    pub async fn write(&self, db: &DatabaseConnection, write: TurnWrite) -> Result<()> {
        let (done, result) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((write, done));
        let gate = self.gate.clone().lock_owned().await;
        let batch = std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|p| p.into_inner()));
        if !batch.is_empty() {
            let db = db.clone();
            // Ours may be in it, or may have gone with an earlier holder's batch.
            let commit = tokio::spawn(async move {
                let _gate = gate;
                commit(&db, batch).await;
            });
            let _ = commit.await;
        }
        result.await.map_err(|_| {
            Error::Internal(anyhow::anyhow!(
                "the turn's write was dropped before it was committed"
            ))
        })?
    }
}

/// Commit `batch` in one transaction, or, if that fails, each write in its own.
async fn commit(db: &DatabaseConnection, batch: Vec<Waiting>) {
    let (writes, senders): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    match write_all(db, &writes).await {
        Ok(()) => {
            for done in senders {
                let _ = done.send(Ok(()));
            }
        }
        Err(e) if writes.len() == 1 => {
            let _ = senders.into_iter().next().map(|done| done.send(Err(e)));
        }
        Err(e) => {
            tracing::warn!(error = %e, turns = writes.len(), "a group commit failed; writing its turns one by one");
            for (write, done) in writes.iter().zip(senders) {
                let _ = done.send(write_all(db, std::slice::from_ref(write)).await);
            }
        }
    }
}

async fn write_all(db: &DatabaseConnection, writes: &[TurnWrite]) -> Result<()> {
    let txn = db.begin().await?;
    let mut rows = Vec::with_capacity(writes.iter().map(|w| w.log.len()).sum());
    for w in writes {
        let key = SessionKey {
            channel: &w.channel,
            user: &w.user,
        };
        let id = store::save(&txn, &w.ctx, key, w.row, &w.session, w.idle, w.now).await?;
        if let Some(h) = &w.handoff {
            super::handoff::set(&txn, &w.ctx, id, h, w.now).await?;
        }
        rows.extend(w.log.iter().cloned().map(|mut row| {
            row.chat_session_id = Set(Some(id));
            row
        }));
    }
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        message_log::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

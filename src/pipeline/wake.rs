//! In-process wake-ups: a worker of this process starts on a job this process stored as soon as
//! it is stored, instead of at its next poll (a message set aside until its conversation's
//! earlier turn is through is stored again by the turn that finishes, so it is woken the same
//! way). Other processes' jobs are heard through the coordination store when it can tell
//! (Redis pub/sub, see `coord::redis`); the poll stays as the safety net.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// A stream that yields once after each wake-up of one queue.
pub type WakeStream = std::pin::Pin<Box<dyn futures::Stream<Item = ()> + Send + Sync>>;

/// This process' wake-ups, one per queue.
#[derive(Default, Debug)]
pub struct Wakeups {
    queues: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Wakeups {
    /// The wake-up of queue `name`.
    fn queue(&self, name: &str) -> Arc<Notify> {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Tell `name`'s worker in this process that a job is waiting (a wake-up given while it is
    /// busy is kept for when it next looks).
    pub fn job_stored(&self, name: &str) {
        self.queue(name).notify_one();
    }

    /// A wake-up from another process: a job of queue `name` is waiting. Queues without a
    /// worker here are not woken.
    pub fn heard_job(&self, name: &str) {
        let queue = self
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned();
        if let Some(queue) = queue {
            queue.notify_one();
        }
    }

    /// A stream that yields once after each wake-up of queue `name` (several wake-ups between
    /// two looks make one).
    pub fn stream(&self, name: &str) -> WakeStream {
        let notify = self.queue(name);
        Box::pin(futures::stream::unfold(notify, |notify| async move {
            notify.notified().await;
            Some(((), notify))
        }))
    }
}

//! Coordination between workers and processes, beside the queue: a delivery's arrival number
//! within its conversation, claims that let a piece of work happen once, how far each
//! conversation's turns are through, evenly spaced send slots per business number, and the
//! wake-ups other processes give. One implementation per engine: the embedded queue's file
//! (`sqlite`) and Redis (`redis`).

pub mod redis;
pub mod sqlite;

use std::time::Duration;

use futures::future::BoxFuture;

pub use super::job::Answer;
use super::wake::Wakeups;

/// Conversation counters and rate-limit slots outlive any retry of their jobs.
pub const CONVERSATION_TTL: Duration = Duration::from_secs(8 * 24 * 3600);

/// What [`Coord::arrive`] found of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// Its number within its conversation (1, 2...): given now, or when it first arrived.
    pub seq: u64,
    /// Whether it is its key's first arrival.
    pub new: bool,
}

/// Deliveries to number: each one's once key and its conversation's key.
pub type Keys = Vec<(String, String)>;

/// One coordination store.
pub trait Coord: Send + Sync + 'static {
    /// For each delivery (its once key, its conversation key), in order: a key not seen within
    /// `ttl` takes its conversation's next number and keeps it; a key seen before gets the
    /// number it took then (so its job, stored again, keeps its place). One step for the batch.
    fn arrive(&self, deliveries: Keys, ttl: Duration) -> Answer<'_, Vec<Arrival>>;
    /// Claim `key`: `true` the first time within `ttl` (or once an earlier claim expired),
    /// `false` while it holds; atomic.
    fn claim(&self, key: String, ttl: Duration) -> Answer<'_, bool>;
    /// Undo a claim.
    fn release(&self, key: String) -> Answer<'_, ()>;
    /// The highest number of `conversation` whose turn is complete.
    fn done(&self, conversation: String) -> Answer<'_, u64>;
    /// Record that turn `seq` of `conversation` is complete (never moves backwards), and tell
    /// the other processes.
    fn finish(&self, conversation: String, seq: u64) -> Answer<'_, ()>;
    /// Reserve the next slot of `key`, `interval` microseconds after the one before and not
    /// before `now` (microseconds since the Unix epoch); returns the slot.
    fn reserve(&self, key: String, now: i64, interval: i64) -> Answer<'_, i64>;
    /// Tell the other processes' workers that jobs of `queue` are waiting (where they can
    /// hear: a lost wake-up costs a poll interval, not a job).
    fn announce<'a>(&'a self, _queue: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
    /// Hear the other processes' wake-ups from now on (once per process), until `wakeups` is
    /// gone.
    fn listen(&self, _wakeups: std::sync::Weak<Wakeups>) {}
}

//! Coordination between workers and processes, beside the queue: a delivery's arrival number
//! within its conversation, claims that let a piece of work happen once, how far each
//! conversation's turns are through and the messages set aside until their turn, evenly spaced
//! send slots per business number, and the wake-ups other processes give. One implementation per engine: the embedded queue's file
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

/// A job set aside until its conversation's earlier turns are complete (so that it waits
/// without holding a worker): stored again, on its queue, when its turn comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// The conversation's key.
    pub conversation: String,
    /// The job's number in it.
    pub seq: u64,
    /// The queue to store it on again (not namespaced).
    pub queue: String,
    /// The job.
    pub json: String,
}

/// Which jobs set aside [`Coord::overdue`] takes, at most `limit`: those whose turn came more
/// than `grace` ago without being stored (the process that should have stored them died), and
/// those that waited `patience` (their predecessor is lost or failed for good: the turns before
/// them are given up on, recorded as complete). Each is left alone by other callers for
/// `grace`.
#[derive(Debug, Clone, Copy)]
pub struct Overdue {
    pub grace: Duration,
    pub patience: Duration,
    pub limit: usize,
}

/// What [`Coord::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Claimed now, by the caller.
    Taken,
    /// Claimed by someone else, for this much longer.
    Held(Duration),
}

/// Deliveries to number: each one's once key and its conversation's key.
pub type Keys = [(String, String)];

/// One coordination store.
pub trait Coord: Send + Sync + 'static {
    /// For each delivery (its once key, its conversation key), in order: a key not seen within
    /// `ttl` takes its conversation's next number and keeps it; a key seen before gets the
    /// number it took then (so its job, stored again, keeps its place). One step for the batch.
    fn arrive<'a>(&'a self, deliveries: &'a Keys, ttl: Duration) -> Answer<'a, Vec<Arrival>>;
    /// Claim `key` for `ttl`: taken the first time (or once an earlier claim expired); held,
    /// with the time it is still held for, while an earlier claim lasts. Atomic.
    fn claim(&self, key: String, ttl: Duration) -> Answer<'_, Claim>;
    /// Undo a claim.
    fn release(&self, key: String) -> Answer<'_, ()>;
    /// The highest number of `conversation` whose turn is complete.
    fn done(&self, conversation: String) -> Answer<'_, u64>;
    /// Set `job` aside until turn `job.seq - 1` of its conversation is complete, in one atomic
    /// step with looking: `false` (nothing stored) when it already is.
    fn park(&self, job: Parked) -> Answer<'_, bool>;
    /// Record that turn `seq` of `conversation` is complete (never moves backwards). When that
    /// moved it, returns the job set aside for the next turn, if any: it stays set aside (and
    /// is left alone by [`Coord::overdue`] for a while) until [`Coord::unpark`] says it was
    /// stored again.
    fn finish(&self, conversation: String, seq: u64) -> Answer<'_, Option<Parked>>;
    /// Forget a job set aside, once it was stored again.
    fn unpark(&self, conversation: String, seq: u64) -> Answer<'_, ()>;
    /// Jobs set aside that should be stored again now (see [`Overdue`]).
    fn overdue(&self, look: Overdue) -> Answer<'_, Vec<Parked>>;
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

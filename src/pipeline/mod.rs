//! The life of a message, and the background jobs it runs on (apalis: Redis when `REDIS_URL`
//! is set, an embedded SQLite queue otherwise).
//!
//! 1. **Accept** (`accept`): a webhook hands over a verified, provider-neutral message
//!    (`channels::inbound`). Deliveries arriving together are numbered within their
//!    conversation (provider, business number, sender) in one step, a provider id seen before
//!    keeping its number, then stored as `ingest` jobs in one step, the provider id being the
//!    job's idempotency key; only then does the webhook answer 200 (503 when they could not
//!    be stored: the provider's retry keeps its number and is stored once).
//! 2. **Turn** (`turn`): a worker takes the job; if the conversation's earlier messages are not
//!    through, the job is set aside (not holding a worker) until the turn before it completes
//!    and stores it again. Otherwise it finds the school, runs the conversation engine, logs
//!    the turn (a message already logged is not run again).
//! 3. **Deliver** (`deliver`): the turn's replies go out from the same job, each claimed once,
//!    paced per business number; what cannot go out now becomes a `send` job that retries it.
//!    The turn is then complete, and the parent's next message may go.
//!
//! Beside it: `work` (imports, broadcasts, report cards), `cleanup` (expired sessions, old
//! report cards). Every job type implements [`Job`] with an explicit, stable queue name (apalis
//! would otherwise name queues after the Rust type path, and renaming a struct would orphan
//! queued jobs). `queue` holds the two engines behind one trait, `coord` what the pipeline
//! keeps beside them (arrival numbers, claims, turn counters, send slots, wake-ups between
//! processes) behind another; `handle` is what the rest of the service uses.

pub mod accept;
pub mod cleanup;
pub mod converse;
mod coord;
pub mod deliver;
mod handle;
mod job;
mod queue;
pub mod sender;
mod shared;
pub mod staff;
pub mod turn;
mod wake;
pub mod work;
mod workers;

pub use converse::{Turn, Turns, converse, converse_as};
pub use handle::{Claim, DEDUPE_TTL, JobQueue};
pub use job::{Job, JobError, JobFuture, JobId, Sequenced};
pub use sender::{SenderTurn, converse_as_sender};
pub use shared::Pipeline;
pub use workers::register_all;

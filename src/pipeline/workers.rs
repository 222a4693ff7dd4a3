//! The service's workers: one per queue, registered on an apalis monitor.

use super::job::{Job, JobFuture};
use super::shared::Pipeline;
use super::{cleanup, deliver, turn, work};

/// Register every worker of the service on `monitor`.
pub fn register_all(
    monitor: apalis::prelude::Monitor,
    pipe: &Pipeline,
    generation: u32,
) -> apalis::prelude::Monitor {
    // Each conversation is handled one message at a time and in order whatever the
    // concurrency (see `turn::handle`); different parents are handled side by side.
    let concurrency = pipe.settings.queue.ingest_concurrency;
    // Woken by other processes' jobs too (Redis), not only at the next poll.
    pipe.queue.listen();
    pipe.queue
        .watch_parked::<turn::IngestJob>(turn::order_patience(
            pipe.settings.queue.orphan_timeout_secs,
        ));
    let monitor = add(monitor, pipe, cleanup::handle, 1, generation);
    let monitor = add(monitor, pipe, turn::handle, concurrency, generation);
    let monitor = add(monitor, pipe, deliver::handle, concurrency, generation);
    add(monitor, pipe, work::handle, 2, generation)
}

/// Add the worker of `J`'s queue, running `handle` on each job, `concurrency` at once.
fn add<J: Job>(
    monitor: apalis::prelude::Monitor,
    pipe: &Pipeline,
    handle: fn(J, Pipeline) -> JobFuture,
    concurrency: usize,
    generation: u32,
) -> apalis::prelude::Monitor {
    let s = pipe.clone();
    pipe.queue.register(
        monitor,
        move |job| handle(job, s.clone()),
        concurrency,
        generation,
    )
}

//! Group commit for webhook acknowledgements. Each accepted delivery must be claimed, numbered
//! and stored before its 200; done one by one that is two writes per request, on one SQLite
//! connection or two Redis round trips. Requests instead hand their delivery to one task that
//! takes whatever has arrived (up to [`MAX_BATCH`]) and accepts it in one step
//! ([`JobQueue::accept_leased`]); each request gets its own answer. A request makes its
//! delivery ready for the queue in its own task ([`JobQueue::ready`]), so the writer, the one
//! serial step, only numbers and stores. Nothing waits for a batch to fill: a lone request goes
//! at once, and under load the batch is what arrived while the previous one was being written.
//! On the embedded queue the writer keeps its connection from one batch to the next while more
//! are waiting (a [`Lease`], at most [`MAX_LEASE`] at a time).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::ingest::IngestJob;
use super::{JobQueue, Lease, Ready};
use crate::error::{Error, Result};

/// Remember a provider's message id this long: longer than Meta's retries (up to 7 days).
pub const DEDUPE_TTL: Duration = Duration::from_secs(8 * 24 * 3600);
/// Deliveries accepted in one step at most.
pub const MAX_BATCH: usize = 256;
/// The longest the intake keeps the embedded queue's connection while batches keep coming
/// (see [`Lease`]); the workers wait at most about this long for it.
const MAX_LEASE: Duration = Duration::from_millis(20);
/// Deliveries waiting for the writer at most; beyond this a request waits for room.
const BACKLOG: usize = 4096;

type Answer = oneshot::Sender<Result<Option<u64>>>;
type Delivery = (Ready<IngestJob>, Answer);

/// The intake of verified deliveries; cheap to clone.
#[derive(Clone, Debug)]
pub struct Intake {
    queue: JobQueue,
    tx: mpsc::Sender<Delivery>,
}

impl Intake {
    /// Start the writer task on the current runtime.
    pub fn start(queue: JobQueue) -> Self {
        let (tx, mut rx) = mpsc::channel::<Delivery>(BACKLOG);
        let writer = queue.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            let mut lease = Lease::default();
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let mut answers = Vec::with_capacity(batch.len());
                let deliveries = batch
                    .drain(..)
                    .map(|(ready, answer)| {
                        answers.push(answer);
                        ready
                    })
                    .collect();
                let size = answers.len();
                match writer
                    .accept_leased(&mut lease, deliveries, DEDUPE_TTL)
                    .await
                {
                    Ok(seqs) => {
                        for (answer, seq) in answers.into_iter().zip(seqs) {
                            let _ = answer.send(Ok(seq));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, size, "deliveries not accepted; answering 503");
                        let message = match e {
                            Error::Unavailable(m) => m,
                            other => other.to_string(),
                        };
                        for answer in answers {
                            let _ = answer.send(Err(Error::Unavailable(message.clone())));
                        }
                    }
                }
                // The next batch is waiting: keep the connection for it, unless it has been
                // held a while and others may be waiting for it.
                if rx.is_empty() || lease.held_for() >= MAX_LEASE {
                    lease.release();
                }
            }
        });
        Self { queue, tx }
    }

    /// Accept one delivery (claim `key`, number and store `job`): `Some(seq)` when it is new,
    /// `None` for a repeat, an error when it was not stored.
    pub async fn accept(&self, key: String, job: IngestJob) -> Result<Option<u64>> {
        let stopped = || Error::Unavailable("the intake is shutting down".into());
        // Made ready here, in the request's task: the writer's time is the bottleneck.
        let ready = self.queue.ready(&key, job)?;
        let (answer, answered) = oneshot::channel();
        self.tx.send((ready, answer)).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

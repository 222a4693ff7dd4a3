//! Group commit for webhook acknowledgements. Each accepted delivery must be claimed, numbered
//! and stored before its 200; done one by one that is two writes per request, on one SQLite
//! connection or two Redis round trips. Requests instead hand their delivery to one writer that
//! takes whatever has arrived (up to [`MAX_BATCH`]) and accepts it in one step
//! ([`JobQueue::accept_leased`]); each request gets its own answer. A request makes its
//! delivery ready for the queue in its own task ([`JobQueue::ready`]), so the writer, the one
//! serial step, only numbers and stores. Nothing waits for a batch to fill: a lone request goes
//! at once, and under load the batch is what arrived while the previous one was being written.
//! On the embedded queue the writer runs on a thread of its own ([`run_apart`]), writes each
//! batch on a connection of its own through SQLite's C API, and keeps its hold on the queue's
//! pool connection from one batch to the next while more are waiting (a [`Lease`], at most
//! [`MAX_LEASE`] at a time).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::ingest::IngestJob;
use super::{JobQueue, Lease, QueueBackendKind, Ready};
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
    /// Start the writer: for the embedded queue on a thread of its own (see [`run_apart`]),
    /// for Redis on the current runtime. It stops when the last clone of the intake is dropped.
    pub fn start(queue: JobQueue) -> Self {
        let (tx, mut rx) = mpsc::channel::<Delivery>(BACKLOG);
        let writer = queue.clone();
        let apart = queue.kind() == QueueBackendKind::Sqlite;
        let work = async move {
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
        };
        if apart {
            run_apart(work);
        } else {
            tokio::spawn(work);
        }
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

/// Run the embedded queue's writer on a thread of its own, with a single-threaded runtime:
/// it writes each batch itself, through SQLite's C API (see `jobs::direct`), which blocks the
/// thread for the batch's statements and its sync. On the web runtime it would hold up one
/// of its workers for that long; when it was still a hand-off to sqlx's connection thread,
/// the writer, woken with the batch's result, waited in the run queue behind the very
/// requests it held up. Not for Redis: its connection is driven by a task on the web runtime,
/// so a writer apart adds a hand-off instead of saving one (measured slower). On the current
/// runtime if the thread cannot be started (each batch then blocks a web worker while it is
/// written).
fn run_apart(writer: impl Future<Output = ()> + Send + 'static) {
    let slot = Arc::new(Mutex::new(Some(writer)));
    let theirs = slot.clone();
    let started = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|runtime| {
            std::thread::Builder::new()
                .name("chatbot-intake".into())
                .spawn(move || {
                    let writer = theirs.lock().unwrap_or_else(|p| p.into_inner()).take();
                    if let Some(writer) = writer {
                        runtime.block_on(writer);
                    }
                })
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "intake thread not started; the writer shares the web runtime");
        if let Some(writer) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
            tokio::spawn(writer);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Threads of this process with the writer's name.
    fn writer_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .flatten()
                    .filter(|t| {
                        std::fs::read_to_string(t.path().join("comm"))
                            .is_ok_and(|name| name.trim() == "chatbot-intake")
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    fn job(message_id: &str) -> IngestJob {
        IngestJob::meta_text("P1", "234801", message_id, "hi")
    }

    /// The writer answers while the runtime that started it is blocked (it has a thread of its
    /// own), and that thread ends with the last intake. The only test in this binary that
    /// starts an intake, so the thread count is this test's.
    #[tokio::test]
    async fn the_writer_runs_apart_and_stops_with_the_last_intake() {
        let (_dir, queue) = super::super::queue::temp_queue().await;
        let intake = Intake::start(queue);
        // A new thread takes its name as it starts.
        wait_until(
            || writer_threads() == 1,
            "the writer has no thread of its own",
        );
        assert_eq!(
            intake.accept("meta:m0".into(), job("m0")).await.unwrap(),
            Some(1)
        );
        // Block this (single-threaded) runtime until the next delivery is answered: a writer
        // on this runtime could never answer.
        let (tx, rx) = std::sync::mpsc::channel();
        let blocked = intake.clone();
        std::thread::spawn(move || {
            let _ = tx.send(futures::executor::block_on(
                blocked.accept("meta:m1".into(), job("m1")),
            ));
        });
        let answer = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("answered while the starting runtime is blocked");
        assert_eq!(answer.unwrap(), Some(2));
        drop(intake);
        wait_until(
            || writer_threads() == 0,
            "the writer thread outlived its intake",
        );
    }

    fn wait_until(done: impl Fn() -> bool, failure: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{failure}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

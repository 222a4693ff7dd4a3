//! Group commit for webhook acknowledgements. Each accepted delivery must be numbered and
//! stored before its 200; done one by one that is two steps per request. Requests instead hand
//! their delivery to one writer that takes whatever has arrived (up to [`MAX_BATCH`]) and
//! accepts it in one step ([`JobQueue::accept_many`]); each request gets its own answer.
//! Nothing waits for a batch to fill: a lone request goes at once, and under load the batch is
//! what arrived while the previous one was being written.

use tokio::sync::{mpsc, oneshot};

use super::handle::{DEDUPE_TTL, JobQueue};
use super::turn::IngestJob;
use crate::channels::inbound::{InboundMessage, Sink};
use crate::error::{Error, Result};

/// Deliveries accepted in one step at most.
pub const MAX_BATCH: usize = 256;
/// Deliveries waiting for the writer at most; beyond this a request waits for room.
const BACKLOG: usize = 4096;

type Answer = oneshot::Sender<Result<Option<u64>>>;
type Delivery = ((String, IngestJob), Answer);

/// The intake of verified deliveries; cheap to clone.
#[derive(Clone, Debug)]
pub struct Intake {
    tx: mpsc::Sender<Delivery>,
}

impl Intake {
    /// Start the writer. It stops when the last clone of the intake is dropped.
    pub fn start(queue: JobQueue) -> Self {
        let (tx, mut rx) = mpsc::channel::<Delivery>(BACKLOG);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (deliveries, answers): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                let size = answers.len();
                match queue.accept_many(deliveries, DEDUPE_TTL).await {
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
            }
        });
        Self { tx }
    }

    /// Accept one message (number it and store its job under its provider and id):
    /// `Some(seq)` when it is new, `None` for a repeat, an error when it may not be stored.
    pub async fn accept(&self, message: InboundMessage) -> Result<Option<u64>> {
        let key = format!("{}:{}", message.provider, message.message_id);
        self.accept_job(key, IngestJob { message, seq: 0 }).await
    }

    /// [`Self::accept`] of a job under `key`.
    pub async fn accept_job(&self, key: String, job: IngestJob) -> Result<Option<u64>> {
        let stopped = || Error::Unavailable("the intake is shutting down".into());
        let (answer, answered) = oneshot::channel();
        self.tx
            .send(((key, job), answer))
            .await
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

impl Sink for Intake {
    fn accept(
        &self,
        message: InboundMessage,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Option<u64>>> + Send + '_>> {
        Box::pin(Intake::accept(self, message))
    }
}

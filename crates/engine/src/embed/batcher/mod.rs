//! The dynamic batcher in front of one embedding model.
//!
//! Callers tokenize on their own threads and [`Batcher::submit`] the token
//! lists; a dedicated thread (candle work never runs on the async runtime)
//! merges waiting requests into rounds bounded by a token budget and a request
//! count, waiting at most `max_wait` for company, and runs each round as
//! length-sorted forward passes (see `plan`). Answers go back on a oneshot
//! channel per request. The queue is bounded: when it is full, `submit` says
//! so at once, and the caller turns that into back-pressure.
//!
//! The batcher knows nothing of metrics back-ends; it reports each pass to a
//! [`BatchObserver`] the server supplies.

mod plan;
mod queue;
mod worker;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{EmbedError, EmbeddingModel};

/// Limits of one batcher.
#[derive(Debug, Clone)]
pub struct BatcherConfig {
    /// Tokens one round takes from the queue, and the most one forward pass
    /// packs together.
    pub max_batch_tokens: usize,
    /// Requests one round takes from the queue.
    pub max_batch_requests: usize,
    /// How long the oldest waiting request may wait for others to join it.
    /// Zero batches only what is already queued.
    pub max_wait: Duration,
    /// Requests waiting (not yet taken into a round); past it, `submit`
    /// refuses.
    pub queue_capacity: usize,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        Self {
            max_batch_tokens: 8192,
            max_batch_requests: 32,
            max_wait: Duration::from_millis(2),
            queue_capacity: 128,
        }
    }
}

/// What one forward pass did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchReport {
    /// Inputs in the pass.
    pub inputs: usize,
    /// Requests those inputs came from.
    pub requests: usize,
    /// Tokens of the inputs: what the model computed (passes are packed,
    /// without padding).
    pub tokens: usize,
    /// Time in the model.
    pub elapsed: Duration,
}

/// Receives a report after every forward pass, on the batcher's thread: keep
/// it cheap. The server records metrics here.
pub trait BatchObserver: Send + Sync {
    fn batch_done(&self, report: &BatchReport);
}

/// For callers that do not watch (tests, benchmarks).
impl BatchObserver for () {
    fn batch_done(&self, _: &BatchReport) {}
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the embedding queue is full")]
    QueueFull,
    #[error("the embedding batcher has stopped")]
    Stopped,
    /// An input the model cannot take. Refused here so that one bad input
    /// never fails a forward pass shared with other requests.
    #[error(transparent)]
    Invalid(EmbedError),
}

/// One request's vectors in input order, or why the pass that held one of
/// its inputs failed (shared by every request in that pass).
pub type Reply = Result<Vec<Vec<f32>>, Arc<EmbedError>>;

/// A request on its way to the batcher thread.
struct Job {
    inputs: Vec<Vec<u32>>,
    tokens: usize,
    arrived: Instant,
    reply: oneshot::Sender<Reply>,
}

impl queue::Waiting for Job {
    fn tokens(&self) -> usize {
        self.tokens
    }
    fn arrived(&self) -> Instant {
        self.arrived
    }
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

/// A model and the thread that batches work for it. Dropping the batcher
/// lets the thread finish what is queued and exit.
pub struct Batcher {
    model: Arc<EmbeddingModel>,
    jobs: mpsc::Sender<Job>,
    /// Requests submitted and not yet taken into a round. The channel itself
    /// is unbounded; this count is the bound, so requests the thread holds
    /// while gathering a round still count as waiting.
    depth: Arc<AtomicUsize>,
    capacity: usize,
}

impl Batcher {
    /// Starts the batcher thread for `model`.
    pub fn start(
        model: EmbeddingModel,
        config: BatcherConfig,
        observer: Arc<dyn BatchObserver>,
    ) -> Result<Self, EmbedError> {
        let model = Arc::new(model);
        let (jobs, rx) = mpsc::channel();
        let depth = Arc::new(AtomicUsize::new(0));
        let capacity = config.queue_capacity.max(1);
        let worker = worker::Worker {
            model: model.clone(),
            jobs: rx,
            depth: depth.clone(),
            config,
            observer,
        };
        std::thread::Builder::new()
            .name("embed-batcher".into())
            .spawn(move || worker.run())
            .map_err(|source| EmbedError::Io {
                path: "embedding batcher thread".into(),
                source,
            })?;
        Ok(Self {
            model,
            jobs,
            depth,
            capacity,
        })
    }

    /// The model, for tokenizing on the caller's thread.
    /// Upgrades while the model is in memory: after the batcher is dropped,
    /// until its thread has finished the queued work.
    pub fn liveness(&self) -> std::sync::Weak<EmbeddingModel> {
        Arc::downgrade(&self.model)
    }

    pub fn model(&self) -> &EmbeddingModel {
        &self.model
    }

    /// Requests waiting for a round.
    pub fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Queues a request's token lists without waiting; the vectors arrive on
    /// the returned channel. Dropping the receiver abandons the request: the
    /// batcher skips whatever of it has not run yet.
    pub fn submit(&self, inputs: Vec<Vec<u32>>) -> Result<oneshot::Receiver<Reply>, SubmitError> {
        if inputs.is_empty() {
            return Err(SubmitError::Invalid(EmbedError::EmptyInput));
        }
        for (index, ids) in inputs.iter().enumerate() {
            self.check(ids).map_err(|e| {
                SubmitError::Invalid(EmbedError::BatchInput {
                    index,
                    source: Box::new(e),
                })
            })?;
        }
        self.depth
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                (d < self.capacity).then_some(d + 1)
            })
            .map_err(|_| SubmitError::QueueFull)?;
        let (reply, rx) = oneshot::channel();
        let job = Job {
            tokens: inputs.iter().map(Vec::len).sum(),
            inputs,
            arrived: Instant::now(),
            reply,
        };
        if self.jobs.send(job).is_err() {
            self.depth.fetch_sub(1, Ordering::AcqRel);
            return Err(SubmitError::Stopped);
        }
        Ok(rx)
    }

    /// The same rules `EmbeddingModel::embed_tokens` enforces, checked before
    /// the input can share a pass with anyone else's.
    fn check(&self, ids: &[u32]) -> Result<(), EmbedError> {
        let m = &self.model;
        if ids.is_empty() {
            return Err(EmbedError::EmptyInput);
        }
        if ids.len() > m.max_tokens() {
            return Err(EmbedError::InputTooLong {
                tokens: ids.len(),
                limit: m.max_tokens(),
            });
        }
        match ids.iter().position(|&id| id as usize >= m.vocab_size()) {
            Some(position) => Err(EmbedError::TokenOutOfRange {
                position,
                id: ids[position],
                vocab_size: m.vocab_size(),
            }),
            None => Ok(()),
        }
    }
}

//! The batcher thread: gather a round, run it as length-sorted passes, send
//! each request its vectors as soon as its last input is done.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::plan::plan;
use super::queue::{Budget, Queue};
use super::{BatchObserver, BatchReport, BatcherConfig, Job, Reply};
use crate::embed::EmbeddingModel;

pub(super) struct Worker {
    pub model: Arc<EmbeddingModel>,
    pub jobs: Receiver<Job>,
    pub depth: Arc<AtomicUsize>,
    pub config: BatcherConfig,
    pub observer: Arc<dyn BatchObserver>,
}

impl Worker {
    /// Runs until every sender is gone and the queue is empty.
    pub fn run(self) {
        let budget = Budget {
            max_tokens: self.config.max_batch_tokens.max(1),
            max_requests: self.config.max_batch_requests.max(1),
        };
        let mut queue = Queue::new();
        loop {
            if queue.is_empty() {
                match self.jobs.recv() {
                    Ok(job) => queue.push(job),
                    Err(_) => return,
                }
            }
            self.gather(&mut queue, &budget);
            let round = queue.next_round(&budget);
            self.depth
                .fetch_sub(round.items.len() + round.abandoned, Ordering::AcqRel);
            if round.abandoned > 0 {
                tracing::debug!(requests = round.abandoned, "skipped requests whose clients left");
            }
            self.run_round(round.items);
        }
    }

    /// Adds what has arrived, then waits for more until the oldest request
    /// has waited `max_wait` or a round is full. When the model was busy the
    /// oldest has usually waited long enough already, so a loaded batcher
    /// never sleeps between rounds.
    fn gather(&self, queue: &mut Queue<Job>, budget: &Budget) {
        while let Ok(job) = self.jobs.try_recv() {
            queue.push(job);
        }
        while !queue.fills(budget) {
            let Some(deadline) = queue.oldest().map(|t| t + self.config.max_wait) else {
                return;
            };
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            match self.jobs.recv_timeout(left) {
                Ok(job) => queue.push(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn run_round(&self, mut jobs: Vec<Job>) {
        let lengths: Vec<Vec<usize>> = jobs.iter().map(|j| j.inputs.iter().map(Vec::len).collect()).collect();
        let mut remaining: Vec<usize> = lengths.iter().map(Vec::len).collect();
        let mut results: Vec<Vec<Vec<f32>>> = remaining.iter().map(|&n| vec![Vec::new(); n]).collect();
        let mut replies: Vec<Option<oneshot::Sender<Reply>>> = Vec::with_capacity(jobs.len());
        let mut inputs: Vec<Vec<Vec<u32>>> = Vec::with_capacity(jobs.len());
        for job in jobs.drain(..) {
            replies.push(Some(job.reply));
            inputs.push(job.inputs);
        }
        for pass in plan(&lengths, self.config.max_batch_tokens.max(1)) {
            // Inputs of requests that failed or were abandoned mid-round are skipped.
            let live: Vec<_> = pass
                .into_iter()
                .filter(|s| replies[s.job].as_ref().is_some_and(|r| !r.is_closed()))
                .collect();
            if live.is_empty() {
                continue;
            }
            let batch: Vec<Vec<u32>> = live
                .iter()
                .map(|s| std::mem::take(&mut inputs[s.job][s.index]))
                .collect();
            let started = Instant::now();
            let outcome = self.model.embed_tokens(&batch);
            let mut requests: Vec<usize> = live.iter().map(|s| s.job).collect();
            requests.sort_unstable();
            requests.dedup();
            self.observer.batch_done(&BatchReport {
                inputs: live.len(),
                requests: requests.len(),
                tokens: live.iter().map(|s| s.len).sum(),
                elapsed: started.elapsed(),
            });
            match outcome {
                Ok(vectors) => {
                    for (slot, vector) in live.iter().zip(vectors) {
                        results[slot.job][slot.index] = vector;
                        remaining[slot.job] -= 1;
                        if remaining[slot.job] == 0 {
                            if let Some(reply) = replies[slot.job].take() {
                                // A client that left just now is no error.
                                let _ = reply.send(Ok(std::mem::take(&mut results[slot.job])));
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, inputs = live.len(), "embedding pass failed");
                    let e = Arc::new(e);
                    for job in requests {
                        if let Some(reply) = replies[job].take() {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
    }
}

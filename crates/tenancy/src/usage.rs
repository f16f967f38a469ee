//! The usage meter: one record per request, written in batches by a
//! background task.
//!
//! `record` puts the record on a bounded queue and returns; only when the
//! queue is full does it wait (and log that it waited) — a record is never
//! dropped to keep a request fast. The writer inserts a batch when it has
//! `batch_size` records or its oldest has waited `flush_ms`, as one
//! multi-row insert in one transaction, keyed by request id so a retried
//! write (or a retried request with the same id) is counted once. When the database fails the
//! writer keeps the batch and tries again, and the full queue slows
//! `record` down instead of losing records. `shutdown` closes the queue,
//! writes everything in it and says how many rows were written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use switchyard_db::{Db, UsageRow};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::config::TenancyConfig;
use crate::error::UsageError;
use crate::quota::Quotas;

/// Attempts at the last write on shutdown before the records are reported lost.
const SHUTDOWN_ATTEMPTS: u32 = 5;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A busy writer looks at its queue this often (or every `flush_ms`, if
/// shorter): at 10 000 records a queue, room for 1M records/s.
const DRAIN_TICK: Duration = Duration::from_millis(10);

/// What the server knows when a request ends; the cost is added here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Unique per request, and the same on a retry of the same request.
    pub request_id: String,
    pub tenant_id: String,
    pub key_id: String,
    pub model: String,
    pub deployment: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub latency_ms: u64,
    pub status_code: u16,
    /// Unix seconds.
    pub created_at: i64,
}

/// A cheap, clonable handle for request paths.
#[derive(Debug, Clone)]
pub struct UsageRecorder {
    tx: mpsc::Sender<UsageRow>,
    config: Arc<TenancyConfig>,
    quotas: Option<Arc<Quotas>>,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A record the full queue could not take yet: `send` waits for room.
#[derive(Debug)]
pub struct PendingRecord {
    row: UsageRow,
    tx: mpsc::Sender<UsageRow>,
}

impl PendingRecord {
    pub async fn send(self) -> Result<(), UsageError> {
        self.tx.send(self.row).await.map_err(|e| closed(&e.0))
    }
}

impl UsageRecorder {
    /// Queues a record; waits only while the queue is full.
    pub async fn record(&self, r: UsageRecord) -> Result<(), UsageError> {
        match self.try_record(r)? {
            None => Ok(()),
            Some(pending) => {
                tracing::warn!("usage queue full; waiting for the writer");
                pending.send().await
            }
        }
    }

    /// Queues a record without waiting; when the queue is full the record
    /// comes back as a [`PendingRecord`] to `send` (it is never dropped).
    pub fn try_record(&self, r: UsageRecord) -> Result<Option<PendingRecord>, UsageError> {
        let row = self.row(r);
        match self.tx.try_send(row) {
            Ok(()) => Ok(None),
            Err(mpsc::error::TrySendError::Full(row)) => Ok(Some(PendingRecord {
                row,
                tx: self.tx.clone(),
            })),
            Err(mpsc::error::TrySendError::Closed(row)) => Err(closed(&row)),
        }
    }

    /// The row to store, with its cost; counts it against the quota once.
    fn row(&self, r: UsageRecord) -> UsageRow {
        let cost = self
            .config
            .price(&r.model)
            .cost_micros(r.prompt_tokens, r.completion_tokens);
        if let Some(q) = &self.quotas {
            q.add(&r.tenant_id, r.prompt_tokens + r.completion_tokens, cost, r.created_at);
        }
        UsageRow {
            request_id: r.request_id,
            tenant_id: r.tenant_id,
            key_id: r.key_id,
            model: r.model,
            deployment: r.deployment,
            prompt_tokens: i(r.prompt_tokens),
            completion_tokens: i(r.completion_tokens),
            latency_ms: i(r.latency_ms),
            status_code: i64::from(r.status_code),
            cost_micros: i(cost),
            created_at: r.created_at,
        }
    }
}

fn closed(row: &UsageRow) -> UsageError {
    tracing::error!(request_id = %row.request_id, "usage record after shutdown: not written");
    UsageError::Closed
}

#[derive(Debug)]
pub struct UsageMeter {
    recorder: UsageRecorder,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<u64, UsageError>>,
}

impl UsageMeter {
    /// Starts the writer on `tracker` (which the server's shutdown awaits).
    /// `quotas`, when given, sees every record at once.
    pub fn start(db: Db, config: Arc<TenancyConfig>, quotas: Option<Arc<Quotas>>, tracker: &TaskTracker) -> Self {
        let (tx, rx) = mpsc::channel(config.usage.queue.max(1));
        let (stop, stopped) = oneshot::channel();
        let writer = Writer {
            db,
            batch_size: config.usage.batch_size.max(1),
            flush: Duration::from_millis(config.usage.flush_ms.max(1)),
            buf: Vec::new(),
            written: 0,
        };
        let task = tracker.spawn(writer.run(rx, stopped));
        Self {
            recorder: UsageRecorder { tx, config, quotas },
            stop,
            task,
        }
    }

    pub fn recorder(&self) -> UsageRecorder {
        self.recorder.clone()
    }

    pub async fn record(&self, r: UsageRecord) -> Result<(), UsageError> {
        self.recorder.record(r).await
    }

    /// Stops taking records (later ones fail with `Closed`), writes all
    /// that were queued, and returns how many rows were written in all
    /// (a request id already stored is not counted). Call it after the
    /// in-flight requests have finished.
    pub async fn shutdown(self) -> Result<u64, UsageError> {
        let _ = self.stop.send(());
        drop(self.recorder);
        self.task.await.map_err(|e| UsageError::Task(e.to_string()))?
    }
}

struct Writer {
    db: Db,
    batch_size: usize,
    flush: Duration,
    buf: Vec<UsageRow>,
    written: u64,
}

impl Writer {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<UsageRow>,
        mut stop: oneshot::Receiver<()>,
    ) -> Result<u64, UsageError> {
        let mut failures = 0u32;
        // When the oldest buffered record arrived.
        let mut since = Instant::now();
        loop {
            if self.buf.is_empty() {
                // Idle: sleep until a record comes (one wake-up per burst).
                tokio::select! {
                    biased;
                    _ = &mut stop => break,
                    row = rx.recv() => match row {
                        Some(row) => {
                            self.buf.push(row);
                            since = Instant::now();
                        }
                        None => break,
                    },
                }
            }
            // Busy: take what came in the last tick, without being woken
            // per record (`try_recv` registers no waker). Records come
            // from every I/O thread, and a wake-up per record was a
            // cross-thread wake per request.
            tokio::select! {
                biased;
                _ = &mut stop => break,
                _ = tokio::time::sleep(self.tick()) => {}
            }
            let open = self.drain(&mut rx);
            let due = self.buf.len() >= self.batch_size || since.elapsed() >= self.flush || !open;
            if due && !self.buf.is_empty() {
                if let Err(error) = self.write_all().await {
                    failures += 1;
                    let wait = (Duration::from_millis(100) * 2u32.saturating_pow(failures.min(6))).min(MAX_BACKOFF);
                    tracing::warn!(%error, pending = self.buf.len(), retry_in_ms = wait.as_millis() as u64, "usage write failed; keeping the records");
                    tokio::time::sleep(wait).await;
                } else {
                    failures = 0;
                    since = Instant::now();
                }
            }
            if !open {
                break;
            }
        }
        // Shutdown: no new records; take what is queued, then write it all.
        rx.close();
        while let Some(row) = rx.recv().await {
            self.buf.push(row);
        }
        let mut last = None;
        for attempt in 0..SHUTDOWN_ATTEMPTS {
            match self.write_all().await {
                Ok(()) => return Ok(self.written),
                Err(error) => {
                    tracing::warn!(%error, attempt, pending = self.buf.len(), "usage write at shutdown failed");
                    last = Some(error);
                    tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt)).await;
                }
            }
        }
        let lost = self.buf.len();
        tracing::error!(lost, "usage records could not be written before shutdown");
        match last {
            Some(error) => Err(UsageError::Lost { lost, error }),
            None => Ok(self.written),
        }
    }

    /// How long the busy writer gathers records between looks at the queue.
    fn tick(&self) -> Duration {
        self.flush.min(DRAIN_TICK)
    }

    /// Moves what is queued now into the buffer; false once every sender is gone.
    fn drain(&mut self, rx: &mut mpsc::Receiver<UsageRow>) -> bool {
        loop {
            match rx.try_recv() {
                Ok(row) => self.buf.push(row),
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Writes the buffer in batches; on failure the unwritten rows stay.
    async fn write_all(&mut self) -> Result<(), switchyard_db::DbError> {
        while !self.buf.is_empty() {
            let n = self.buf.len().min(self.batch_size);
            let written = self.db.insert_usage(&self.buf[..n]).await?;
            self.buf.drain(..n);
            self.written += written;
            tracing::debug!(rows = n, written, "usage batch written");
        }
        Ok(())
    }
}

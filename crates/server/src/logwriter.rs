//! Where log lines go: a buffer in memory that a background thread writes
//! to stderr every few milliseconds, or at once when it fills.
//!
//! Written here because the crates for this wake their writer thread for
//! every line (`tracing-appender`: a channel whose receiver parks and spins
//! with `sched_yield`), which cost a futex wake, a context switch and a
//! `write` per request in the gateway's profile. Here a request only copies
//! its line into the buffer under a short lock; nothing is ever dropped:
//! a buffer past its limit is written by the request that filled it.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Written by the background thread at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Written at once by the request that takes the buffer past this.
const FLUSH_AT: usize = 256 * 1024;

#[derive(Default)]
struct Shared {
    buf: Mutex<Buffer>,
    /// Tells the thread to write what is left and stop.
    stop: Condvar,
}

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    stopping: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buf.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes what is buffered and writes it, outside the buffer's lock.
    /// stderr's lock is taken first, so two flushes write in the order
    /// they took their lines.
    fn flush(&self) {
        let mut err = std::io::stderr().lock();
        let bytes = std::mem::take(&mut self.lock().bytes);
        if !bytes.is_empty() {
            let _ = err.write_all(&bytes);
            let _ = err.flush();
        }
    }
}

/// The [`MakeWriter`] for the fmt layer.
#[derive(Clone)]
pub struct LogBuffer(Arc<Shared>);

/// Writes what is left when dropped (keep it until exit).
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogBuffer {
    /// The writer and the guard that stops its thread.
    pub fn start() -> (Self, FlushGuard) {
        let shared = Arc::new(Shared::default());
        let bg = shared.clone();
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || loop {
                let stopping = {
                    let buf = bg.lock();
                    let (buf, _) = bg
                        .stop
                        .wait_timeout_while(buf, FLUSH_EVERY, |b| !b.stopping)
                        .unwrap_or_else(|p| p.into_inner());
                    buf.stopping
                };
                bg.flush();
                if stopping {
                    return;
                }
            })
            .ok();
        let guard = FlushGuard {
            shared: shared.clone(),
            thread,
        };
        (Self(shared), guard)
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.stop.notify_all();
        match self.thread.take() {
            Some(t) => {
                let _ = t.join();
            }
            None => self.shared.flush(),
        }
    }
}

impl LogBuffer {
    /// Appends one whole line (see [`crate::access`]).
    pub fn write_line(&self, line: &[u8]) {
        let _ = LineWriter(&self.0).write(line);
    }
}

/// One event's line; tracing-subscriber writes a whole line per event.
pub struct LineWriter<'a>(&'a Shared);

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut buf = self.0.lock();
            buf.bytes.extend_from_slice(line);
            buf.bytes.len() >= FLUSH_AT
        };
        if full {
            self.0.flush();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogBuffer {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept_in_order_until_flushed() {
        let (log, guard) = LogBuffer::start();
        log.make_writer().write_all(b"one\n").unwrap();
        log.make_writer().write_all(b"two\n").unwrap();
        // Either still buffered or already written, never reordered.
        let pending = log.0.lock().bytes.clone();
        assert!(pending.is_empty() || pending == b"one\ntwo\n" || pending == b"two\n");
        drop(guard);
        assert!(log.0.lock().bytes.is_empty(), "the guard writes what is left");
    }
}

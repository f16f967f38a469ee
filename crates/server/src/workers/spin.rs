//! Spinning before sleeping. An I/O thread that runs out of work parks in
//! `epoll_wait` until the next packet wakes it. On the VMs this project is
//! measured on, that sleep and wake-up cost more than the proxying itself:
//! at concurrency 1 a proxied request sleeps twice (waiting for the
//! upstream's answer, then for the client's next request), and in the
//! gateway benchmark's c=1 check a thread that kept polling answered in
//! ~120 µs where one that slept took ~250 µs (nginx: ~135 µs).
//!
//! So a thread whose connections have been busy polls for a while before it
//! parks: a task that yields, which makes the runtime poll epoll without
//! blocking. It spins only while the gaps between reads and writes on its
//! connections have been shorter than the window (`server.io_spin_us`), as
//! learned by a moving average: a thread serving a trickle of events
//! further apart (slow upstreams, idle keep-alive connections) sleeps as
//! before, and a spin that pays off costs about the wait it replaces (CPU
//! per request at c=1 was the same with and without). Under full load a
//! thread seldom runs out of work, so it seldom spins.

use std::cell::Cell;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

thread_local! {
    static EVENTS: Events = const { Events { count: Cell::new(0), parked: Cell::new(None) } };
}

/// The reads and writes on this thread's connections, and the spinner
/// waiting for the next one.
struct Events {
    count: Cell<u64>,
    parked: Cell<Option<Waker>>,
}

fn count() -> u64 {
    EVENTS.with(|e| e.count.get())
}

/// Counts one read or write, and wakes a parked spinner.
fn note() {
    EVENTS.with(|e| {
        e.count.set(e.count.get().wrapping_add(1));
        if let Some(waker) = e.parked.take() {
            waker.wake();
        }
    });
}

/// Weight of a new gap in the moving average: 1/8.
const GAP_WEIGHT: u32 = 8;

/// What the spinner decides, as a plain state machine (tested below
/// without a runtime).
#[derive(Debug)]
struct Spin {
    window: Duration,
    /// Moving average of the time between successive events.
    gap: Duration,
    /// The last event seen, and when it was seen.
    seen: u64,
    at: Instant,
}

#[derive(Debug, PartialEq, Eq)]
enum Next {
    Spin,
    Park,
}

impl Spin {
    fn new(window: Duration, now: Instant) -> Self {
        Self {
            window,
            gap: Duration::ZERO,
            seen: count(),
            at: now,
        }
    }

    /// Spin while the last event is recent and events have been coming
    /// faster than the window; otherwise park until the next one.
    fn next(&mut self, now: Instant, events: u64) -> Next {
        if events != self.seen {
            let gap = now.saturating_duration_since(self.at);
            self.gap = self.gap - self.gap / GAP_WEIGHT + gap / GAP_WEIGHT;
            self.seen = events;
            self.at = now;
        }
        let idle = now.saturating_duration_since(self.at);
        if self.gap < self.window && idle < self.window {
            Next::Spin
        } else {
            Next::Park
        }
    }
}

/// The spinner of one I/O thread, spawned on its runtime; a zero window
/// never spins.
pub(super) async fn run(window: Duration) {
    if window.is_zero() {
        return;
    }
    let mut spin = Spin::new(window, Instant::now());
    loop {
        match spin.next(Instant::now(), count()) {
            // The runtime polls epoll (without blocking) before it runs a
            // task that yielded again.
            Next::Spin => tokio::task::yield_now().await,
            Next::Park => event_after(spin.seen).await,
        }
    }
}

/// Waits for the first event after `seen` (events counted up to then).
async fn event_after(seen: u64) {
    poll_fn(|cx| {
        if count() != seen {
            return Poll::Ready(());
        }
        EVENTS.with(|e| e.parked.set(Some(cx.waker().clone())));
        Poll::Pending
    })
    .await;
}

/// A connection whose reads and writes count as this thread's events.
pub(super) struct Noted<T>(pub T);

impl<T: AsyncRead + Unpin> AsyncRead for Noted<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            note();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Noted<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.0).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            note();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.0).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            note();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn spins_while_events_come_faster_than_the_window_then_parks() {
        let t0 = Instant::now();
        let mut s = Spin::new(100 * US, t0);
        let mut events = s.seen;
        // A request every 30 µs: the average gap stays short, so it spins.
        for i in 1..=20 {
            events += 1;
            assert_eq!(s.next(t0 + i * 30 * US, events), Next::Spin);
        }
        let last = t0 + 600 * US;
        assert_eq!(s.next(last + 99 * US, events), Next::Spin);
        // Nothing for a whole window: it parks.
        assert_eq!(s.next(last + 100 * US, events), Next::Park);
    }

    #[test]
    fn a_trickle_of_events_further_apart_than_the_window_never_spins_for_long() {
        let t0 = Instant::now();
        let mut s = Spin::new(100 * US, t0);
        let mut events = s.seen;
        let mut spun = 0;
        for i in 1..=50u32 {
            events += 1;
            if s.next(t0 + i * 1000 * US, events) == Next::Spin {
                spun += 1;
            }
        }
        // The average learns the 1 ms gap within a few events.
        assert!(spun <= 3, "spun after {spun} of 50 events 1 ms apart");
        assert!(s.gap >= 100 * US);
        // Back to fast events: the average comes down and it spins again.
        let mut t = t0 + 50 * 1000 * US;
        let mut spinning = false;
        for _ in 0..40 {
            t += 20 * US;
            events += 1;
            spinning = s.next(t, events) == Next::Spin;
        }
        assert!(spinning);
    }

    #[test]
    fn reads_and_writes_are_counted_and_wake_a_parked_spinner() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (a, b) = tokio::io::duplex(64);
            let (mut a, mut b) = (Noted(a), Noted(b));
            let before = count();
            a.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            b.read_exact(&mut buf).await.unwrap();
            assert_eq!(count() - before, 2, "one write and one read");

            // A parked spinner is woken by the next event.
            let woken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = woken.clone();
            let waiter = tokio::spawn(async move {
                event_after(count()).await;
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            tokio::task::yield_now().await;
            assert!(!woken.load(std::sync::atomic::Ordering::SeqCst));
            a.write_all(b"pong").await.unwrap();
            waiter.await.unwrap();
            assert!(woken.load(std::sync::atomic::Ordering::SeqCst));
        });
    }
}

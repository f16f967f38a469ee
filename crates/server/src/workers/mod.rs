//! The I/O threads, nginx's worker model: each thread is its own tokio
//! runtime (current-thread) serving the connections one acceptor hands it,
//! round robin. A connection stays on its thread from accept to close, and
//! so do the tasks it spawns and (through the gateway's per-thread pools)
//! the upstream connections it uses: no work stealing and no wake-ups
//! across threads on the request path. In the gateway benchmark a
//! work-stealing runtime with two workers spent ~40 % more CPU per proxied
//! request than one thread did; this keeps one thread's cost per request
//! and uses every core.
//!
//! Everything else (model loads, the usage writer, timers of the
//! registry) stays on the main runtime.
//!
//! A thread that runs out of work may poll for a short while before it
//! sleeps ([`spin`]).

mod spin;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connections accepted by the main runtime, for one I/O thread.
type Handoff = mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>;

pub struct Workers {
    threads: Vec<Handoff>,
    /// Each thread's server while it runs; empty once all have drained.
    serving: TaskTracker,
    /// Ends the servers' accept loops (graceful: open connections finish).
    drain: CancellationToken,
    /// Ends the threads, after shutdown has written what it must: until
    /// then their runtimes drive the tasks and sockets made on them.
    release: CancellationToken,
}

impl Workers {
    /// Starts `n` I/O threads serving `app`, each spinning up to `spin`
    /// before it sleeps; `local` is the address they report.
    pub fn start<S>(n: usize, spin: Duration, app: S, local: SocketAddr) -> anyhow::Result<Self>
    where
        S: tower::Service<
                axum::extract::Request,
                Response = axum::response::Response,
                Error = std::convert::Infallible,
            > + Clone
            + Send
            + 'static,
        S::Future: Send,
    {
        let (serving, drain, release) = (TaskTracker::new(), CancellationToken::new(), CancellationToken::new());
        let mut threads = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let server = axum::serve(Handed { rx, local }, axum::ServiceExt::into_make_service(app.clone()))
                .with_graceful_shutdown(drain.clone().cancelled_owned());
            let server = serving.track_future(server.into_future());
            let release = release.clone();
            runtime.spawn(keep_a_timer_armed());
            runtime.spawn(spin::run(spin));
            std::thread::Builder::new()
                .name(format!("switchyard-io-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        if let Err(e) = server.await {
                            tracing::error!(error = %e, "I/O thread's server failed");
                        }
                        release.cancelled().await;
                    });
                    // Tasks still running past the grace period are dropped.
                    runtime.shutdown_timeout(Duration::from_secs(1));
                })?;
            threads.push(tx);
        }
        serving.close();
        Ok(Self {
            threads,
            serving,
            drain,
            release,
        })
    }

    /// Accepts connections and hands them out, until dropped (which
    /// closes the listener).
    pub async fn accept(&self, listener: TcpListener) {
        let mut next = 0usize;
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, as axum does.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Nagle's algorithm would hold back small SSE chunks for the client's delayed ACK.
            let _ = tcp.set_nodelay(true);
            match tcp.into_std() {
                Ok(std) => self.hand_over((std, addr), &mut next),
                Err(e) => tracing::warn!(error = %e, "could not hand over a connection"),
            }
        }
    }

    /// Gives the connection to the next thread in turn; a thread that has
    /// stopped (its server failed) hands it back and the one after it
    /// gets it, so a dead thread costs no connection.
    fn hand_over(&self, mut conn: (std::net::TcpStream, SocketAddr), next: &mut usize) {
        for _ in 0..self.threads.len() {
            let i = *next % self.threads.len();
            *next = next.wrapping_add(1);
            match self.threads[i].send(conn) {
                Ok(()) => return,
                Err(back) => {
                    tracing::error!(thread = i, "an I/O thread has stopped; its connection goes to the next");
                    conn = back.0;
                }
            }
        }
        tracing::error!(peer = %conn.1, "no I/O thread is running; connection closed");
    }

    /// Stops taking connections and waits up to `grace` for the open ones
    /// to finish; false if some were still open when it ran out.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.drain.cancel();
        tokio::time::timeout(grace, self.serving.wait()).await.is_ok()
    }

    /// Lets the threads end (after the last usage records are written).
    pub fn release(&self) {
        self.release.cancel();
    }
}

/// Keeps a timer due within a second on this thread's runtime, so that the
/// timeouts each proxied request arms (seconds or minutes away) are never
/// the runtime's earliest: tokio wakes its own driver (an `eventfd` write
/// and an extra `epoll_wait`) whenever a new timer is due before every
/// other, which at concurrency 1 was every request. One wake-up a second
/// instead.
async fn keep_a_timer_armed() {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// An I/O thread's side of the hand-off, as axum's listener.
struct Handed {
    rx: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for Handed {
    type Io = spin::Noted<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        loop {
            match self.rx.recv().await {
                // `into_std` left it non-blocking; this registers it with this thread's runtime.
                Some((std, addr)) => match TcpStream::from_std(std) {
                    Ok(tcp) => return (spin::Noted(tcp), addr),
                    Err(e) => tracing::warn!(error = %e, "could not take over a connection"),
                },
                // The acceptor has stopped: the server's shutdown signal ends the loop.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

    use std::collections::BTreeSet;
    use std::sync::Arc;

    use axum::routing::get;
    use axum::Router;

    use super::*;

    /// Which I/O thread served the request.
    async fn thread_name() -> String {
        std::thread::current().name().unwrap_or("?").to_string()
    }

    /// `n` I/O threads serving `app`, their acceptor, and the base URL.
    async fn serving(n: usize, app: Router) -> (Arc<Workers>, tokio::task::JoinHandle<()>, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let workers = Arc::new(Workers::start(n, Duration::from_micros(200), app, local).unwrap());
        let acceptor = tokio::spawn({
            let workers = workers.clone();
            async move { workers.accept(listener).await }
        });
        (workers, acceptor, format!("http://{local}"))
    }

    #[tokio::test]
    async fn a_stopped_thread_s_connections_go_to_the_others() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let mut workers = Workers::start(2, Duration::ZERO, Router::new().route("/", get(thread_name)), local).unwrap();
        // Thread 0 as if its server had failed: nothing takes what it is sent.
        let (dead, rx) = mpsc::unbounded_channel();
        drop(rx);
        workers.threads[0] = dead;
        let workers = Arc::new(workers);
        let acceptor = tokio::spawn({
            let workers = workers.clone();
            async move { workers.accept(listener).await }
        });
        for _ in 0..4 {
            // A new connection each time, so each is handed over anew.
            let served = reqwest::Client::new()
                .get(format!("http://{local}"))
                .send()
                .await
                .unwrap();
            assert_eq!(served.text().await.unwrap(), "switchyard-io-1");
        }
        acceptor.abort();
        let _ = acceptor.await;
        assert!(workers.drain(Duration::from_secs(10)).await);
    }

    #[tokio::test]
    async fn connections_are_spread_over_the_threads_and_drained() {
        let app = Router::new().route("/", get(thread_name)).route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                thread_name().await
            }),
        );
        let (workers, acceptor, url) = serving(2, app).await;

        // One client per connection; round robin gives each thread two.
        let mut served = Vec::new();
        for _ in 0..4 {
            let client = reqwest::Client::new();
            for _ in 0..2 {
                // A kept-alive connection stays on its thread.
                served.push(client.get(&url).send().await.unwrap().text().await.unwrap());
            }
            assert_eq!(served[served.len() - 1], served[served.len() - 2]);
        }
        let threads: BTreeSet<_> = served.iter().map(String::as_str).collect();
        assert_eq!(threads, BTreeSet::from(["switchyard-io-0", "switchyard-io-1"]));

        // A request in flight at shutdown is answered; then no one is listening.
        let slow = tokio::spawn(reqwest::get(format!("{url}/slow")));
        tokio::time::sleep(Duration::from_millis(100)).await;
        acceptor.abort();
        let _ = acceptor.await;
        assert!(workers.drain(Duration::from_secs(10)).await, "connections left open");
        let answer = slow.await.unwrap().unwrap();
        assert_eq!(answer.status(), 200);
        assert!(answer.text().await.unwrap().starts_with("switchyard-io-"));
        assert!(reqwest::get(&url).await.is_err(), "still accepting after drain");
        workers.release();
    }

    #[tokio::test]
    async fn one_thread_serves_its_connections_concurrently() {
        // The held request is answered only once the other one has been.
        let release = Arc::new(tokio::sync::Notify::new());
        let held = release.clone();
        let app = Router::new().route("/", get(thread_name)).route(
            "/held",
            get(move || async move {
                held.notified().await;
                thread_name().await
            }),
        );
        let (workers, acceptor, url) = serving(1, app).await;
        let waiting = tokio::spawn(reqwest::get(format!("{url}/held")));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let other = tokio::time::timeout(Duration::from_secs(10), reqwest::get(&url))
            .await
            .expect("the thread was blocked by the held request")
            .unwrap();
        assert_eq!(other.text().await.unwrap(), "switchyard-io-0");
        release.notify_one();
        assert_eq!(waiting.await.unwrap().unwrap().text().await.unwrap(), "switchyard-io-0");
        acceptor.abort();
        assert!(workers.drain(Duration::from_secs(10)).await);
        workers.release();
    }
}

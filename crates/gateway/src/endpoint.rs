//! One upstream endpoint (a replica's base URL) and the balancer over them.
//!
//! Each endpoint has its own circuit breaker, an outstanding-request count
//! and an EWMA of time to first byte. The balancer takes two random available
//! endpoints and sends to the cheaper, cost = EWMA latency × (outstanding + 1)
//! ("power of two choices"): it avoids loaded or slow replicas without the
//! herd effect of always picking the single least-loaded one.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::seq::index::sample;

use crate::breaker::{BreakerSnapshot, CircuitBreaker, Ticket};
use crate::config::BreakerConfig;

/// Weight of a new latency sample in the EWMA.
const EWMA_ALPHA: f64 = 0.3;

#[derive(Debug)]
pub(crate) struct Endpoint {
    base_url: String,
    /// The OpenAI paths' URIs, parsed once (a `Uri` clone is a few
    /// reference counts).
    known: Vec<(&'static str, http::Uri)>,
    outstanding: AtomicU32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    breaker: CircuitBreaker,
    /// Milliseconds; 0 until the first sample, so fresh replicas get tried.
    ewma_ms: f64,
}

/// A point-in-time view of one endpoint, for metrics and admin.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSnapshot {
    pub base_url: String,
    pub outstanding: u32,
    pub ewma_first_byte: Duration,
    pub breaker: BreakerSnapshot,
}

impl Endpoint {
    pub(crate) fn new(base_url: &str, breaker: BreakerConfig, now: Instant) -> Self {
        let base_url = base_url.trim_end_matches('/').to_owned();
        let known = ["/chat/completions", "/completions", "/embeddings"]
            .into_iter()
            .filter_map(|p| Some((p, format!("{base_url}{p}").parse().ok()?)))
            .collect();
        Self {
            base_url,
            known,
            outstanding: AtomicU32::new(0),
            state: Mutex::new(State {
                breaker: CircuitBreaker::new(breaker, now),
                ewma_ms: 0.0,
            }),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url, path.trim_start_matches('/'))
    }

    /// `url(path)` as a URI: parsed once for the OpenAI paths.
    pub(crate) fn uri(&self, path: &str) -> Result<http::Uri, String> {
        match self.known.iter().find(|(p, _)| *p == path) {
            Some((_, uri)) => Ok(uri.clone()),
            None => self
                .url(path)
                .parse()
                .map_err(|e| format!("bad upstream URL for `{path}`: {e}")),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update
        // is a few plain assignments.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cost(&self) -> f64 {
        let outstanding = f64::from(self.outstanding.load(Ordering::Relaxed));
        self.lock().ewma_ms.max(1.0) * (outstanding + 1.0)
    }

    pub(crate) fn snapshot(&self, now: Instant) -> EndpointSnapshot {
        let state = self.lock();
        EndpointSnapshot {
            base_url: self.base_url.clone(),
            outstanding: self.outstanding.load(Ordering::Relaxed),
            ewma_first_byte: Duration::from_secs_f64(state.ewma_ms / 1000.0),
            breaker: state.breaker.snapshot(now),
        }
    }
}

/// One admitted attempt on an endpoint. Counts as outstanding until dropped;
/// its breaker verdict is given once, by [`Attempt::settle`]. Dropped without
/// a verdict (the caller went away) it frees a half-open probe slot.
#[derive(Debug)]
pub(crate) struct Attempt {
    endpoint: Arc<Endpoint>,
    index: usize,
    ticket: Ticket,
    started: Instant,
    settled: bool,
}

impl Attempt {
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Records the time to first byte in the endpoint's EWMA.
    pub(crate) fn first_byte(&self) {
        let sample = self.started.elapsed().as_secs_f64() * 1000.0;
        let mut state = self.endpoint.lock();
        state.ewma_ms = if state.ewma_ms == 0.0 {
            sample
        } else {
            state.ewma_ms + EWMA_ALPHA * (sample - state.ewma_ms)
        };
    }

    pub(crate) fn settle(&mut self, ok: bool) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let now = Instant::now();
        let mut state = self.endpoint.lock();
        if ok {
            state.breaker.on_success(self.ticket, now);
        } else {
            state.breaker.on_failure(self.ticket, now);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.endpoint.outstanding.fetch_sub(1, Ordering::Relaxed);
        if !self.settled {
            self.endpoint.lock().breaker.on_cancel(self.ticket);
        }
    }
}

/// Picks an endpoint by power of two choices among those whose breaker admits
/// a call, preferring not to reuse `avoid` (the one that just failed), and
/// admits an attempt on it. Refused: the shortest wait until one reopens.
pub(crate) fn acquire(endpoints: &[Arc<Endpoint>], avoid: Option<usize>, now: Instant) -> Result<Attempt, Duration> {
    let mut candidates: Vec<usize> = (0..endpoints.len())
        .filter(|&i| endpoints[i].lock().breaker.is_available(now))
        .collect();
    if candidates.len() > 1 {
        candidates.retain(|&i| Some(i) != avoid);
    }
    let mut wait = Duration::MAX;
    while !candidates.is_empty() {
        let pos = if candidates.len() == 1 {
            0
        } else {
            let two = sample(&mut rand::rng(), candidates.len(), 2);
            let (a, b) = (two.index(0), two.index(1));
            if endpoints[candidates[b]].cost() < endpoints[candidates[a]].cost() {
                b
            } else {
                a
            }
        };
        let index = candidates.swap_remove(pos);
        let endpoint = &endpoints[index];
        // Count it outstanding before admitting, so concurrent pickers see it.
        endpoint.outstanding.fetch_add(1, Ordering::Relaxed);
        let admitted = endpoint.lock().breaker.try_acquire(now);
        match admitted {
            Ok(ticket) => {
                return Ok(Attempt {
                    endpoint: Arc::clone(endpoint),
                    index,
                    ticket,
                    started: now,
                    settled: false,
                })
            }
            Err(w) => {
                endpoint.outstanding.fetch_sub(1, Ordering::Relaxed);
                wait = wait.min(w);
            }
        }
    }
    if wait == Duration::MAX {
        // Nothing was available: ask each breaker how long it stays open.
        for endpoint in endpoints {
            wait = wait.min(endpoint.lock().breaker.refuse(now));
        }
    }
    Err(if wait == Duration::MAX { Duration::ZERO } else { wait })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: usize, now: Instant) -> Vec<Arc<Endpoint>> {
        let cfg = BreakerConfig {
            failure_threshold: 1,
            open_ms: 1_000,
            ..BreakerConfig::default()
        };
        (0..n)
            .map(|i| Arc::new(Endpoint::new(&format!("http://r{i}/v1/"), cfg.clone(), now)))
            .collect()
    }

    #[test]
    fn spreads_by_outstanding_and_skips_open_breakers() {
        let now = Instant::now();
        let eps = endpoints(2, now);
        assert_eq!(eps[0].url("/chat/completions"), "http://r0/v1/chat/completions");
        let a = acquire(&eps, None, now).unwrap();
        let b = acquire(&eps, None, now).unwrap();
        assert_ne!(a.index(), b.index(), "second pick avoids the busy replica");
        drop((a, b));

        let mut failing = acquire(&eps, None, now).unwrap();
        let bad = failing.index();
        failing.settle(false);
        drop(failing);
        for _ in 0..20 {
            assert_ne!(acquire(&eps, None, now).unwrap().index(), bad);
        }
        assert_eq!(eps[bad].snapshot(now).breaker.state.as_str(), "open");
    }

    #[test]
    fn all_open_reports_the_wait_and_counts_no_outstanding() {
        let now = Instant::now();
        let eps = endpoints(2, now);
        for _ in 0..2 {
            let mut a = acquire(&eps, None, now).unwrap();
            a.settle(false);
        }
        let later = now + Duration::from_millis(400);
        // The verdicts were recorded at the real "now", a little after `now`.
        let wait = acquire(&eps, None, later).unwrap_err();
        assert!(wait >= Duration::from_millis(600) && wait < Duration::from_millis(700));
        assert!(eps.iter().all(|e| e.snapshot(later).outstanding == 0));
    }

    #[test]
    fn avoid_is_used_only_when_it_is_the_last_one() {
        let now = Instant::now();
        let eps = endpoints(2, now);
        for _ in 0..10 {
            assert_eq!(acquire(&eps, Some(0), now).unwrap().index(), 1);
        }
        let one = endpoints(1, now);
        assert_eq!(acquire(&one, Some(0), now).unwrap().index(), 0);
    }
}

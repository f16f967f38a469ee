//! A circuit breaker as a plain state machine: no clock, no locks, no I/O.
//!
//! The caller passes `now` into every method, so tests drive time by hand.
//! Closed → Open after `failure_threshold` consecutive failures, or when the
//! failure rate over `window_ms` reaches `failure_rate` with at least
//! `min_requests` outcomes. Open refuses everything for `open_ms`, then turns
//! HalfOpen and admits up to `half_open_probes` requests at once: the first
//! probe to succeed closes it, the first to fail opens it again.
//!
//! Every admission returns a [`Ticket`] naming the epoch it was admitted in;
//! each state change starts a new epoch, so a slow answer to a request
//! admitted before the breaker opened cannot close it (or re-open it) later.

use std::time::{Duration, Instant};

use crate::config::BreakerConfig;

/// The breaker's state, as reported to metrics and the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// A point-in-time view of one breaker, for metrics and admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSnapshot {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub successes_total: u64,
    pub failures_total: u64,
    /// Calls refused without touching the network.
    pub rejected_total: u64,
    /// Times the breaker went from closed or half-open to open.
    pub opened_total: u64,
}

/// Proof of admission; hand it back with the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32 },
}

const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    index: u64,
    ok: u32,
    failed: u32,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    cfg: BreakerConfig,
    phase: Phase,
    epoch: u64,
    consecutive: u32,
    origin: Instant,
    bucket_ms: u64,
    buckets: [Bucket; BUCKETS],
    successes: u64,
    failures: u64,
    rejected: u64,
    opened: u64,
}

impl CircuitBreaker {
    pub fn new(cfg: BreakerConfig, now: Instant) -> Self {
        let bucket_ms = (cfg.window_ms / BUCKETS as u64).max(1);
        Self {
            cfg,
            phase: Phase::Closed,
            epoch: 0,
            consecutive: 0,
            origin: now,
            bucket_ms,
            buckets: [Bucket::default(); BUCKETS],
            successes: 0,
            failures: 0,
            rejected: 0,
            opened: 0,
        }
    }

    /// Whether [`Self::try_acquire`] would admit a call now (no side effects).
    pub fn is_available(&self, now: Instant) -> bool {
        match self.phase {
            _ if !self.cfg.enabled => true,
            Phase::Closed => true,
            Phase::Open { until } => now >= until,
            Phase::HalfOpen { in_flight } => in_flight < self.cfg.half_open_probes,
        }
    }

    /// Admits a call, or refuses it with how long until probes are allowed.
    pub fn try_acquire(&mut self, now: Instant) -> Result<Ticket, Duration> {
        if !self.cfg.enabled {
            return Ok(Ticket(self.epoch));
        }
        match self.phase {
            Phase::Closed => Ok(Ticket(self.epoch)),
            Phase::Open { until } if now >= until => {
                self.enter(Phase::HalfOpen { in_flight: 1 });
                Ok(Ticket(self.epoch))
            }
            Phase::Open { until } => {
                self.rejected += 1;
                Err(until - now)
            }
            Phase::HalfOpen { in_flight } if in_flight < self.cfg.half_open_probes => {
                self.phase = Phase::HalfOpen {
                    in_flight: in_flight + 1,
                };
                Ok(Ticket(self.epoch))
            }
            Phase::HalfOpen { .. } => {
                self.rejected += 1;
                Err(Duration::ZERO)
            }
        }
    }

    /// Counts a call refused without asking (every endpoint was seen to be
    /// unavailable) and says how long this breaker stays open.
    pub fn refuse(&mut self, now: Instant) -> Duration {
        self.rejected += 1;
        match self.phase {
            Phase::Open { until } => until.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    pub fn on_success(&mut self, ticket: Ticket, now: Instant) {
        self.successes += 1;
        if ticket.0 != self.epoch || !self.cfg.enabled {
            return;
        }
        match self.phase {
            Phase::Closed => {
                self.consecutive = 0;
                self.bucket(now).ok += 1;
            }
            Phase::HalfOpen { .. } => self.enter(Phase::Closed),
            Phase::Open { .. } => {}
        }
    }

    pub fn on_failure(&mut self, ticket: Ticket, now: Instant) {
        self.failures += 1;
        if ticket.0 != self.epoch || !self.cfg.enabled {
            return;
        }
        match self.phase {
            Phase::Closed => {
                self.consecutive += 1;
                self.bucket(now).failed += 1;
                if self.consecutive >= self.cfg.failure_threshold || self.rate_tripped(now) {
                    self.open(now);
                }
            }
            Phase::HalfOpen { .. } => self.open(now),
            Phase::Open { .. } => {}
        }
    }

    /// The admitted call ended without a verdict (the caller went away):
    /// frees its half-open probe slot.
    pub fn on_cancel(&mut self, ticket: Ticket) {
        if ticket.0 != self.epoch {
            return;
        }
        if let Phase::HalfOpen { in_flight } = self.phase {
            self.phase = Phase::HalfOpen {
                in_flight: in_flight.saturating_sub(1),
            };
        }
    }

    /// The state as a caller arriving at `now` would find it.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until } if now >= until => BreakerState::HalfOpen,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    pub fn snapshot(&self, now: Instant) -> BreakerSnapshot {
        BreakerSnapshot {
            state: self.state(now),
            consecutive_failures: self.consecutive,
            successes_total: self.successes,
            failures_total: self.failures,
            rejected_total: self.rejected,
            opened_total: self.opened,
        }
    }

    fn open(&mut self, now: Instant) {
        self.opened += 1;
        let until = now + Duration::from_millis(self.cfg.open_ms);
        self.enter(Phase::Open { until });
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.epoch += 1;
        self.consecutive = 0;
        self.buckets = [Bucket::default(); BUCKETS];
    }

    fn index(&self, now: Instant) -> u64 {
        let ms = now.saturating_duration_since(self.origin).as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX) / self.bucket_ms
    }

    fn bucket(&mut self, now: Instant) -> &mut Bucket {
        let index = self.index(now);
        let slot = &mut self.buckets[(index % BUCKETS as u64) as usize];
        if slot.index != index {
            *slot = Bucket {
                index,
                ok: 0,
                failed: 0,
            };
        }
        slot
    }

    fn rate_tripped(&self, now: Instant) -> bool {
        let Some(rate) = self.cfg.failure_rate else {
            return false;
        };
        let current = self.index(now);
        let (ok, failed) = self
            .buckets
            .iter()
            .filter(|b| current.saturating_sub(b.index) < BUCKETS as u64 && b.index <= current)
            .fold((0u64, 0u64), |(o, f), b| (o + u64::from(b.ok), f + u64::from(b.failed)));
        let total = ok + failed;
        total >= u64::from(self.cfg.min_requests) && failed as f64 >= rate * total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            open_ms: 1_000,
            half_open_probes: 1,
            ..BreakerConfig::default()
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn opens_after_consecutive_failures_and_recovers_through_a_probe() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg(), t0);
        for _ in 0..2 {
            let t = b.try_acquire(t0).unwrap();
            b.on_failure(t, t0);
        }
        // A success resets the consecutive count.
        let t = b.try_acquire(t0).unwrap();
        b.on_success(t, t0);
        for _ in 0..3 {
            let t = b.try_acquire(t0).unwrap();
            b.on_failure(t, t0);
        }
        assert_eq!(b.state(t0), BreakerState::Open);
        assert_eq!(b.try_acquire(t0 + ms(500)), Err(ms(500)));
        assert!(!b.is_available(t0 + ms(999)));

        // After open_ms: one probe at a time.
        let probe = b.try_acquire(t0 + ms(1_000)).unwrap();
        assert_eq!(b.state(t0 + ms(1_000)), BreakerState::HalfOpen);
        assert!(b.try_acquire(t0 + ms(1_001)).is_err());
        b.on_success(probe, t0 + ms(1_010));
        assert_eq!(b.state(t0 + ms(1_010)), BreakerState::Closed);

        let snap = b.snapshot(t0 + ms(1_010));
        assert_eq!(snap.opened_total, 1);
        assert_eq!(snap.rejected_total, 2);
        assert_eq!(snap.failures_total, 5);
        assert_eq!(snap.successes_total, 2);
    }

    #[test]
    fn failed_probe_reopens_and_cancel_frees_the_slot() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg(), t0);
        for _ in 0..3 {
            let t = b.try_acquire(t0).unwrap();
            b.on_failure(t, t0);
        }
        let probe = b.try_acquire(t0 + ms(1_000)).unwrap();
        b.on_cancel(probe);
        let probe = b.try_acquire(t0 + ms(1_000)).unwrap();
        b.on_failure(probe, t0 + ms(1_100));
        assert_eq!(b.state(t0 + ms(1_500)), BreakerState::Open);
        assert_eq!(b.state(t0 + ms(2_100)), BreakerState::HalfOpen);
    }

    #[test]
    fn late_answers_from_an_old_epoch_do_not_change_state() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg(), t0);
        let slow = b.try_acquire(t0).unwrap();
        for _ in 0..3 {
            let t = b.try_acquire(t0).unwrap();
            b.on_failure(t, t0);
        }
        let probe = b.try_acquire(t0 + ms(1_000)).unwrap();
        b.on_success(slow, t0 + ms(1_001));
        assert_eq!(b.state(t0 + ms(1_001)), BreakerState::HalfOpen);
        b.on_success(probe, t0 + ms(1_002));
        assert_eq!(b.state(t0 + ms(1_002)), BreakerState::Closed);
    }

    #[test]
    fn failure_rate_over_the_window() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(
            BreakerConfig {
                failure_threshold: 100,
                failure_rate: Some(0.5),
                min_requests: 10,
                window_ms: 1_000,
                ..BreakerConfig::default()
            },
            t0,
        );
        // Alternate ok/fail: 50% but below min_requests until the 10th.
        for i in 0..9u64 {
            let t = b.try_acquire(t0 + ms(i)).unwrap();
            if i % 2 == 0 {
                b.on_success(t, t0 + ms(i));
            } else {
                b.on_failure(t, t0 + ms(i));
            }
        }
        assert_eq!(b.state(t0 + ms(9)), BreakerState::Closed);
        let t = b.try_acquire(t0 + ms(9)).unwrap();
        b.on_failure(t, t0 + ms(9));
        assert_eq!(b.state(t0 + ms(9)), BreakerState::Open);
    }

    #[test]
    fn old_outcomes_leave_the_window() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(
            BreakerConfig {
                failure_threshold: 100,
                failure_rate: Some(0.5),
                min_requests: 4,
                window_ms: 1_000,
                ..BreakerConfig::default()
            },
            t0,
        );
        for _ in 0..3 {
            let t = b.try_acquire(t0).unwrap();
            b.on_failure(t, t0);
        }
        // Two seconds later those failures have aged out: 1 failure of 1.
        let later = t0 + ms(2_000);
        let t = b.try_acquire(later).unwrap();
        b.on_failure(t, later);
        assert_eq!(b.state(later), BreakerState::Closed);
    }

    #[test]
    fn disabled_breaker_never_opens() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(
            BreakerConfig {
                enabled: false,
                failure_threshold: 1,
                ..BreakerConfig::default()
            },
            t0,
        );
        for _ in 0..5 {
            let t = b.try_acquire(t0).unwrap();
            b.on_failure(t, t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
    }
}

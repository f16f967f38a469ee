//! The in-process limiter: a table of GCRA times behind one mutex. The
//! table is a plain struct with the time passed in, so its counts are
//! tested without sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::gcra::{self, Applied, Op};
use super::{charge_op, decision, request_ops, Decision, Limits, Window};

/// Windows above this many are swept of those already full again.
const SWEEP_AT: usize = 100_000;

/// GCRA times per (subject, window); a missing entry is a full window.
#[derive(Debug, Default)]
pub struct LocalTable {
    tats: HashMap<(String, Window), f64>,
}

impl LocalTable {
    pub(crate) fn apply(&mut self, subject: &str, ops: &[(Window, Op)], now_us: f64) -> Applied {
        if self.tats.len() > SWEEP_AT {
            self.tats.retain(|_, tat| *tat > now_us);
        }
        let mut tats: Vec<f64> = ops
            .iter()
            .map(|(w, _)| self.tats.get(&(subject.to_string(), *w)).copied().unwrap_or(0.0))
            .collect();
        let plain: Vec<Op> = ops.iter().map(|(_, op)| *op).collect();
        let applied = gcra::apply(&mut tats, now_us, &plain);
        for ((w, _), tat) in ops.iter().zip(tats) {
            if tat > now_us {
                self.tats.insert((subject.to_string(), *w), tat);
            }
        }
        applied
    }

    /// [`super::Limiter::acquire`] at time `now` (since any fixed origin).
    pub fn acquire(&mut self, subject: &str, limits: &Limits, now: Duration) -> Decision {
        let ops = request_ops(limits);
        let applied = self.apply(subject, &ops, now.as_secs_f64() * 1e6);
        decision(&ops, &applied)
    }

    /// [`super::Limiter::charge_tokens`] at time `now`.
    pub fn charge_tokens(&mut self, subject: &str, limits: &Limits, tokens: u64, now: Duration) {
        if let Some(op) = charge_op(limits, tokens) {
            self.apply(subject, &[op], now.as_secs_f64() * 1e6);
        }
    }
}

#[derive(Debug)]
pub struct LocalLimiter {
    table: Mutex<LocalTable>,
    origin: Instant,
}

impl Default for LocalLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalLimiter {
    pub fn new() -> Self {
        Self {
            table: Mutex::new(LocalTable::default()),
            origin: Instant::now(),
        }
    }

    pub(crate) fn apply(&self, subject: &str, ops: &[(Window, Op)]) -> Applied {
        let now_us = self.origin.elapsed().as_secs_f64() * 1e6;
        // A poisoned lock only means another request panicked mid-update
        // of plain numbers; the table is still usable.
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.apply(subject, ops, now_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn requests_per_minute_exact_at_the_boundary() {
        let mut t = LocalTable::default();
        let limits = Limits {
            requests_per_minute: Some(5),
            ..Limits::default()
        };
        for i in 0..5 {
            let d = t.acquire("k", &limits, secs(100.0));
            assert!(d.allowed, "request {i}");
            let w = d.requests.unwrap_or_else(|| panic!("a requests window"));
            assert_eq!((w.limit, w.remaining), (5, 4 - i));
        }
        let d = t.acquire("k", &limits, secs(100.0));
        assert!(!d.allowed);
        assert_eq!(
            d.retry_after.map(|r| r.as_secs()),
            Some(11),
            "12 s interval less 1 ms tolerance"
        );
        assert_eq!(d.requests.map(|w| (w.remaining, w.reset.as_secs())), Some((0, 60)));
        assert!(d.clone().check().is_err());
        // Another key is untouched.
        assert!(t.acquire("other", &limits, secs(100.0)).allowed);
        // One interval later exactly one more; a full minute later all five.
        assert!(!t.acquire("k", &limits, secs(111.9)).allowed);
        assert!(t.acquire("k", &limits, secs(112.0)).allowed);
        assert!(!t.acquire("k", &limits, secs(112.0)).allowed);
        let later = secs(112.0 + 60.0);
        assert_eq!((0..7).filter(|_| t.acquire("k", &limits, later).allowed).count(), 5);
    }

    #[test]
    fn hour_window_refuses_without_spending_the_minute() {
        let mut t = LocalTable::default();
        let limits = Limits {
            requests_per_minute: Some(10),
            requests_per_hour: Some(3),
            ..Limits::default()
        };
        let allowed = (0..5).filter(|_| t.acquire("k", &limits, secs(0.0)).allowed).count();
        assert_eq!(allowed, 3);
        let d = t.acquire("k", &limits, secs(0.0));
        // The hour window (0 left) is what the headers show.
        assert_eq!(d.requests.map(|w| (w.limit, w.remaining)), Some((3, 0)));
        assert_eq!(d.retry_after.map(|r| r.as_secs()), Some(1199));
    }

    #[test]
    fn tokens_are_checked_before_and_charged_after() {
        let mut t = LocalTable::default();
        let limits = Limits {
            tokens_per_minute: Some(1_000),
            ..Limits::default()
        };
        let d = t.acquire("k", &limits, secs(0.0));
        assert!(d.allowed && d.requests.is_none());
        assert_eq!(d.tokens.map(|w| w.remaining), Some(1_000));
        t.charge_tokens("k", &limits, 999, secs(0.0));
        let d = t.acquire("k", &limits, secs(0.0));
        assert_eq!(d.tokens.map(|w| w.remaining), Some(1));
        assert!(d.allowed);
        t.charge_tokens("k", &limits, 1, secs(0.0));
        let d = t.acquire("k", &limits, secs(0.0));
        assert!(!d.allowed);
        let refused = d.check().err().map(|e| e.what);
        assert_eq!(refused, Some("tokens"));
        // 60 ms later one token has come back.
        assert!(t.acquire("k", &limits, secs(0.06)).allowed);
    }

    #[test]
    fn no_limits_always_allow() {
        let mut t = LocalTable::default();
        let d = t.acquire("k", &Limits::default(), secs(0.0));
        assert!(d.allowed && d.requests.is_none() && d.tokens.is_none());
    }
}

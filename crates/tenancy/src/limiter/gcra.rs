//! GCRA (the generic cell rate algorithm), as plain arithmetic on
//! theoretical arrival times, shared by the local limiter and, line by
//! line, by the Redis script in `redis.rs`.
//!
//! A window of `limit` units per `period` has an emission interval
//! `T = period / limit`. Its state is one number, the theoretical arrival
//! time `tat`; a unit costs `T`, and `cost` units are allowed when
//! `max(tat, now) + cost·T − now ≤ period`. That admits exactly `limit`
//! units at once and then one per `T`, with no per-second bookkeeping.
//! Times are `f64` microseconds; a tolerance of `min(T/2, 1 ms)` absorbs
//! float rounding so the count at the boundary is exact.

/// What an operation does to one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Would `cost` be allowed? Changes nothing (tokens, before a request).
    Peek,
    /// Allowed only if every non-forced window allows it, then recorded.
    Take,
    /// Recorded whatever the state (tokens, after the answer).
    Force,
}

impl Mode {
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Peek => 0,
            Self::Take => 1,
            Self::Force => 2,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Op {
    pub period_us: f64,
    pub limit: u64,
    pub cost: f64,
    pub mode: Mode,
}

/// A window after the operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct After {
    pub remaining: u64,
    /// Until the window is full again.
    pub reset_us: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Applied {
    pub allowed: bool,
    /// When refused: the wait until the refusing windows would allow it.
    pub retry_us: f64,
    pub windows: Vec<After>,
}

fn interval(op: &Op) -> f64 {
    op.period_us / op.limit.max(1) as f64
}

fn tolerance(interval: f64) -> f64 {
    (interval / 2.0).min(1_000.0)
}

/// Applies `ops` to the windows whose times are `tats` (0 for a fresh
/// window), all or nothing for the `Take` ones.
pub(crate) fn apply(tats: &mut [f64], now: f64, ops: &[Op]) -> Applied {
    let mut allowed = true;
    let mut retry_us: f64 = 0.0;
    let mut next = Vec::with_capacity(ops.len());
    for (tat, op) in tats.iter().zip(ops) {
        let t = interval(op);
        let new_tat = tat.max(now) + op.cost * t;
        let over = new_tat - now - (op.period_us + tolerance(t));
        if op.mode != Mode::Force && over > 0.0 {
            allowed = false;
            retry_us = retry_us.max(over);
        }
        next.push(new_tat);
    }
    let mut windows = Vec::with_capacity(ops.len());
    for ((tat, op), new_tat) in tats.iter_mut().zip(ops).zip(next) {
        let commit = match op.mode {
            Mode::Force => true,
            Mode::Take => allowed,
            Mode::Peek => false,
        };
        if commit {
            *tat = new_tat;
        }
        let t = interval(op);
        let ahead = (*tat - now).max(0.0);
        let free = ((op.period_us + tolerance(t) - ahead) / t).floor();
        windows.push(After {
            remaining: free.clamp(0.0, op.limit as f64) as u64,
            reset_us: ahead,
        });
    }
    Applied {
        allowed,
        retry_us,
        windows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: f64 = 60e6;

    fn take(limit: u64) -> Op {
        Op {
            period_us: MINUTE,
            limit,
            cost: 1.0,
            mode: Mode::Take,
        }
    }

    #[test]
    fn exactly_the_limit_at_once_then_one_per_interval() {
        for limit in [1, 3, 7, 60, 1000, 99_991] {
            let mut tat = [0.0];
            let now = 5e13; // about 19 months after the Redis script's epoch
            for i in 0..limit {
                let a = apply(&mut tat, now, &[take(limit)]);
                assert!(a.allowed, "limit {limit}: request {i}");
                assert_eq!(a.windows[0].remaining, limit - i - 1);
            }
            let a = apply(&mut tat, now, &[take(limit)]);
            assert!(!a.allowed, "limit {limit}: one over");
            let t = MINUTE / limit as f64;
            assert!(a.retry_us > 0.0 && a.retry_us <= t, "{} vs {t}", a.retry_us);
            // After the retry time, exactly one more.
            let later = now + a.retry_us + 0.01;
            assert!(apply(&mut tat, later, &[take(limit)]).allowed);
            assert!(!apply(&mut tat, later, &[take(limit)]).allowed);
        }
    }

    #[test]
    fn a_refused_window_takes_nothing_from_the_others() {
        let mut tats = [0.0, 0.0];
        let hour = Op {
            period_us: 3600e6,
            ..take(2)
        };
        assert!(apply(&mut tats, 0.0, &[take(10), hour]).allowed);
        assert!(apply(&mut tats, 0.0, &[take(10), hour]).allowed);
        let a = apply(&mut tats, 0.0, &[take(10), hour]);
        assert!(!a.allowed);
        assert_eq!(a.windows[0].remaining, 8, "the minute window kept its units");
        assert!((a.retry_us - (1800e6 - 1_000.0)).abs() < 1.0, "{}", a.retry_us);
    }

    #[test]
    fn tokens_are_peeked_before_and_forced_after() {
        let peek = Op {
            mode: Mode::Peek,
            ..take(100)
        };
        let force = |n| Op {
            cost: n,
            mode: Mode::Force,
            ..take(100)
        };
        let mut tat = [0.0];
        let a = apply(&mut tat, 0.0, &[peek]);
        assert!(a.allowed && a.windows[0].remaining == 100);
        apply(&mut tat, 0.0, &[force(99.0)]);
        assert_eq!(apply(&mut tat, 0.0, &[peek]).windows[0].remaining, 1);
        // An answer larger than what was left still counts in full.
        apply(&mut tat, 0.0, &[force(51.0)]);
        let a = apply(&mut tat, 0.0, &[peek]);
        assert!(!a.allowed);
        assert_eq!(a.windows[0].remaining, 0);
        assert!((a.windows[0].reset_us - 1.5 * MINUTE).abs() < 1.0);
        // Half a minute later the debt is paid and one token is free again.
        assert!(apply(&mut tat, 0.5 * MINUTE + 0.6e6, &[peek]).allowed);
    }
}

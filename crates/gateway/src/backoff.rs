//! Retry delays: exponential backoff with full jitter, and `Retry-After`.

use std::time::Duration;

use http::header::{HeaderMap, RETRY_AFTER};
use rand::Rng;

use crate::config::RetryConfig;

/// The sleep before retry number `retry` (1 for the first retry).
///
/// The ceiling is `backoff_base_ms · 2^(retry-1)`, capped at `backoff_max_ms`;
/// with jitter the sleep is uniform in `[0, ceiling]` ("full jitter", which
/// spreads retries of many clients best). An upstream's `Retry-After` replaces
/// the computed sleep, still capped at `backoff_max_ms`.
pub(crate) fn delay(cfg: &RetryConfig, retry: u32, retry_after: Option<Duration>) -> Duration {
    let max = Duration::from_millis(cfg.backoff_max_ms);
    if let Some(after) = retry_after {
        return after.min(max);
    }
    let shift = retry.saturating_sub(1).min(32);
    let ceiling = cfg
        .backoff_base_ms
        .saturating_mul(1u64 << shift)
        .min(cfg.backoff_max_ms);
    let ms = if cfg.jitter {
        rand::rng().random_range(0..=ceiling)
    } else {
        ceiling
    };
    Duration::from_millis(ms)
}

/// `Retry-After` in delta-seconds (the form rate limiters send). An HTTP date
/// is ignored and the computed backoff is used instead.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(jitter: bool) -> RetryConfig {
        RetryConfig {
            max_retries: 5,
            backoff_base_ms: 100,
            backoff_max_ms: 1_000,
            jitter,
        }
    }

    #[test]
    fn exponential_and_capped() {
        let ms = |r| delay(&cfg(false), r, None).as_millis();
        assert_eq!([ms(1), ms(2), ms(3), ms(4), ms(5)], [100, 200, 400, 800, 1000]);
        assert_eq!(ms(100), 1000);
    }

    #[test]
    fn full_jitter_stays_under_the_ceiling() {
        for _ in 0..200 {
            assert!(delay(&cfg(true), 2, None) <= Duration::from_millis(200));
        }
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let c = cfg(true);
        assert_eq!(
            delay(&c, 1, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(delay(&c, 1, Some(Duration::from_secs(30))), Duration::from_secs(1));
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}

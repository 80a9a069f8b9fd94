//! How long to wait before trying again after a failure: the outbox (a delivery or the spool
//! failed), the hub session (a connection failed) and the hub's twin requests all use
//! [`full_jitter`]. (The container watcher's reconnect waits double from 0.5 s to 30 s with a
//! little jitter instead: `container::events`.)

use std::time::Duration;

/// Exponential backoff with full jitter: a random delay in `[min, min·2^attempt]`, capped.
pub fn full_jitter(min: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = min
        .saturating_mul(1u32 << attempt.min(16))
        .min(max)
        .max(min);
    let span = (ceiling - min).as_millis() as u64;
    min + Duration::from_millis(fastrand::u64(0..=span))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_stays_capped() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        for attempt in 0..40 {
            let d = full_jitter(min, max, attempt);
            assert!(d >= min && d <= max, "{d:?}");
        }
        let late: Vec<Duration> = (0..50).map(|_| full_jitter(min, max, 10)).collect();
        assert!(late.iter().any(|d| *d > Duration::from_secs(1)), "grows");
        assert!(late.windows(2).any(|w| w[0] != w[1]), "jitters");
    }
}

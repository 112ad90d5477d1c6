//! Reconnection delays: capped exponential backoff with jitter.
//!
//! The base delay is the stream's reconnection time (the initial value from the builder, then
//! whatever the hub sets with a `retry:` field). Each consecutive failure doubles the ceiling up to
//! a cap; the delay actually waited is drawn uniformly from the upper half of the ceiling, so a
//! crowd of clients that lost the same hub does not come back in lockstep. This module does no
//! I/O and never sleeps: the subscriber does.

use std::time::Duration;

use rand::Rng;

/// Capped exponential backoff with "equal jitter": the `n`th consecutive retry waits a uniformly
/// random time in `[c/2, c]` where `c = min(base * 2^n, max(cap, base))`.
///
/// A `retry:` value larger than the cap is honoured: the cap only limits growth.
///
/// ```
/// use std::time::Duration;
/// use herald_client::Backoff;
///
/// let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// let first = backoff.next_delay();
/// assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
/// for _ in 0..10 {
///     assert!(backoff.next_delay() <= Duration::from_secs(1));
/// }
/// backoff.reset();
/// assert_eq!(backoff.ceiling(), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff starting at `base` whose growth stops at `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            failures: 0,
        }
    }

    /// Sets the base delay (the stream's `retry:` value) without touching the failure count.
    pub fn set_base(&mut self, base: Duration) {
        self.base = base;
    }

    /// The base delay.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The cap on growth.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// Consecutive failures since the last [`reset`](Self::reset).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets the failures: call after a successful connection.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The upper bound of the next delay, before jitter.
    pub fn ceiling(&self) -> Duration {
        let limit = self.cap.max(self.base);
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(limit)
    }

    /// The next delay to wait (jittered with the thread's random generator); counts one failure.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(&mut rand::rng())
    }

    /// As [`next_delay`](Self::next_delay) with a given random generator.
    pub fn next_delay_with<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        let low = nanos / 2;
        Duration::from_nanos(rng.random_range(low..=nanos))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceiling_doubles_then_stops_at_the_cap() {
        let mut backoff = Backoff::new(100 * MS, 1000 * MS);
        let mut rng = StdRng::seed_from_u64(7);
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            ceilings.push(backoff.ceiling());
            backoff.next_delay_with(&mut rng);
        }
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1000, 1000, 1000, 1000].map(|n| n * MS)
        );
        assert_eq!(backoff.failures(), 8);
        backoff.reset();
        assert_eq!(backoff.ceiling(), 100 * MS);
    }

    #[test]
    fn every_delay_is_within_the_upper_half_of_its_ceiling() {
        let mut rng = StdRng::seed_from_u64(42);
        for _ in 0..200 {
            let mut backoff = Backoff::new(30 * MS, 5000 * MS);
            for _ in 0..20 {
                let ceiling = backoff.ceiling();
                let delay = backoff.next_delay_with(&mut rng);
                assert!(delay <= ceiling, "{delay:?} > {ceiling:?}");
                assert!(delay >= ceiling / 2, "{delay:?} < half of {ceiling:?}");
                assert!(delay <= 5000 * MS);
            }
        }
    }

    #[test]
    fn jitter_spreads_clients_apart() {
        let mut rng = StdRng::seed_from_u64(1);
        let delays: std::collections::BTreeSet<Duration> = (0..100)
            .map(|_| Backoff::new(1000 * MS, 30_000 * MS).next_delay_with(&mut rng))
            .collect();
        // 100 clients losing the hub at once do not all come back at the same instant.
        assert!(delays.len() > 90, "only {} distinct delays", delays.len());
        let spread = *delays.last().unwrap() - *delays.first().unwrap();
        assert!(spread > 300 * MS, "spread {spread:?}");
    }

    #[test]
    fn a_retry_above_the_cap_is_honoured_and_a_huge_count_does_not_overflow() {
        let mut backoff = Backoff::new(10 * MS, 1000 * MS);
        backoff.set_base(5000 * MS);
        assert_eq!(backoff.ceiling(), 5000 * MS);
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..100 {
            assert!(backoff.next_delay_with(&mut rng) <= 5000 * MS);
        }
        let mut huge = Backoff::new(Duration::from_secs(u64::MAX / 4), Duration::MAX);
        for _ in 0..70 {
            huge.next_delay_with(&mut rng);
        }
        assert!(huge.ceiling() <= Duration::MAX);
    }

    #[test]
    fn a_zero_base_never_waits() {
        let mut backoff = Backoff::new(Duration::ZERO, 1000 * MS);
        assert_eq!(backoff.next_delay(), Duration::ZERO);
        assert_eq!(backoff.next_delay(), Duration::ZERO);
    }
}

//! What `herald bench` measures: a log-linear latency histogram, and per-subscription
//! bookkeeping that counts each delivery exactly once however updates are reordered.
//!
//! Pure counting: no I/O. Shared between the connections of one process through atomics; a
//! worker process ships a [`ShardResult`] to the lead, which merges them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch: the clock every process of a run shares.
pub(super) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(super) const SUB_BITS: u32 = 5;
pub(super) const SUB_BUCKETS: usize = 1 << SUB_BITS;
pub(super) const BUCKETS: usize = SUB_BUCKETS * (64 - SUB_BITS as usize + 1);

pub(super) fn bucket_of(micros: u64) -> usize {
    if micros < SUB_BUCKETS as u64 {
        return micros as usize;
    }
    let exponent = 63 - micros.leading_zeros(); // >= SUB_BITS
    let shift = exponent - SUB_BITS;
    let mantissa = ((micros >> shift) as usize) & (SUB_BUCKETS - 1);
    SUB_BUCKETS * (shift as usize + 1) + mantissa
}

/// The upper bound (inclusive) of a bucket, in microseconds.
pub(super) fn bucket_high(bucket: usize) -> u64 {
    if bucket < SUB_BUCKETS {
        return bucket as u64;
    }
    let shift = (bucket / SUB_BUCKETS - 1) as u32;
    let mantissa = (bucket % SUB_BUCKETS) as u128;
    let high = ((SUB_BUCKETS as u128 + mantissa + 1) << shift.min(64)) - 1;
    u64::try_from(high).unwrap_or(u64::MAX)
}

/// Shared by every connection of one process.
pub(super) struct Histogram {
    pub(super) buckets: Box<[AtomicU64]>,
    pub(super) max: AtomicU64,
}

impl Histogram {
    pub(super) fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }

    pub(super) fn record(&self, micros: u64) {
        if let Some(bucket) = self.buckets.get(bucket_of(micros)) {
            bucket.fetch_add(1, Relaxed);
        }
        self.max.fetch_max(micros, Relaxed);
    }

    /// Non-empty buckets as (index, count).
    pub(super) fn snapshot(&self) -> Vec<(usize, u64)> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(index, count)| (index, count.load(Relaxed)))
            .filter(|(_, count)| *count > 0)
            .collect()
    }
}

/// Percentiles from merged sparse buckets: the upper bound of the bucket holding the rank, but
/// never above `max`, the largest sample seen (a bucket's bound can exceed every sample in it,
/// which once reported a p99 of 2.69 ms beside a max of 2.68 ms).
pub(super) fn percentile(buckets: &[u64], total: u64, quantile: f64, max: u64) -> u64 {
    bucket_percentile(buckets, total, quantile).min(max)
}

fn bucket_percentile(buckets: &[u64], total: u64, quantile: f64) -> u64 {
    if total == 0 {
        return 0;
    }
    let rank = ((total as f64) * quantile).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (index, count) in buckets.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return bucket_high(index);
        }
    }
    buckets
        .iter()
        .rposition(|count| *count > 0)
        .map(bucket_high)
        .unwrap_or(0)
}

/// How far past the oldest missing number a subscription keeps track: 65,536 numbers, a bitmap
/// of 8 KiB at most.
pub(super) const MAX_AHEAD: u64 = 1 << 16;

/// Which per-topic sequence numbers one subscription has seen: all below `next`, plus a
/// bitmap of those after it (bit `j` of `ahead[i]` is `next + 64 i + j`). Publishes in flight
/// at once reach the server in any order, and a busy server may take one of them far later
/// than the ones sent after it (nginx+nchan at saturation delivered updates 1,500 numbers
/// late), so the bitmap grows with how far ahead an arrival is, up to [`MAX_AHEAD`]; while
/// updates arrive in order it stays empty and allocates nothing.
#[derive(Debug, Default)]
pub(super) struct Window {
    pub(super) next: u64,
    pub(super) ahead: VecDeque<u64>,
}

impl Window {
    /// Records `n`; false if it was already seen (a duplicate).
    pub(super) fn insert(&mut self, n: u64) -> bool {
        if n < self.next {
            return false;
        }
        if n == self.next && self.ahead.is_empty() {
            self.next += 1;
            return true;
        }
        if n - self.next >= MAX_AHEAD {
            // Too far ahead: give up on the oldest gaps (they count as lost).
            self.skip(n - self.next - (MAX_AHEAD - 1));
            self.skip_seen();
        }
        let offset = n - self.next;
        let (word, bit) = ((offset / 64) as usize, offset % 64);
        if self.ahead.len() <= word {
            self.ahead.resize(word + 1, 0);
        }
        let Some(bits) = self.ahead.get_mut(word) else {
            return false;
        };
        if *bits & (1 << bit) != 0 {
            return false;
        }
        *bits |= 1 << bit;
        if offset == 0 {
            self.skip_seen();
        }
        true
    }

    /// Moves `next` past the numbers seen from it on.
    fn skip_seen(&mut self) {
        while self.ahead.front() == Some(&u64::MAX) {
            self.ahead.pop_front();
            self.next += 64;
        }
        let ones = self
            .ahead
            .front()
            .map_or(0, |bits| u64::from(bits.trailing_ones()));
        self.skip(ones);
    }

    /// Moves `next` forward by `count`, seen or not.
    fn skip(&mut self, count: u64) {
        let words = usize::try_from(count / 64).unwrap_or(usize::MAX);
        self.ahead.drain(..words.min(self.ahead.len()));
        let shift = count % 64;
        if shift > 0 {
            for index in 0..self.ahead.len() {
                let carry = self
                    .ahead
                    .get(index + 1)
                    .map_or(0, |bits| bits << (64 - shift));
                if let Some(bits) = self.ahead.get_mut(index) {
                    *bits = (*bits >> shift) | carry;
                }
            }
        }
        self.next += count;
        while self.ahead.back() == Some(&0) {
            self.ahead.pop_back();
        }
    }
}

/// Per-topic counters of one process.
#[derive(Default)]
pub(super) struct TopicCounters {
    pub(super) subscribers: AtomicU64,
    pub(super) unique: AtomicU64,
    pub(super) duplicates: AtomicU64,
}

/// What the connections of one process count, shared with the reporting side.
pub(super) struct Counters {
    pub(super) connected: AtomicUsize,
    pub(super) failed: AtomicUsize,
    pub(super) disconnected: AtomicUsize,
    pub(super) delivered: AtomicU64,
    pub(super) last_delivery: AtomicU64,
    pub(super) topics: Vec<TopicCounters>,
    pub(super) latency: Histogram,
    pub(super) first_error: Mutex<Option<String>>,
}

impl Counters {
    pub(super) fn new(topics: usize) -> Self {
        Self {
            connected: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            disconnected: AtomicUsize::new(0),
            delivered: AtomicU64::new(0),
            last_delivery: AtomicU64::new(0),
            topics: (0..topics).map(|_| TopicCounters::default()).collect(),
            latency: Histogram::new(),
            first_error: Mutex::new(None),
        }
    }

    pub(super) fn note_error(&self, error: String) {
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some(error);
        }
    }

    pub(super) fn topic_subscribers(&self) -> Vec<u64> {
        self.topics
            .iter()
            .map(|topic| topic.subscribers.load(Relaxed))
            .collect()
    }

    pub(super) fn result(&self) -> ShardResult {
        ShardResult {
            connected: self.connected.load(Relaxed),
            failed: self.failed.load(Relaxed),
            disconnected: self.disconnected.load(Relaxed),
            last_delivery_us: self.last_delivery.load(Relaxed),
            topics: self
                .topics
                .iter()
                .map(|topic| TopicResult {
                    subscribers: topic.subscribers.load(Relaxed),
                    unique: topic.unique.load(Relaxed),
                    duplicates: topic.duplicates.load(Relaxed),
                })
                .collect(),
            latency: self.latency.snapshot(),
            latency_max_us: self.latency.max.load(Relaxed),
            first_error: self
                .first_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// What a share of the subscriptions saw, as sent from a worker to the lead.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct ShardResult {
    pub(super) connected: usize,
    pub(super) failed: usize,
    pub(super) disconnected: usize,
    pub(super) last_delivery_us: u64,
    pub(super) topics: Vec<TopicResult>,
    pub(super) latency: Vec<(usize, u64)>,
    pub(super) latency_max_us: u64,
    pub(super) first_error: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(super) struct TopicResult {
    pub(super) subscribers: u64,
    pub(super) unique: u64,
    pub(super) duplicates: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut previous = 0;
        for micros in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let bucket = bucket_of(micros);
            assert!(bucket < BUCKETS);
            assert!(bucket >= previous || micros > 100_000);
            previous = bucket;
            let high = bucket_high(bucket);
            assert!(
                high >= micros,
                "{micros} in bucket {bucket} whose top is {high}"
            );
            // Within ~3.2% of the value.
            assert!(high - micros <= micros / 31 + 1, "{micros}: {high}");
        }
    }

    #[test]
    fn percentiles_come_from_the_buckets() {
        let histogram = Histogram::new();
        for micros in 1..=1000 {
            histogram.record(micros);
        }
        let mut buckets = vec![0; BUCKETS];
        for (index, count) in histogram.snapshot() {
            buckets[index] = count;
        }
        let p50 = percentile(&buckets, 1000, 0.5, 1000);
        assert!((500..=520).contains(&p50), "{p50}");
        let p99 = percentile(&buckets, 1000, 0.99, 1000);
        assert!((990..=1000).contains(&p99), "{p99}");
        assert_eq!(percentile(&buckets, 0, 0.5, 0), 0);
    }

    #[test]
    fn no_percentile_is_above_the_max() {
        // 2,680 µs lands in a bucket whose upper bound is 2,687 µs.
        let histogram = Histogram::new();
        for micros in [100, 200, 2_600, 2_680] {
            histogram.record(micros);
        }
        let mut buckets = vec![0; BUCKETS];
        for (index, count) in histogram.snapshot() {
            buckets[index] = count;
        }
        let max = histogram.max.load(Relaxed);
        assert_eq!(max, 2_680);
        assert!(bucket_high(bucket_of(2_680)) > 2_680);
        let p99 = percentile(&buckets, 4, 0.99, max);
        assert_eq!(p99, 2_680);
        let p50 = percentile(&buckets, 4, 0.5, max);
        assert!(p50 <= p99 && p99 <= max, "{p50} {p99} {max}");
    }

    #[test]
    fn the_window_counts_each_number_once_in_any_order() {
        let mut window = Window::default();
        let order = [0, 2, 1, 1, 5, 3, 4, 0, 6, 2];
        let fresh: Vec<bool> = order.iter().map(|n| window.insert(*n)).collect();
        assert_eq!(
            fresh,
            [
                true, true, true, false, true, true, true, false, true, false
            ]
        );
        assert_eq!(window.next, 7);
        assert!(window.ahead.is_empty());
        // A gap far ahead slides the window; the skipped numbers are lost.
        let far = 7 + MAX_AHEAD + 1000;
        assert!(window.insert(far));
        assert!(!window.insert(far));
        assert!(window.insert(far - 1));
        assert!(!window.insert(10));
        assert!(window.insert(far - MAX_AHEAD + 1));
        assert!(!window.insert(far - MAX_AHEAD));
    }

    #[test]
    fn late_arrivals_far_behind_count_once() {
        // Number 0 arrives after 0..3000's others, as when a server takes one publish late.
        let mut window = Window::default();
        for n in 1..3000 {
            assert!(window.insert(n), "{n}");
        }
        assert_eq!(window.next, 0);
        assert!(window.insert(0));
        assert_eq!(window.next, 3000);
        assert!(window.ahead.is_empty());
        for n in [0, 1, 1500, 2999] {
            assert!(!window.insert(n), "{n}");
        }
        // Gaps filled in any order, across word boundaries.
        let order: Vec<u64> = (3000..3300).rev().chain(3300..3400).collect();
        for n in &order {
            assert!(window.insert(*n), "{n}");
        }
        assert_eq!(window.next, 3400);
        assert!(window.ahead.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn any_order_counts_each_number_once(order in proptest::collection::vec(0u64..5000, 0..600)) {
            let mut window = Window::default();
            let mut seen = std::collections::HashSet::new();
            for n in order {
                proptest::prop_assert_eq!(window.insert(n), seen.insert(n), "{}", n);
            }
            let mut next = 0;
            while seen.contains(&next) {
                next += 1;
            }
            proptest::prop_assert_eq!(window.next, next);
        }
    }
}

//! Fan-out micro benchmarks: one committed update queued for many subscribers.
//!
//! Only `Hub::fan_out` is timed. Between iterations every mailbox is drained (untimed) with a
//! no-op waker so queues never fill and every push takes the normal `Queued` path. Throughput is
//! set to the number of deliveries per iteration, so criterion's `thrpt` line is deliveries/s and
//! `time / deliveries` is the cost of one delivery.
//!
//! - `exact_one_topic/10000`: 10,000 subscribers of the same exact topic, one update.
//! - `exact_distinct_topics/N`: N subscribers each on its own topic, one update reaching one of
//!   them. The exact-topic index makes this flat in N.
//! - `star/1000`: 1,000 `*` subscribers (no index: every pattern subscriber is scanned).
//! - `exact_one_topic_with_drain/10000`: as the first, but the drain is timed too (the consumer
//!   side of the mailbox: lock, move the queue out, release).
//! - `template/1000` and `urlpattern/1000`: 1,000 subscribers sharing one URI template (0.x)
//!   or one URL Pattern (1.0 `match_urlpattern`); both are interned and cached per topic, so
//!   the pattern is matched once per update, not once per subscriber.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use herald::hub::mailbox::Delivery;
use herald::hub::{Hub, Subscription};
use herald::topic::SelectorSet;
use herald::update::{Draft, Update};

/// Queue capacity of every subscriber. Queues allocate on demand, so the capacity (the server's
/// default is 1,024) does not change the cost of a push; one update per iteration never fills it.
const CAPACITY: usize = 64;

fn update(topic: &str) -> Arc<Update> {
    Arc::new(
        Update::from_draft(Draft {
            topics: vec![topic.to_owned()],
            data: r#"{"type":"update","body":"a payload of a realistic size"}"#.to_owned(),
            ..Draft::default()
        })
        .unwrap(),
    )
}

fn subscribe_all<I, S>(hub: &Arc<Hub>, topics: I) -> Vec<Subscription>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    topics
        .into_iter()
        .map(|topic| hub.subscribe(SelectorSet::parse([topic]), None).unwrap())
        .collect()
}

/// Empties every mailbox; returns how many deliveries were taken out.
fn drain(subscriptions: &[Subscription], out: &mut Vec<Delivery>) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    let mut taken = 0;
    for subscription in subscriptions {
        let _ = subscription.subscriber().mailbox.poll_drain(&mut cx, out);
        taken += out.len();
        out.clear();
    }
    taken
}

/// Times `iters` fan-outs of `batch`, draining (untimed) after each.
fn timed_fan_out(
    hub: &Hub,
    subscriptions: &[Subscription],
    batch: &[Arc<Update>],
    expected: usize,
    iters: u64,
) -> Duration {
    let mut out = Vec::with_capacity(CAPACITY);
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        hub.fan_out(black_box(batch));
        total += start.elapsed();
        let taken = drain(subscriptions, &mut out);
        debug_assert_eq!(taken, expected);
        black_box(taken);
    }
    total
}

fn exact_one_topic(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    let subscribers = 10_000;
    let hub = Hub::new(CAPACITY);
    let subscriptions = subscribe_all(&hub, std::iter::repeat_n("t", subscribers));
    let batch = [update("t")];
    // Sanity check outside the measurement: every subscriber gets it exactly once.
    hub.fan_out(&batch);
    assert_eq!(drain(&subscriptions, &mut Vec::new()), subscribers);

    group.throughput(Throughput::Elements(subscribers as u64));
    group.bench_function(BenchmarkId::new("exact_one_topic", subscribers), |b| {
        b.iter_custom(|iters| timed_fan_out(&hub, &subscriptions, &batch, subscribers, iters));
    });
    group.bench_function(
        BenchmarkId::new("exact_one_topic_with_drain", subscribers),
        |b| {
            let mut out = Vec::with_capacity(CAPACITY);
            b.iter(|| {
                hub.fan_out(black_box(&batch));
                drain(&subscriptions, &mut out)
            });
        },
    );
    group.finish();
}

fn exact_distinct_topics(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    // One delivery per iteration whatever the number of subscribers.
    group.throughput(Throughput::Elements(1));
    for subscribers in [1_000, 10_000, 100_000] {
        let hub = Hub::new(CAPACITY);
        let subscriptions = subscribe_all(&hub, (0..subscribers).map(|i| format!("topic/{i}")));
        let batch = [update(&format!("topic/{}", subscribers / 2))];
        hub.fan_out(&batch);
        assert_eq!(drain(&subscriptions, &mut Vec::new()), 1);
        // Only the one subscriber that received it needs draining.
        let receiver = &subscriptions[subscribers / 2..=subscribers / 2];
        group.bench_function(
            BenchmarkId::new("exact_distinct_topics", subscribers),
            |b| {
                b.iter_custom(|iters| timed_fan_out(&hub, receiver, &batch, 1, iters));
            },
        );
    }
    group.finish();
}

fn star(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    let subscribers = 1_000;
    let hub = Hub::new(CAPACITY);
    let subscriptions = subscribe_all(&hub, std::iter::repeat_n("*", subscribers));
    let batch = [update("some/topic")];
    hub.fan_out(&batch);
    assert_eq!(drain(&subscriptions, &mut Vec::new()), subscribers);

    group.throughput(Throughput::Elements(subscribers as u64));
    group.bench_function(BenchmarkId::new("star", subscribers), |b| {
        b.iter_custom(|iters| timed_fan_out(&hub, &subscriptions, &batch, subscribers, iters));
    });
    group.finish();
}

fn shared_patterns(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    let subscribers = 1_000;
    let base = url::Url::parse("https://hub.example/.well-known/mercure").unwrap();
    let cases: [(&str, SelectorSet); 2] = [
        (
            "template",
            SelectorSet::parse(["https://example.com/books/{id}"]),
        ),
        (
            "urlpattern",
            SelectorSet::from_selectors([herald::topic::Selector::url_pattern(
                "https://example.com/books/:id",
                &base,
            )
            .unwrap()]),
        ),
    ];
    for (name, selectors) in cases {
        let hub = Hub::new(CAPACITY);
        let subscriptions: Vec<Subscription> = (0..subscribers)
            .map(|_| hub.subscribe(selectors.clone(), None).unwrap())
            .collect();
        let batch = [update("https://example.com/books/42")];
        hub.fan_out(&batch);
        assert_eq!(drain(&subscriptions, &mut Vec::new()), subscribers);
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_function(BenchmarkId::new(name, subscribers), |b| {
            b.iter_custom(|iters| timed_fan_out(&hub, &subscriptions, &batch, subscribers, iters));
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    exact_one_topic,
    exact_distinct_topics,
    star,
    shared_patterns
);
criterion_main!(benches);

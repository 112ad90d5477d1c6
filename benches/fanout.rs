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
//! - `template_shared/1000`: 1,000 subscribers of one URI template, one update matching it.
//! - `template_distinct/1000`: 1,000 subscribers each on its own template
//!   (`https://example.com/rooms/{i}/{msg}`), one update reaching one of them: the literal-prefix
//!   index makes this flat in N.
//! - `template_hostile/50`: 50 subscribers, each with 8 distinct templates that all start with an
//!   expression (no literal prefix to index), 304 complexity units in all (a little above the
//!   default limit of 256), and 1 KiB topics none of them matches, all different so no answer
//!   cache helps: the worst case the limits allow, 50 times.
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

fn templates(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    group.sample_size(20);

    let subscribers = 1_000;
    let hub = Hub::new(CAPACITY);
    let subscriptions = subscribe_all(
        &hub,
        std::iter::repeat_n("https://example.com/books/{id}", subscribers),
    );
    let batch = [update("https://example.com/books/42")];
    hub.fan_out(&batch);
    assert_eq!(drain(&subscriptions, &mut Vec::new()), subscribers);
    group.throughput(Throughput::Elements(subscribers as u64));
    group.bench_function(BenchmarkId::new("template_shared", subscribers), |b| {
        b.iter_custom(|iters| timed_fan_out(&hub, &subscriptions, &batch, subscribers, iters));
    });
    drop(subscriptions);

    let hub = Hub::new(CAPACITY);
    let subscriptions = subscribe_all(
        &hub,
        (0..subscribers).map(|i| format!("https://example.com/rooms/{i}/{{msg}}")),
    );
    let batch = [update(&format!(
        "https://example.com/rooms/{}/hello",
        subscribers / 2
    ))];
    hub.fan_out(&batch);
    assert_eq!(drain(&subscriptions, &mut Vec::new()), 1);
    let receiver = &subscriptions[subscribers / 2..=subscribers / 2];
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("template_distinct", subscribers), |b| {
        b.iter_custom(|iters| timed_fan_out(&hub, receiver, &batch, 1, iters));
    });
    drop(subscriptions);

    // Eight templates per subscriber, 38 complexity units each, all different, none with a
    // literal prefix; the topics match none of them.
    let hostile = 50;
    let hub = Hub::new(CAPACITY);
    let subscriptions: Vec<Subscription> = (0..hostile)
        .map(|s| {
            let selectors: Vec<String> = (0..8)
                .map(|t| {
                    (0..6)
                        .map(|v| format!("{{+s{s}t{t}v{v}}}"))
                        .collect::<String>()
                        + "!"
                })
                .collect();
            hub.subscribe(SelectorSet::parse(&selectors), None).unwrap()
        })
        .collect();
    // Distinct topics, more than any answer cache holds, so every fan-out runs the matchers.
    let batches: Vec<[Arc<Update>; 1]> = (0..4096)
        .map(|n| [update(&format!("{n}/{}", "a/".repeat(510)))])
        .collect();
    hub.fan_out(&batches[0]);
    assert_eq!(drain(&subscriptions, &mut Vec::new()), 0);
    group.throughput(Throughput::Elements(hostile as u64));
    group.bench_function(BenchmarkId::new("template_hostile", hostile), |b| {
        let mut next = 0;
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                hub.fan_out(black_box(&batches[next % batches.len()]));
                next += 1;
            }
            start.elapsed()
        });
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
    templates,
    shared_patterns
);
criterion_main!(benches);

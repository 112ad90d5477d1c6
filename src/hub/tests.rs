//! Tests of the hub: fan-out, visibility, subscriber lifecycle, token expiry, heartbeats.

use std::task::{Context, Poll, Waker};

use super::mailbox::{Delivery, Status};
use super::*;
use crate::topic::Selector;
use crate::update::Draft;

fn update(topics: &[&str], private: bool) -> Arc<Update> {
    Arc::new(
        Update::from_draft(Draft {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            private,
            ..Draft::default()
        })
        .unwrap(),
    )
}

fn received(subscription: &Subscription) -> Vec<String> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    let _ = subscription
        .subscriber()
        .mailbox
        .poll_drain(&mut cx, &mut out);
    out.into_iter()
        .filter_map(|d| match d {
            Delivery::Update(u) => Some(u.topic().to_owned()),
            Delivery::Comment(_) => None,
        })
        .collect()
}

#[test]
fn each_matching_subscriber_gets_each_update_once() {
    let hub = Hub::new(16);
    let exact = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
    let both = hub.subscribe(SelectorSet::parse(["a", "*"]), None).unwrap();
    let other = hub.subscribe(SelectorSet::parse(["b"]), None).unwrap();
    hub.fan_out(&[update(&["a"], false), update(&["a", "b"], false)]);
    assert_eq!(received(&exact), ["a", "a"]);
    assert_eq!(received(&both), ["a", "a"]);
    assert_eq!(received(&other), ["a"]);
}

#[test]
fn private_updates_need_a_matching_claim() {
    let hub = Hub::new(16);
    let public = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
    let allowed = hub
        .subscribe(SelectorSet::parse(["a"]), Some(SelectorSet::parse(["a"])))
        .unwrap();
    let other_claim = hub
        .subscribe(SelectorSet::parse(["a"]), Some(SelectorSet::parse(["b"])))
        .unwrap();
    hub.fan_out(&[update(&["a"], true)]);
    assert!(received(&public).is_empty());
    assert_eq!(received(&allowed), ["a"]);
    assert!(received(&other_claim).is_empty());
}

#[test]
fn dropping_a_subscription_removes_it_at_once() {
    let hub = Hub::new(16);
    let subscription = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
    assert_eq!(hub.subscriptions(), 1);
    drop(subscription);
    assert_eq!(hub.subscriptions(), 0);
    hub.fan_out(&[update(&["a"], false)]);
}

#[test]
fn close_ends_streams_and_refuses_newcomers() {
    let hub = Hub::new(16);
    let subscription = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
    hub.close();
    let mut cx = Context::from_waker(Waker::noop());
    let status = subscription
        .subscriber()
        .mailbox
        .poll_drain(&mut cx, &mut Vec::new());
    assert_eq!(status, Poll::Ready(Status::Closed));
    assert!(hub.subscribe(SelectorSet::parse(["a"]), None).is_err());
}

#[test]
fn expired_subscribers_are_closed_and_others_stay() {
    let hub = Hub::new(16);
    let soon = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
    let later = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
    soon.expire_at(100);
    later.expire_at(200);
    assert_eq!(hub.expiring.close_expired(150), 1);
    let mut cx = Context::from_waker(Waker::noop());
    let status = soon
        .subscriber()
        .mailbox
        .poll_drain(&mut cx, &mut Vec::new());
    assert_eq!(status, Poll::Ready(Status::Closed));
    let status = later
        .subscriber()
        .mailbox
        .poll_drain(&mut cx, &mut Vec::new());
    assert_eq!(status, Poll::Pending);
    drop(later);
    assert_eq!(
        hub.expiring.close_expired(300),
        0,
        "gone subscribers are skipped"
    );
    assert!(hub.expiring.is_empty());
}

#[test]
fn subscribers_with_long_lived_tokens_leave_the_expiry_queue_when_they_leave() {
    let hub = Hub::new(4);
    let far = crate::update::now_ms() / 1000 + 365 * 24 * 3600;
    for round in 0..3 {
        let subscriptions: Vec<_> = (0..1000u64)
            .map(|n| {
                let subscription = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
                // Several share one expiry second, as tokens minted together do.
                subscription.expire_at(far + n / 10);
                subscription
            })
            .collect();
        assert_eq!(hub.expiry_queue_len(), 1000, "round {round}");
        let mut subscriptions = subscriptions;
        let staying = subscriptions.split_off(500);
        drop(subscriptions);
        assert_eq!(hub.expiry_queue_len(), 500, "round {round}");
        drop(staying);
        assert_eq!(hub.expiry_queue_len(), 0, "round {round}");
    }
    assert_eq!(hub.subscriptions(), 0);
}

#[test]
fn leaving_takes_out_only_ones_own_entry_and_a_new_expiry_replaces_the_old() {
    let hub = Hub::new(4);
    let first = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
    let second = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
    first.expire_at(100);
    second.expire_at(100);
    second.expire_at(500);
    assert_eq!(hub.expiry_queue_len(), 2);
    drop(first);
    assert_eq!(hub.expiry_queue_len(), 1);
    assert_eq!(
        hub.expiring.close_expired(200),
        0,
        "the old expiry was replaced"
    );
    assert_eq!(hub.expiring.close_expired(500), 1);
    assert_eq!(hub.expiry_queue_len(), 0);
    drop(second);
    assert_eq!(hub.expiry_queue_len(), 0);
}

fn status(subscription: &Subscription) -> Poll<Status> {
    let mut cx = Context::from_waker(Waker::noop());
    subscription
        .subscriber()
        .mailbox
        .poll_drain(&mut cx, &mut Vec::new())
}

#[tokio::test(start_paused = true)]
async fn the_expiry_ticker_closes_an_expired_stream_within_one_tick_and_stops_with_the_hub() {
    let hub = Hub::new(4);
    let expired = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
    let valid = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
    let now = crate::update::now_ms() / 1000;
    expired.expire_at(now.saturating_sub(1));
    valid.expire_at(now + 3600);
    let ticker = tokio::spawn(hub.expiry_ticks());
    tokio::time::sleep(EXPIRY_TICK).await;
    assert_eq!(status(&expired), Poll::Ready(Status::Closed));
    assert_eq!(status(&valid), Poll::Pending);
    assert_eq!(hub.expiry_queue_len(), 1);
    hub.close();
    tokio::time::sleep(EXPIRY_TICK * 2).await;
    assert!(ticker.is_finished(), "the ticker outlived the hub");
}

#[tokio::test(start_paused = true)]
async fn heartbeats_reach_idle_subscribers_once_per_period_and_stop_with_the_hub() {
    let hub = Hub::new(4);
    let idle = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
    let every = Duration::from_secs(15);
    let ticker = tokio::spawn(hub.heartbeats(every));
    let comments = |subscription: &Subscription| {
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        let _ = subscription
            .subscriber()
            .mailbox
            .poll_drain(&mut cx, &mut out);
        out.iter()
            .filter(|d| matches!(d, Delivery::Comment(c) if c[..] == HEARTBEAT[..]))
            .count()
    };
    tokio::time::sleep(every - Duration::from_millis(1)).await;
    assert_eq!(comments(&idle), 0, "no heartbeat before the first period");
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(comments(&idle), 1);
    tokio::time::sleep(every * 3).await;
    assert_eq!(comments(&idle), 1, "an undrained heartbeat is not repeated");
    hub.close();
    tokio::time::sleep(every * 2).await;
    assert!(ticker.is_finished(), "the heartbeat outlived the hub");
}

#[test]
fn template_subscribers_get_each_update_once_through_any_number_of_selectors() {
    let hub = Hub::new(16);
    let books = hub
        .subscribe(SelectorSet::parse(["https://e.com/books/{id}"]), None)
        .unwrap();
    let twice = hub
        .subscribe(
            SelectorSet::parse([
                "https://e.com/books/{id}",
                "https://e.com/{+any}",
                "https://e.com/books/1",
                "*",
            ]),
            None,
        )
        .unwrap();
    let users = hub
        .subscribe(SelectorSet::parse(["https://e.com/users/{id}"]), None)
        .unwrap();
    let unprefixed = hub.subscribe(SelectorSet::parse(["{+x}/1"]), None).unwrap();
    hub.fan_out(&[
        update(&["https://e.com/books/1"], false),
        update(&["https://e.com/books/2", "https://e.com/books/1"], false),
        update(&["https://e.com/users/7"], false),
    ]);
    assert_eq!(
        received(&books),
        ["https://e.com/books/1", "https://e.com/books/2"]
    );
    assert_eq!(
        received(&twice),
        [
            "https://e.com/books/1",
            "https://e.com/books/2",
            "https://e.com/users/7"
        ]
    );
    assert_eq!(received(&users), ["https://e.com/users/7"]);
    assert_eq!(
        received(&unprefixed),
        ["https://e.com/books/1", "https://e.com/books/2"]
    );
}

#[test]
fn subscribers_of_one_template_share_one_slot_and_leave_nothing_behind() {
    let hub = Hub::new(4);
    let many: Vec<_> = (0..1000)
        .map(|_| {
            hub.subscribe(SelectorSet::parse(["https://e.com/rooms/{id}"]), None)
                .unwrap()
        })
        .collect();
    let distinct: Vec<_> = (0..50)
        .map(|n| {
            hub.subscribe(
                SelectorSet::parse([format!("https://e.com/r{n}/{{id}}")]),
                None,
            )
            .unwrap()
        })
        .collect();
    assert_eq!(hub.registry.template_stats().0, 51);
    drop(many);
    drop(distinct);
    assert_eq!(hub.registry.template_stats(), (0, 1));
}

#[test]
fn subscribers_of_one_url_pattern_share_one_slot_and_each_gets_an_update_once() {
    let hub = Hub::new(4);
    let base = url::Url::parse("https://hub.example/.well-known/mercure").unwrap();
    let pattern = |source: &str| Selector::url_pattern(source, &base).unwrap();
    let many: Vec<_> = (0..100)
        .map(|_| {
            hub.subscribe(
                SelectorSet::from_selectors([pattern("https://e.com/books/:id")]),
                None,
            )
            .unwrap()
        })
        .collect();
    // Two patterns (a slot each), one of them shared with the hundred, and an exact topic.
    let mixed = hub
        .subscribe(
            SelectorSet::from_selectors([
                pattern("https://e.com/books/:id"),
                pattern("/rooms/:id"),
                Selector::exact("https://e.com/books/1"),
            ]),
            None,
        )
        .unwrap();
    assert_eq!(hub.registry.url_pattern_stats(), (2, 102));
    hub.fan_out(&[
        update(&["https://e.com/books/1", "https://e.com/books/2"], false),
        update(&["https://hub.example/rooms/7"], false),
        update(&["https://e.com/books/1/reviews"], false),
    ]);
    assert_eq!(
        received(&mixed),
        ["https://e.com/books/1", "https://hub.example/rooms/7"]
    );
    for subscription in &many {
        assert_eq!(received(subscription), ["https://e.com/books/1"]);
    }
    let counts = hub.pattern_subscriber_counts_now(&["https://e.com/books/3"], usize::MAX);
    assert_eq!(counts.counts, [101]);
    drop(many);
    assert_eq!(hub.registry.url_pattern_stats(), (2, 2));
    drop(mixed);
    assert_eq!(hub.registry.url_pattern_stats(), (0, 0));
}

#[test]
fn pattern_counts_are_per_distinct_template_and_bounded_by_the_budget() {
    let hub = Hub::new(4);
    let _subscriptions: Vec<_> = [
        vec!["https://e.com/books/{id}"],
        vec!["https://e.com/books/{id}"],
        vec!["https://e.com/books/{id}", "https://e.com/books/1"],
        vec!["https://e.com/books/{id}", "{+all}"],
        vec!["*"],
        vec!["*", "https://e.com/books/2"],
        vec!["https://e.com/books/1"],
    ]
    .into_iter()
    .map(|selectors| hub.subscribe(SelectorSet::parse(selectors), None).unwrap())
    .collect();
    let topics = ["https://e.com/books/1", "https://e.com/books/2", "other"];
    let counts = hub.pattern_subscriber_counts_now(&topics, usize::MAX);
    assert!(counts.complete);
    // Those that also select the topic exactly are counted elsewhere (with exact selectors).
    assert_eq!(counts.counts, [5, 5, 3]);
    let starved = hub.pattern_subscriber_counts_now(&topics, 10);
    assert!(!starved.complete);
    assert!(
        starved
            .counts
            .iter()
            .zip(&counts.counts)
            .all(|(s, c)| s <= c)
    );
}

#[test]
fn the_identity_kept_per_subscriber_did_not_grow() {
    // 56 bytes before the Mercure 1.0 flag: the urn became a `Box<str>` to make room.
    assert!(std::mem::size_of::<Identity>() <= 56);
}

#[test]
fn one_update_reaches_ten_thousand_queues() {
    let hub = Hub::new(4);
    let subscriptions: Vec<_> = (0..10_000)
        .map(|_| hub.subscribe(SelectorSet::parse(["t"]), None).unwrap())
        .collect();
    let update = update(&["t"], false);
    hub.fan_out(&[Arc::clone(&update)]);
    // Every queue holds the same allocation: one reference per subscriber.
    assert_eq!(Arc::strong_count(&update), 1 + subscriptions.len());
}

#[tokio::test(start_paused = true)]
async fn the_buffer_sweep_frees_what_a_burst_grew_once_it_is_over_and_stops_with_the_hub() {
    let hub = Hub::new(1024);
    let quiet = hub.subscribe(SelectorSet::parse(["a"]), None).unwrap();
    let busy = hub.subscribe(SelectorSet::parse(["b"]), None).unwrap();
    let burst: Vec<_> = (0..12).map(|_| update(&["a"], false)).collect();
    hub.fan_out(&burst);
    assert_eq!(received(&quiet).len(), 12);
    assert!(quiet.subscriber().mailbox.buffer_capacity() >= 12);
    let ticker = tokio::spawn(hub.buffer_sweeps());
    for _ in 0..4 {
        // `b` receives an update every half sweep period: it keeps its buffer.
        hub.fan_out(&[update(&["b"], false)]);
        tokio::time::sleep(BUFFER_SWEEP / 2).await;
        assert_eq!(received(&busy).len(), 1);
    }
    assert_eq!(quiet.subscriber().mailbox.buffer_capacity(), 0);
    assert!(busy.subscriber().mailbox.buffer_capacity() > 0);
    hub.close();
    tokio::time::sleep(BUFFER_SWEEP * 2).await;
    assert!(ticker.is_finished(), "the sweep outlived the hub");
}

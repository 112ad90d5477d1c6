//! Tests of the registry on its own: filing and removing subscribers, selection by exact topic,
//! `*`, URI template and URL pattern, once-per-fan-out delivery, private visibility, overflow.

use std::sync::atomic::AtomicU64;
use std::task::{Context, Waker};

use super::*;
use crate::hub::Identity;
use crate::hub::mailbox::{Delivery, Mailbox};
use crate::topic::SelectorSet;
use crate::update::Draft;

fn subscriber(
    id: u64,
    selectors: SelectorSet,
    private_access: Option<SelectorSet>,
) -> Arc<Subscriber> {
    Arc::new(Subscriber {
        id,
        selectors,
        private_access,
        mailbox: Mailbox::new(8),
        identity: None,
        reached: AtomicU64::new(0),
    })
}

fn file(registry: &Registry, id: u64, selectors: &[&str]) -> Arc<Subscriber> {
    let subscriber = subscriber(id, SelectorSet::parse(selectors.iter().copied()), None);
    registry.insert(Arc::clone(&subscriber));
    subscriber
}

fn update(topics: &[&str], private: bool) -> Arc<Update> {
    Arc::new(
        Update::from_draft(Draft {
            topics: topics.iter().map(|topic| topic.to_string()).collect(),
            private,
            ..Draft::default()
        })
        .unwrap(),
    )
}

/// The first topic of every update queued for `subscriber`, draining its mailbox.
fn received(subscriber: &Subscriber) -> Vec<String> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    let _ = subscriber.mailbox.poll_drain(&mut cx, &mut out);
    out.into_iter()
        .filter_map(|delivery| match delivery {
            Delivery::Update(update) => Some(update.topic().to_owned()),
            Delivery::Comment(_) => None,
        })
        .collect()
}

fn url_pattern(source: &str) -> SelectorSet {
    let hub = url::Url::parse("https://hub.example/.well-known/mercure").unwrap();
    SelectorSet::from_selectors([crate::topic::Selector::url_pattern(source, &hub).unwrap()])
}

#[test]
fn insert_and_remove_keep_the_count_and_removing_twice_finds_nothing() {
    let registry = Registry::default();
    assert!(registry.is_empty());
    // Ids across every shard, with every kind of selector.
    for id in 0..100 {
        let selectors: &[&str] = match id % 4 {
            0 => &["a"],
            1 => &["*"],
            2 => &["https://e.com/{id}"],
            _ => &["a", "https://e.com/{id}", "*"],
        };
        file(&registry, id, selectors);
    }
    assert_eq!(registry.len(), 100);
    let mut visited = 0;
    registry.for_each(|_| visited += 1);
    assert_eq!(visited, 100);
    for id in 0..100 {
        assert_eq!(registry.remove(id).map(|s| s.id), Some(id));
        assert!(registry.remove(id).is_none());
    }
    assert!(registry.is_empty());
    assert_eq!(registry.template_complexity(), 0);
    assert_eq!(
        registry.template_stats(),
        (0, 1),
        "the prefix index is pruned"
    );
    // Nothing is left in any index: a fan-out reaches nobody.
    assert_eq!(registry.fan_out(&update(&["a"], false)), FanOut::default());
}

#[test]
fn exact_topics_select_byte_for_byte() {
    let registry = Registry::default();
    let a = file(&registry, 1, &["https://e.com/a"]);
    let both = file(&registry, 2, &["https://e.com/a", "https://e.com/b"]);
    let other = file(&registry, 3, &["https://e.com/A"]);
    let result = registry.fan_out(&update(&["https://e.com/a"], false));
    assert_eq!(result.queued, 2);
    assert_eq!(received(&a), ["https://e.com/a"]);
    assert_eq!(received(&both), ["https://e.com/a"]);
    assert!(received(&other).is_empty());
}

#[test]
fn templates_and_any_select_by_matching_and_a_removed_one_stops_receiving() {
    let registry = Registry::default();
    let books = file(&registry, 1, &["https://e.com/books/{id}"]);
    let books_too = file(&registry, 2, &["https://e.com/books/{id}"]);
    let anything = file(&registry, 3, &["*"]);
    let users = file(&registry, 4, &["https://e.com/users/{id}"]);
    assert_eq!(
        registry.template_stats().0,
        2,
        "one slot per distinct template"
    );
    registry.fan_out(&update(&["https://e.com/books/1"], false));
    registry.fan_out(&update(&["https://e.com/books/1/reviews"], false));
    assert_eq!(received(&books), ["https://e.com/books/1"]);
    assert_eq!(received(&books_too), ["https://e.com/books/1"]);
    assert_eq!(received(&anything).len(), 2);
    assert!(received(&users).is_empty());
    registry.remove(1);
    registry.fan_out(&update(&["https://e.com/books/2"], false));
    assert!(received(&books).is_empty(), "removed: no longer reached");
    assert_eq!(received(&books_too), ["https://e.com/books/2"]);
    assert_eq!(
        registry.template_stats().0,
        2,
        "the slot stays while shared"
    );
}

#[test]
fn url_patterns_select_by_matching() {
    let registry = Registry::default();
    let users = subscriber(1, url_pattern("https://example.com/users/:id"), None);
    let relative = subscriber(2, url_pattern("/books/*"), None);
    registry.insert(Arc::clone(&users));
    registry.insert(Arc::clone(&relative));
    registry.fan_out(&update(&["https://example.com/users/7"], false));
    registry.fan_out(&update(&["https://hub.example/books/1/2"], false));
    registry.fan_out(&update(&["https://example.com/books/1"], false));
    assert_eq!(received(&users), ["https://example.com/users/7"]);
    assert_eq!(received(&relative), ["https://hub.example/books/1/2"]);
    registry.remove(1);
    registry.remove(2);
    assert_eq!(
        registry.fan_out(&update(&["https://example.com/users/7"], false)),
        FanOut::default()
    );
}

#[test]
fn a_subscriber_reached_through_several_selectors_and_topics_gets_the_update_once() {
    let registry = Registry::default();
    let everything = file(
        &registry,
        1,
        &["a", "b", "*", "{+any}", "https://e.com/{x}"],
    );
    let result = registry.fan_out(&update(&["a", "b", "https://e.com/1"], false));
    assert_eq!(result.queued, 1);
    assert_eq!(received(&everything), ["a"]);
    // And again for the next fan-out: the stamp is per fan-out, not per subscriber.
    registry.fan_out(&update(&["b", "a"], false));
    assert_eq!(received(&everything), ["b"]);
}

#[test]
fn private_updates_reach_only_subscribers_whose_claim_matches_a_topic() {
    let registry = Registry::default();
    let public = subscriber(1, SelectorSet::parse(["*"]), None);
    let allowed = subscriber(
        2,
        SelectorSet::parse(["*"]),
        Some(SelectorSet::parse(["https://e.com/books/{id}"])),
    );
    let other_claim = subscriber(
        3,
        SelectorSet::parse(["https://e.com/books/1"]),
        Some(SelectorSet::parse(["https://e.com/users/{id}"])),
    );
    // The claim may match another topic of the update than the one selected.
    let through_alternate = subscriber(
        4,
        SelectorSet::parse(["https://e.com/books/1"]),
        Some(SelectorSet::parse(["/alt"])),
    );
    for subscriber in [&public, &allowed, &other_claim, &through_alternate] {
        registry.insert(Arc::clone(subscriber));
    }
    let result = registry.fan_out(&update(&["https://e.com/books/1", "/alt"], true));
    assert_eq!(result.queued, 2);
    assert!(received(&public).is_empty());
    assert_eq!(received(&allowed), ["https://e.com/books/1"]);
    assert!(received(&other_claim).is_empty());
    assert_eq!(received(&through_alternate), ["https://e.com/books/1"]);
    // Public updates reach every selecting subscriber, claim or not.
    assert_eq!(
        registry
            .fan_out(&update(&["https://e.com/books/1"], false))
            .queued,
        4
    );
}

#[test]
fn subscription_events_reach_each_subscriber_in_its_own_format_only() {
    let registry = Registry::default();
    let with_identity = |id: u64, mercure1: bool| {
        Arc::new(Subscriber {
            id,
            selectors: SelectorSet::parse(["*"]),
            private_access: Some(SelectorSet::parse(["*"])),
            mailbox: Mailbox::new(8),
            identity: Some(Box::new(Identity {
                urn: "urn:uuid:x".into(),
                payload: crate::hub::Payloads::Same(None),
                mercure1,
            })),
            reached: AtomicU64::new(0),
        })
    };
    let v0 = with_identity(1, false);
    let v1 = with_identity(2, true);
    registry.insert(Arc::clone(&v0));
    registry.insert(Arc::clone(&v1));
    let topic = "/.well-known/mercure/subscriptions/a/urn%3Ax";
    registry.fan_out(&update(&[topic], true));
    assert_eq!(received(&v0), [topic]);
    assert!(received(&v1).is_empty());
}

#[test]
fn overflowing_queues_are_counted_apart() {
    let registry = Registry::default();
    let subscriber = file(&registry, 1, &["a"]);
    let mut queued = 0;
    let mut overflowed = 0;
    for _ in 0..20 {
        let result = registry.fan_out(&update(&["a"], false));
        queued += result.queued;
        overflowed += result.overflowed;
    }
    assert_eq!(queued, 8, "the mailbox holds 8");
    assert_eq!(
        overflowed, 1,
        "the ninth overflows it; later ones are ignored"
    );
    assert_eq!(received(&subscriber).len(), 8);
}

#[test]
fn template_complexity_follows_the_distinct_live_templates() {
    let registry = Registry::default();
    let template = SelectorSet::parse(["https://e.com/{a}/{b}"]);
    let one = template.template_complexity();
    assert!(one > 0);
    file(&registry, 1, &["https://e.com/{a}/{b}"]);
    file(&registry, 2, &["https://e.com/{a}/{b}", "x"]);
    assert_eq!(registry.template_complexity(), one, "shared, counted once");
    file(&registry, 3, &["https://f.com/{a}"]);
    assert!(registry.template_complexity() > one);
    registry.remove(3);
    assert_eq!(registry.template_complexity(), one);
    registry.remove(1);
    registry.remove(2);
    assert_eq!(registry.template_complexity(), 0);
}

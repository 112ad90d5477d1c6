//! Scenarios of the per-topic tallies that every [`Store`] must pass, run by the memory and
//! redb tests (the Redis and NATS stores replay the same in `tests/cluster.rs`, against real
//! servers). Each scenario names the retention its store must be opened with.

use std::time::Duration;

use super::{Retention, Store, TopicHistory};
use crate::update::{Draft, Update};

/// One topic's tallies, as compared: (topic, events, last id, public events, last public id).
pub type Row = (String, u64, String, u64, Option<String>);

/// `store.topics()`, sorted by topic, as rows.
pub async fn tallies(store: &dyn Store) -> Vec<Row> {
    let mut rows: Vec<Row> = store
        .topics()
        .await
        .expect("topics")
        .into_iter()
        .map(
            |TopicHistory {
                 topic,
                 events,
                 last_event_id,
                 public_events,
                 last_public_event_id,
             }| {
                (
                    topic,
                    events,
                    last_event_id,
                    public_events,
                    last_public_event_id,
                )
            },
        )
        .collect();
    rows.sort();
    rows
}

/// The row of a topic with `events` updates (newest `last`) of which `public` are public (newest
/// `last_public`).
pub fn row(topic: &str, events: u64, last: &str, public: u64, last_public: Option<&str>) -> Row {
    (
        topic.to_owned(),
        events,
        last.to_owned(),
        public,
        last_public.map(str::to_owned),
    )
}

/// An update of `topics` with id `id`.
pub fn update(topics: &[&str], id: &str, private: bool) -> Update {
    Update::from_draft(Draft {
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
        data: format!("data of {id}"),
        id: Some(id.to_owned()),
        private,
        ..Draft::default()
    })
    .expect("a valid test update")
}

/// For [`mixed_updates`].
pub const MIXED: Retention = Retention {
    max_events: 100,
    max_age: None,
    per_topic: 0,
};

/// Private and public updates on one topic, a topic only private updates used, and updates of
/// several topics (a repeated topic counts once).
pub async fn mixed_updates(store: &dyn Store) {
    store
        .append(vec![
            update(&["a"], "1", false),
            update(&["a"], "2", true),
            update(&["a", "b", "a"], "3", false),
        ])
        .await
        .expect("append");
    store
        .append(vec![update(&["a", "p"], "4", true)])
        .await
        .expect("append");
    store
        .append(vec![update(&["p", "p"], "5", true)])
        .await
        .expect("append");
    assert_eq!(
        tallies(store).await,
        [
            row("a", 4, "4", 2, Some("3")),
            row("b", 1, "3", 1, Some("3")),
            row("p", 2, "5", 0, None),
        ]
    );
}

/// For [`count_retention`].
pub const BY_COUNT: Retention = Retention {
    max_events: 3,
    max_age: None,
    per_topic: 0,
};

/// Trimming by count takes public updates out of both tallies, private ones out of the full
/// one only; the newest public id stays while any public update is kept.
pub async fn count_retention(store: &dyn Store) {
    for (topics, id, private) in [
        (&["a", "b", "a"][..], "1", false),
        (&["a"][..], "2", false),
        (&["a"][..], "3", true),
    ] {
        store
            .append(vec![update(topics, id, private)])
            .await
            .expect("append");
    }
    assert_eq!(
        tallies(store).await,
        [
            row("a", 3, "3", 2, Some("2")),
            row("b", 1, "1", 1, Some("1"))
        ]
    );
    // 1 goes: from a (once, though it named a twice) and from b.
    store
        .append(vec![update(&["a"], "4", true)])
        .await
        .expect("append");
    assert_eq!(tallies(store).await, [row("a", 3, "4", 1, Some("2"))]);
    // 2 goes: a's last public update; a stays, with private updates only.
    store
        .append(vec![update(&["a"], "5", true)])
        .await
        .expect("append");
    assert_eq!(tallies(store).await, [row("a", 3, "5", 0, None)]);
    // A batch that trims within itself.
    store
        .append(vec![
            update(&["b", "a"], "6", false),
            update(&["c"], "7", true),
        ])
        .await
        .expect("append");
    assert_eq!(
        tallies(store).await,
        [
            row("a", 2, "6", 1, Some("6")),
            row("b", 1, "6", 1, Some("6")),
            row("c", 1, "7", 0, None),
        ]
    );
}

/// For [`age_retention`].
pub const AGE: Duration = Duration::from_millis(1000);
/// For [`age_retention`].
pub const BY_AGE: Retention = Retention {
    max_events: 100,
    max_age: Some(AGE),
    per_topic: 0,
};

/// What aged out leaves both tallies, even before the next append; an append then trims it.
pub async fn age_retention(store: &dyn Store) {
    store
        .append(vec![update(&["a", "b"], "old", false)])
        .await
        .expect("append");
    tokio::time::sleep(AGE * 6 / 10).await;
    store
        .append(vec![update(&["a"], "young", true)])
        .await
        .expect("append");
    assert_eq!(
        tallies(store).await,
        [
            row("a", 2, "young", 1, Some("old")),
            row("b", 1, "old", 1, Some("old")),
        ]
    );
    // "old" ages out ("young" is 0.6 of the limit old, with 0.4 to spare).
    tokio::time::sleep(AGE * 6 / 10).await;
    assert_eq!(tallies(store).await, [row("a", 1, "young", 0, None)]);
    store
        .append(vec![update(&["b"], "fresh", false)])
        .await
        .expect("append");
    assert_eq!(
        tallies(store).await,
        [
            row("a", 1, "young", 0, None),
            row("b", 1, "fresh", 1, Some("fresh")),
        ]
    );
}
